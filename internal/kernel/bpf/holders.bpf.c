// SPDX-License-Identifier: GPL-2.0
/* A BPF iterator over every task's open files (iter/task_file) that finds
 * the processes holding a file descriptor of a BPF map, program or link:
 * for each, its thread-group ID, its group leader's comm and its cgroups,
 * then the kind and ID of each object it holds. Records in holders.h.
 *
 * A BPF file is recognised by its file_operations. bpf_map_fops and the
 * others are not exported to BPF (and not in kallsyms without
 * CONFIG_KALLSYMS_ALL), so the agent calibrates: a first pass (calibrated
 * == 0) reports its own files, the agent picks out the map, program and
 * link it holds, and writes their f_op, inode and name into the .bss. A
 * kind can have more than one file_operations (Linux 6.10 added
 * bpf_link_fops_poll, for links that support poll); a file with an unknown
 * f_op on the shared anonymous inode whose name is one of the calibrated
 * names is of that kind, and its f_op is learned.
 *
 * Self-contained: the kernel structures are declared here with only the
 * fields read, as CO-RE relocations (preserve_access_index). */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define NULL ((void *)0)

/* From the UAPI. */
enum {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};
#define BPF_ANY 0

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "holders.h"

char LICENSE[] SEC("license") = "GPL";

struct seq_file;
struct inode;
struct file_operations;
struct cgroup_root;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	const struct file_operations *f_op;
	void *private_data;
} __attribute__((preserve_access_index));

/* kernfs_node.parent was renamed __parent in Linux 6.15. */
struct kernfs_node {
	struct kernfs_node *parent;
	const char *name;
	__u64 id;
} __attribute__((preserve_access_index));

struct kernfs_node___new {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	struct cgroup_root *root;
	int level;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup_subsys_state *subsys[1]; /* CGROUP_SUBSYS_COUNT, read by offset */
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

enum cgroup_subsys_id { cpuset_cgrp_id };

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *group_leader;
	__u64 start_time;
	char comm[16];
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

struct bpf_map {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct bpf_link {
	__u32 id;
} __attribute__((preserve_access_index));

/* Set by the agent at load time: 0 leaves the cgroups unread, on a kernel
 * whose verifier refuses the code that reads them. */
const volatile __u32 read_cgroups = 1;

/* Set by the agent through the memory-mapped .bss. */
__u32 calibrated;
__u64 fops[3][2]; /* per kind: calibrated; a second one, learned */
__u64 anon_inode;
/* The 16-byte dentry names of BPF files: a map's, a program's, a link's,
 * and a link's again, for a descriptor opened by ID or from bpffs (named
 * "bpf-link" by bpf_link_new_fd, where bpf_link_prime says "bpf_link"). */
__u64 names[4][2];
__u32 epoch;       /* cgroup paths sent in another epoch are sent again */

/* The pass in progress: the task whose process record was written last. */
__u64 cur_session;
__u64 cur_task;

/* The cgroups whose path was sent, and in which epoch. Holders are few
 * (the agents that load BPF) and so are their cgroups; one evicted is only
 * sent again. Preallocated, 80 bytes an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} sent_cgroups SEC(".maps");

/* A cgroup record is larger than the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hold_cgroup);
} scratch SEC(".maps");

static __always_inline __u64 as_u64(const void *p)
{
	return (__u64)(unsigned long)p;
}

/* kind_of returns the kind of BPF object behind file, or -1. */
static __always_inline int kind_of(struct file *file)
{
	__u64 op = as_u64(file->f_op);
	__u64 name[2] = {};
	int k;

	if (op == fops[HOLD_MAP][0])
		return HOLD_MAP;
	if (op == fops[HOLD_PROG][0])
		return HOLD_PROG;
	if (op == fops[HOLD_LINK][0])
		return HOLD_LINK;
	for (k = 0; k < 3; k++)
		if (fops[k][1] && op == fops[k][1])
			return k;
	if (as_u64(file->f_inode) != anon_inode)
		return -1;
	/* Another file_operations of a kind, or no BPF object at all (an
	 * eventfd, an epoll): the name tells. What follows its NUL stays 0. */
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	for (k = 0; k < 4; k++) {
		if (name[0] == names[k][0] && name[1] == names[k][1]) {
			int kind = k < 3 ? k : HOLD_LINK;

			if (!fops[kind][1])
				fops[kind][1] = op;
			return kind;
		}
	}
	return -1;
}

static __always_inline __u32 object_id(int kind, void *obj)
{
	if (kind == HOLD_MAP)
		return BPF_CORE_READ((struct bpf_map *)obj, id);
	if (kind == HOLD_PROG)
		return BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
	return BPF_CORE_READ((struct bpf_link *)obj, id);
}

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___new, __parent))
		return BPF_CORE_READ((struct kernfs_node___new *)kn, __parent);
	return BPF_CORE_READ(kn, parent);
}

/* fill_cgroup writes the last components of cg's path into r. */
static __always_inline void fill_cgroup(struct hold_cgroup *r, struct cgroup *cg, __u16 v1)
{
	struct kernfs_node *kn = BPF_CORE_READ(cg, kn);
	int i;

	r->h.tag = HOLD_CGROUP;
	r->h.size = sizeof(*r);
	r->levels = 0;
	r->flags = v1 ? CGROUP_V1 : 0;
	r->id = BPF_CORE_READ(kn, id);
	for (i = 0; i < CGROUP_LEVELS; i++) {
		struct kernfs_node *parent = kn_parent(kn);

		if (!parent)
			break;
		bpf_probe_read_kernel_str(r->name[i], CGROUP_NAME, BPF_CORE_READ(kn, name));
		r->levels = i + 1;
		kn = parent;
	}
	if (!kn_parent(kn))
		r->flags |= CGROUP_COMPLETE;
}

/* sent_key is a cgroup's key in sent_cgroups: its ID, unique within its
 * hierarchy, with the top bit for v1 (IDs are 32-bit inode numbers and a
 * 32-bit generation that never reaches it). */
static __always_inline __u64 sent_key(struct cgroup *cg, __u16 v1)
{
	return BPF_CORE_READ(cg, kn, id) | ((__u64)v1 << 63);
}

/* sent reports whether the path of the cgroup was sent in this epoch. */
static __always_inline bool sent(__u64 key)
{
	__u32 *e = bpf_map_lookup_elem(&sent_cgroups, &key);

	return e && *e == epoch;
}

/* write_cgroup writes cg's path record unless it was sent; it returns
 * whether the record must be marked sent once the whole output of this
 * file is written, or -1 when the seq_file is full. */
static __noinline int write_cgroup(struct seq_file *seq, struct cgroup *cg, __u16 v1)
{
	__u32 zero = 0;
	struct hold_cgroup *r;

	if (!cg)
		return 0;
	if (sent(sent_key(cg, v1)))
		return 0;
	r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return 0;
	fill_cgroup(r, cg, v1);
	if (bpf_seq_write(seq, r, sizeof(*r)))
		return -1;
	return 1;
}

static __always_inline void mark_sent(struct cgroup *cg, __u16 v1)
{
	__u64 key = sent_key(cg, v1);
	__u32 e = epoch;

	bpf_map_update_elem(&sent_cgroups, &key, &e, BPF_ANY);
}

/* calibrate reports the agent's own files. */
static __always_inline int calibrate(struct bpf_iter__task_file *ctx, struct task_struct *task,
				     struct file *file)
{
	struct hold_file r = {};

	if (task->tgid != (int)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	r.h.tag = HOLD_FILE;
	r.h.size = sizeof(r);
	r.fd = ctx->fd;
	r.f_op = as_u64(file->f_op);
	r.inode = as_u64(file->f_inode);
	bpf_probe_read_kernel_str(r.name, sizeof(r.name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("iter/task_file")
int holders(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct hold_process p = {};
	struct hold_fd r = {};
	struct cgroup *dfl = NULL, *v1 = NULL;
	int kind, dfl_new = 0, v1_new = 0;
	__u64 session;

	if (!task || !file)
		return 0;
	if (!calibrated)
		return calibrate(ctx, task, file);
	kind = kind_of(file);
	if (kind < 0)
		return 0;
	r.h.tag = kind;
	r.h.size = sizeof(r);
	r.id = object_id(kind, file->private_data);

	session = ctx->meta->session_id;
	if (session == cur_session && as_u64(task) == cur_task) {
		bpf_seq_write(seq, &r, sizeof(r));
		return 0;
	}

	/* The first BPF file of this task: its process record first. */
	p.h.tag = HOLD_PROCESS;
	p.h.size = sizeof(p);
	p.tgid = task->tgid;
	p.pid = task->pid;
	if (p.tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		p.flags = PROCESS_SELF;
	p.start_time = BPF_CORE_READ(task, group_leader, start_time);
	BPF_CORE_READ_INTO(&p.comm, task, group_leader, comm);
	if (read_cgroups) {
		struct css_set *cset = BPF_CORE_READ(task, cgroups);

		dfl = BPF_CORE_READ(cset, dfl_cgrp);
		p.cgroup = BPF_CORE_READ(dfl, kn, id);
		/* Hybrid hosts: a runtime that uses the v1 hierarchies leaves
		 * its containers at the v2 root, or in its own service. */
		if (bpf_core_enum_value_exists(enum cgroup_subsys_id, cpuset_cgrp_id)) {
			__u64 idx = bpf_core_enum_value(enum cgroup_subsys_id, cpuset_cgrp_id);
			struct cgroup_subsys_state *css = NULL;

			bpf_probe_read_kernel(&css, sizeof(css),
					      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
						      idx * sizeof(css));
			v1 = BPF_CORE_READ(css, cgroup);
			if (v1 && BPF_CORE_READ(v1, level) > 0 &&
			    BPF_CORE_READ(v1, root) != BPF_CORE_READ(dfl, root))
				p.cgroup1 = BPF_CORE_READ(v1, kn, id);
			else
				v1 = NULL;
		}
		dfl_new = write_cgroup(seq, dfl, 0);
		if (dfl_new < 0)
			return 0;
		v1_new = write_cgroup(seq, v1, 1);
		if (v1_new < 0)
			return 0;
	}
	if (bpf_seq_write(seq, &p, sizeof(p)) || bpf_seq_write(seq, &r, sizeof(r)))
		return 0; /* full: the kernel shows this file again after the read */
	if (dfl_new)
		mark_sent(dfl, 0);
	if (v1_new)
		mark_sent(v1, 1);
	cur_session = session;
	cur_task = as_u64(task);
	return 0;
}

/* Keep the record types in BTF, for bpf2go -type. */
const struct hold_fd *unused_hold_fd __attribute__((unused));
const struct hold_process *unused_hold_process __attribute__((unused));
const struct hold_cgroup *unused_hold_cgroup __attribute__((unused));
const struct hold_file *unused_hold_file __attribute__((unused));
