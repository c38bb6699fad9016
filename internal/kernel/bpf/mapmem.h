/* map_memory computes, in the kernel, what the kernel reports as a map's
 * memlock in fdinfo: bpf_map_memory_usage(), which calls the map type's
 * map_mem_usage. Each function below follows that callback for one family
 * of map types, with sizes taken from the running kernel's BTF. */
#pragma once

#define HASHTAB_MAP_LOCK_COUNT 8
#define LLIST_NODE_SZ 8 /* sizeof(struct llist_node) */
#define PTR_SZ 8

static __always_inline __u64 round_up8(__u64 v) { return (v + 7) & ~7ULL; }

static __always_inline __u64 page_align(__u64 v) { return (v + page_size - 1) & ~(page_size - 1); }

static __always_inline bool is_hash(__u32 t)
{
	return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_HASH_OF_MAPS;
}

/* Elements of a map whose type keeps a count; ELEMENTS_UNKNOWN otherwise. */
static __always_inline __s64 map_elements(struct bpf_map *map)
{
	if (is_hash(map->map_type) && bpf_ksym_exists(bpf_map_sum_elem_count))
		return bpf_map_sum_elem_count(map);
	return ELEMENTS_UNKNOWN;
}

/* kernel/bpf/hashtab.c: htab_map_mem_usage */
static __always_inline __u64 htab_mem(struct bpf_map *map)
{
	struct bpf_htab *htab = (struct bpf_htab *)map;
	__u32 t = map->map_type;
	bool percpu = t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	bool lru = t == BPF_MAP_TYPE_LRU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	bool prealloc = !(map->map_flags & BPF_F_NO_PREALLOC);
	__u64 value_size = round_up8(map->value_size);
	__u64 elem_size = BPF_CORE_READ(htab, elem_size);
	__u64 usage = bpf_core_type_size(struct bpf_htab);
	__u64 n;

	usage += bpf_core_type_size(struct bucket) * (__u64)BPF_CORE_READ(htab, n_buckets);
	usage += sizeof(int) * (__u64)nr_cpus * HASHTAB_MAP_LOCK_COUNT;
	if (prealloc) {
		n = map->max_entries;
		if (!percpu && !lru) /* htab_has_extra_elems */
			n += nr_cpus;
		usage += elem_size * n;
		if (percpu)
			usage += value_size * nr_cpus * n;
		else if (!lru)
			usage += PTR_SZ * (__u64)nr_cpus;
		return usage;
	}
	if (bpf_ksym_exists(bpf_map_sum_elem_count))
		n = bpf_map_sum_elem_count(map);
	else if (!BPF_CORE_READ(htab, use_percpu_counter))
		n = BPF_CORE_READ(htab, count);
	else
		return MEMORY_UNKNOWN;
	usage += (elem_size + LLIST_NODE_SZ) * n;
	if (percpu) {
		usage += (LLIST_NODE_SZ + PTR_SZ) * n;
		usage += value_size * nr_cpus * n;
	}
	return usage;
}

/* kernel/bpf/arraymap.c: array_map_mem_usage, for every array-backed type. */
static __always_inline __u64 array_mem(struct bpf_map *map)
{
	struct bpf_array *array = (struct bpf_array *)map;
	__u64 entries = map->max_entries;
	__u64 elem_size = BPF_CORE_READ(array, elem_size);
	__u64 usage = bpf_core_type_size(struct bpf_array);

	if (map->map_type == BPF_MAP_TYPE_PERCPU_ARRAY)
		return usage + entries * PTR_SZ + entries * elem_size * nr_cpus;
	if (map->map_flags & BPF_F_MMAPABLE)
		return page_align(usage) + page_align(entries * elem_size);
	return usage + entries * elem_size;
}

static __always_inline __u64 map_memory(struct bpf_map *map)
{
	switch ((__u32)map->map_type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
	case BPF_MAP_TYPE_HASH_OF_MAPS:
		return htab_mem(map);
	case BPF_MAP_TYPE_ARRAY:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_PROG_ARRAY:
	case BPF_MAP_TYPE_PERF_EVENT_ARRAY:
	case BPF_MAP_TYPE_CGROUP_ARRAY:
	case BPF_MAP_TYPE_ARRAY_OF_MAPS:
		return array_mem(map);
	}
	return MEMORY_UNKNOWN;
}
