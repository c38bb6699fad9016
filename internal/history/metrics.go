package history

import "github.com/prometheus/client_golang/prometheus"

// metrics is a prometheus.Collector of a History's size. It reads the
// history's counters under its read lock: no decoding, no allocation but
// the constant metrics.
type metrics struct {
	h                             *History
	bytes, memory, samples, older *prometheus.Desc
	dropped                       *prometheus.Desc
}

// NewMetrics returns a collector of h's size for the agent's registry,
// with names prefixed by namespace.
func NewMetrics(h *History, namespace string) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "history", name), help, nil, nil)
	}
	return &metrics{
		h: h,
		bytes: d("bytes", "Bytes of compressed samples in the agent's history (GET /api/v1/history): "+
			"history_bytes / history_samples is the cost of one sample."),
		memory: d("memory_bytes", "Memory the agent's history holds: its blocks, allocated at start, its series table and labels. "+
			"It never exceeds the history_bytes setting; the oldest samples are dropped instead."),
		samples: d("samples", "Samples (one value of one series at one cycle) in the agent's history."),
		older:   d("oldest_timestamp_seconds", "Unix time of the oldest cycle in the agent's history. Absent while the history is empty."),
		dropped: d("dropped_samples_total", "Samples the history could not record: its series table was full (1024 series, or its share of history_bytes)."),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.bytes
	ch <- m.memory
	ch <- m.samples
	ch <- m.older
	ch <- m.dropped
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.h.Stats()
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(m.memory, prometheus.GaugeValue, float64(st.MemoryBytes))
	ch <- prometheus.MustNewConstMetric(m.samples, prometheus.GaugeValue, float64(st.Samples))
	if st.Rows > 0 {
		ch <- prometheus.MustNewConstMetric(m.older, prometheus.GaugeValue, float64(st.Oldest)/1e3)
	}
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(st.Dropped))
}
