package main

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
	"github.com/ebpf-metrics/ebpf-metrics/internal/history"
	"github.com/ebpf-metrics/ebpf-metrics/internal/statuspage"
)

// newHistory returns the history that cfg asks for (nil when history_bytes
// is 0) and the recorder that feeds it each completed cycle (from
// collector.Options.OnPublish), with its metrics registered in reg.
func newHistory(cfg *config.Config, namespace string, reg prometheus.Registerer) (*history.History, *history.Recorder, error) {
	if cfg.HistoryBytes == 0 {
		return nil, nil, nil
	}
	h, err := history.New(int(cfg.HistoryBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("history_bytes: %w", err)
	}
	if err := reg.Register(history.NewMetrics(h, namespace)); err != nil {
		return nil, nil, fmt.Errorf("registering the history's metrics: %w", err)
	}
	return h, history.NewRecorder(h, namespace), nil
}

// webRoutes returns the status page for / and what it needs beside the
// metrics: its scripts and styles, and the history's API when there is a
// history.
func webRoutes(f *flags, cache *exposition.Cache, h *history.History) (http.Handler, map[string]http.Handler) {
	opts := statuspage.Options{
		Namespace:     f.namespace,
		TelemetryPath: f.path,
		Pprof:         f.pprof,
		Version:       version.Version,
	}
	routes := map[string]http.Handler{"GET " + statuspage.StaticPrefix: statuspage.Static()}
	if h != nil {
		opts.HistoryPath = history.Path
		routes["GET "+history.Path] = history.NewHandler(h, 0)
	}
	return statuspage.New(cache, opts), routes
}
