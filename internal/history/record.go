package history

import (
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// unregistered marks a series not asked for yet; NoRef one the table had
// no room for, which is not asked for again (that would allocate every
// cycle).
const unregistered Ref = -2

// Recorder appends a row to a History for every cycle that completes,
// with the series of /metrics under their names and labels there:
// objects and memory by kind and by type, total memory, objects created
// and removed, the agent's own memory and the last cycle's duration, and
// the memory of each owner with a series in /metrics (owner_memory_bytes).
type Recorder struct {
	h      *History
	cycles uint64 // Snapshot.Cycles of the last row

	kindNames                [kernel.NumKinds]string
	nObjects, nMemory        string
	nTotal, nCreated         string
	nRemoved, nAgent, nCycle string
	nTypeObjects, nTypeMem   [kernel.NumKinds]string

	objects, memory, created, removed [kernel.NumKinds]Ref
	total, agent, cycle               Ref
	typeObjects, typeMemory           [kernel.NumKinds][snapshot.MaxTypes]Ref

	// owners is owner_memory_bytes, by owner as /metrics labels it: the
	// top owners change from cycle to cycle.
	owners *SeriesSet[ownerKey]
}

// ownerKey names an owner's series: the bytes its labels come from, as
// fixed arrays so that a lookup allocates nothing (the labels, strings, are
// made only for a new key).
type ownerKey struct {
	comm      [16]byte
	container [64]byte
	pod       [36]byte
	kind      snapshot.OwnerKind
}

// NewRecorder returns a recorder of snapshots into h, naming series with
// namespace as /metrics does ("" is not accepted: pass the agent's
// namespace).
func NewRecorder(h *History, namespace string) *Recorder {
	p := namespace + "_"
	r := &Recorder{
		h:        h,
		nObjects: p + "objects", nMemory: p + "memory_bytes", nTotal: p + "total_memory_bytes",
		nCreated: p + "objects_created_total", nRemoved: p + "objects_removed_total",
		nAgent: p + "collector_memory_usage_bytes", nCycle: p + "last_collection_duration_seconds",
	}
	for k := range kernel.NumKinds {
		r.kindNames[k] = k.String()
		r.nTypeObjects[k] = p + k.String() + "_objects"
		r.nTypeMem[k] = p + k.String() + "_memory_bytes"
		r.objects[k], r.memory[k], r.created[k], r.removed[k] = unregistered, NoRef, unregistered, unregistered
		for i := range snapshot.MaxTypes {
			r.typeObjects[k][i], r.typeMemory[k][i] = unregistered, unregistered
		}
	}
	for _, k := range snapshot.MemoryKinds {
		r.memory[k] = unregistered
	}
	r.total, r.agent, r.cycle = unregistered, unregistered, unregistered
	r.owners = NewSeriesSet[ownerKey](h, p+"owner_memory_bytes")
	return r
}

// Record appends s, the snapshot just published, if it is a cycle not
// recorded yet. It is meant for collector.Options.OnPublish: it reads s in
// place (no copy of its ~67 KB) while the collector leaves it unchanged,
// allocates nothing once the series are known, and holds the history's
// lock only to encode the row. A nil Recorder records nothing.
func (r *Recorder) Record(s *snapshot.Snapshot) {
	if r == nil { // no history
		return
	}
	r.Append(s)
}

// Append appends s if it is a completed cycle not recorded yet, and
// reports whether it did.
func (r *Recorder) Append(s *snapshot.Snapshot) bool {
	if !s.Valid || s.Cycles == r.cycles {
		return false
	}
	r.cycles = s.Cycles
	r.register(s)
	r.putOwners(s)

	h := r.h
	h.Begin(s.LastSuccessUnixNano / 1e6)
	var total uint64
	for k := range kernel.NumKinds {
		ks := &s.Kinds[k]
		total += ks.MemoryBytes
		h.Set(r.objects[k], float64(ks.Objects))
		h.Set(r.memory[k], float64(ks.MemoryBytes))
		h.Set(r.created[k], float64(ks.Created))
		h.Set(r.removed[k], float64(ks.Removed))
		for i := range ks.Types {
			if ks.Seen(i) {
				h.Set(r.typeObjects[k][i], float64(ks.Types[i].Objects))
				h.Set(r.typeMemory[k][i], float64(ks.Types[i].MemoryBytes))
			}
		}
	}
	h.Set(r.total, float64(total))
	h.Set(r.agent, float64(s.MemoryUsageBytes))
	h.Set(r.cycle, float64(s.LastDurationNs)/1e9)
	r.owners.Emit()
	return h.Commit() == nil
}

// putOwners puts the owners' memory of s, as /metrics shows it: the same
// rows, labelled the same way (snapshot.Owners.Shown, Owner.Labels).
func (r *Recorder) putOwners(s *snapshot.Snapshot) {
	if !s.Features[snapshot.FeatureOwnership] {
		return
	}
	for kind, w := range s.Owners.Shown() {
		key := ownerKey{comm: w.Comm, container: w.ContainerID, pod: w.PodUID, kind: kind}
		r.owners.Put(key, float64(w.MemoryBytes), func() []Label {
			owner, container, pod := w.Labels(kind)
			return []Label{{"owner", owner}, {"container_id", container}, {"pod_uid", pod}}
		})
	}
}

// register asks the history for the series it has not been asked for yet:
// all of them at the first cycle, then a type's when it is first seen.
func (r *Recorder) register(s *snapshot.Snapshot) {
	reg := func(ref *Ref, name string, labels ...Label) {
		if *ref == unregistered {
			*ref = r.h.Series(name, labels...)
		}
	}
	for k := range kernel.NumKinds {
		kind := Label{"type", r.kindNames[k]}
		reg(&r.objects[k], r.nObjects, kind)
		reg(&r.memory[k], r.nMemory, kind)
		reg(&r.created[k], r.nCreated, kind)
		reg(&r.removed[k], r.nRemoved, kind)
		ks := &s.Kinds[k]
		for i := range ks.Types {
			if !ks.Seen(i) || r.typeObjects[k][i] != unregistered && r.typeMemory[k][i] != unregistered {
				continue
			}
			typ := Label{r.kindNames[k] + "_type", snapshot.TypeLabel(k, i)}
			reg(&r.typeObjects[k][i], r.nTypeObjects[k], typ)
			if k == kernel.KindLink {
				r.typeMemory[k][i] = NoRef // links have no memory figure
				continue
			}
			reg(&r.typeMemory[k][i], r.nTypeMem[k], typ)
		}
	}
	reg(&r.total, r.nTotal)
	reg(&r.agent, r.nAgent)
	reg(&r.cycle, r.nCycle)
}
