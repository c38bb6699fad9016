package owner

import (
	"strings"
	"unsafe"
)

// ParseCgroup returns the container ID and the pod UID that a cgroup path
// names, or "" for each it does not name (a host process). The path may be
// the whole path from a hierarchy's root or only its last components (the
// holders iterator sends at most eight; in a cgroup namespace,
// /proc/<pid>/cgroup starts with "/.."): only the components that are there
// are read.
//
// Containers, the deepest component that names one:
//
//	containerd (kubelet, systemd driver)   .../cri-containerd-<id>.scope
//	containerd (kubelet, cgroupfs driver)  /kubepods/<qos>/pod<uid>/<id>, any <id> below a "kubepods" component
//	CRI-O                                  .../crio-<id>.scope, .../crio-<id> (not crio-conmon-<id>)
//	Docker                                 .../docker-<id>.scope, /docker/<id>
//	podman                                 .../libpod-<id>.scope, .../libpod-<id> (not libpod-conmon-<id>)
//
// where <id> is 64 lower-case hexadecimal digits. Pods, the deepest
// component above the container that names one: kubelet's systemd slices
// kubepods[-<qos>]-pod<uid>.slice (kubelet writes the UID's dashes as
// underscores; they are turned back), and pod<uid> below a "kubepods"
// component (cgroupfs driver). A UID is a dashed UUID, or the 32 hex
// digits kubelet gives a static pod.
//
// It allocates only to turn a slice's underscores back into dashes.
func ParseCgroup(path string) (containerID, podUID string) {
	kube := -1 // the index of the first component naming kubepods
	n := 0
	for c := range components(path) {
		if kube < 0 && strings.Contains(c, "kubepods") {
			kube = n
		}
		n++
	}
	// From the leaf up: the container, then the pod above it.
	podBelow := n
	i := n
	prev := "" // the component below the one looked at, for /docker/<id>
	for c := range componentsReversed(path) {
		i--
		if containerID == "" {
			if id := containerOf(c, prev, i > kube && kube >= 0); id != "" {
				containerID, podBelow = id, i
			}
		}
		prev = c
	}
	i = n
	for c := range componentsReversed(path) {
		i--
		if i >= podBelow {
			continue
		}
		if uid := podOf(c, i > kube && kube >= 0); uid != "" {
			return containerID, uid
		}
	}
	return containerID, ""
}

// containerOf returns the container ID that component c names, or "".
// child is the component below c; underKube says whether a component
// above c names kubepods.
func containerOf(c, child string, underKube bool) string {
	if id, ok := strings.CutSuffix(c, ".scope"); ok {
		for _, prefix := range [...]string{"cri-containerd-", "crio-", "docker-", "libpod-"} {
			if id, ok := strings.CutPrefix(id, prefix); ok && isContainerID(id) {
				return id
			}
		}
		return ""
	}
	for _, prefix := range [...]string{"crio-", "libpod-"} {
		if id, ok := strings.CutPrefix(c, prefix); ok && isContainerID(id) {
			return id
		}
	}
	if isContainerID(c) && underKube {
		return c
	}
	if c == "docker" && isContainerID(child) {
		return child
	}
	return ""
}

// podOf returns the pod UID that component c names, or "".
func podOf(c string, underKube bool) string {
	if s, ok := strings.CutSuffix(c, ".slice"); ok && strings.Contains(s, "kubepods") {
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return ""
		}
		uid := s[i+len("-pod"):]
		if strings.IndexByte(uid, '_') >= 0 {
			uid = strings.ReplaceAll(uid, "_", "-")
		}
		if isPodUID(uid) {
			return uid
		}
		return ""
	}
	if uid, ok := strings.CutPrefix(c, "pod"); ok && underKube && isPodUID(uid) {
		return uid
	}
	return ""
}

// isContainerID reports whether s is 64 lower-case hexadecimal digits, the
// form of every runtime's container ID.
func isContainerID(s string) bool {
	return len(s) == 64 && isHex(s)
}

// isPodUID reports whether s is a UUID (8-4-4-4-12 hexadecimal digits) or
// the 32 hexadecimal digits of a static pod's UID.
func isPodUID(s string) bool {
	switch len(s) {
	case 32:
		return isHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHex(s[i : i+1]) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// components yields the non-empty components of a slash-separated path,
// from the root.
func components(path string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(path) > 0 {
			i := strings.IndexByte(path, '/')
			if i < 0 {
				yield(path)
				return
			}
			if i > 0 && !yield(path[:i]) {
				return
			}
			path = path[i+1:]
		}
	}
}

// componentsReversed yields the non-empty components of a path from the
// leaf.
func componentsReversed(path string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(path) > 0 {
			i := strings.LastIndexByte(path, '/')
			if i < 0 {
				yield(path)
				return
			}
			if i < len(path)-1 && !yield(path[i+1:]) {
				return
			}
			path = path[:i]
		}
	}
}

// ParseProcCgroup returns the container ID and pod UID that the contents
// of /proc/<pid>/cgroup name ("hierarchy-ID:controllers:path" lines). The
// hierarchies are read in this order, and the first that names a
// container wins, else the first that names a pod: the default (v2)
// hierarchy; on a hybrid host, v1's cpuset, then name=systemd, then the
// others (a runtime on cgroup v1 may leave its containers at the v2 root,
// or in its own service). The results are copies: b may be reused.
func ParseProcCgroup(b []byte) (containerID, podUID string) {
	// Read in place: only the results are copied, so a process outside
	// any container, the common case, costs no allocation.
	s := unsafe.String(unsafe.SliceData(b), len(b))
	var pod string
	for rank := range 4 {
		for line := range strings.SplitSeq(s, "\n") {
			hier, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			controllers, path, ok := strings.Cut(rest, ":")
			if !ok || lineRank(hier, controllers) != rank {
				continue
			}
			c, p := ParseCgroup(path)
			if c != "" {
				return strings.Clone(c), strings.Clone(p)
			}
			if pod == "" {
				pod = p
			}
		}
	}
	return "", strings.Clone(pod)
}

// lineRank orders the hierarchies of /proc/<pid>/cgroup.
func lineRank(hier, controllers string) int {
	switch {
	case hier == "0" && controllers == "":
		return 0
	case controllers == "name=systemd":
		return 2
	}
	for c := range strings.SplitSeq(controllers, ",") {
		if c == "cpuset" {
			return 1
		}
	}
	return 3
}
