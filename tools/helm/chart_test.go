package helm

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	sigsyaml "sigs.k8s.io/yaml"
)

// helmBin is the Helm CLI built from this module's go.mod, and scratch its
// home, both made once by TestMain.
var helmBin, scratch string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		var err error
		scratch, err = os.MkdirTemp("", "ebpf-metrics-helm")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(scratch)
		if helmBin, err = BuildHelm(scratch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// valuesFile writes values (YAML) to a file for --values.
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// rendered is the chart rendered with some values, decoded.
type rendered struct {
	text string
	objs []k8sruntime.Object
}

// render renders the chart with values (YAML, "" for the defaults), and
// decodes every object strictly.
func render(t *testing.T, values string) rendered {
	t.Helper()
	var files []string
	if values != "" {
		files = append(files, valuesFile(t, values))
	}
	out, err := Template(helmBin, scratch, files...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatalf("strict decoding: %v", err)
	}
	return rendered{string(out), objs}
}

// one returns the only object of type T named name ("" for any name).
func one[T k8sruntime.Object](t *testing.T, r rendered, name string) T {
	t.Helper()
	var found []T
	for _, o := range r.objs {
		if v, ok := o.(T); ok && (name == "" || metaName(o) == name) {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T named %q, got %d", zero, name, len(found))
	}
	return found[0]
}

func metaName(o k8sruntime.Object) string {
	return reflect.ValueOf(o).Elem().FieldByName("ObjectMeta").FieldByName("Name").String()
}

func kinds(r rendered) []string {
	var ks []string
	for _, o := range r.objs {
		ks = append(ks, reflect.TypeOf(o).Elem().Name())
	}
	slices.Sort(ks)
	return ks
}

// agentContainer returns the DaemonSet's only container.
func agentContainer(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 || len(ds.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("want exactly one container, got %d (+%d init)", n, len(ds.Spec.Template.Spec.InitContainers))
	}
	return ds.Spec.Template.Spec.Containers[0]
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func hasArg(c corev1.Container, arg string) bool { return slices.Contains(c.Args, arg) }

func isTrue(p *bool) bool  { return p != nil && *p }
func isFalse(p *bool) bool { return p != nil && !*p }

// checkLeastPrivilege asserts the security settings of issue 11 on a
// DaemonSet rendered without privileges.sysAdmin: the host's PID namespace
// and nothing else of the host, non-root, read-only, RuntimeDefault
// seccomp, every capability dropped but CAP_BPF and CAP_PERFMON.
func checkLeastPrivilege(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostPID %v, hostNetwork %v, hostIPC %v: want true, false, false", pod.HostPID, pod.HostNetwork, pod.HostIPC)
	}
	if !isFalse(pod.AutomountServiceAccountToken) {
		t.Error("the service account token is mounted: the agent never calls the API")
	}
	psc := pod.SecurityContext
	if psc == nil || !isTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser != 65534 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser 65534, seccomp RuntimeDefault", psc)
	}
	c := agentContainer(t, ds)
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no container securityContext")
	}
	if !isFalse(sc.Privileged) {
		t.Error("privileged is not false")
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if !isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser != 65534 || sc.RunAsGroup == nil || *sc.RunAsGroup != 65534 {
		t.Errorf("container runs as %v:%v (runAsNonRoot %v): want 65534:65534, non-root", sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile %+v: want RuntimeDefault", sc.SeccompProfile)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "PERFMON"}) {
		t.Errorf("capabilities %+v: want drop [ALL], add exactly [BPF PERFMON]", sc.Capabilities)
	}
	checkMounts(t, ds)
}

// checkMounts asserts that nothing of the host's file system is mounted
// and that every mount is read-only.
func checkMounts(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s mounts the host's %s", v.Name, v.HostPath.Path)
		}
	}
	for _, m := range agentContainer(t, ds).VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted writable at %s", m.Name, m.MountPath)
		}
	}
}

// checkGoMemLimit asserts GOMEMLIMIT is 90% of the memory limit, in bytes.
func checkGoMemLimit(t *testing.T, c corev1.Container) {
	t.Helper()
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit")
	}
	e, ok := env(c, "GOMEMLIMIT")
	if want := fmt.Sprint(limit.Value() * 90 / 100); !ok || e.Value != want {
		t.Errorf("GOMEMLIMIT %q, want %s (90%% of %s)", e.Value, want, limit.String())
	}
}

func TestLint(t *testing.T) {
	out, err := Helm(helmBin, scratch, "lint", "--strict", ChartDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "0 chart(s) failed") {
		t.Fatalf("helm lint:\n%s", out)
	}
	// And with every optional part on.
	if out, err = Helm(helmBin, scratch, "lint", "--strict", ChartDir, "--values", valuesFile(t, everything)); err != nil {
		t.Fatal(err)
	}
}

// TestCopiesUpToDate: the chart's copies of the rules and the dashboard are
// byte for byte their sources in deploy/.
func TestCopiesUpToDate(t *testing.T) {
	for _, c := range Copies {
		src, err := os.ReadFile(filepath.Join(RepoRoot(), c.Source))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.ReadFile(filepath.Join(RepoRoot(), c.Dest))
		if err != nil || !bytes.Equal(src, dst) {
			t.Errorf("%s differs from %s (%v): run `cd tools/helm && go generate`", c.Dest, c.Source, err)
		}
	}
}

// TestManifestUpToDate: the plain manifest is `helm template` of the
// defaults.
func TestManifestUpToDate(t *testing.T) {
	out, err := Template(helmBin, scratch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(RepoRoot(), ManifestPath))
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte(ManifestHeader), out...); !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the chart rendered with its defaults: run `cd tools/helm && go generate`", ManifestPath)
	}
	if _, err := Decode(got); err != nil {
		t.Fatalf("%s: %v", ManifestPath, err)
	}
}

func TestDefaults(t *testing.T) {
	r := render(t, "")
	if got, want := kinds(r), []string{"DaemonSet", "Service", "ServiceAccount"}; !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}
	ds := one[*appsv1.DaemonSet](t, r, Release)
	checkLeastPrivilege(t, ds)
	pod := ds.Spec.Template.Spec
	if len(pod.Volumes) != 0 {
		t.Errorf("volumes %+v: the defaults need none (the container's own /proc and read-only /sys suffice)", pod.Volumes)
	}
	// Every node, whatever its taints: one toleration matching them all.
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("tolerations %+v: none tolerates every taint", pod.Tolerations)
	}
	c := agentContainer(t, ds)
	checkGoMemLimit(t, c)
	for name, path := range map[string]string{"K8S_NODE_NAME": "spec.nodeName", "K8S_NODE_IP": "status.hostIP", "K8S_POD_NAME": "metadata.name", "K8S_POD_NAMESPACE": "metadata.namespace"} {
		if e, ok := env(c, name); !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("%s: want the Downward API's %s, got %+v", name, path, e)
		}
	}
	if !hasArg(c, "--profile=production") || !hasArg(c, "--web.listen-address=:9436") {
		t.Errorf("args %q", c.Args)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--otlp.") || strings.HasPrefix(a, "--config.file") || strings.HasPrefix(a, "--web.config.file") {
			t.Errorf("default args include %s", a)
		}
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/-/ready" || p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("readiness probe %+v: want GET /-/ready", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/-/healthy" {
		t.Errorf("liveness probe %+v: want GET /-/healthy", p)
	}
	svc := one[*corev1.Service](t, r, Release)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9436 || svc.Spec.Ports[0].TargetPort.StrVal != "metrics" {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v || ds.Spec.Selector.MatchLabels[k] != v {
			t.Errorf("service selector %s=%s does not select the pods", k, v)
		}
	}
	for _, o := range r.objs {
		if ns := reflect.ValueOf(o).Elem().FieldByName("ObjectMeta").FieldByName("Namespace").String(); ns != Namespace {
			t.Errorf("%s %s in namespace %q", reflect.TypeOf(o).Elem().Name(), metaName(o), ns)
		}
	}
}

// TestProfiles: each profile's memory request and limit follow the
// derivation written in values.yaml from its budget (max_memory_bytes), and
// GOMEMLIMIT is 90% of the limit.
func TestProfiles(t *testing.T) {
	const steadyMiB, peakMiB, slackMiB = 24, 26, 8
	roundUp4 := func(mib float64) int64 { return (int64(mib*2) + 7) / 8 * 4 }
	for profile, budgetMiB := range map[string]float64{"production": 10, "high-performance": 5, "high-traffic": 5, "development": 20} {
		t.Run(profile, func(t *testing.T) {
			values := "profile: " + profile + "\n"
			if profile == "development" { // run-time statistics need CAP_SYS_ADMIN
				values += "config: {enable_system_stats: false}\n"
			}
			c := agentContainer(t, one[*appsv1.DaemonSet](t, render(t, values), Release))
			req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
			wantReq := resource.MustParse(fmt.Sprintf("%dMi", roundUp4(steadyMiB+budgetMiB/2)))
			wantLim := resource.MustParse(fmt.Sprintf("%dMi", roundUp4(peakMiB+budgetMiB+slackMiB)))
			if req.Cmp(wantReq) != 0 || lim.Cmp(wantLim) != 0 {
				t.Errorf("memory request %s, limit %s; want %s, %s", req.String(), lim.String(), wantReq.String(), wantLim.String())
			}
			checkGoMemLimit(t, c)
			if !hasArg(c, "--profile="+profile) {
				t.Errorf("args %q", c.Args)
			}
		})
	}
}

// everything turns every optional part on.
const everything = `
config: {max_tracked_maps: 2000, collection_interval: 30s}
otlp:
  endpoint: https://$(K8S_NODE_NAME):4318
  headers: {Authorization: "Bearer s3cret", X-Scope-OrgID: tenant-1}
  tls: {secretName: otlp-ca}
web:
  config:
    tls_server_config: {cert_file: /etc/ebpf-metrics/tls/tls.crt, key_file: /etc/ebpf-metrics/tls/tls.key}
  tlsSecret: web-tls
serviceMonitor: {enabled: true, interval: 30s, tlsConfig: {insecureSkipVerify: true}}
podMonitor: {enabled: true}
prometheusRule: {enabled: true, labels: {release: prometheus}}
grafanaDashboard: {enabled: true}
`

func TestEverythingOn(t *testing.T) {
	r := render(t, everything)
	want := []string{"ConfigMap", "ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule", "Secret", "Secret", "Service", "ServiceAccount", "ServiceMonitor"}
	if got := kinds(r); !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}
	checkLeastPrivilege(t, one[*appsv1.DaemonSet](t, r, Release))
}

// otlpHeaders decodes OTEL_EXPORTER_OTLP_HEADERS as the OpenTelemetry Go
// SDK does (envconfig's stringToHeader): name=value pairs separated by
// commas, values percent-decoded.
func otlpHeaders(t *testing.T, v string) map[string]string {
	t.Helper()
	h := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		name, value, ok := strings.Cut(pair, "=")
		decoded, err := url.PathUnescape(value)
		if !ok || err != nil {
			t.Fatalf("OTEL_EXPORTER_OTLP_HEADERS: bad pair %q (%v)", pair, err)
		}
		h[strings.TrimSpace(name)] = strings.TrimSpace(decoded)
	}
	return h
}

func TestOTLP(t *testing.T) {
	r := render(t, `
otlp:
  endpoint: https://collector.observability:4317
  protocol: grpc
  interval: 30s
  timeout: 5s
  headers: {Authorization: "Bearer s3cret a+b/c,=", X-Scope-OrgID: tenant-1}
  tls: {secretName: otlp-tls, caFile: ca.crt, certFile: tls.crt, keyFile: tls.key}
`)
	ds := one[*appsv1.DaemonSet](t, r, Release)
	checkLeastPrivilege(t, ds)
	c := agentContainer(t, ds)
	for _, a := range []string{"--otlp.endpoint=https://collector.observability:4317", "--otlp.protocol=grpc",
		"--otlp.interval=30s", "--otlp.timeout=5s",
		"--otlp.tls.ca-file=/etc/ebpf-metrics/otlp-tls/ca.crt", "--otlp.tls.cert-file=/etc/ebpf-metrics/otlp-tls/tls.crt",
		"--otlp.tls.key-file=/etc/ebpf-metrics/otlp-tls/tls.key"} {
		if !hasArg(c, a) {
			t.Errorf("no %s in %q", a, c.Args)
		}
	}
	// The headers live in a Secret and reach the agent as
	// OTEL_EXPORTER_OTLP_HEADERS: not in its arguments, which every
	// process of the node can read, nor anywhere in the pod spec.
	secret := one[*corev1.Secret](t, r, Release+"-otlp-headers")
	e, ok := env(c, "OTEL_EXPORTER_OTLP_HEADERS")
	if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secret.Name ||
		e.ValueFrom.SecretKeyRef.Key != "OTEL_EXPORTER_OTLP_HEADERS" {
		t.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %+v, want the key of Secret %s", e, secret.Name)
	}
	want := map[string]string{"Authorization": "Bearer s3cret a+b/c,=", "X-Scope-OrgID": "tenant-1"}
	if got := otlpHeaders(t, string(secret.Data["OTEL_EXPORTER_OTLP_HEADERS"])); !reflect.DeepEqual(got, want) {
		t.Errorf("headers decode to %q, want %q", got, want)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--otlp.header") {
			t.Errorf("a header in the arguments: %s", a)
		}
	}
	ds.Spec.Template.Annotations = nil
	if text, _ := sigsyaml.Marshal(ds); strings.Contains(string(text), "s3cret") {
		t.Error("a header value is in the pod spec")
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/ebpf-metrics/otlp-tls" }) {
		t.Errorf("OTLP TLS secret not mounted: %+v", c.VolumeMounts)
	}

	// An existing Secret instead: its key read, nothing created.
	r = render(t, `
otlp:
  endpoint: http://collector:4318
  existingSecret: otlp-auth
  existingSecretKey: headers
`)
	c = agentContainer(t, one[*appsv1.DaemonSet](t, r, Release))
	if e, ok := env(c, "OTEL_EXPORTER_OTLP_HEADERS"); !ok || e.ValueFrom.SecretKeyRef.Name != "otlp-auth" || e.ValueFrom.SecretKeyRef.Key != "headers" ||
		!hasArg(c, "--otlp.protocol=http/protobuf") {
		t.Errorf("existing secret: env %+v, args %q", e, c.Args)
	}
	if slices.Contains(kinds(r), "Secret") {
		t.Error("a Secret was created beside the existing one")
	}
}

// TestMonitors: the ServiceMonitor and the PodMonitor select the agent's
// pods on their metrics port and name each target by its node.
func TestMonitors(t *testing.T) {
	r := render(t, "serviceMonitor: {enabled: true, interval: 30s, labels: {release: kps}}\npodMonitor: {enabled: true}\n")
	ds := one[*appsv1.DaemonSet](t, r, Release)
	svc := one[*corev1.Service](t, r, Release)
	sm := one[*monitoringv1.ServiceMonitor](t, r, Release)
	pm := one[*monitoringv1.PodMonitor](t, r, Release)
	nodeInstance := monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__meta_kubernetes_pod_node_name"}, TargetLabel: "instance"}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not select the Service", k, v)
		}
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor selector %s=%s does not select the pods", k, v)
		}
	}
	if e := sm.Spec.Endpoints; len(e) != 1 || e[0].Port != "metrics" || e[0].Path != "/metrics" || e[0].Interval != "30s" ||
		!slices.ContainsFunc(e[0].RelabelConfigs, func(rc monitoringv1.RelabelConfig) bool { return reflect.DeepEqual(rc, nodeInstance) }) {
		t.Errorf("ServiceMonitor endpoints %+v", e)
	}
	if e := pm.Spec.PodMetricsEndpoints; len(e) != 1 || e[0].Port == nil || *e[0].Port != "metrics" ||
		!slices.ContainsFunc(e[0].RelabelConfigs, func(rc monitoringv1.RelabelConfig) bool { return reflect.DeepEqual(rc, nodeInstance) }) {
		t.Errorf("PodMonitor endpoints %+v", e)
	}
	if sm.Labels["release"] != "kps" {
		t.Errorf("ServiceMonitor labels %v", sm.Labels)
	}
}

// TestPrometheusRule: the PrometheusRule holds exactly the groups of
// deploy/prometheus/alerts.yml and recording.yml.
func TestPrometheusRule(t *testing.T) {
	rule := one[*monitoringv1.PrometheusRule](t, render(t, "prometheusRule: {enabled: true}\n"), Release)
	var want []monitoringv1.RuleGroup
	for _, f := range []string{"deploy/prometheus/alerts.yml", "deploy/prometheus/recording.yml"} {
		data, err := os.ReadFile(filepath.Join(RepoRoot(), f))
		if err != nil {
			t.Fatal(err)
		}
		var spec monitoringv1.PrometheusRuleSpec
		if err := sigsyaml.UnmarshalStrict(data, &spec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, spec.Groups...)
	}
	if len(want) == 0 || !reflect.DeepEqual(rule.Spec.Groups, want) {
		t.Fatalf("PrometheusRule groups differ from deploy/prometheus:\n got %+v\nwant %+v", rule.Spec.Groups, want)
	}
	r := render(t, "prometheusRule: {enabled: true, recording: false}\n")
	if g := one[*monitoringv1.PrometheusRule](t, r, Release).Spec.Groups; len(g) == 0 || len(g) >= len(want) {
		t.Errorf("alerts only: %d groups of %d", len(g), len(want))
	}
}

func TestDashboard(t *testing.T) {
	cm := one[*corev1.ConfigMap](t, render(t, "grafanaDashboard: {enabled: true, namespace: monitoring}\n"), Release+"-dashboard")
	want, err := os.ReadFile(filepath.Join(RepoRoot(), "deploy/grafana/ebpf-metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["ebpf-metrics.json"]; got != strings.TrimRight(string(want), "\n") {
		t.Errorf("dashboard ConfigMap differs from deploy/grafana/ebpf-metrics.json (%d bytes, want %d)", len(got), len(want))
	}
	if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "monitoring" {
		t.Errorf("labels %v, namespace %s", cm.Labels, cm.Namespace)
	}
}

// TestWebConfig: the web configuration is a Secret passed with
// --web.config.file; TLS makes probes and monitors use https, and basic
// auth, which the kubelet cannot pass, makes the probes check the port.
func TestWebConfig(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		scheme       corev1.URIScheme // "" for TCP probes
	}{
		{"tls", "web: {config: {tls_server_config: {cert_file: /etc/ebpf-metrics/tls/tls.crt, key_file: /etc/ebpf-metrics/tls/tls.key}}, tlsSecret: web-tls}", corev1.URISchemeHTTPS},
		{"basic auth", "web: {config: {basic_auth_users: {prometheus: $2y$10$x}}}", ""},
		{"existing secret", "web: {existingSecret: my-web, tls: true}", corev1.URISchemeHTTPS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.values+"\nserviceMonitor: {enabled: true}\n")
			ds := one[*appsv1.DaemonSet](t, r, Release)
			checkLeastPrivilege(t, ds)
			c := agentContainer(t, ds)
			if !hasArg(c, "--web.config.file=/etc/ebpf-metrics/web/web-config.yml") {
				t.Errorf("args %q", c.Args)
			}
			secretName := Release + "-web"
			if tc.name == "existing secret" {
				secretName = "my-web"
			} else {
				var cfg, want map[string]any
				secret := one[*corev1.Secret](t, r, secretName)
				if err := sigsyaml.Unmarshal(secret.Data["web-config.yml"], &cfg); err != nil {
					t.Fatal(err)
				}
				var values struct {
					Web struct{ Config map[string]any }
				}
				if err := sigsyaml.Unmarshal([]byte(tc.values), &values); err != nil {
					t.Fatal(err)
				}
				if want = values.Web.Config; !reflect.DeepEqual(cfg, want) {
					t.Errorf("web-config.yml %v, want %v", cfg, want)
				}
			}
			if !slices.ContainsFunc(ds.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
				return v.Secret != nil && v.Secret.SecretName == secretName
			}) {
				t.Errorf("Secret %s not mounted", secretName)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				switch {
				case tc.scheme == "" && (p.TCPSocket == nil || p.HTTPGet != nil):
					t.Errorf("probe %+v: want a TCP check", p.ProbeHandler)
				case tc.scheme != "" && (p.HTTPGet == nil || p.HTTPGet.Scheme != tc.scheme):
					t.Errorf("probe %+v: want GET over %s", p.ProbeHandler, tc.scheme)
				}
			}
			sm := one[*monitoringv1.ServiceMonitor](t, r, Release)
			if wantHTTPS := tc.scheme == corev1.URISchemeHTTPS; (sm.Spec.Endpoints[0].Scheme.String() == "https") != wantHTTPS {
				t.Errorf("ServiceMonitor scheme %s", sm.Spec.Endpoints[0].Scheme.String())
			}
		})
	}
}

// TestSysAdmin: privileges.sysAdmin is the one way to CAP_SYS_ADMIN (syscall
// mode, run-time statistics): root, since Kubernetes gives a non-root
// process no capability beyond its file capabilities, with BPF and PERFMON
// kept in the bounding set for those file capabilities.
func TestSysAdmin(t *testing.T) {
	ds := one[*appsv1.DaemonSet](t, render(t, "profile: development\nprivileges: {sysAdmin: true}\n"), Release)
	sc := agentContainer(t, ds).SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || isTrue(sc.RunAsNonRoot) || !isTrue(sc.AllowPrivilegeEscalation) ||
		!isFalse(sc.Privileged) || !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("securityContext %+v", sc)
	}
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v", sc.Capabilities)
	}
	if !ds.Spec.Template.Spec.HostPID || ds.Spec.Template.Spec.HostNetwork {
		t.Error("host namespaces changed")
	}
	checkMounts(t, ds)
}

// TestRejected: values that cannot work fail at `helm template` (and so at
// `helm install`) with a message that says what to change.
func TestRejected(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"profil: production", "additional properties 'profil' not allowed"},
		{"profile: fast", "profile"},
		{"profile: development", "privileges.sysAdmin=true"},
		{"config: {collection_mode: syscall}", "CAP_SYS_ADMIN"},
		{"resources: {limits: {memory: 1G}}", "write it in bytes or with Ki, Mi or Gi"},
		{"resources: {requests: {memory: 32Mi}}", "set limits.memory"},
		{"web: {config: {basic_auth_users: {a: b}}, existingSecret: x}", "not both"},
		{"otlp: {endpoint: collector:4318}", "otlp"},
		{"otlp: {endpoint: http://c:4318, protocol: http}", "protocol"},
		{"otlp: {endpoint: http://c:4318, tls: {secretName: ca}}", "https:// endpoint only"},
		{"service: {enabled: false}\nserviceMonitor: {enabled: true}", "podMonitor"},
	} {
		_, err := Template(helmBin, scratch, valuesFile(t, tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error naming %q, got %v", tc.values, tc.want, err)
		}
	}
}

// TestConfigAccepted: the ConfigMap the chart writes from config is a
// configuration file the agent, built as the image builds it, accepts
// (--config.check) with the profile and flags of the rendered args.
func TestConfigAccepted(t *testing.T) {
	agent := buildFromRecipe(t, readRecipe(t))
	r := render(t, "profile: high-traffic\nconfig: {max_tracked_maps: 2000, collection_interval: 30s, max_memory_bytes: 8MiB}\n")
	c := agentContainer(t, one[*appsv1.DaemonSet](t, r, Release))
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(one[*corev1.ConfigMap](t, r, Release).Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config.check"}
	for _, a := range c.Args {
		args = append(args, strings.Replace(a, "/etc/ebpf-metrics/config/config.yaml", cfg, 1))
	}
	out, err := exec.Command(agent, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ebpf-metrics %q: %v\n%s", args, err, out)
	}
	for _, want := range []string{"# profile: high-traffic", "max_tracked_maps: 2000", "collection_interval: 30s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--config.check output lacks %q:\n%s", want, out)
		}
	}
}
