package owner

// procCache remembers the container and pod of processes, by thread-group
// ID and start time (a reused ID is another process). Entries not used in
// a pass are dropped at its end.
type procCache struct {
	m    map[procKey]procEntry
	pass uint32
}

type procKey struct {
	pid   uint32
	start uint64
}

type procEntry struct {
	container, pod string
	known          bool
	pass           uint32
}

func newProcCache() procCache { return procCache{m: make(map[procKey]procEntry)} }

func (c *procCache) get(pid uint32, start uint64) (procEntry, bool) {
	k := procKey{pid, start}
	e, ok := c.m[k]
	if ok && e.pass != c.pass {
		e.pass = c.pass
		c.m[k] = e
	}
	return e, ok
}

// put remembers e, if it is known: an unreadable cgroup is tried again.
func (c *procCache) put(pid uint32, start uint64, e procEntry) {
	if !e.known {
		return
	}
	e.pass = c.pass
	c.m[procKey{pid, start}] = e
}

func (c *procCache) prune() {
	for k, e := range c.m {
		if e.pass != c.pass {
			delete(c.m, k)
		}
	}
}

// cgroupCache remembers the container and pod of cgroups, by cgroup ID
// (never reused while the system runs). It is bounded: past maxCgroups it
// is emptied, and the iterator must send every path again.
type cgroupCache struct {
	m map[uint64]cgroupEntry
}

type cgroupEntry struct{ container, pod string }

// maxCgroups is the size of the iterator's memory of sent paths
// (sent_cgroups in bpf/holders.bpf.c).
const maxCgroups = 1024

func newCgroupCache() cgroupCache { return cgroupCache{m: make(map[uint64]cgroupEntry)} }

// put remembers a cgroup; it reports false when it emptied the cache first.
func (c *cgroupCache) put(id uint64, e cgroupEntry) bool {
	kept := true
	if _, ok := c.m[id]; !ok && len(c.m) >= maxCgroups {
		clear(c.m)
		kept = false
	}
	c.m[id] = e
	return kept
}
