package collector

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// capabilityNames are the kernel's names of the capabilities, by number
// (include/uapi/linux/capability.h, Linux 6.18).
var capabilityNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

func capabilityName(c kernel.Capability) string {
	if c >= 0 && int(c) < len(capabilityNames) {
		return capabilityNames[c]
	}
	return "capability " + strconv.Itoa(int(c))
}

// neededCapabilities is what the collection as chosen uses. CAP_SYS_ADMIN
// where a kind is read object by object (BPF_*_GET_NEXT_ID and
// GET_FD_BY_ID), for run-time statistics (BPF_ENABLE_STATS), or to read
// from fdinfo the memory of maps the iterator cannot compute; it also
// allows what CAP_BPF and CAP_PERFMON do, so they are not needed beside it.
// Otherwise CAP_BPF and CAP_PERFMON, to load the iterators.
func neededCapabilities(bySyscall, stats, fdinfo bool) []kernel.Capability {
	if bySyscall || stats || fdinfo {
		return []kernel.Capability{unix.CAP_SYS_ADMIN}
	}
	return []kernel.Capability{unix.CAP_BPF, unix.CAP_PERFMON}
}

// unneededCapabilities returns the capabilities held (has) beyond needed.
// CAP_NET_BIND_SERVICE is never among them: the HTTP server needs it for a
// port below 1024, which the collector does not know about.
func unneededCapabilities(has func(kernel.Capability) bool, needed []kernel.Capability) []kernel.Capability {
	var extra []kernel.Capability
	for c := kernel.Capability(0); c < 64; c++ {
		if !has(c) || c == unix.CAP_NET_BIND_SERVICE {
			continue
		}
		isNeeded := false
		for _, n := range needed {
			isNeeded = isNeeded || n == c
		}
		if !isNeeded {
			extra = append(extra, c)
		}
	}
	return extra
}

func capabilityList(caps []kernel.Capability) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = capabilityName(c)
	}
	return strings.Join(names, ",")
}

// checkCapabilities warns, once, after the first complete cycle, when the
// agent holds capabilities that the collection does not use. It waits for
// that cycle because whether CAP_SYS_ADMIN is needed in iterator mode
// depends on the maps found: those whose memory the iterator cannot compute
// are read from fdinfo, which needs it.
func (c *Collector) checkCapabilities() {
	if c.capsChecked || c.has == nil {
		return
	}
	c.capsChecked = true
	bySyscall := false
	for k := range kernel.NumKinds {
		bySyscall = bySyscall || !c.byIter[k]
	}
	fdinfo := c.gate.calls[kernel.OpFDInfo].Load() > 0
	needed := neededCapabilities(bySyscall, c.snap.SystemStats, fdinfo)
	extra := unneededCapabilities(c.has, needed)
	c.unneeded = make([]string, len(extra))
	for i, x := range extra {
		c.unneeded[i] = capabilityName(x)
	}
	if len(extra) == 0 {
		return
	}
	c.logger.Warn("the agent holds capabilities that its collection does not need: run it with only those it needs",
		"needs", capabilityList(needed), "unneeded", capabilityList(extra), "uid", os.Getuid(),
		"maps", c.snap.Mode[kernel.KindMap], "programs", c.snap.Mode[kernel.KindProg],
		"links", c.snap.Mode[kernel.KindLink], "system_stats", c.snap.SystemStats)
}

// UnneededCapabilities returns the names of the capabilities the agent holds
// beyond what its collection needs, as judged after the first complete
// cycle (nil before it). Call it between cycles.
func (c *Collector) UnneededCapabilities() []string { return c.unneeded }
