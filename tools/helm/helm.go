// Package helm renders the chart deploy/helm/ebpf-metrics with the Helm CLI
// built from this module (helm.sh/helm/v4, a tool of go.mod), decodes what
// it renders strictly into the Kubernetes API types, and keeps the chart's
// copies of the repository's rules and dashboard, and the plain manifest
// rendered from the chart, up to date (`go generate` in tools/helm).
//
// It is its own Go module so that Helm and the Kubernetes libraries stay
// out of the agent's go.mod.
package helm

//go:generate go run ./cmd/sync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// The chart's place in the repository, and what the plain manifest is
// rendered with: `helm template ebpf-metrics <chart> --namespace ebpf-metrics`.
const (
	ChartDir     = "deploy/helm/ebpf-metrics"
	ManifestPath = "deploy/kubernetes/ebpf-metrics.yaml"
	Release      = "ebpf-metrics"
	Namespace    = "ebpf-metrics"
)

// Copy is a file of the repository that the chart carries a copy of, since
// Helm reads no file outside the chart.
type Copy struct{ Source, Dest string }

// Copies are the rules and the dashboard, whose one source stays in deploy/.
var Copies = []Copy{
	{"deploy/prometheus/alerts.yml", ChartDir + "/files/alerts.yml"},
	{"deploy/prometheus/recording.yml", ChartDir + "/files/recording.yml"},
	{"deploy/grafana/ebpf-metrics.json", ChartDir + "/files/ebpf-metrics.json"},
}

// ManifestHeader starts the plain manifest; the rest is exactly what `helm
// template` renders with the default values.
const ManifestHeader = `# The ebpf-metrics DaemonSet for kubectl, rendered from the Helm chart
# deploy/helm/ebpf-metrics with its default values (namespace ebpf-metrics):
#   kubectl create namespace ebpf-metrics
#   kubectl apply -f deploy/kubernetes/ebpf-metrics.yaml
# Do not edit: regenerate with ` + "`cd tools/helm && go generate`" + ` (CI fails when it
# differs from the chart). docs/kubernetes.md explains every setting.
`

// RepoRoot is the repository's root: two directories above this module.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildHelm builds the Helm CLI of this module's go.mod into dir and returns
// its path. The Go build cache makes every build after the first quick.
func BuildHelm(dir string) (string, error) {
	bin := filepath.Join(dir, "helm")
	cmd := exec.Command("go", "build", "-o", bin, "helm.sh/helm/v4/cmd/helm")
	cmd.Dir = filepath.Join(RepoRoot(), "tools", "helm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building helm: %w\n%s", err, out)
	}
	return bin, nil
}

// Helm runs the Helm CLI at bin with args in the repository's root, with
// its configuration and cache in a scratch directory so that nothing of the
// user's Helm setup changes the result.
func Helm(bin, scratch string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(scratch, "config"),
		"HELM_CACHE_HOME="+filepath.Join(scratch, "cache"),
		"HELM_DATA_HOME="+filepath.Join(scratch, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// Template renders the chart as the release Release in Namespace with the
// given values files.
func Template(bin, scratch string, valuesFiles ...string) ([]byte, error) {
	args := []string{"template", Release, ChartDir, "--namespace", Namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return Helm(bin, scratch, args...)
}

// scheme knows every kind the chart renders: the core and apps API groups
// and the Prometheus Operator's monitoring.coreos.com/v1.
var scheme = func() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Decode splits a rendered manifest into its documents and decodes each
// strictly into its API type: an unknown or repeated field, a value of the
// wrong type or a kind outside the scheme is an error.
func Decode(manifest []byte) ([]k8sruntime.Object, error) {
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []k8sruntime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting the manifest: %w", err)
		}
		if isEmpty(doc) {
			continue
		}
		obj, gvk, err := ser.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w\n%s", gvk, err, firstLines(doc, 12))
		}
		objs = append(objs, obj)
	}
}

// isEmpty reports whether a YAML document holds only comments and blanks,
// as Helm renders a template whose condition is false.
func isEmpty(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func firstLines(doc []byte, n int) string {
	lines := strings.SplitN(string(doc), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
