package collector

import (
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/owner"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

func comm(w *snapshot.Owner) string { return string(trimNUL(w.Comm[:])) }

// TestFakeOwnership, in both modes: the lowest PID holding an object owns
// it; the graph gives a map to its program's holder and a program to its
// link's; the largest max_owners owners by memory get rows, the rest is
// "other", what no one holds "no one"; and it all sums to the totals.
func TestFakeOwnership(t *testing.T) {
	for _, mode := range []string{config.ModeSyscall, config.ModeIterator} {
		t.Run(mode, func(t *testing.T) {
			fk := newFakeKernel()
			maps := fk.add(kernel.KindMap, 6, fakeObject{typ: 1, memory: 100})
			big := fk.add(kernel.KindMap, 1, fakeObject{typ: 1, memory: 10000})
			progs := fk.add(kernel.KindProg, 2, fakeObject{typ: 1, memory: 4096, maps: []uint32{maps[4]}})
			links := fk.add(kernel.KindLink, 1, fakeObject{typ: 1})
			fo := &fakeOwners{holdings: []owner.Holding{
				hold(kernel.KindMap, maps[0], 30, "late", "", ""),
				hold(kernel.KindMap, maps[0], 10, "agent-a", "c1", "p1"), // the lowest PID wins
				hold(kernel.KindMap, maps[1], 10, "agent-a", "c1", "p1"),
				hold(kernel.KindMap, maps[2], 20, "agent-b", "", ""),
				hold(kernel.KindMap, maps[3], 40, "small", "", ""),
				hold(kernel.KindMap, big[0], 50, "biggest", "", ""),
				hold(kernel.KindLink, links[0], 10, "agent-a", "c1", "p1"),
				hold(kernel.KindProg, progs[1], 20, "agent-b", "", ""),
			}}
			// The link holds progs[0], which uses maps[4]; maps[5] no one.
			linkProg(fk, links[0], progs[0])
			cfg := testConfig(t)
			cfg.MaxOwners, cfg.TopK = 2, 3
			cfg.CollectionMode = mode
			var c *Collector
			if mode == config.ModeIterator {
				c = newFakeIterCollector(t, cfg, fk, newFakeIters(fk), func(o *Options) { o.OwnerSource = fo })
			} else {
				c = newFakeCollector(t, cfg, fk, func(o *Options) { o.OwnerSource = fo })
			}
			for cycle := range 2 { // the second is steady: programs' maps come from Edges
				s := mustCycle(t, c)
				for _, tc := range []struct {
					k    kernel.Kind
					id   uint32
					want string
				}{
					{kernel.KindMap, maps[0], "agent-a"},
					{kernel.KindMap, maps[2], "agent-b"},
					{kernel.KindProg, progs[0], "agent-a"},
					{kernel.KindMap, maps[4], "agent-a"},
					{kernel.KindMap, maps[5], ""},
				} {
					if got := ownerOf(c, tc.k, tc.id); got != tc.want {
						t.Errorf("cycle %d: %s %d: owner %q, want %q", cycle, tc.k, tc.id, got, tc.want)
					}
				}
				ow := &s.Owners
				// agent-a: 2 maps, a link, a program through it and a map
				// through that, 4,396 bytes; agent-b 4,196; small 100.
				if ow.N != 2 || comm(&ow.Rows[0]) != "biggest" || comm(&ow.Rows[1]) != "agent-a" {
					t.Fatalf("cycle %d: rows %d: %q, %q; want biggest, agent-a", cycle, ow.N, comm(&ow.Rows[0]), comm(&ow.Rows[1]))
				}
				a := &ow.Rows[1]
				if string(trimNUL(a.ContainerID[:])) != "c1" || string(trimNUL(a.PodUID[:])) != "p1" ||
					a.Objects != [kernel.NumKinds]uint64{3, 1, 1} || a.MemoryBytes != 3*100+4096 {
					t.Errorf("cycle %d: agent-a %+v", cycle, a)
				}
				if ow.OtherOwners != 2 || ow.Other.Objects != [kernel.NumKinds]uint64{2, 1, 0} || ow.Other.MemoryBytes != 2*100+4096 {
					t.Errorf("cycle %d: other %+v (%d owners)", cycle, ow.Other, ow.OtherOwners)
				}
				if ow.None.Objects != [kernel.NumKinds]uint64{1, 0, 0} || ow.None.MemoryBytes != 100 {
					t.Errorf("cycle %d: no one %+v", cycle, ow.None)
				}
				checkOwnersSum(t, &s)
				if s.Top.N[0] != 3 || s.Top.Memory[0].ID != big[0] || comm2(s.Top.Memory[0].Owner[:]) != "biggest" ||
					s.Top.Memory[1].MemoryBytes != 100 || s.Top.Memory[1].ID != maps[0] {
					t.Errorf("cycle %d: top maps by memory %+v", cycle, s.Top.Memory[:s.Top.N[0]])
				}
			}
		})
	}
}

func comm2(b []byte) string { return string(trimNUL(b)) }

// linkProg makes link id hold program prog, in the fake kernel's link info
// and iterator records.
func linkProg(fk *fakeKernel, id, prog uint32) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	o := fk.objects[kernel.KindLink][id]
	o.prog = prog
	fk.objects[kernel.KindLink][id] = o
}

// TestFakeOwnershipOff: max_owners 0 turns ownership off in both modes: no
// holders pass at all (its walk would cost for series that are not kept),
// no owner rows, the feature reported off; the top series remain, without
// owners.
func TestFakeOwnershipOff(t *testing.T) {
	for _, mode := range []string{config.ModeSyscall, config.ModeIterator} {
		t.Run(mode, func(t *testing.T) {
			fk := newFakeKernel()
			maps := fk.add(kernel.KindMap, 3, fakeObject{typ: 1, memory: 100})
			fo := &fakeOwners{holdings: []owner.Holding{hold(kernel.KindMap, maps[0], 10, "agent-a", "c1", "p1")}}
			cfg := testConfig(t)
			cfg.MaxOwners, cfg.TopK = 0, 3
			cfg.CollectionMode = mode
			var c *Collector
			if mode == config.ModeIterator {
				c = newFakeIterCollector(t, cfg, fk, newFakeIters(fk), func(o *Options) { o.OwnerSource = fo })
			} else {
				c = newFakeCollector(t, cfg, fk, func(o *Options) { o.OwnerSource = fo })
			}
			s := mustCycle(t, c)
			if fo.in || fo.pos != 0 {
				t.Errorf("the holders source was read (pos %d)", fo.pos)
			}
			if s.Features[snapshot.FeatureOwnership] {
				t.Error("FeatureOwnership on with max_owners 0")
			}
			if s.Owners.N != 0 || s.Owners.Processes != 0 {
				t.Errorf("owners %d, processes %d; want none", s.Owners.N, s.Owners.Processes)
			}
			if s.Top.N[0] != 3 || comm2(s.Top.Memory[0].Owner[:]) != "" {
				t.Errorf("top maps by memory %+v; want 3 without owners", s.Top.Memory[:s.Top.N[0]])
			}
		})
	}
}
