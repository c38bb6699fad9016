package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup2Mount returns where cgroup2 is mounted (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid host), mounting it on a temporary
// directory, unmounted at the end of the test, when it is nowhere.
func Cgroup2Mount(tb testing.TB) string {
	tb.Helper()
	if dir := mountOf(func(fstype, opts string) bool { return fstype == "cgroup2" }); dir != "" {
		return dir
	}
	dir := tb.TempDir()
	if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		tb.Fatalf("mounting cgroup2 on %s: %v", dir, err)
	}
	tb.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// CpusetV1Mount returns where a cgroup v1 hierarchy with the cpuset
// controller is mounted, or "".
func CpusetV1Mount() string {
	return mountOf(func(fstype, opts string) bool {
		if fstype != "cgroup" {
			return false
		}
		for o := range strings.SplitSeq(opts, ",") {
			if o == "cpuset" {
				return true
			}
		}
		return false
	})
}

// mountOf returns the mount point of the first mount of /proc/self/mountinfo
// that match accepts, by file system type and super block options.
func mountOf(match func(fstype, opts string) bool) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) >= 5 && len(g) >= 3 && match(g[0], g[2]) {
			return f[4]
		}
	}
	return ""
}

// MakeCgroup creates the directories names under mnt and returns the
// deepest; they are removed at the end of the test, once empty. In a v1
// cpuset hierarchy, each gets its parent's CPUs and memory nodes, without
// which it takes no process.
func MakeCgroup(tb testing.TB, mnt string, names []string, cpuset bool) string {
	tb.Helper()
	dir := mnt
	for _, name := range names {
		parent := dir
		dir = filepath.Join(dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			tb.Fatalf("creating cgroup %s: %v", dir, err)
		}
		made := dir
		tb.Cleanup(func() { removeCgroup(tb, made) })
		if cpuset {
			for _, f := range []string{"cpus", "mems"} {
				name := "cpuset." + f
				if _, err := os.Stat(filepath.Join(parent, name)); err != nil {
					name = f // mounted with noprefix
				}
				v, err := os.ReadFile(filepath.Join(parent, name))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, name), v, 0)
				}
				if err != nil {
					tb.Fatalf("setting %s of cgroup %s: %v", name, dir, err)
				}
			}
		}
	}
	return dir
}

// removeCgroup removes an empty cgroup, waiting for the processes that
// just left it to be gone (an exiting task stays in its cgroup a moment).
func removeCgroup(tb testing.TB, dir string) {
	var err error
	for range 100 {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Errorf("removing cgroup %s: %v", dir, err)
}
