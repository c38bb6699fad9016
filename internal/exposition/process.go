package exposition

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// processCollector is client_golang's process collector (process_*, the
// same names, help and values) reading <procfs>/self rather than /proc:
// --path.procfs holds for every read of procfs the agent makes. It is
// gathered by the Cache after each cycle, never per scrape.
type processCollector struct {
	fs    procfs.FS
	fsErr error // the procfs path is checked at start: an error here is for tests
	descs [numProcessMetrics]*prometheus.Desc
}

const (
	procCPU = iota
	procOpenFDs
	procMaxFDs
	procVirtual
	procVirtualMax
	procResident
	procStart
	procNetIn
	procNetOut
	numProcessMetrics
)

var processMetrics = [numProcessMetrics]struct{ name, help string }{
	procCPU:        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds."},
	procOpenFDs:    {"process_open_fds", "Number of open file descriptors."},
	procMaxFDs:     {"process_max_fds", "Maximum number of open file descriptors."},
	procVirtual:    {"process_virtual_memory_bytes", "Virtual memory size in bytes."},
	procVirtualMax: {"process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes."},
	procResident:   {"process_resident_memory_bytes", "Resident memory size in bytes."},
	procStart:      {"process_start_time_seconds", "Start time of the process since unix epoch in seconds."},
	procNetIn:      {"process_network_receive_bytes_total", "Number of bytes received by the process over the network."},
	procNetOut:     {"process_network_transmit_bytes_total", "Number of bytes sent by the process over the network."},
}

func newProcessCollector(procfsPath string) *processCollector {
	c := &processCollector{}
	c.fs, c.fsErr = procfs.NewFS(procfsPath)
	for i, m := range processMetrics {
		c.descs[i] = prometheus.NewDesc(m.name, m.help, nil, nil)
	}
	return c
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends what it could read; like client_golang's collector without
// ReportErrors, it leaves out what it could not.
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	if c.fsErr != nil {
		return
	}
	p, err := c.fs.Self()
	if err != nil {
		return
	}
	send := func(i int, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[i], t, v)
	}
	if stat, err := p.Stat(); err == nil {
		send(procCPU, prometheus.CounterValue, stat.CPUTime())
		send(procVirtual, prometheus.GaugeValue, float64(stat.VirtualMemory()))
		send(procResident, prometheus.GaugeValue, float64(stat.ResidentMemory()))
		if start, err := stat.StartTime(); err == nil {
			send(procStart, prometheus.GaugeValue, start)
		}
	}
	if fds, err := p.FileDescriptorsLen(); err == nil {
		send(procOpenFDs, prometheus.GaugeValue, float64(fds))
	}
	if limits, err := p.Limits(); err == nil {
		send(procMaxFDs, prometheus.GaugeValue, float64(limits.OpenFiles))
		send(procVirtualMax, prometheus.GaugeValue, float64(limits.AddressSpace))
	}
	if netstat, err := p.Netstat(); err == nil {
		var in, out float64
		if netstat.InOctets != nil {
			in = *netstat.InOctets
		}
		if netstat.OutOctets != nil {
			out = *netstat.OutOctets
		}
		send(procNetIn, prometheus.CounterValue, in)
		send(procNetOut, prometheus.CounterValue, out)
	}
}
