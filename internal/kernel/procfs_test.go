package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// fdinfoReader returns a reader of /proc, closed when tb ends.
func fdinfoReader(tb testing.TB) *FDInfoReader {
	tb.Helper()
	r, err := NewFDInfoReader("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// longProcfs mounts a procfs at a path of more than 120 characters: the
// reader once kept the path in an 80-byte buffer and panicked on it.
func longProcfs(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), strings.Repeat("p", 60), strings.Repeat("q", 60))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		tb.Fatalf("mounting a procfs at %s: %v", dir, err)
	}
	tb.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestFDInfoUnderALongProcfsPath(t *testing.T) {
	testutil.RequireBPF(t)
	procfs := longProcfs(t)
	if len(procfs) < 120 {
		t.Fatalf("path %q is short", procfs)
	}
	if err := CheckProcFS(procfs); err != nil {
		t.Fatal(err)
	}
	m := newHash(t, 0, 16)
	r, err := NewFDInfoReader(procfs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var fi FDInfo
	if err := r.Read(m.FD(), &fi); err != nil || fi.Has&HasMemlock == 0 {
		t.Fatalf("fdinfo under %s: %+v, %v", procfs, fi, err)
	}
}

// An fd whose fdinfo is missing is the agent's problem, never an object
// that vanished: only the bpf(2) calls can say an object is gone.
func TestFDInfoMissingIsNotGone(t *testing.T) {
	r := fdinfoReader(t)
	var fi FDInfo
	err := r.Read(1<<20, &fi) // above RLIMIT_NOFILE: never open
	if !errors.Is(err, ErrFDInfoMissing) {
		t.Fatalf("fdinfo of a closed fd: %v, want ErrFDInfoMissing", err)
	}
	if Gone(err) {
		t.Fatal("a missing fdinfo reads as a vanished object")
	}
}

func TestCheckProcFS(t *testing.T) {
	if err := CheckProcFS("/proc"); err != nil {
		t.Fatalf("/proc: %v", err)
	}
	for _, bad := range []struct{ path, want string }{
		{t.TempDir(), "is not a procfs"},
		{"/nonexistent/proc", "no such file or directory"},
	} {
		err := CheckProcFS(bad.path)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckProcFS(%q) = %v, want %q", bad.path, err, bad.want)
		}
	}
}
