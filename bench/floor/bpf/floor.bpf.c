// SPDX-License-Identifier: GPL-2.0
/* The floor of iterator collection: BPF iterators over every map, program
 * and link that write each object's 4-byte ID and nothing else. Reading
 * them costs what any BPF iterator over these objects must cost (the
 * kernel's walk of its ID tables, one program run per object, the seq_file
 * and the copy to user space); a collector that does more per object can
 * only be slower. bench/itercycle compares the agent's cycle with it.
 *
 * Self-contained: the kernel structures are declared here with only the
 * fields read, as CO-RE relocations (preserve_access_index), and the scalar
 * types are written out, so no kernel header is needed. */

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

char LICENSE[] SEC("license") = "GPL";

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
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

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_prog {
	struct bpf_iter_meta *meta;
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_link {
	struct bpf_iter_meta *meta;
	struct bpf_link *link;
} __attribute__((preserve_access_index));

/* Each program copies the ID to the stack first: the verifier rejects
 * bpf_seq_write straight from a kernel object (&ctx->map->id). The last
 * call of an iterator has a NULL object; it writes nothing. */

SEC("iter/bpf_map")
int floor_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;
	__u32 id;

	if (!map)
		return 0;
	id = map->id;
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	return 0;
}

SEC("iter/bpf_prog")
int floor_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *prog = ctx->prog;
	__u32 id;

	if (!prog)
		return 0;
	id = prog->aux->id;
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	return 0;
}

SEC("iter/bpf_link")
int floor_links(struct bpf_iter__bpf_link *ctx)
{
	struct bpf_link *link = ctx->link;
	__u32 id;

	if (!link)
		return 0;
	id = link->id;
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	return 0;
}
