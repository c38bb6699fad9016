// SPDX-License-Identifier: GPL-2.0
/* BPF iterators over every map, program and link in the kernel. Each writes
 * one fixed-size record per object into the iterator's seq_file; the agent
 * reads them with a few large read() calls per cycle.
 *
 * A record is a header and a body. Objects with an ID above full_above[kind]
 * (new since the last cycle, or beyond the agent's tables) get the whole
 * body; the others only the fields that can change (memory, element count,
 * run-time statistics), which is what keeps a steady cycle near the cost of
 * listing IDs. The layouts are in records.h and decoded in iter.go. */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "records.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent at load time. */
const volatile __u32 nr_cpus = 1;     /* possible CPUs */
const volatile __u64 page_size = 4096;

/* Set by the agent before each pass, through the memory-mapped .bss. */
__u32 full_above[3];
__u32 want_stats;

/* Per-CPU offsets of the percpu area, found once (see find_cpu_offsets). */
#define MAX_CPUS 512
__u64 cpu_off[MAX_CPUS];
__u32 cpu_off_ready;

/* A percpu array owned by the agent, to learn the percpu area offsets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_probe SEC(".maps");

extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym __weak;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* Whether a __weak kfunc exists in the running kernel (libbpf 1.2 has it;
 * Debian 12's 1.1 does not). */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/* as_u64 turns a pointer into a plain number the verifier lets us do
 * arithmetic with (the agent holds CAP_PERFMON, which allows it). */
static __always_inline __u64 as_u64(const void *p)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

/* find_cpu_offsets learns, for each possible CPU, the offset that turns a
 * percpu pointer into that CPU's copy (the kernel's __per_cpu_offset[cpu],
 * which is not visible to BPF): the element of cpu_probe has percpu pointer
 * P, and bpf_map_lookup_percpu_elem gives P + offset for each CPU. */
static __noinline int find_cpu_offsets(void)
{
	__u32 zero = 0;
	__u64 map = as_u64(&cpu_probe);
	__u64 pptr = 0;

	/* The element's pointer is at the offset of bpf_array.pptrs, which
	 * is not sizeof(struct bpf_array) where the structure has padding
	 * after it (Linux 6.1: 272 and 320). */
	if (bpf_probe_read_kernel(&pptr, sizeof(pptr),
				  (void *)(map + bpf_core_field_offset(struct bpf_array___pptrs, pptrs))))
		return -1;
	for (__u32 cpu = 0; cpu < MAX_CPUS && cpu < nr_cpus; cpu++) {
		void *v = bpf_map_lookup_percpu_elem(&cpu_probe, &zero, cpu);
		if (!v)
			return -1;
		cpu_off[cpu] = as_u64(v) - pptr;
	}
	cpu_off_ready = 1;
	return 0;
}

/* Sum of a program's run-time statistics over the possible CPUs. */
static __always_inline void prog_stats(struct bpf_prog *prog, __u64 *nsecs, __u64 *cnt)
{
	__u64 stats = as_u64(BPF_CORE_READ(prog, stats));

	*nsecs = 0;
	*cnt = 0;
	if (!cpu_off_ready || !stats)
		return;
	for (__u32 cpu = 0; cpu < MAX_CPUS && cpu < nr_cpus; cpu++) {
		struct bpf_prog_stats *s = (struct bpf_prog_stats *)(stats + cpu_off[cpu]);
		struct u64_stats v;

		if (bpf_core_read(&v, sizeof(v), &s->nsecs))
			return;
		*nsecs += v.v;
		if (bpf_core_read(&v, sizeof(v), &s->cnt))
			return;
		*cnt += v.v;
	}
}

#include "mapmem.h"

SEC("iter/bpf_map")
int dump_maps(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;
	struct map_record r = {};
	bool known;

	if (!map)
		return 0;
	r.h.id = map->id;
	r.elements = map_elements(map);
	known = r.h.id <= full_above[KIND_MAP];
	/* One call site for map_memory: the verifier walks each copy of its
	 * per-type branches. A known map sends only what can have changed,
	 * often nothing. */
	if (known && !map_memory_varies(map)) {
		if (r.elements == ELEMENTS_UNKNOWN) {
			r.h.size = MAP_RECORD_ID;
			bpf_seq_write(seq, &r, MAP_RECORD_ID);
			return 0;
		}
		r.memory = MEMORY_UNCHANGED;
	} else {
		r.memory = map_memory(map, r.elements);
	}
	if (known) {
		r.h.size = MAP_RECORD_SHORT;
		bpf_seq_write(seq, &r, MAP_RECORD_SHORT);
		return 0;
	}
	r.h.size = sizeof(r);
	r.type = map->map_type;
	r.flags = map->map_flags;
	r.key_size = map->key_size;
	r.value_size = map->value_size;
	r.max_entries = map->max_entries;
	bpf_probe_read_kernel(r.name, sizeof(r.name), map->name);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/* used_maps fills m with the IDs of the maps prog uses: what ties a map
 * that no process holds to the holder of a program that uses it. */
static __always_inline void used_maps(struct bpf_prog *prog, struct prog_maps *m)
{
	struct bpf_prog_aux *aux = BPF_CORE_READ(prog, aux);
	struct bpf_map **used = BPF_CORE_READ(aux, used_maps);
	__u32 n = BPF_CORE_READ(aux, used_map_cnt);

	if (!used || n > MAX_USED_MAPS)
		n = 0;
	m->n = n;
	/* One path through every iteration, whatever the map (an ID of 0 is
	 * skipped by the reader): a count that grew only for some maps would
	 * give the verifier a state per combination. */
	for (__u32 i = 0; i < MAX_USED_MAPS && i < n; i++) {
		struct bpf_map *map = NULL;

		bpf_probe_read_kernel(&map, sizeof(map), &used[i]);
		m->ids[i] = BPF_CORE_READ(map, id);
	}
}

SEC("iter/bpf_prog")
int dump_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_prog *prog = ctx->prog;
	struct prog_record r = {};
	struct prog_maps maps = {};
	__u32 size, n;

	if (!prog)
		return 0;
	if (want_stats && !cpu_off_ready)
		find_cpu_offsets();
	r.h.id = prog->aux->id; /* direct BTF loads: cheaper than probe reads */
	size = PROG_RECORD_SHORT;
	if (want_stats) {
		prog_stats(prog, &r.run_time_ns, &r.run_cnt);
		size = PROG_RECORD_STATS;
	}
	if (r.h.id <= full_above[KIND_PROG]) {
		r.h.size = size;
		if (want_stats)
			bpf_seq_write(seq, &r, PROG_RECORD_STATS);
		else
			bpf_seq_write(seq, &r, PROG_RECORD_SHORT);
		return 0;
	}
	r.memory = (__u64)prog->pages * page_size;
	r.type = prog->type;
	BPF_CORE_READ_INTO(&r.name, prog, aux, name);
	used_maps(prog, &maps);
	n = maps.n;
	if (n > MAX_USED_MAPS) /* never: it tells the verifier the bound */
		n = MAX_USED_MAPS;
	r.h.size = sizeof(r) + sizeof(maps.n) + n * sizeof(maps.ids[0]);
	bpf_seq_write(seq, &r, sizeof(r));
	bpf_seq_write(seq, &maps, sizeof(maps.n) + n * sizeof(maps.ids[0]));
	return 0;
}

SEC("iter/bpf_link")
int dump_links(struct bpf_iter__bpf_link *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_link *link = ctx->link;
	struct link_record r = {};

	if (!link)
		return 0;
	r.h.id = link->id;
	if (r.h.id <= full_above[KIND_LINK]) {
		r.h.size = LINK_RECORD_SHORT;
		bpf_seq_write(seq, &r, LINK_RECORD_SHORT);
		return 0;
	}
	r.h.size = sizeof(r);
	r.type = link->type;
	r.prog_id = BPF_CORE_READ(link, prog, aux, id);
	if (bpf_core_field_exists(link->attach_type)) {
		r.attach_type = BPF_CORE_READ(link, attach_type);
		r.has_attach_type = 1;
	}
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/* Keep the record types in BTF, for bpf2go -type. */
const struct map_record *unused_map_record __attribute__((unused));
const struct prog_record *unused_prog_record __attribute__((unused));
const struct prog_maps *unused_prog_maps __attribute__((unused));
const struct link_record *unused_link_record __attribute__((unused));
