// Command sync brings the chart's generated files up to date: the copies of
// the rules and the dashboard in deploy/helm/ebpf-metrics/files, and the
// plain manifest deploy/kubernetes/ebpf-metrics.yaml rendered from the
// chart. Run it with `go generate` in tools/helm; the tests of tools/helm
// fail while any of them differs.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ebpf-metrics/ebpf-metrics/tools/helm"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sync: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	root := helm.RepoRoot()
	for _, c := range helm.Copies {
		data, err := os.ReadFile(filepath.Join(root, c.Source))
		if err != nil {
			return err
		}
		if err := write(filepath.Join(root, c.Dest), data); err != nil {
			return err
		}
	}
	scratch, err := os.MkdirTemp("", "helm-sync")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	bin, err := helm.BuildHelm(scratch)
	if err != nil {
		return err
	}
	rendered, err := helm.Template(bin, scratch)
	if err != nil {
		return err
	}
	return write(filepath.Join(root, helm.ManifestPath), append([]byte(helm.ManifestHeader), rendered...))
}

func write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	fmt.Println("wrote", path)
	return nil
}
