// The rankings: the maps with the most memory, the fullest maps, the
// programs with the most run time. Each keeps its top_k as a min-heap of
// fixed size during the passes: an object costs a comparison with the
// smallest kept, and, when it beats it, log(k) moves.

package collector

import (
	"cmp"
	"slices"

	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

const (
	rankMemory = iota
	rankFill
	rankRunTime
	numRanks
)

type ranked struct {
	score float64
	obj   snapshot.TopObject
}

// topK holds the rankings of the cycle being built.
type topK struct {
	k     int
	heaps [numRanks][]ranked // min-heaps by (score, -ID)
}

func newTopK(k int) topK {
	var t topK
	t.k = k
	for r := range t.heaps {
		t.heaps[r] = make([]ranked, 0, k)
	}
	return t
}

func (t *topK) reset() {
	for r := range t.heaps {
		t.heaps[r] = t.heaps[r][:0]
	}
}

// offer ranks object rec of kind k, whose owner is key (nil: none known).
func (t *topK) offer(k kernel.Kind, rec *kernel.Record, key *inventory.OwnerKey) {
	if t.k == 0 {
		return
	}
	switch k {
	case kernel.KindMap:
		if rec.Fields&kernel.HasMemory != 0 {
			t.push(rankMemory, float64(rec.Memory), rec, key)
		}
		if rec.Fields&kernel.HasElements != 0 && rec.MaxEntries > 0 {
			t.push(rankFill, float64(rec.Elements)/float64(rec.MaxEntries), rec, key)
		}
	case kernel.KindProg:
		if rec.Fields&kernel.HasStats != 0 {
			t.push(rankRunTime, float64(rec.RunTimeNs), rec, key)
		}
	}
}

// less orders the heap: the smallest score first; among equal scores the
// greatest ID, so that the lowest IDs stay (a stable choice among ties).
func less(a, b *ranked) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return a.obj.ID > b.obj.ID
}

func (t *topK) push(r int, score float64, rec *kernel.Record, key *inventory.OwnerKey) {
	h := t.heaps[r]
	cand := ranked{score: score}
	if len(h) == t.k {
		cand.obj.ID = rec.ID
		if !less(&h[0], &cand) {
			return // no better than the smallest kept
		}
	}
	fillTop(&cand.obj, rec, key)
	if len(h) < t.k {
		h = append(h, cand)
		up(h, len(h)-1)
	} else {
		h[0] = cand
		down(h, 0)
	}
	t.heaps[r] = h
}

func up(h []ranked, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !less(&h[i], &h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func down(h []ranked, i int) {
	for {
		l, s := 2*i+1, i
		if l < len(h) && less(&h[l], &h[s]) {
			s = l
		}
		if r := l + 1; r < len(h) && less(&h[r], &h[s]) {
			s = r
		}
		if s == i {
			return
		}
		h[i], h[s] = h[s], h[i]
		i = s
	}
}

func fillTop(o *snapshot.TopObject, rec *kernel.Record, key *inventory.OwnerKey) {
	*o = snapshot.TopObject{ID: rec.ID, Type: rec.Type, Name: rec.Name, MemoryBytes: rec.Memory,
		RunTimeNs: rec.RunTimeNs, RunCount: rec.RunCount}
	if rec.Fields&kernel.HasElements != 0 {
		o.Elements, o.MaxEntries = rec.Elements, uint64(rec.MaxEntries)
	}
	if key != nil {
		o.Owner = key.Comm
		copy(o.ContainerID[:], key.Container)
	}
}

// publish writes the rankings into s, greatest first. It sorts the heaps:
// they are reset before the next cycle uses them.
func (t *topK) publish(s *snapshot.Top) {
	dst := [numRanks]*[snapshot.MaxTopK]snapshot.TopObject{&s.Memory, &s.Fill, &s.RunTime}
	for r, h := range t.heaps {
		slices.SortFunc(h, func(a, b ranked) int {
			if a.score != b.score {
				return cmp.Compare(b.score, a.score)
			}
			return cmp.Compare(a.obj.ID, b.obj.ID)
		})
		*dst[r] = [snapshot.MaxTopK]snapshot.TopObject{}
		for i := range h {
			dst[r][i] = h[i].obj
		}
		s.N[r] = len(h)
	}
}
