package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Capability is a Linux capability number (unix.CAP_*).
type Capability int

var capNames = map[Capability]string{
	unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
	unix.CAP_BPF:       "CAP_BPF",
	unix.CAP_PERFMON:   "CAP_PERFMON",
}

func (c Capability) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("capability %d", int(c))
}

// EffectiveCapabilities returns a test for membership in this thread's
// effective capability set.
func EffectiveCapabilities() (func(Capability) bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("reading capabilities: %w", err)
	}
	return func(c Capability) bool {
		if c < 0 || c >= 64 {
			return false
		}
		return data[c/32].Effective&(1<<(uint(c)%32)) != 0
	}, nil
}
