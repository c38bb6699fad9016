package history

// SeriesSet holds the series of one name whose members come and go from
// cycle to cycle, one per key: the top owners by memory, say, keyed by
// (owner, container, pod). A member that stops being Put is released, so
// that its slot is reused once its samples are dropped: a set that keeps
// changing stays within the history's fixed table. Once its keys have been
// seen, a cycle allocates nothing.
//
// Per row: Put every member (before History.Begin), then Emit between
// Begin and Commit. One goroutine, the appender's, uses it.
type SeriesSet[K comparable] struct {
	h       *History
	name    string
	members map[K]*member
	round   uint32
}

type member struct {
	ref   Ref
	round uint32 // the round in which it was last Put
	val   float64
}

// NewSeriesSet returns an empty set of series named name in h.
func NewSeriesSet[K comparable](h *History, name string) *SeriesSet[K] {
	return &SeriesSet[K]{h: h, name: name, members: map[K]*member{}, round: 1}
}

// Put gives key's series the value v in the next row, registering it if
// key is new (then, and only then, labels is called for its labels).
func (s *SeriesSet[K]) Put(key K, v float64, labels func() []Label) {
	m := s.members[key]
	if m == nil {
		m = &member{ref: s.h.Series(s.name, labels()...)}
		s.members[key] = m
	}
	m.round = s.round
	m.val = v
}

// Emit sets the series Put since the last Emit in the row being built,
// and releases the others: they left the set. Call it between Begin and
// Commit.
func (s *SeriesSet[K]) Emit() {
	for key, m := range s.members {
		if m.round == s.round && m.ref != NoRef {
			s.h.Set(m.ref, m.val)
			continue
		}
		// Gone; or refused by a full table, to be asked for again at its
		// next Put (which allocates only while the table stays full).
		s.h.release(m.ref)
		delete(s.members, key)
	}
	s.round++
}
