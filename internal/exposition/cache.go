package exposition

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Cache serves what a Gatherer gathered at its last refresh, so that a
// scrape does no collecting: it neither reads /proc (the process
// collector's files) nor builds a metric. The collector asks for a refresh
// after every cycle (Notify); a goroutine of the cache does it (Run), off
// both the cycle and the scrape, so that neither the cycle's
// zero-allocation promise nor the scrape's latency pays for it.
//
// go_* and process_* are therefore as of the end of the last cycle, like
// the eBPF metrics themselves.
type Cache struct {
	g      prometheus.Gatherer
	notify chan struct{}

	mu  sync.RWMutex
	mfs []*dto.MetricFamily
	err error
}

// NewCache returns a cache of g, empty until the first Refresh.
func NewCache(g prometheus.Gatherer) *Cache {
	return &Cache{g: g, notify: make(chan struct{}, 1)}
}

// Refresh gathers from g now.
func (c *Cache) Refresh() error {
	mfs, err := c.g.Gather()
	c.mu.Lock()
	c.mfs, c.err = mfs, err
	c.mu.Unlock()
	return err
}

// Notify asks Run for a refresh. It never blocks and allocates nothing:
// the collector calls it at the end of each cycle.
func (c *Cache) Notify() {
	select {
	case c.notify <- struct{}{}:
	default: // a refresh is already pending
	}
}

// Run refreshes on each Notify until ctx is done.
func (c *Cache) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.notify:
			c.Refresh()
		}
	}
}

// Gather returns the families of the last refresh. They are shared by
// every scrape and must not be modified; promhttp and prometheus.Gatherers
// only read them.
func (c *Cache) Gather() ([]*dto.MetricFamily, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mfs, c.err
}
