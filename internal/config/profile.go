package config

import (
	"fmt"
	"strings"
	"time"
)

// Profile names. A profile is a complete, valid configuration; a file and
// flags then override single values of it.
const (
	// ProfileProduction is the default: a general-purpose node, where the
	// agent tracks a few hundred objects of each kind in detail within
	// 10 MiB and collects once a minute.
	ProfileProduction = "production"
	// ProfileHighPerformance is for latency-critical nodes: the agent takes
	// the least memory and CPU it can while still collecting every two
	// minutes with some concurrency.
	ProfileHighPerformance = "high-performance"
	// ProfileHighTraffic is for nodes where even the agent's own syscalls
	// must be rare: one syscall at a time, a collection every three minutes,
	// the smallest tables.
	ProfileHighTraffic = "high-traffic"
	// ProfileDevelopment is for laptops and CI: large tables, a collection
	// every 30 seconds and run-time statistics of programs turned on (which
	// costs ~75–100 ns per program run on the whole node).
	ProfileDevelopment = "development"

	// DefaultProfile is the profile used when none is named.
	DefaultProfile = ProfileProduction
)

// Profiles returns the profile names in the order that help texts and the
// documentation list them: the default (production) first, then the two
// lighter ones (high-performance, high-traffic), then development.
func Profiles() []string {
	return []string{ProfileProduction, ProfileHighPerformance, ProfileHighTraffic, ProfileDevelopment}
}

// ForProfile returns the configuration of the named profile.
func ForProfile(name string) (Config, error) {
	// What every profile shares; the switch below sets what differs.
	c := Config{
		Profile:              name,
		MaxSyscallsPerSecond: 100,
		SyscallBurst:         0, // ceil(MaxSyscallsPerSecond)
		BatchSize:            50,
		CollectionMode:       ModeAuto,
		SystemStatsDutyCycle: 1,
	}
	switch name {
	case ProfileHighPerformance:
		c.MaxMemoryBytes = 5 << 20
		c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = 100, 50, 25
		c.CollectionInterval = 120 * time.Second
		c.MaxConcurrentSyscalls = 2
		c.HistoryBytes = 64 << 10
		c.MaxOwners, c.TopK = 20, 5
	case ProfileProduction:
		c.MaxMemoryBytes = 10 << 20
		c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = 500, 200, 100
		c.CollectionInterval = 60 * time.Second
		c.MaxConcurrentSyscalls = 3
		c.HistoryBytes = 256 << 10
		c.MaxOwners, c.TopK = 50, 10
	case ProfileHighTraffic:
		c.MaxMemoryBytes = 5 << 20
		c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = 50, 25, 10
		c.CollectionInterval = 180 * time.Second
		c.MaxConcurrentSyscalls = 1
		c.HistoryBytes = 64 << 10
		c.MaxOwners, c.TopK = 10, 0
	case ProfileDevelopment:
		c.MaxMemoryBytes = 20 << 20
		c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = 1000, 500, 200
		c.CollectionInterval = 30 * time.Second
		c.MaxConcurrentSyscalls = 5
		c.EnableSystemStats = true
		c.HistoryBytes = 1 << 20
		c.MaxOwners, c.TopK = 200, 50
	default:
		return Config{}, errUnknownProfile(name)
	}
	return c, nil
}

func errUnknownProfile(name string) error {
	return fmt.Errorf("%s: unknown profile %q, want one of %s", keyProfile, name, strings.Join(Profiles(), ", "))
}
