/* The records the holders iterator (holders.bpf.c) writes. Every record
 * starts with a header naming its type and size; the Go decoder
 * (holders.go) reads the same layouts, generated from this file by bpf2go
 * (-type).
 *
 * A pass is a stream: a process record, then one fd record per BPF file
 * descriptor that process holds; the process record comes only before a
 * process's first BPF descriptor, so processes holding none cost nothing.
 * Before a process record come the path records of its cgroups that the
 * agent has not been sent yet. */
#pragma once

enum hold_tag {
	HOLD_MAP = 0, /* an fd of a map; the values of KIND_* in records.h */
	HOLD_PROG = 1,
	HOLD_LINK = 2,
	HOLD_PROCESS = 3,
	HOLD_CGROUP = 4,
	HOLD_FILE = 5, /* calibration: one of the agent's own files */
};

struct hold_header {
	__u16 tag;
	__u16 size; /* bytes of this record, header included */
};

/* One BPF file descriptor of the process of the last process record. */
struct hold_fd {
	struct hold_header h;
	__u32 id;
};

enum {
	PROCESS_SELF = 1, /* the agent itself */
};

struct hold_process {
	struct hold_header h;
	__u32 tgid;
	__u32 pid; /* the task whose file table this is: tgid, unless a thread has its own */
	__u32 flags;
	__u64 start_time; /* the group leader's, ns since boot: tells a reused tgid apart */
	__u64 cgroup;     /* the default (v2) hierarchy's cgroup ID; 0 unknown */
	__u64 cgroup1;    /* the v1 cpuset hierarchy's, when it is not the root; else 0 */
	char comm[16];    /* the group leader's */
};

#define CGROUP_LEVELS 8
#define CGROUP_NAME 128

enum {
	CGROUP_COMPLETE = 1, /* the names reach up to the root */
	CGROUP_V1 = 2,       /* of the v1 cpuset hierarchy (cgroup1), not the default one */
};

/* The last CGROUP_LEVELS components of a cgroup's path, leaf first. IDs
 * are unique within a hierarchy only: CGROUP_V1 says which. */
struct hold_cgroup {
	struct hold_header h;
	__u16 levels; /* names filled */
	__u16 flags;
	__u64 id;
	char name[CGROUP_LEVELS][CGROUP_NAME];
};

/* Calibration: a file of the agent's own, by descriptor number. */
struct hold_file {
	struct hold_header h;
	__u32 fd;
	__u64 f_op;
	__u64 inode;
	char name[16]; /* its dentry's name, as in anon_inode:<name> */
};
