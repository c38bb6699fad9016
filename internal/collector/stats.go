// Run-time statistics: BPF_ENABLE_STATS turns them on for as long as the fd
// it returns is open, and costs the kernel ~75-100 ns per program run
// meanwhile. With system_stats_duty_cycle d below 1 the agent holds the fd
// only for the last d of each interval, up to the cycle that reads the
// statistics: the cost is paid d of the time, and
// stats_enabled_seconds_total says how long, so that rates can be read per
// enabled second. The sysctl is never written.

package collector

import (
	"fmt"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// enableStats opens the statistics fd, if it is not open.
func (c *Collector) enableStats() error {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if c.statsFD >= 0 {
		return nil
	}
	c.gate.calls[kernel.OpEnableStats].Add(1)
	fd, err := kernel.EnableStats()
	if err != nil {
		c.gate.failures[kernel.OpEnableStats].Add(1)
		return fmt.Errorf("enabling run-time statistics (BPF_ENABLE_STATS): %w", err)
	}
	c.statsFD, c.statsSince = fd, time.Now()
	c.snap.SystemStats = true
	c.snap.Features[snapshot.FeatureRunTimeStats] = true
	return nil
}

// disableStats closes the statistics fd, if it is open, and adds the time
// it was open to the total.
func (c *Collector) disableStats() {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if c.statsFD < 0 {
		return
	}
	kernel.Close(c.statsFD)
	c.statsFD = -1
	c.statsOn += time.Since(c.statsSince)
}

// statsSeconds is how long statistics have been on since the start.
func (c *Collector) statsSeconds(now time.Time) float64 {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	d := c.statsOn
	if c.statsFD >= 0 {
		d += now.Sub(c.statsSince)
	}
	return d.Seconds()
}

// statsLead is how long before each cycle statistics are turned on: 0 when
// they are on all the time (or off).
func (c *Collector) statsLead() time.Duration {
	if !c.cfg.EnableSystemStats || c.cfg.SystemStatsDutyCycle >= 1 {
		return 0
	}
	return time.Duration(c.cfg.SystemStatsDutyCycle * float64(c.cfg.CollectionInterval))
}
