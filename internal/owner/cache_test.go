package owner

import "testing"

func TestCgroupCacheIsBounded(t *testing.T) {
	c := newCgroupCache()
	for id := range uint64(maxCgroups) {
		if !c.put(id, cgroupEntry{container: "c"}) {
			t.Fatalf("put %d of %d emptied the cache", id+1, maxCgroups)
		}
	}
	if !c.put(0, cgroupEntry{pod: "p"}) || len(c.m) != maxCgroups || c.m[0].pod != "p" {
		t.Fatalf("updating a known cgroup: %d entries, %+v", len(c.m), c.m[0])
	}
	if c.put(maxCgroups, cgroupEntry{}) {
		t.Fatal("one more cgroup than the bound did not empty the cache")
	}
	if _, ok := c.m[maxCgroups]; len(c.m) != 1 || !ok {
		t.Fatalf("after emptying: %d entries", len(c.m))
	}
}

func TestProcCacheForgetsProcessesNotSeen(t *testing.T) {
	c := newProcCache()
	c.pass = 1
	c.put(10, 100, procEntry{container: "a", known: true})
	c.put(11, 100, procEntry{container: "b", known: true})
	c.put(12, 100, procEntry{known: false}) // unreadable: tried again
	c.prune()
	c.pass = 2
	if e, ok := c.get(10, 100); !ok || e.container != "a" {
		t.Fatalf("process 10: %+v, %v", e, ok)
	}
	if _, ok := c.get(10, 200); ok {
		t.Fatal("PID 10 started again is another process, yet found")
	}
	if _, ok := c.get(12, 100); ok {
		t.Fatal("a process whose cgroup was unreadable was remembered")
	}
	c.prune()
	if _, ok := c.m[procKey{11, 100}]; ok || len(c.m) != 1 {
		t.Fatalf("after a pass without process 11: %v", c.m)
	}
}
