package helm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// inCI reports whether the tests run in CI, where a test that needs root,
// the kernel or a tool must fail rather than skip.
func inCI() bool { return os.Getenv("CI") != "" }

func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if inCI() {
			t.Fatalf("%s not found; CI installs Debian's %s package (.ci/run)", name, pkg)
		}
		t.Skipf("%s not found (Debian package %s)", name, pkg)
	}
	return p
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if inCI() {
			t.Fatal("this test runs containers with runc and must run as root in CI")
		}
		t.Skip("needs root (runc, setcap)")
	}
}

// recipe is what the Dockerfile says about the image that matters at run
// time: how the agent is built, the file capabilities it gets, the user it
// runs as, and where it lies.
type recipe struct {
	contextPaths []string // what the build stage copies from the context
	build        string   // the go build command
	setcap       string   // setcap's capability text, "cap_bpf,cap_perfmon+ep"
	uid, gid     int
	entrypoint   string
}

// readRecipe parses the repository's Dockerfile: its instructions, with
// continuation lines joined.
func readRecipe(t *testing.T) recipe {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var r recipe
	var instr strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			instr.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		instr.WriteString(line)
		fields := strings.Fields(instr.String())
		instr.Reset()
		if len(fields) < 2 {
			continue
		}
		rest := strings.Join(fields[1:], " ")
		switch {
		case fields[0] == "COPY" && !strings.HasPrefix(fields[1], "--from"):
			r.contextPaths = append(r.contextPaths, fields[1:len(fields)-1]...)
		case fields[0] == "RUN" && strings.Contains(rest, "go build"):
			r.build = rest
		case fields[0] == "RUN" && fields[1] == "setcap":
			r.setcap = fields[2]
		case fields[0] == "USER":
			if _, err := fmt.Sscanf(fields[1], "%d:%d", &r.uid, &r.gid); err != nil {
				t.Fatalf("Dockerfile: USER %s: want uid:gid", fields[1])
			}
		case fields[0] == "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(rest), &ep); err != nil || len(ep) != 1 {
				t.Fatalf("Dockerfile: ENTRYPOINT %s: want one path in exec form", rest)
			}
			r.entrypoint = ep[0]
		}
	}
	if r.build == "" || r.setcap == "" || r.uid == 0 || r.entrypoint == "" || len(r.contextPaths) == 0 {
		t.Fatalf("Dockerfile: incomplete recipe %+v", r)
	}
	return r
}

// The agent built from the recipe, once for every test that runs it.
var (
	recipeBuild    sync.Once
	recipeAgent    string
	recipeBuildErr error
)

// buildFromRecipe runs the recipe's build command in a copy of the files the
// Dockerfile copies from the context, and nothing else of the repository.
func buildFromRecipe(t *testing.T, r recipe) string {
	t.Helper()
	recipeBuild.Do(func() {
		ctx, out := filepath.Join(scratch, "context"), filepath.Join(scratch, "out")
		for _, d := range []string{ctx, out} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				recipeBuildErr = err
				return
			}
		}
		for _, p := range r.contextPaths {
			if b, err := exec.Command("cp", "-a", filepath.Join(RepoRoot(), p), filepath.Join(ctx, p)).CombinedOutput(); err != nil {
				recipeBuildErr = fmt.Errorf("copying %s: %w\n%s", p, err, b)
				return
			}
		}
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(r.build, "/out/", out+"/"))
		cmd.Dir = ctx
		cmd.Env = append(os.Environ(), "VERSION=0.0.0-test")
		if b, err := cmd.CombinedOutput(); err != nil {
			recipeBuildErr = fmt.Errorf("the Dockerfile's build, %s: %w\n%s", r.build, err, b)
			return
		}
		recipeAgent = filepath.Join(out, "ebpf-metrics")
	})
	if recipeBuildErr != nil {
		t.Fatal(recipeBuildErr)
	}
	return recipeAgent
}

// population holds eBPF objects made by ebpf-loadgen for the test's life.
type population struct{ Maps, Programs, Links int }

func startPopulation(t *testing.T, maps, programs, links int) population {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ebpf-loadgen")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ebpf-loadgen")
	build.Dir = RepoRoot()
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ebpf-loadgen: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, "--maps", strconv.Itoa(maps), "--programs", strconv.Itoa(programs), "--links", strconv.Itoa(links))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	var ready struct {
		Ready bool
		population
	}
	if err != nil || json.Unmarshal(line, &ready) != nil || !ready.Ready {
		t.Fatalf("ebpf-loadgen: %q, %v\n%s", line, err, stderr.String())
	}
	return ready.population
}

// capsShape is how a container runtime sets the capabilities that a pod
// adds, in the OCI runtime configuration it gives runc.
type capsShape int

const (
	// criShape: containerd's CRI (oci.WithAddedCapabilities) and CRI-O
	// put them in the bounding, effective and permitted sets; ambient
	// stays empty for every user.
	criShape capsShape = iota
	// boundingOnly: Docker for a non-root user (and only the bounding
	// set is what execve keeps of them anyway).
	boundingOnly
)

// ociSpec translates the DaemonSet's pod as a CRI runtime would, for runc:
// the user, capabilities, no_new_privs, read-only root, host PID namespace,
// own network namespace, read-only mounts of the volumes (hostDirs maps a
// mount path to the directory holding that volume's files), memory limit,
// environment (the Downward API's values made up, the node's address as
// the pod's own loopback, where TestOTLPUnderRunc listens; the Secrets'
// values read from secrets) and args, $(VAR) expanded as the kubelet does.
func ociSpec(t *testing.T, ds *appsv1.DaemonSet, r recipe, shape capsShape, hostDirs map[string]string, secrets []*corev1.Secret) map[string]any {
	t.Helper()
	pod := ds.Spec.Template.Spec
	c := agentContainer(t, ds)
	sc := c.SecurityContext
	var caps []string
	for _, a := range sc.Capabilities.Add {
		caps = append(caps, "CAP_"+string(a))
	}
	capabilities := map[string]any{"bounding": caps, "effective": []string{}, "permitted": []string{}, "inheritable": []string{}, "ambient": []string{}}
	if shape == criShape {
		capabilities["effective"], capabilities["permitted"] = caps, caps
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil && f.FieldRef != nil {
			v = map[string]string{"spec.nodeName": "node-1", "status.hostIP": "127.0.0.1", "metadata.name": "ebpf-metrics-x7k2p", "metadata.namespace": Namespace}[f.FieldRef.FieldPath]
		}
		if f := e.ValueFrom; f != nil && f.SecretKeyRef != nil {
			found := false
			for _, s := range secrets {
				if data, ok := s.Data[f.SecretKeyRef.Key]; ok && s.Name == f.SecretKeyRef.Name {
					v, found = string(data), true
				}
			}
			if !found {
				t.Fatalf("%s: no key %s in Secret %s", e.Name, f.SecretKeyRef.Key, f.SecretKeyRef.Name)
			}
		}
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	args := []string{r.entrypoint}
	for _, a := range c.Args {
		args = append(args, regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).ReplaceAllStringFunc(a, func(m string) string { return vars[m[2:len(m)-1]] }))
	}
	mounts := []map[string]any{
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": []string{"nosuid", "noexec", "nodev"}},
		// What a runtime mounts for every unprivileged container: sysfs
		// read-only, which has /sys/kernel/btf/vmlinux.
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	for _, m := range c.VolumeMounts {
		src, ok := hostDirs[m.MountPath]
		if !ok {
			t.Fatalf("no files for the volume mounted at %s", m.MountPath)
		}
		opts := []string{"rbind"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, map[string]any{"destination": m.MountPath, "type": "bind", "source": src, "options": opts})
	}
	namespaces := []map[string]string{{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}}
	if !pod.HostNetwork {
		namespaces = append(namespaces, map[string]string{"type": "network"})
	}
	if !pod.HostPID {
		namespaces = append(namespaces, map[string]string{"type": "pid"})
	}
	limit := c.Resources.Limits[corev1.ResourceMemory]
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal":        false,
			"user":            map[string]any{"uid": *sc.RunAsUser, "gid": *sc.RunAsGroup},
			"args":            args,
			"env":             env,
			"cwd":             "/",
			"capabilities":    capabilities,
			"noNewPrivileges": !*sc.AllowPrivilegeEscalation,
			"rlimits":         []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}},
		},
		"root":     map[string]any{"path": "rootfs", "readonly": *sc.ReadOnlyRootFilesystem},
		"hostname": "ebpf-metrics",
		"mounts":   mounts,
		"linux": map[string]any{
			"namespaces": namespaces,
			"resources":  map[string]any{"memory": map[string]any{"limit": limit.Value()}},
			"maskedPaths": []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			"readonlyPaths": []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// container is one runc container of the test.
type container struct {
	runc, state, id string
	cmd             *exec.Cmd
	stderr          *lockedBuffer
	done            chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var containers int

// runContainer writes the bundle (rootfs holding bin at the entrypoint,
// with caps as its file capabilities unless empty) and starts it with runc.
func runContainer(t *testing.T, runc, setcap, bin string, r recipe, spec map[string]any, fileCaps string) *container {
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"proc", "sys", "dev", "etc/ebpf-metrics", filepath.Dir(strings.TrimPrefix(r.entrypoint, "/"))} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The user of the container must be able to walk to its binary.
	if err := os.Chmod(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(rootfs, r.entrypoint)
	if b, err := exec.Command("cp", bin, dst).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if fileCaps != "" {
		if b, err := exec.Command(setcap, fileCaps, dst).CombinedOutput(); err != nil {
			t.Fatalf("setcap %s: %v\n%s", fileCaps, err, b)
		}
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	containers++
	c := &container{runc: runc, state: filepath.Join(bundle, "state"), id: fmt.Sprintf("ebpf-metrics-test-%d-%d", os.Getpid(), containers),
		stderr: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(runc, "--root", c.state, "run", "--bundle", bundle, c.id)
	c.cmd.Stdout, c.cmd.Stderr = io.Discard, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		_ = c.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = exec.Command(runc, "--root", c.state, "kill", c.id, "KILL").Run()
		<-c.done
		_ = exec.Command(runc, "--root", c.state, "delete", "--force", c.id).Run()
	})
	return c
}

// wait returns the container's exit code once it has exited, within a
// minute.
func (c *container) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(time.Minute):
		t.Fatalf("container %s still running after a minute:\n%s", c.id, c.stderr.String())
		return -1
	}
}

// pid is the container's init process, as runc reports it.
func (c *container) pid(t *testing.T) int {
	t.Helper()
	for try := 0; ; try++ {
		out, err := exec.Command(c.runc, "--root", c.state, "state", c.id).Output()
		var st struct {
			Pid    int
			Status string
		}
		if err == nil && json.Unmarshal(out, &st) == nil && st.Status == "running" && st.Pid > 0 {
			return st.Pid
		}
		select {
		case <-c.done:
			t.Fatalf("container %s exited: %v\n%s", c.id, c.cmd.ProcessState, c.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if try == 300 {
			t.Fatalf("container %s not running after 30s: %s %v", c.id, out, err)
		}
	}
}

// inNetns runs f on an OS thread moved into the network namespace of
// process pid (the pod's own, which the host cannot reach), so that the
// sockets f creates belong to it. The thread is discarded afterwards: it
// exits with its goroutine, which never unlocks it.
func inNetns[T any](pid int, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var zero T
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{zero, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{zero, fmt.Errorf("entering the pod's network namespace: %w", err)}
			return
		}
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// httpClientIn returns a client whose connections start in the network
// namespace of process pid.
func httpClientIn(pid int) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return inNetns(pid, func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// series parses the Prometheus text format into values by series, as
// written ("name{a=\"x\",b=\"y\"}").
func series(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestDaemonSetUnderRunc runs the image's recipe as the chart's DaemonSet
// would run it on a node, with runc (what containerd and CRI-O start) and
// the OCI configuration a CRI runtime makes of the pod: the binary built
// and given its file capabilities as the Dockerfile says, as user 65534,
// with no ambient capability, no_new_privs (allowPrivilegeEscalation
// false), a read-only root, the host's PID namespace, its own network
// namespace, the configuration mounted read-only and the memory limit of
// the profile. There the agent must read every kind with its iterators and
// serve /metrics. And it must fail, naming the capabilities, where they
// cannot reach it: without file capabilities, or with a runtime that puts
// the added capabilities in the bounding set only while no_new_privs is
// set; and the kernel must refuse to start it when the bounding set lacks
// one that the file names (the chart without PERFMON). The container
// engine that would build the image itself is not on the CI machine; the
// seccomp profile is left out (RuntimeDefault is the runtime's own; that of
// containerd allows bpf(2) when CAP_BPF is in the bounding set).
func TestDaemonSetUnderRunc(t *testing.T) {
	requireRoot(t)
	runc := requireTool(t, "runc", "runc")
	setcap := requireTool(t, "setcap", "libcap2-bin")
	r := readRecipe(t)
	if r.uid != 65534 || r.gid != 65534 || r.setcap != "cap_bpf,cap_perfmon+ep" {
		t.Fatalf("Dockerfile: user %d:%d, setcap %s; the chart and docs/kubernetes.md say 65534:65534, cap_bpf,cap_perfmon+ep", r.uid, r.gid, r.setcap)
	}
	agent := buildFromRecipe(t, r)
	pop := startPopulation(t, 30, 5, 2)

	rendered := render(t, "config: {max_syscalls_per_second: 0}\n")
	ds := one[*appsv1.DaemonSet](t, rendered, Release)
	checkLeastPrivilege(t, ds)
	cfgDir := t.TempDir()
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cm := one[*corev1.ConfigMap](t, rendered, Release)
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	volumes := map[string]string{"/etc/ebpf-metrics/config": cfgDir}

	t.Run("containerd and CRI-O", func(t *testing.T) {
		c := runContainer(t, runc, setcap, agent, r, ociSpec(t, ds, r, criShape, volumes, nil), r.setcap)
		pid := c.pid(t)
		client := httpClientIn(pid)
		port := agentContainer(t, ds).Ports[0].ContainerPort
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		// Ready once a cycle has completed: what the readiness probe asks.
		for try := 0; ; try++ {
			resp, err := client.Get(base + "/-/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if try == 300 {
				t.Fatalf("not ready after 30s: %v\n%s", err, c.stderr.String())
			}
			select {
			case <-c.done:
				t.Fatalf("the agent exited: %v\n%s", c.cmd.ProcessState, c.stderr.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
		}
		m := series(string(body))
		for kind, made := range map[string]int{"map": pop.Maps, "program": pop.Programs, "link": pop.Links} {
			if v := m[`odigos_ebpf_collection_mode{mode="iterator",type="`+kind+`"}`]; v != 1 {
				t.Errorf("%ss not read by the iterator: %v", kind, v)
			}
			// At least the population's objects and the agent's own.
			objects, own := m[`odigos_ebpf_objects{type="`+kind+`"}`], m[`odigos_ebpf_own_objects{type="`+kind+`"}`]
			if objects < float64(made)+own || own == 0 {
				t.Errorf("%ss: %v in the kernel (%v the agent's own), yet ebpf-loadgen holds %d", kind, objects, own, made)
			}
			if v := m[`odigos_ebpf_unreadable_objects{type="`+kind+`"}`]; v != 0 {
				t.Errorf("%ss unreadable: %v", kind, v)
			}
		}
		if m["odigos_ebpf_collection_active"] != 1 || m["odigos_ebpf_total_memory_bytes"] == 0 {
			t.Errorf("collection_active %v, total_memory_bytes %v", m["odigos_ebpf_collection_active"], m["odigos_ebpf_total_memory_bytes"])
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CapEff:\t000000c000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Uid:\t65534\t65534\t65534\t65534"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("agent's /proc/%d/status lacks %q:\n%s", pid, want, status)
			}
		}
		t.Logf("VmHWM and VmRSS of the agent under runc: %s", regexp.MustCompile(`VmHWM:\s+(\d+ kB)[\s\S]*VmRSS:\s+(\d+ kB)`).FindStringSubmatch(string(status))[1:])
		if err := exec.Command(runc, "--root", c.state, "kill", c.id, "TERM").Run(); err != nil {
			t.Fatal(err)
		}
		if code := c.wait(t); code != 0 {
			t.Errorf("exit %d after SIGTERM\n%s", code, c.stderr.String())
		}
		if s := c.stderr.String(); strings.Contains(s, "level=ERROR") || strings.Contains(s, "does not need") {
			t.Errorf("the agent logged an error or a warning about its capabilities:\n%s", s)
		}
	})

	for _, tc := range []struct {
		name     string
		shape    capsShape
		fileCaps string
		drop     string // a capability left out of the chart's add list
		want     string
	}{
		{"no file capabilities", criShape, "", "", "CAP_BPF and CAP_PERFMON"},
		{"bounding set only, no_new_privs", boundingOnly, r.setcap, "", "CAP_BPF and CAP_PERFMON"},
		{"PERFMON not added", criShape, r.setcap, "PERFMON", "operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := ds.DeepCopy()
			sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
			if tc.drop != "" {
				sc.Capabilities.Add = []corev1.Capability{"BPF"}
			}
			c := runContainer(t, runc, setcap, agent, r, ociSpec(t, ds, r, tc.shape, volumes, nil), tc.fileCaps)
			code := c.wait(t)
			if code == 0 || !strings.Contains(c.stderr.String(), tc.want) {
				t.Errorf("exit %d, want a failure naming %q:\n%s", code, tc.want, c.stderr.String())
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(c.stderr.String()))
		})
	}
}

// TestOTLPUnderRunc: the chart's OTLP values reach the agent as it wants
// them. The pod of TestDaemonSetUnderRunc, rendered with an OTLP endpoint
// and headers, pushes to a receiver listening in the pod's network
// namespace: the request carries the headers from the chart's Secret
// (OTEL_EXPORTER_OTLP_HEADERS) and the resource attributes from the
// Downward API's variables.
func TestOTLPUnderRunc(t *testing.T) {
	requireRoot(t)
	runc := requireTool(t, "runc", "runc")
	setcap := requireTool(t, "setcap", "libcap2-bin")
	r := readRecipe(t)
	agent := buildFromRecipe(t, r)
	rendered := render(t, `
config: {max_syscalls_per_second: 0}
otlp:
  endpoint: http://$(K8S_NODE_IP):4318
  interval: 1s
  headers: {Authorization: "Bearer s3cret a+b/c", X-Scope-OrgID: tenant-1}
`)
	ds := one[*appsv1.DaemonSet](t, rendered, Release)
	checkLeastPrivilege(t, ds)
	cfgDir := t.TempDir()
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(one[*corev1.ConfigMap](t, rendered, Release).Data["config.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := one[*corev1.Secret](t, rendered, Release+"-otlp-headers")
	c := runContainer(t, runc, setcap, agent, r,
		ociSpec(t, ds, r, criShape, map[string]string{"/etc/ebpf-metrics/config": cfgDir}, []*corev1.Secret{secret}), r.setcap)

	type push struct {
		path   string
		header http.Header
		body   []byte
	}
	pushes := make(chan push, 16)
	l, err := inNetns(c.pid(t), func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:4318") })
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		select {
		case pushes <- push{req.URL.Path, req.Header.Clone(), body}:
		default:
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	var p push
	select {
	case p = <-pushes:
	case <-c.done:
		t.Fatalf("the agent exited: %v\n%s", c.cmd.ProcessState, c.stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("no push within a minute:\n%s", c.stderr.String())
	}
	if p.path != "/v1/metrics" || p.header.Get("Authorization") != "Bearer s3cret a+b/c" || p.header.Get("X-Scope-OrgID") != "tenant-1" {
		t.Errorf("push to %s with headers %v", p.path, p.header)
	}
	// Protocol buffers carry strings as they are: the resource attributes
	// and their values are in the body.
	for _, want := range []string{"service.name", "ebpf-metrics", "k8s.node.name", "node-1", "k8s.pod.name", "ebpf-metrics-x7k2p",
		"k8s.namespace.name", Namespace, "odigos_ebpf_objects"} {
		if !bytes.Contains(p.body, []byte(want)) {
			t.Errorf("the push (%d bytes) lacks %q", len(p.body), want)
		}
	}
}
