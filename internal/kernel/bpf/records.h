/* The records the iterators write: a header and a body. A short record is
 * a prefix of the full one: the header and the fields that can change. The
 * Go decoder (iter.go) reads the same layouts, generated from this file by
 * bpf2go (-type). */
#pragma once

enum record_kind {
	KIND_MAP = 0,
	KIND_PROG = 1,
	KIND_LINK = 2,
};

struct record_header {
	__u32 id;
	__u32 size; /* bytes of this record, header included */
};

/* memory when the kernel's figure cannot be computed in BPF for this map
 * type on this kernel; elements when the map type keeps no count. */
#define MEMORY_UNKNOWN (~0ULL)
/* memory in a short record of a map whose memory cannot have changed. */
#define MEMORY_UNCHANGED (~0ULL - 1)
#define ELEMENTS_UNKNOWN (-1LL)

struct map_record {
	struct record_header h;
	__u64 memory;
	__s64 elements;
	/* Full records only. */
	__u32 type;
	__u32 flags;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 pad;
	char name[16];
};
#define MAP_RECORD_SHORT 24
/* The short record of a map with fixed memory and no element count. */
#define MAP_RECORD_ID 8

struct prog_record {
	struct record_header h;
	__u64 run_time_ns; /* with statistics on */
	__u64 run_cnt;
	/* Full records only. */
	__u64 memory;
	__u32 type;
	char name[16];
};
#define PROG_RECORD_SHORT 8
#define PROG_RECORD_STATS 24

/* A full program record is followed by the IDs of the maps the program
 * uses (bpf_prog_aux.used_maps): a count, then that many IDs. The kernel
 * allows MAX_USED_MAPS (64) per program. */
#define MAX_USED_MAPS 64
struct prog_maps {
	__u32 n;
	__u32 ids[MAX_USED_MAPS];
};

struct link_record {
	struct record_header h;
	/* Full records only. */
	__u32 type;
	__u32 prog_id;
	__u32 attach_type;
	__u32 has_attach_type;
};
#define LINK_RECORD_SHORT 8
