// Publication: folding a cycle into the snapshot that readers see.

package collector

import (
	"context"
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
	s.StatsEnabledSeconds = c.statsSeconds(end)
	s.MemoryUsageBytes = c.memory()
	// An overrun is published with the cycle that overran, complete or
	// not; a cycle cut short by shutdown is none.
	stopped := errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed)
	if end.Sub(start) > c.cfg.CollectionInterval && !stopped {
		s.Overruns++
	}

	switch {
	case err == nil:
		for k := range kernel.NumKinds {
			a := &c.agg[k]
			if c.baseline {
				// The removed objects follow from the counts and the new
				// ones (noteID).
				created := c.fresh[k]
				if c.prevCount[k]+created < a.Objects {
					// More objects than before plus the new ones: one new
					// where the tables could not tell (beyond a full
					// table), or a link that was still being attached last
					// cycle. It is new too; the removed count must not
					// wrap around.
					created = a.Objects - c.prevCount[k]
				}
				c.created[k] += created
				c.removed[k] += c.prevCount[k] + created - a.Objects
			}
			c.prevCount[k] = a.Objects
			c.prevUnreadable[k] = a.Unreadable
			// This cycle's greatest, not the greatest ever: once IDs
			// wrap, the old high ones go and the new low ones count.
			c.prevMax[k] = c.maxs[k]
			a.Created, a.Removed = c.created[k], c.removed[k]
			a.TypesSeen = c.seen[k]
			s.Kinds[k] = *a
			s.Own[k] = c.ownAgg[k]
		}
		c.publishOwners(&s.Owners, c.cfg.MaxOwners)
		c.attr.top.publish(&s.Top)
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
		c.onPublish(s)
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
