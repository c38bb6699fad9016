// SPDX-License-Identifier: GPL-2.0
/* The floor of finding holders: a BPF iterator over every task's open
 * files (iter/task_file) that writes the 4-byte ID of each map, program or
 * link file and nothing else: no process, no cgroup, no kind. Reading it
 * costs what any walk of every task's files must cost (the kernel's walk
 * of the tasks and their file tables, one program run per open file, the
 * seq_file and the copy to user space); the agent's holders iterator
 * (internal/kernel/bpf/holders.bpf.c), which does more per file and per
 * process, can only be slower. bench/holderpass compares them.
 *
 * BPF files are recognised as the holders iterator recognises them, by
 * their file_operations, which the agent calibrates (kernel.Holders.FileOps)
 * and writes here before the first pass.
 *
 * Self-contained, as floor.bpf.c. */

typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef unsigned short __u16;
typedef unsigned char __u8;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct seq_file;
struct file_operations;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct file {
	const struct file_operations *f_op;
	void *private_data;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
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

/* Per kind (map, program, link): the file_operations of its files, two at
 * most; 0 for none. */
__u64 fops[3][2];

SEC("iter/task_file")
int floor_task_files(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	void *obj;
	__u64 op;
	__u32 id;

	if (!file)
		return 0;
	op = (__u64)(unsigned long)file->f_op;
	obj = file->private_data;
	if (op == fops[0][0] || (fops[0][1] && op == fops[0][1]))
		id = BPF_CORE_READ((struct bpf_map *)obj, id);
	else if (op == fops[1][0] || (fops[1][1] && op == fops[1][1]))
		id = BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
	else if (op == fops[2][0] || (fops[2][1] && op == fops[2][1]))
		id = BPF_CORE_READ((struct bpf_link *)obj, id);
	else
		return 0;
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	return 0;
}
