package exposition

import (
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/expfmt"
)

// NewRegistry returns a new registry (never the global default one) holding
// c, the Go runtime collector (go_*), the process collector (process_*,
// read from <procfs>/self; procfs "" means /proc) and <namespace>_build_info,
// labelled with the version set at link time in
// github.com/prometheus/common/version. namespace "" means DefaultNamespace;
// it panics if namespace fails CheckNamespace or c's descriptors collide with
// the others.
//
// The process collector reads procfs when gathered: serve the registry
// through a Cache, which gathers after each cycle rather than per scrape.
func NewRegistry(c prometheus.Collector, namespace, procfs string) *prometheus.Registry {
	if procfs == "" {
		procfs = "/proc"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		c,
		collectors.NewGoCollector(),
		newProcessCollector(procfs),
		versioncollector.NewCollector(namespaceOrDefault(namespace)),
	)
	return reg
}

// WriteText writes everything g gathers in the Prometheus text format
// (version 0.0.4), as --once prints it. When gathering fails in part, it
// writes what was gathered and returns the error.
func WriteText(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("gathering metrics: %w", err))
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			errs = append(errs, fmt.Errorf("writing metric family %s: %w", mf.GetName(), err))
			break
		}
	}
	return errors.Join(errs...)
}
