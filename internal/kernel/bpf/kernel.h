/* The kernel structures the iterators read, declared with only the fields
 * they use. preserve_access_index makes every access a CO-RE relocation:
 * the loader finds each field by name in the running kernel's BTF, so these
 * declarations fit every kernel that has the field, whatever its offset. A
 * field that a kernel lacks is tested with bpf_core_field_exists first.
 *
 * Scalar types are written out: this file needs no kernel header. */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* From the UAPI: what every kernel with BPF iterators has. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_CGROUP_ARRAY = 8,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_DEVMAP = 14,
	BPF_MAP_TYPE_SOCKMAP = 15,
	BPF_MAP_TYPE_CPUMAP = 16,
	BPF_MAP_TYPE_XSKMAP = 17,
	BPF_MAP_TYPE_SOCKHASH = 18,
	BPF_MAP_TYPE_CGROUP_STORAGE = 19,
	BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20,
	BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21,
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_STACK = 23,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_DEVMAP_HASH = 25,
	BPF_MAP_TYPE_STRUCT_OPS = 26,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_INODE_STORAGE = 28,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
	BPF_MAP_TYPE_BLOOM_FILTER = 30,
	BPF_MAP_TYPE_USER_RINGBUF = 31,
	BPF_MAP_TYPE_CGRP_STORAGE = 32,
	BPF_MAP_TYPE_ARENA = 33,
};

/* Declared for their type only: CO-RE matches an enum field with an enum. */
enum bpf_prog_type { BPF_PROG_TYPE_UNSPEC };
enum bpf_link_type { BPF_LINK_TYPE_UNSPEC };
enum bpf_attach_type { BPF_CGROUP_INET_INGRESS };

enum {
	BPF_F_NO_PREALLOC = 1U << 0,
	BPF_F_MMAPABLE = 1U << 10,
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_map {
	enum bpf_map_type map_type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	__u32 id;
	char name[16];
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

/* u64_stats_t is a struct (local64_t) on 64-bit kernels. */
struct u64_stats {
	__u64 v;
};

struct bpf_prog_stats {
	struct u64_stats cnt;
	struct u64_stats nsecs;
} __attribute__((preserve_access_index));

struct bpf_prog_aux {
	__u32 id;
	__u32 used_map_cnt;
	struct bpf_map **used_maps;
	char name[16];
} __attribute__((preserve_access_index));

struct bpf_prog {
	__u16 pages;
	enum bpf_prog_type type;
	struct bpf_prog_stats *stats;
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_prog {
	struct bpf_iter_meta *meta;
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

struct bpf_link {
	__u32 id;
	enum bpf_link_type type;
	struct bpf_prog *prog;
	enum bpf_attach_type attach_type; /* Linux 6.17 and later */
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_link {
	struct bpf_iter_meta *meta;
	struct bpf_link *link;
} __attribute__((preserve_access_index));

/* Map implementations, for their memory. A structure the kernel lacks
 * (its map type is not built in) or a field that came late is tested with
 * bpf_core_type_exists / bpf_core_field_exists before it is read; a
 * structure declared only for its size has one field, any. */

/* atomic_t is a structure: CO-RE matches a structure field only with a
 * structure. */
typedef struct {
	int counter;
} atomic_t;

/* What a map type does; map_mem_usage arrived in Linux 6.4, and with it
 * fdinfo's memlock became what the functions of mapmem.h compute. */
struct bpf_map_ops {
	__u64 (*map_mem_usage)(const struct bpf_map *map);
} __attribute__((preserve_access_index));

/* For its size only: its lock (raw_spinlock_t, rqspinlock_t in recent
 * kernels) is never read. */
struct bucket {
	struct {
		void *first;
	} head; /* struct hlist_nulls_head */
} __attribute__((preserve_access_index));

struct percpu_counter {
	__s64 count;
} __attribute__((preserve_access_index));

struct bpf_htab {
	struct bpf_map map;
	void *extra_elems;
	struct percpu_counter pcount;
	atomic_t count;
	bool use_percpu_counter;
	__u32 n_buckets;
	__u32 elem_size;
} __attribute__((preserve_access_index));

struct bpf_array {
	struct bpf_map map;
	__u32 elem_size;
} __attribute__((preserve_access_index));

/* The percpu array this program owns: its element's percpu pointer. */
struct bpf_array___pptrs {
	void *pptrs[1];
} __attribute__((preserve_access_index));

/* kernel/bpf/stackmap.c */
struct bpf_stack_map {
	struct bpf_map map;
	__u32 n_buckets;
} __attribute__((preserve_access_index));

struct stack_map_bucket {
	__u32 nr;
} __attribute__((preserve_access_index));

/* kernel/bpf/lpm_trie.c */
struct lpm_trie {
	struct bpf_map map;
	unsigned long n_entries; /* size_t */
	unsigned long data_size;
} __attribute__((preserve_access_index));

struct lpm_trie_node {
	__u32 prefixlen;
} __attribute__((preserve_access_index));

/* kernel/bpf/queue_stack_maps.c */
struct bpf_queue_stack {
	struct bpf_map map;
	__u32 head;
	__u32 tail;
	__u32 size; /* max_entries + 1 */
} __attribute__((preserve_access_index));

/* kernel/bpf/ringbuf.c, for ringbuf and user_ringbuf */
struct bpf_ringbuf {
	int nr_pages;
} __attribute__((preserve_access_index));

struct bpf_ringbuf_map {
	struct bpf_map map;
	struct bpf_ringbuf *rb;
} __attribute__((preserve_access_index));

/* kernel/bpf/bloom_filter.c */
struct bpf_bloom_filter {
	struct bpf_map map;
	__u32 bitset_mask;
} __attribute__((preserve_access_index));

/* kernel/bpf/devmap.c, for devmap and devmap_hash */
struct bpf_dtab {
	struct bpf_map map;
	unsigned int items;
	__u32 n_buckets;
} __attribute__((preserve_access_index));

struct bpf_dtab_netdev {
	unsigned int idx;
} __attribute__((preserve_access_index));

/* kernel/bpf/cpumap.c */
struct bpf_cpu_map {
	struct bpf_map map;
} __attribute__((preserve_access_index));

/* net/xdp/xskmap.c */
struct xsk_map {
	struct bpf_map map;
	atomic_t count; /* Linux 6.4 and later */
} __attribute__((preserve_access_index));

struct xsk_map_node {
	struct xsk_map *map;
} __attribute__((preserve_access_index));

/* net/core/sock_map.c */
struct bpf_stab {
	struct bpf_map map;
} __attribute__((preserve_access_index));

struct bpf_shtab {
	struct bpf_map map;
	__u32 buckets_num;
	__u32 elem_size;
	atomic_t count;
} __attribute__((preserve_access_index));

struct bpf_shtab_bucket {
	struct {
		void *first;
	} head; /* struct hlist_head */
} __attribute__((preserve_access_index));

/* kernel/bpf/reuseport_array.c */
struct reuseport_array {
	struct bpf_map map;
} __attribute__((preserve_access_index));

/* kernel/bpf/local_storage.c: cgroup_storage, percpu_cgroup_storage */
struct bpf_cgroup_storage_map {
	struct bpf_map map;
} __attribute__((preserve_access_index));

/* kernel/bpf/bpf_local_storage.c: sk, inode, task and cgrp storage */
struct bpf_local_storage_map {
	struct bpf_map map;
	__u32 bucket_log;
} __attribute__((preserve_access_index));

struct bpf_local_storage_map_bucket {
	struct {
		void *first;
	} list; /* struct hlist_head */
} __attribute__((preserve_access_index));

/* kernel/bpf/bpf_struct_ops.c */
struct btf_type {
	__u32 name_off;
	__u32 info;
	__u32 size; /* in an anonymous union */
} __attribute__((preserve_access_index));

struct bpf_struct_ops_desc {
	const struct btf_type *value_type;
} __attribute__((preserve_access_index));

struct bpf_struct_ops_value {
	char data[0];
} __attribute__((preserve_access_index));

struct bpf_struct_ops_map {
	struct bpf_map map;
	/* Each arrived late, with a change of bpf_struct_ops_map_mem_usage. */
	const struct bpf_struct_ops_desc *st_ops_desc;
	__u32 funcs_cnt;
	void **ksyms;
} __attribute__((preserve_access_index));
