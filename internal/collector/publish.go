// Publication: folding a cycle into the snapshot that readers see.

package collector

import (
	"errors"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// publish folds the cycle into the snapshot and publishes it: everything
// if the cycle completed, only the counters and the state otherwise.
func (c *Collector) publish(start time.Time, err error) {
	end := time.Now()
	s := &c.snap
	for op := range kernel.NumOps {
		s.Syscalls[op] = c.gate.calls[op].Load()
		s.Errors[op] = c.gate.failures[op].Load()
	}
	s.RateLimitWaitNs = c.lim.waitNs.Load()
	s.MemoryUsageBytes = c.memory()

	switch {
	case err == nil:
		for k := range kernel.NumKinds {
			a := &c.agg[k]
			if c.baseline {
				// IDs only grow, so the objects above the previous
				// cycle's greatest ID are exactly the new ones; the
				// removed ones follow from the counts.
				created := c.above[k]
				if c.prevCount[k]+created < a.Objects {
					// More objects than before plus the new ones: one
					// first listed below the previous greatest ID, a link
					// that was still being attached last cycle. It is new
					// too; the removed count must not wrap around.
					created = a.Objects - c.prevCount[k]
				}
				c.created[k] += created
				c.removed[k] += c.prevCount[k] + created - a.Objects
			}
			c.prevCount[k] = a.Objects
			c.prevMax[k] = max(c.prevMax[k], c.maxs[k])
			a.Created, a.Removed = c.created[k], c.removed[k]
			a.TypesSeen = c.seen[k]
			s.Kinds[k] = *a
			s.Own[k] = c.ownAgg[k]
		}
		c.baseline = true
		d := end.Sub(start)
		s.Valid = true
		s.Cycles++
		s.LastSuccessUnixNano = end.UnixNano()
		s.LastDurationNs = int64(d)
		s.DurationSum += d.Seconds()
		s.DurationCount++
		if b := durationBucket(d.Seconds()); b >= 0 {
			s.DurationCounts[b]++
		}
		s.Active = true
		c.checkCapabilities()
		if c.suspended {
			c.logger.Info("memory usage back under the budget: collection resumed",
				"usage_bytes", s.MemoryUsageBytes, "budget_bytes", c.cfg.MaxMemoryBytes)
			c.suspended = false
		}
	case errors.Is(err, ErrMemoryLimit):
		s.MemoryLimitHits++
		s.Active = false
		if !c.suspended {
			c.logger.Warn("memory usage reached 90% of the budget: collection suspended",
				"usage_bytes", s.MemoryUsageBytes, "budget_bytes", c.cfg.MaxMemoryBytes)
			c.suspended = true
		}
	}
	c.pub.Publish(s)
	if c.onPublish != nil {
		c.onPublish()
	}
}

func durationBucket(s float64) int {
	for i, b := range snapshot.DurationBuckets {
		if s <= b {
			return i
		}
	}
	return -1 // only in the +Inf bucket
}
