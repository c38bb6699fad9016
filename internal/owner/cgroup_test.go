package owner

import (
	"strings"
	"testing"
)

const (
	cid  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cid2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	uid  = "5f1c3a0e-8d2b-4c6f-9e7a-1b2c3d4e5f60"
	uidU = "5f1c3a0e_8d2b_4c6f_9e7a_1b2c3d4e5f60" // as kubelet's systemd driver writes it
	suid = "0123456789abcdef0123456789abcdef"     // a static pod's
)

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, path, container, pod string
	}{
		// containerd, kubelet with the systemd cgroup driver (cgroup v2, or v1's name=systemd and controllers).
		{"containerd systemd besteffort", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", cid, uid},
		{"containerd systemd burstable", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", cid, uid},
		{"containerd systemd guaranteed", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", cid, uid},
		{"kind node (kubelet.slice)", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", cid, uid},
		{"static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + suid + ".slice/cri-containerd-" + cid + ".scope", cid, suid},
		{"last components only", "/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", cid, uid},
		{"pod slice itself", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice", "", uid},
		{"sub-cgroup of a container", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope/init.scope", cid, uid},
		// containerd, kubelet with the cgroupfs driver.
		{"containerd cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid, cid, uid},
		{"containerd cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, cid, uid},
		{"cgroup namespace", "/../../kubepods/burstable/pod" + uid + "/" + cid, cid, uid},
		{"bare id outside kubepods", "/system.slice/" + cid, "", ""},
		{"pod<uid> outside kubepods", "/pod" + uid + "/x", "", ""},
		// CRI-O.
		{"crio systemd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope", cid, uid},
		{"crio conmon", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope", "", uid},
		{"crio cgroupfs", "/kubepods/besteffort/pod" + uid + "/crio-" + cid, cid, uid},
		{"crio cgroupfs conmon", "/kubepods/besteffort/pod" + uid + "/crio-conmon-" + cid, "", uid},
		// Docker.
		{"docker systemd", "/system.slice/docker-" + cid + ".scope", cid, ""},
		{"docker cgroupfs", "/docker/" + cid, cid, ""},
		{"docker cgroupfs, last component", "docker/" + cid, cid, ""},
		{"kubernetes in docker", "/docker/" + cid2 + "/kubepods/besteffort/pod" + uid + "/" + cid, cid, uid},
		{"docker daemon itself", "/system.slice/docker.service", "", ""},
		// podman.
		{"podman", "/machine.slice/libpod-" + cid + ".scope", cid, ""},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope", cid, ""},
		{"podman with a payload sub-cgroup", "/machine.slice/libpod-" + cid + ".scope/container", cid, ""},
		{"podman conmon", "/machine.slice/libpod-conmon-" + cid + ".scope", "", ""},
		{"podman cgroupfs", "/libpod_parent/libpod-" + cid, cid, ""},
		// Host processes and malformed names.
		{"root", "/", "", ""},
		{"empty", "", "", ""},
		{"host service", "/system.slice/containerd.service", "", ""},
		{"user session", "/user.slice/user-0.slice/session-1.scope", "", ""},
		{"short id", "/system.slice/docker-0123456789ab.scope", "", ""},
		{"upper-case id", "/system.slice/docker-" + strings.ToUpper(cid) + ".scope", "", ""},
		{"id too long", "/system.slice/docker-" + cid + "0.scope", "", ""},
		{"unknown runtime", "/system.slice/runc-" + cid + ".scope", "", ""},
		{"malformed uid", "/kubepods.slice/kubepods-pod5f1c3a0e_8d2b.slice/cri-containerd-" + cid + ".scope", cid, ""},
		{"uid with misplaced dashes", "/kubepods/pod5f1c3a0e8-d2b-4c6f-9e7a-1b2c3d4e5f60/" + cid, cid, ""},
		{"pod below the container", "/kubepods/besteffort/" + cid + "/pod" + uid, cid, ""},
		{"doubled slashes", "//kubepods//besteffort//pod" + uid + "//" + cid + "//", cid, uid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := ParseCgroup(tc.path)
			if c != tc.container || p != tc.pod {
				t.Errorf("ParseCgroup(%q) = %q, %q; want %q, %q", tc.path, c, p, tc.container, tc.pod)
			}
		})
	}
}

func TestParseCgroupAllocatesOnlyForUnderscores(t *testing.T) {
	cgroupfs := "/kubepods/besteffort/pod" + uid + "/" + cid
	if a := testing.AllocsPerRun(100, func() { ParseCgroup(cgroupfs) }); a != 0 {
		t.Errorf("ParseCgroup of a cgroupfs path allocates %v times", a)
	}
	systemd := "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope"
	if a := testing.AllocsPerRun(100, func() { ParseCgroup(systemd) }); a > 1 {
		t.Errorf("ParseCgroup of a systemd path allocates %v times, want at most 1", a)
	}
}

// FuzzParseCgroup: ParseCgroup never panics; what it returns is well formed
// and taken from the path; a component above the path that names nothing
// changes nothing.
func FuzzParseCgroup(f *testing.F) {
	for _, s := range []string{
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
		"/kubepods/besteffort/pod" + uid + "/" + cid,
		"/docker/" + cid,
		"/machine.slice/libpod-conmon-" + cid + ".scope",
		"/system.slice/crio-" + cid + ".scope",
		"/",
		"",
		"kubepods-pod.slice",
		"/kubepods/pod" + suid + "/" + cid,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		c, p := ParseCgroup(path)
		if c != "" && (!isContainerID(c) || !strings.Contains(path, c)) {
			t.Fatalf("ParseCgroup(%q): container %q", path, c)
		}
		if p != "" && (!isPodUID(p) || !strings.Contains(path, p) && !strings.Contains(path, strings.ReplaceAll(p, "-", "_"))) {
			t.Fatalf("ParseCgroup(%q): pod %q", path, p)
		}
		if strings.HasPrefix(path, "/") {
			c2, p2 := ParseCgroup("/host.slice" + path)
			if c2 != c || p2 != p {
				t.Fatalf("ParseCgroup(%q) = %q, %q, but with a parent = %q, %q", path, c, p, c2, p2)
			}
		}
	})
}

func TestParseProcCgroup(t *testing.T) {
	systemd := "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope"
	cgroupfs := "/kubepods/besteffort/pod" + uid + "/" + cid
	for _, tc := range []struct {
		name, file, container, pod string
	}{
		{"v2 only", "0::" + systemd + "\n", cid, uid},
		{"v2, no newline", "0::" + systemd, cid, uid},
		{"host process, v2", "0::/system.slice/ssh.service\n", "", ""},
		{"hybrid, systemd driver", "12:cpuset:" + systemd + "\n4:memory:" + systemd + "\n1:name=systemd:" + systemd + "\n0::" + systemd + "\n", cid, uid},
		{"hybrid, cgroupfs driver: the v2 hierarchy names the runtime's service", "12:cpuset:" + cgroupfs + "\n4:memory:" + cgroupfs + "\n1:name=systemd:/system.slice/containerd.service\n0::/system.slice/containerd.service\n", cid, uid},
		{"v1, cpuset before memory", "4:memory:/docker/" + cid2 + "\n3:cpuset:/docker/" + cid + "\n", cid, ""},
		{"v1 joined controllers", "5:cpu,cpuacct:/docker/" + cid + "\n", cid, ""},
		{"v2 names a pod, v1 a container", "0::/kubepods/besteffort/pod" + uid + "\n3:cpuset:/docker/" + cid + "\n", cid, ""},
		{"pod only", "0::/kubepods/besteffort/pod" + uid + "\n", "", uid},
		{"garbage", "not a cgroup file\n::\n:\n", "", ""},
		{"empty", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.file)
			c, p := ParseProcCgroup(b)
			// The results are copies: the caller reuses its buffer.
			for i := range b {
				b[i] = 'x'
			}
			if c != tc.container || p != tc.pod {
				t.Errorf("ParseProcCgroup(%q) = %q, %q; want %q, %q", tc.file, c, p, tc.container, tc.pod)
			}
			// A process outside any container costs the procfs holders
			// pass no allocation when it first appears.
			if tc.container == "" && tc.pod == "" {
				b = []byte(tc.file)
				if n := testing.AllocsPerRun(10, func() { ParseProcCgroup(b) }); n != 0 {
					t.Errorf("ParseProcCgroup(%q): %v allocations, want 0", tc.file, n)
				}
			}
		})
	}
}
