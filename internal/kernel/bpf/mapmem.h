/* map_memory computes, in the kernel, what the kernel reports as a map's
 * memlock in fdinfo: bpf_map_memory_usage(), which calls the map type's
 * map_mem_usage (Linux 6.4 and later). Each function below follows that
 * callback for one family of map types, as of Linux 6.18, with sizes taken
 * from the running kernel's BTF; each costs a few CO-RE reads.
 *
 * Before Linux 6.4, memlock was an estimate the kernel made from the map's
 * sizes alone (footprint_mem), and is computed as such.
 *
 * A map type whose structure the running kernel lacks, or whose figure
 * needs what BPF cannot read, gives MEMORY_UNKNOWN: the agent then reads
 * fdinfo. Every map type of Linux 6.18 is computed here. */
#pragma once

#define HASHTAB_MAP_LOCK_COUNT 8
#define LLIST_NODE_SZ 8 /* sizeof(struct llist_node) */
#define PTR_SZ 8

/* KREAD reads field of the map's enclosing structure type (whose first
 * member is the struct bpf_map). With bpf_rdonly_cast (Linux 6.2 and
 * later) it is one load: the verifier turns the kfunc call into a register
 * move and the access into a fault-safe load. Without it, a
 * bpf_probe_read_kernel helper call (BPF_CORE_READ), ~60 ns each: these
 * reads are most of what a steady cycle's map iterator costs over the bare
 * walk. The choice is made when the program is loaded: the other branch is
 * dead code to the verifier. */
#define KREAD(type, map, field)                                                                  \
	(bpf_ksym_exists(bpf_rdonly_cast)                                                            \
		 ? ((type *)bpf_rdonly_cast((map), bpf_core_type_id_kernel(type)))->field              \
		 : BPF_CORE_READ((type *)(map), field))

static __always_inline __u64 round_up8(__u64 v) { return (v + 7) & ~7ULL; }

static __always_inline __u64 page_align(__u64 v) { return (v + page_size - 1) & ~(page_size - 1); }

/* Elements in a queue or a stack: a ring of size slots (max_entries + 1)
 * from tail to head. */
static __always_inline __s64 queue_stack_elements(struct bpf_map *map)
{
	__u32 head, tail, size;

	if (!bpf_core_type_exists(struct bpf_queue_stack))
		return ELEMENTS_UNKNOWN;
	head = KREAD(struct bpf_queue_stack, map, head);
	tail = KREAD(struct bpf_queue_stack, map, tail);
	size = KREAD(struct bpf_queue_stack, map, size);
	if (size == 0 || head >= size || tail >= size)
		return ELEMENTS_UNKNOWN;
	return head >= tail ? head - tail : head + size - tail;
}

/* Elements of a map whose type keeps an exact count; ELEMENTS_UNKNOWN
 * otherwise. The hash family counts through the kfunc (Linux 6.6 and
 * later); LPM trie (n_entries), queue and stack (head and tail), sockhash
 * (count) and devmap, devmap_hash (items, Linux 6.4 and later for devmap)
 * keep a count in their structure. Arrays have none: they are full by
 * construction. Others keep no count (cpumap, sockmap, storage maps...),
 * or one that is not quite the number of elements (xskmap counts the
 * sockets' map nodes). */
static __always_inline __s64 map_elements(struct bpf_map *map)
{
	switch ((__u32)map->map_type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
	case BPF_MAP_TYPE_HASH_OF_MAPS:
		if (bpf_ksym_exists(bpf_map_sum_elem_count))
			return bpf_map_sum_elem_count(map);
		return ELEMENTS_UNKNOWN;
	case BPF_MAP_TYPE_LPM_TRIE:
		if (bpf_core_type_exists(struct lpm_trie))
			return KREAD(struct lpm_trie, map, n_entries);
		return ELEMENTS_UNKNOWN;
	case BPF_MAP_TYPE_QUEUE:
	case BPF_MAP_TYPE_STACK:
		return queue_stack_elements(map);
	case BPF_MAP_TYPE_SOCKHASH:
		if (bpf_core_type_exists(struct bpf_shtab))
			return KREAD(struct bpf_shtab, map, count.counter);
		return ELEMENTS_UNKNOWN;
	case BPF_MAP_TYPE_DEVMAP:
		/* devmap counts its items since map_mem_usage came (6.4);
		 * devmap_hash always has. */
		if (!bpf_core_field_exists(struct bpf_map_ops, map_mem_usage))
			return ELEMENTS_UNKNOWN;
		/* fallthrough */
	case BPF_MAP_TYPE_DEVMAP_HASH:
		if (bpf_core_type_exists(struct bpf_dtab))
			return KREAD(struct bpf_dtab, map, items);
		return ELEMENTS_UNKNOWN;
	}
	return ELEMENTS_UNKNOWN;
}

/* kernel/bpf/hashtab.c: htab_map_mem_usage. elements is map_elements()'s
 * count, so that the kfunc is called once per map. */
static __always_inline __u64 htab_mem(struct bpf_map *map, __s64 elements)
{
	__u32 t = map->map_type;
	bool percpu = t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	bool lru = t == BPF_MAP_TYPE_LRU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	bool prealloc = !(map->map_flags & BPF_F_NO_PREALLOC);
	__u64 value_size = round_up8(map->value_size);
	__u64 elem_size = KREAD(struct bpf_htab, map, elem_size);
	__u64 usage = bpf_core_type_size(struct bpf_htab);
	__u64 n;

	usage += bpf_core_type_size(struct bucket) * (__u64)KREAD(struct bpf_htab, map, n_buckets);
	usage += sizeof(int) * (__u64)nr_cpus * HASHTAB_MAP_LOCK_COUNT;
	if (prealloc) {
		n = map->max_entries;
		/* htab_has_extra_elems: a spare element per CPU, allocated
		 * with the others; never for percpu and LRU maps, and for
		 * hash of maps up to some version after 6.12 (6.12 has them,
		 * 6.18 not). The pointer to them says which. */
		if (KREAD(struct bpf_htab, map, extra_elems))
			n += nr_cpus;
		usage += elem_size * n;
		if (percpu)
			usage += value_size * nr_cpus * n;
		else if (!lru)
			usage += PTR_SZ * (__u64)nr_cpus;
		return usage;
	}
	if (elements >= 0)
		n = elements;
	else if (!KREAD(struct bpf_htab, map, use_percpu_counter))
		n = KREAD(struct bpf_htab, map, count.counter);
	else
		return MEMORY_UNKNOWN; /* a percpu_counter: its per-CPU parts */
	usage += (elem_size + LLIST_NODE_SZ) * n;
	if (percpu) {
		usage += (LLIST_NODE_SZ + PTR_SZ) * n;
		usage += value_size * nr_cpus * n;
	}
	return usage;
}

/* kernel/bpf/arraymap.c: array_map_mem_usage, for every array-backed type
 * (array, percpu_array, prog_array, perf_event_array, cgroup_array,
 * array_of_maps). */
static __always_inline __u64 array_mem(struct bpf_map *map)
{
	__u64 entries = map->max_entries;
	__u64 elem_size = KREAD(struct bpf_array, map, elem_size);
	__u64 usage = bpf_core_type_size(struct bpf_array);

	if (map->map_type == BPF_MAP_TYPE_PERCPU_ARRAY)
		return usage + entries * PTR_SZ + entries * elem_size * nr_cpus;
	if (map->map_flags & BPF_F_MMAPABLE)
		return page_align(usage) + page_align(entries * elem_size);
	return usage + entries * elem_size;
}

/* kernel/bpf/stackmap.c: stack_map_mem_usage */
static __always_inline __u64 stack_trace_mem(struct bpf_map *map)
{
	__u64 usage;

	if (!bpf_core_type_exists(struct bpf_stack_map))
		return MEMORY_UNKNOWN;
	usage = bpf_core_type_size(struct bpf_stack_map);
	usage += (__u64)KREAD(struct bpf_stack_map, map, n_buckets) * PTR_SZ;
	usage += (__u64)map->max_entries * (bpf_core_type_size(struct stack_map_bucket) + map->value_size);
	return usage;
}

/* kernel/bpf/lpm_trie.c: trie_mem_usage (nodes only, not the trie). */
static __always_inline __u64 trie_mem(struct bpf_map *map)
{
	__u64 node;

	if (!bpf_core_type_exists(struct lpm_trie))
		return MEMORY_UNKNOWN;
	node = bpf_core_type_size(struct lpm_trie_node) + KREAD(struct lpm_trie, map, data_size) + map->value_size;
	return node * KREAD(struct lpm_trie, map, n_entries);
}

/* kernel/bpf/queue_stack_maps.c: queue_stack_map_mem_usage */
static __always_inline __u64 queue_stack_mem(struct bpf_map *map)
{
	if (!bpf_core_type_exists(struct bpf_queue_stack))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct bpf_queue_stack) + ((__u64)map->max_entries + 1) * map->value_size;
}

/* kernel/bpf/ringbuf.c: ringbuf_map_mem_usage, for ringbuf and
 * user_ringbuf: the pages, and the page pointers of a buffer mapped twice
 * after its meta pages (rb->nr_pages counts meta and data pages once). */
static __always_inline __u64 ringbuf_mem(struct bpf_map *map)
{
	struct bpf_ringbuf_map *rb_map = (struct bpf_ringbuf_map *)map;
	__u64 nr_pages, nr_data_pages;

	if (!bpf_core_type_exists(struct bpf_ringbuf_map) || !bpf_core_type_exists(struct bpf_ringbuf))
		return MEMORY_UNKNOWN;
	nr_pages = (__u32)BPF_CORE_READ(rb_map, rb, nr_pages);
	nr_data_pages = map->max_entries / page_size;
	return bpf_core_type_size(struct bpf_ringbuf_map) + nr_pages * page_size + (nr_pages + nr_data_pages) * PTR_SZ;
}

/* kernel/bpf/bloom_filter.c: bloom_map_mem_usage */
static __always_inline __u64 bloom_mem(struct bpf_map *map)
{
	__u64 bits;

	if (!bpf_core_type_exists(struct bpf_bloom_filter))
		return MEMORY_UNKNOWN;
	bits = (__u64)KREAD(struct bpf_bloom_filter, map, bitset_mask) + 1;
	return bpf_core_type_size(struct bpf_bloom_filter) + round_up8((bits + 7) / 8);
}

/* kernel/bpf/devmap.c: dev_map_mem_usage, for devmap and devmap_hash */
static __always_inline __u64 devmap_mem(struct bpf_map *map)
{
	__u64 usage;

	if (!bpf_core_type_exists(struct bpf_dtab) || !bpf_core_type_exists(struct bpf_dtab_netdev))
		return MEMORY_UNKNOWN;
	usage = bpf_core_type_size(struct bpf_dtab);
	if (map->map_type == BPF_MAP_TYPE_DEVMAP_HASH)
		usage += (__u64)KREAD(struct bpf_dtab, map, n_buckets) * PTR_SZ; /* struct hlist_head */
	else
		usage += (__u64)map->max_entries * PTR_SZ;
	usage += (__u64)KREAD(struct bpf_dtab, map, items) * bpf_core_type_size(struct bpf_dtab_netdev);
	return usage;
}

/* kernel/bpf/cpumap.c: cpu_map_mem_usage (entries are not counted) */
static __always_inline __u64 cpumap_mem(struct bpf_map *map)
{
	if (!bpf_core_type_exists(struct bpf_cpu_map))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct bpf_cpu_map) + (__u64)map->max_entries * PTR_SZ;
}

/* net/xdp/xskmap.c: xsk_map_mem_usage */
static __always_inline __u64 xskmap_mem(struct bpf_map *map)
{
	struct xsk_map *m = (struct xsk_map *)map;

	if (!bpf_core_type_exists(struct xsk_map) || !bpf_core_type_exists(struct xsk_map_node) ||
	    !bpf_core_field_exists(m->count))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct xsk_map) + (__u64)map->max_entries * PTR_SZ +
	       (__u64)(__u32)KREAD(struct xsk_map, map, count.counter) * bpf_core_type_size(struct xsk_map_node);
}

/* net/core/sock_map.c: sock_map_mem_usage */
static __always_inline __u64 sockmap_mem(struct bpf_map *map)
{
	if (!bpf_core_type_exists(struct bpf_stab))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct bpf_stab) + (__u64)map->max_entries * PTR_SZ;
}

/* net/core/sock_map.c: sock_hash_mem_usage */
static __always_inline __u64 sockhash_mem(struct bpf_map *map)
{
	__u64 usage;

	if (!bpf_core_type_exists(struct bpf_shtab) || !bpf_core_type_exists(struct bpf_shtab_bucket))
		return MEMORY_UNKNOWN;
	usage = bpf_core_type_size(struct bpf_shtab);
	usage += (__u64)KREAD(struct bpf_shtab, map, buckets_num) * bpf_core_type_size(struct bpf_shtab_bucket);
	usage += (__u64)(__u32)KREAD(struct bpf_shtab, map, count.counter) * KREAD(struct bpf_shtab, map, elem_size);
	return usage;
}

/* kernel/bpf/reuseport_array.c: reuseport_array_mem_usage */
static __always_inline __u64 reuseport_mem(struct bpf_map *map)
{
	if (!bpf_core_type_exists(struct reuseport_array))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct reuseport_array) + (__u64)map->max_entries * PTR_SZ;
}

/* kernel/bpf/local_storage.c: cgroup_storage_map_usage, for cgroup_storage
 * and percpu_cgroup_storage (the storages themselves are not counted) */
static __always_inline __u64 cgroup_storage_mem(struct bpf_map *map)
{
	if (!bpf_core_type_exists(struct bpf_cgroup_storage_map))
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct bpf_cgroup_storage_map);
}

/* kernel/bpf/bpf_local_storage.c: bpf_local_storage_map_mem_usage, for sk,
 * inode, task and cgrp storage (the storages themselves are not counted) */
static __always_inline __u64 local_storage_mem(struct bpf_map *map)
{
	__u32 log;

	if (!bpf_core_type_exists(struct bpf_local_storage_map) ||
	    !bpf_core_type_exists(struct bpf_local_storage_map_bucket))
		return MEMORY_UNKNOWN;
	log = KREAD(struct bpf_local_storage_map, map, bucket_log);
	if (log > 31)
		return MEMORY_UNKNOWN;
	return bpf_core_type_size(struct bpf_local_storage_map) +
	       bpf_core_type_size(struct bpf_local_storage_map_bucket) * (1ULL << log);
}

/* kernel/bpf/bpf_struct_ops.c: bpf_struct_ops_map_mem_usage. The value
 * type (vt) is the kernel's struct bpf_struct_ops_<name>. */
static __always_inline __u64 struct_ops_mem(struct bpf_map *map)
{
	struct bpf_struct_ops_map *st = (struct bpf_struct_ops_map *)map;
	const struct btf_type *vt;
	__u64 vsize, funcs, usage;

	if (!bpf_core_type_exists(struct bpf_struct_ops_map) || !bpf_core_field_exists(st->st_ops_desc))
		return MEMORY_UNKNOWN; /* before 6.9: st_ops->value_type */
	vt = BPF_CORE_READ(st, st_ops_desc, value_type);
	vsize = BPF_CORE_READ(vt, size);
	usage = bpf_core_type_size(struct bpf_struct_ops_map) + vsize - bpf_core_type_size(struct bpf_struct_ops_value);
	usage += vsize + page_size;
	if (bpf_core_field_exists(st->funcs_cnt)) {
		funcs = KREAD(struct bpf_struct_ops_map, map, funcs_cnt);
		usage += funcs * PTR_SZ; /* links */
		if (bpf_core_field_exists(st->ksyms))
			usage += funcs * PTR_SZ;
	} else {
		usage += (BPF_CORE_READ(vt, info) & 0xffff) * PTR_SZ; /* btf_type_vlen(vt) links */
	}
	return usage;
}

/* Whether the map's memory can change after creation, so that a cycle must
 * compute it again. Mirrors MemoryVaries in record.go. */
static __always_inline bool map_memory_varies(struct bpf_map *map)
{
	switch ((__u32)map->map_type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_HASH_OF_MAPS:
		return map->map_flags & BPF_F_NO_PREALLOC;
	case BPF_MAP_TYPE_LPM_TRIE:
	case BPF_MAP_TYPE_SOCKHASH:
	case BPF_MAP_TYPE_DEVMAP:
	case BPF_MAP_TYPE_DEVMAP_HASH:
	case BPF_MAP_TYPE_XSKMAP:
		return true;
	}
	return false;
}

/* kernel/bpf/syscall.c before Linux 6.4: bpf_map_memory_footprint, what
 * fdinfo's memlock was for every map type, an estimate fixed at creation:
 * max_entries slots of key and value (bpf_map_value_size: a value per CPU
 * for percpu types, a u32 for maps of fds) rounded up to 8 bytes, the
 * whole rounded up to pages. */
static __always_inline __u64 footprint_mem(struct bpf_map *map)
{
	__u32 t = map->map_type;
	__u64 value;

	if (t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
	    t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE)
		value = round_up8(map->value_size) * nr_cpus;
	else if (t == BPF_MAP_TYPE_PERF_EVENT_ARRAY || t == BPF_MAP_TYPE_CGROUP_ARRAY || t == BPF_MAP_TYPE_ARRAY_OF_MAPS ||
		 t == BPF_MAP_TYPE_PROG_ARRAY || t == BPF_MAP_TYPE_HASH_OF_MAPS) /* IS_FD_MAP */
		value = sizeof(__u32);
	else
		value = map->value_size;
	return page_align((__u64)map->max_entries * round_up8(map->key_size + value));
}

/* The map's memory as the kernel reports it; elements is map_elements(map). */
static __always_inline __u64 map_memory(struct bpf_map *map, __s64 elements)
{
	/* Before map_mem_usage (Linux 6.4), fdinfo's memlock was the same
	 * estimate for every type. */
	if (!bpf_core_field_exists(struct bpf_map_ops, map_mem_usage))
		return footprint_mem(map);
	switch ((__u32)map->map_type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
	case BPF_MAP_TYPE_HASH_OF_MAPS:
		return htab_mem(map, elements);
	case BPF_MAP_TYPE_ARRAY:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_PROG_ARRAY:
	case BPF_MAP_TYPE_PERF_EVENT_ARRAY:
	case BPF_MAP_TYPE_CGROUP_ARRAY:
	case BPF_MAP_TYPE_ARRAY_OF_MAPS:
		return array_mem(map);
	case BPF_MAP_TYPE_STACK_TRACE:
		return stack_trace_mem(map);
	case BPF_MAP_TYPE_LPM_TRIE:
		return trie_mem(map);
	case BPF_MAP_TYPE_QUEUE:
	case BPF_MAP_TYPE_STACK:
		return queue_stack_mem(map);
	case BPF_MAP_TYPE_RINGBUF:
	case BPF_MAP_TYPE_USER_RINGBUF:
		return ringbuf_mem(map);
	case BPF_MAP_TYPE_BLOOM_FILTER:
		return bloom_mem(map);
	case BPF_MAP_TYPE_DEVMAP:
	case BPF_MAP_TYPE_DEVMAP_HASH:
		return devmap_mem(map);
	case BPF_MAP_TYPE_CPUMAP:
		return cpumap_mem(map);
	case BPF_MAP_TYPE_XSKMAP:
		return xskmap_mem(map);
	case BPF_MAP_TYPE_SOCKMAP:
		return sockmap_mem(map);
	case BPF_MAP_TYPE_SOCKHASH:
		return sockhash_mem(map);
	case BPF_MAP_TYPE_REUSEPORT_SOCKARRAY:
		return reuseport_mem(map);
	case BPF_MAP_TYPE_CGROUP_STORAGE:
	case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
		return cgroup_storage_mem(map);
	case BPF_MAP_TYPE_SK_STORAGE:
	case BPF_MAP_TYPE_INODE_STORAGE:
	case BPF_MAP_TYPE_TASK_STORAGE:
	case BPF_MAP_TYPE_CGRP_STORAGE:
		return local_storage_mem(map);
	case BPF_MAP_TYPE_STRUCT_OPS:
		return struct_ops_mem(map);
	case BPF_MAP_TYPE_ARENA:
		return 0; /* kernel/bpf/arena.c: arena_map_mem_usage */
	}
	return MEMORY_UNKNOWN;
}
