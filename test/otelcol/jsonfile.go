package main

import (
	"context"
	"errors"
	"os"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// jsonfile is an exporter that appends each batch of metrics it receives to
// a file, as one line of OTLP JSON (pmetric's JSON marshaler): what a
// Collector user's pipeline gets, readable by a test. (contrib's
// fileexporter does the same, but has no release that matches the core
// modules used here.)
var jsonfileType = component.MustNewType("jsonfile")

type jsonfileConfig struct {
	Path string `mapstructure:"path"`
}

// Validate is called by the Collector when it loads the configuration.
func (c *jsonfileConfig) Validate() error {
	if c.Path == "" {
		return errors.New("path must be set")
	}
	return nil
}

func newJSONFileFactory() exporter.Factory {
	return exporter.NewFactory(jsonfileType,
		func() component.Config { return &jsonfileConfig{} },
		exporter.WithMetrics(createJSONFile, component.StabilityLevelDevelopment))
}

func createJSONFile(_ context.Context, _ exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
	return &jsonfileExporter{path: cfg.(*jsonfileConfig).Path}, nil
}

type jsonfileExporter struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (e *jsonfileExporter) Start(context.Context, component.Host) error {
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	e.f = f
	return nil
}

func (e *jsonfileExporter) Shutdown(context.Context) error {
	if e.f == nil {
		return nil
	}
	return e.f.Close()
}

func (e *jsonfileExporter) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeMetrics writes md as one line: a reader never sees half of it,
// since it reads whole lines.
func (e *jsonfileExporter) ConsumeMetrics(_ context.Context, md pmetric.Metrics) error {
	var m pmetric.JSONMarshaler
	b, err := m.MarshalMetrics(md)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.f.Write(append(b, '\n'))
	return err
}
