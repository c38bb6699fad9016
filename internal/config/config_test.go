package config

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to a new file in a temporary directory.
func writeFile(tb testing.TB, content string) string {
	tb.Helper()
	name := filepath.Join(tb.TempDir(), "config.yaml")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return name
}

func mustProfile(tb testing.TB, name string) Config {
	tb.Helper()
	c, err := ForProfile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// The numbers are the product spec's; written out in full so that a change
// to any of them fails here.
func TestProfiles(t *testing.T) {
	common := func(c Config) Config {
		c.MaxSyscallsPerSecond = 100
		c.SyscallBurst = 0
		c.BatchSize = 50
		c.CollectionMode = "auto"
		c.SystemStatsDutyCycle = 1
		return c
	}
	want := []Config{
		common(Config{
			Profile:        "production",
			MaxMemoryBytes: 10 << 20, MaxTrackedMaps: 500, MaxTrackedPrograms: 200, MaxTrackedLinks: 100,
			CollectionInterval: 60 * time.Second, MaxConcurrentSyscalls: 3, EnableSystemStats: false,
			HistoryBytes: 256 << 10, MaxOwners: 50, TopK: 10,
		}),
		common(Config{
			Profile:        "high-performance",
			MaxMemoryBytes: 5 << 20, MaxTrackedMaps: 100, MaxTrackedPrograms: 50, MaxTrackedLinks: 25,
			CollectionInterval: 120 * time.Second, MaxConcurrentSyscalls: 2, EnableSystemStats: false,
			HistoryBytes: 64 << 10, MaxOwners: 20, TopK: 5,
		}),
		common(Config{
			Profile:        "high-traffic",
			MaxMemoryBytes: 5 << 20, MaxTrackedMaps: 50, MaxTrackedPrograms: 25, MaxTrackedLinks: 10,
			CollectionInterval: 180 * time.Second, MaxConcurrentSyscalls: 1, EnableSystemStats: false,
			HistoryBytes: 64 << 10, MaxOwners: 10, TopK: 0,
		}),
		common(Config{
			Profile:        "development",
			MaxMemoryBytes: 20 << 20, MaxTrackedMaps: 1000, MaxTrackedPrograms: 500, MaxTrackedLinks: 200,
			CollectionInterval: 30 * time.Second, MaxConcurrentSyscalls: 5, EnableSystemStats: true,
			HistoryBytes: 1 << 20, MaxOwners: 200, TopK: 50,
		}),
	}

	var names []string
	for _, w := range want {
		names = append(names, w.Profile)
		t.Run(w.Profile, func(t *testing.T) {
			got, err := ForProfile(w.Profile)
			if err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("ForProfile(%q)\n got %+v\nwant %+v", w.Profile, got, w)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("profile %s does not validate: %v", w.Profile, err)
			}
			// Load without a file is the profile itself.
			loaded, err := Load(w.Profile, "")
			if err != nil || loaded != w {
				t.Errorf("Load(%q, \"\") = %+v, %v; want the profile", w.Profile, loaded, err)
			}
		})
	}
	if got := Profiles(); !slices.Equal(got, names) {
		t.Errorf("Profiles() = %q, want %q", got, names)
	}
	if DefaultProfile != "production" {
		t.Errorf("DefaultProfile = %q, want production", DefaultProfile)
	}
}

func TestForProfileUnknown(t *testing.T) {
	for _, name := range []string{"nope", "", "Production", "production "} {
		_, err := ForProfile(name)
		if err == nil {
			t.Errorf("ForProfile(%q): no error", name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "profile: ") || !strings.Contains(msg, strconv.Quote(name)) {
			t.Errorf("ForProfile(%q): error %q does not name the field and the value", name, msg)
		}
		for _, p := range Profiles() {
			if !strings.Contains(msg, p) {
				t.Errorf("ForProfile(%q): error %q does not list %q", name, msg, p)
			}
		}
		if _, err := Load(name, ""); err == nil {
			t.Errorf("Load(%q, \"\"): no error", name)
		}
	}
}

// Each case sets one key to a value that differs from production's; the
// loaded Config must differ from production in that field only.
func TestLoadOverridesOneKey(t *testing.T) {
	tests := []struct {
		key  string
		yaml string
		set  func(*Config)
	}{
		{"max_memory_bytes", "max_memory_bytes: 3145728", func(c *Config) { c.MaxMemoryBytes = 3 << 20 }},
		{"max_memory_bytes", `max_memory_bytes: "3145728"`, func(c *Config) { c.MaxMemoryBytes = 3 << 20 }},
		{"max_memory_bytes", "max_memory_bytes: 12MiB", func(c *Config) { c.MaxMemoryBytes = 12 << 20 }},
		{"max_memory_bytes", "max_memory_bytes: 5MB", func(c *Config) { c.MaxMemoryBytes = 5_000_000 }},
		{"max_memory_bytes", "max_memory_bytes: 1.5GiB", func(c *Config) { c.MaxMemoryBytes = 3 << 29 }},
		{"max_memory_bytes", "max_memory_bytes: 0", func(c *Config) { c.MaxMemoryBytes = 0 }},
		{"max_tracked_maps", "max_tracked_maps: 7", func(c *Config) { c.MaxTrackedMaps = 7 }},
		{"max_tracked_maps", "max_tracked_maps: -7", func(c *Config) { c.MaxTrackedMaps = -7 }}, // Validate's job
		{"max_tracked_programs", "max_tracked_programs: 8", func(c *Config) { c.MaxTrackedPrograms = 8 }},
		{"max_tracked_links", "max_tracked_links: 9", func(c *Config) { c.MaxTrackedLinks = 9 }},
		{"collection_interval", "collection_interval: 1m30s", func(c *Config) { c.CollectionInterval = 90 * time.Second }},
		{"collection_interval", `collection_interval: "250ms"`, func(c *Config) { c.CollectionInterval = 250 * time.Millisecond }},
		{"max_concurrent_syscalls", "max_concurrent_syscalls: 4", func(c *Config) { c.MaxConcurrentSyscalls = 4 }},
		{"max_syscalls_per_second", "max_syscalls_per_second: 2.5", func(c *Config) { c.MaxSyscallsPerSecond = 2.5 }},
		{"max_syscalls_per_second", "max_syscalls_per_second: 0", func(c *Config) { c.MaxSyscallsPerSecond = 0 }},
		{"syscall_burst", "syscall_burst: 11", func(c *Config) { c.SyscallBurst = 11 }},
		{"batch_size", "batch_size: 12", func(c *Config) { c.BatchSize = 12 }},
		{"enable_system_stats", "enable_system_stats: true", func(c *Config) { c.EnableSystemStats = true }},
		{"collection_mode", "collection_mode: syscall", func(c *Config) { c.CollectionMode = ModeSyscall }},
		{"collection_mode", "collection_mode: iterator # comment", func(c *Config) { c.CollectionMode = ModeIterator }},
		{"history_bytes", "history_bytes: 1MiB", func(c *Config) { c.HistoryBytes = 1 << 20 }},
		{"history_bytes", "history_bytes: 0", func(c *Config) { c.HistoryBytes = 0 }},
		{"max_owners", "max_owners: 7", func(c *Config) { c.MaxOwners = 7 }},
		{"top_k", "top_k: 3", func(c *Config) { c.TopK = 3 }},
		{"system_stats_duty_cycle", "system_stats_duty_cycle: 0.25", func(c *Config) { c.SystemStatsDutyCycle = 0.25 }},
	}
	base := mustProfile(t, ProfileProduction)
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.key] = true
		t.Run(tt.yaml, func(t *testing.T) {
			want := base
			tt.set(&want)
			if want == base {
				t.Fatal("test case changes nothing")
			}
			got, err := Load(ProfileProduction, writeFile(t, tt.yaml+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
	// A key added to the file format without a case here fails.
	for _, key := range keysOf(t, base.String()) {
		if !covered[key] {
			t.Errorf("key %s has no test case", key)
		}
	}
}

// keysOf returns the keys of a String() output.
func keysOf(tb testing.TB, s string) []string {
	tb.Helper()
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		key, _, ok := strings.Cut(line, ":")
		if !ok {
			tb.Fatalf("line %q is not key: value", line)
		}
		keys = append(keys, key)
	}
	return keys
}

func TestLoadEmptyFileKeepsProfile(t *testing.T) {
	for _, content := range []string{"", "\n", "# nothing to override\n", "---\n", "~\n", "---\n# only a comment\n"} {
		for _, p := range Profiles() {
			got, err := Load(p, writeFile(t, content))
			if err != nil {
				t.Errorf("%q with profile %s: %v", content, p, err)
			} else if want := mustProfile(t, p); got != want {
				t.Errorf("%q with profile %s:\n got %+v\nwant %+v", content, p, got, want)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // in the error besides the file name
	}{
		{"unknown key", "batch_size: 5\nmax_tracked_mapz: 5\n", []string{"line 2", `"max_tracked_mapz"`, "max_tracked_maps"}},
		{"profile is not a key", "profile: development\n", []string{`"profile"`}},
		{"malformed", "batch_size: [1,\n", []string{"yaml"}},
		{"bad indentation", "batch_size: 5\n  max_tracked_maps: 5\n", []string{"line 2"}},
		{"wrong type int", `batch_size: "abc"`, []string{"batch_size", `"abc"`}},
		{"float for int", "max_tracked_links: 1.5", []string{"max_tracked_links", "integer"}},
		{"int overflow", "batch_size: 99999999999999999999", []string{"batch_size"}},
		{"wrong type bool", "enable_system_stats: maybe", []string{"enable_system_stats"}},
		{"wrong type float", "max_syscalls_per_second: fast", []string{"max_syscalls_per_second"}},
		{"bad duration", "collection_interval: soon", []string{"collection_interval", `"soon"`}},
		{"duration without unit", "collection_interval: 60", []string{"collection_interval", `"60"`}},
		{"negative bytes", "max_memory_bytes: -1", []string{"max_memory_bytes"}},
		{"negative bytes with unit", "max_memory_bytes: -1MiB", []string{"max_memory_bytes"}},
		{"unknown unit", "max_memory_bytes: 10XB", []string{"max_memory_bytes", `"10XB"`}},
		{"bytes overflow", "max_memory_bytes: 8EiB", []string{"max_memory_bytes"}},
		{"float bytes", "max_memory_bytes: 1.5", []string{"max_memory_bytes"}},
		{"list value", "collection_mode: [auto]", []string{"collection_mode"}},
		{"mapping value", "batch_size: {a: 1}", []string{"batch_size"}},
		{"null value", "batch_size:\n", []string{"batch_size", "missing value"}},
		{"repeated key", "batch_size: 5\nbatch_size: 6\n", []string{"batch_size", "line 2", "line 1"}},
		{"two documents", "batch_size: 5\n---\nbatch_size: 6\n", []string{"second YAML document"}},
		{"not a mapping", "- batch_size: 5\n", []string{"line 1"}},
		{"scalar document", "hello\n", []string{"line 1"}},
		{"mapping key", "? {a: 1}\n: 2\n", []string{"line 1", "key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.yaml)
			c, err := Load(ProfileProduction, file)
			if err == nil {
				t.Fatalf("no error; loaded %+v", c)
			}
			if c.Profile != ProfileProduction || c.CollectionMode == "" {
				t.Errorf("a failed Load returned %+v, want the profile's values where the file failed", c)
			}
			for _, w := range append([]string{file}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Load reports every problem of a file at once, and keeps what it could
// read, so that --config.check shows them all in one go.
func TestLoadReportsEveryProblem(t *testing.T) {
	file := writeFile(t, "batch_size: 7\nmax_tracked_mapz: 5\ncollection_interval: soon\nbatch_size: 8\nenable_system_stats: maybe\n")
	c, err := Load("nope", file)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`profile: unknown profile "nope"`, `line 2: unknown key "max_tracked_mapz"`,
		"line 3: collection_interval", "line 4: batch_size: repeated", "line 5: enable_system_stats"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if c.BatchSize != 7 || c.Profile != "nope" || c.MaxTrackedMaps != 500 {
		t.Errorf("loaded %+v: want batch_size 7 over the default profile, under the name given", c)
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, "# "+strings.Repeat("x", maxFileBytes)+"\n")
	for name, file := range map[string]string{
		"missing":   filepath.Join(dir, "missing.yaml"),
		"directory": dir,
		"too large": big,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(ProfileProduction, file)
			if err == nil || !strings.Contains(err.Error(), file) {
				t.Errorf("Load(%q) = %v, want an error naming the file", file, err)
			}
		})
	}
	if os.Geteuid() != 0 { // root reads anything
		t.Run("unreadable", func(t *testing.T) {
			file := writeFile(t, "batch_size: 5\n")
			if err := os.Chmod(file, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(ProfileProduction, file); err == nil || !strings.Contains(err.Error(), file) {
				t.Errorf("Load(%q) = %v, want an error naming the file", file, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	withTables := func(caps [3]int, mem uint64) func(*Config) {
		return func(c *Config) {
			c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = caps[0], caps[1], caps[2]
			c.MaxMemoryBytes = mem
		}
	}

	tests := []struct {
		name string
		set  func(*Config)
		want []string // nil: valid
	}{
		{"production", func(*Config) {}, nil},
		{"unknown profile", func(c *Config) { c.Profile = "nope" }, []string{"profile", `"nope"`}},
		{"empty profile", func(c *Config) { c.Profile = "" }, []string{"profile"}},
		{"zero memory", func(c *Config) { c.MaxMemoryBytes = 0 }, []string{"max_memory_bytes"}},
		{"memory below minimum", func(c *Config) { c.MaxMemoryBytes = MinMemoryBytes - 1 }, []string{"max_memory_bytes", "2097152"}},
		{"memory at minimum", func(c *Config) { c.MaxMemoryBytes = MinMemoryBytes }, nil},
		{"zero maps", func(c *Config) { c.MaxTrackedMaps = 0 }, []string{"max_tracked_maps"}},
		{"negative programs", func(c *Config) { c.MaxTrackedPrograms = -1 }, []string{"max_tracked_programs"}},
		{"zero links", func(c *Config) { c.MaxTrackedLinks = 0 }, []string{"max_tracked_links"}},
		{"huge maps", func(c *Config) { c.MaxTrackedMaps = math.MaxInt }, []string{"max_tracked_maps"}},
		{"one of each", withTables([3]int{1, 1, 1}, MinMemoryBytes), nil},
		{"zero interval", func(c *Config) { c.CollectionInterval = 0 }, []string{"collection_interval"}},
		{"negative interval", func(c *Config) { c.CollectionInterval = -time.Second }, []string{"collection_interval"}},
		{"99ms interval", func(c *Config) { c.CollectionInterval = 99 * time.Millisecond }, []string{"collection_interval", "100ms", "99ms"}},
		{"100ms interval", func(c *Config) { c.CollectionInterval = 100 * time.Millisecond }, nil},
		{"zero concurrency", func(c *Config) { c.MaxConcurrentSyscalls = 0 }, []string{"max_concurrent_syscalls"}},
		{"64 concurrent", func(c *Config) { c.MaxConcurrentSyscalls = 64 }, nil},
		{"65 concurrent", func(c *Config) { c.MaxConcurrentSyscalls = 65 }, []string{"max_concurrent_syscalls"}},
		{"negative rate", func(c *Config) { c.MaxSyscallsPerSecond = -1 }, []string{"max_syscalls_per_second"}},
		{"NaN rate", func(c *Config) { c.MaxSyscallsPerSecond = math.NaN() }, []string{"max_syscalls_per_second"}},
		{"infinite rate", func(c *Config) { c.MaxSyscallsPerSecond = math.Inf(1) }, []string{"max_syscalls_per_second"}},
		{"unlimited rate", func(c *Config) { c.MaxSyscallsPerSecond = 0 }, nil},
		{"negative burst", func(c *Config) { c.SyscallBurst = -1 }, []string{"syscall_burst"}},
		{"zero batch", func(c *Config) { c.BatchSize = 0 }, []string{"batch_size"}},
		{"largest batch", func(c *Config) { c.BatchSize = 100000 }, nil},
		{"batch too large", func(c *Config) { c.BatchSize = 100001 }, []string{"batch_size"}},
		{"unknown mode", func(c *Config) { c.CollectionMode = "fast" }, []string{"collection_mode", `"fast"`}},
		{"negative owners", func(c *Config) { c.MaxOwners = -1 }, []string{"max_owners"}},
		{"too many owners", func(c *Config) { c.MaxOwners = MaxOwners + 1 }, []string{"max_owners", "200"}},
		{"no owner series", func(c *Config) { c.MaxOwners = 0 }, nil},
		{"top_k too large", func(c *Config) { c.TopK = MaxTopK + 1 }, []string{"top_k"}},
		{"no top series", func(c *Config) { c.TopK = 0 }, nil},
		{"zero duty cycle", func(c *Config) { c.SystemStatsDutyCycle = 0 }, []string{"system_stats_duty_cycle"}},
		{"duty cycle above 1", func(c *Config) { c.SystemStatsDutyCycle = 1.5 }, []string{"system_stats_duty_cycle"}},
		{"NaN duty cycle", func(c *Config) { c.SystemStatsDutyCycle = math.NaN() }, []string{"system_stats_duty_cycle"}},
		{"a tenth of the time", func(c *Config) { c.SystemStatsDutyCycle = 0.1 }, nil},
		{"empty mode", func(c *Config) { c.CollectionMode = "" }, []string{"collection_mode"}},
		{"iterator mode", func(c *Config) { c.CollectionMode = ModeIterator }, nil},
		{"syscall mode", func(c *Config) { c.CollectionMode = ModeSyscall }, nil},
		{"no history", func(c *Config) { c.HistoryBytes = 0 }, nil},
		{"smallest history", func(c *Config) { c.HistoryBytes = MinHistoryBytes }, nil},
		{"history too small", func(c *Config) { c.HistoryBytes = MinHistoryBytes - 1 }, []string{"history_bytes", "65535"}},
		{"history too large", func(c *Config) { c.HistoryBytes = 1 << 31 }, []string{"history_bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustProfile(t, ProfileProduction)
			tt.set(&c)
			err := c.Validate()
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("%+v: unexpected error: %v", c, err)
			case tt.want != nil && err == nil:
				t.Fatalf("%+v: no error", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Validate reports every problem, not only the first.
func TestValidateJoinsAll(t *testing.T) {
	c := mustProfile(t, ProfileProduction)
	c.Profile = "nope"
	c.CollectionInterval = 0
	c.BatchSize = 0
	c.CollectionMode = "fast"
	err := c.Validate()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() = %v, want errors joined", err)
	}
	if n := len(joined.Unwrap()); n != 4 {
		t.Errorf("%d errors, want 4: %v", n, err)
	}
	for _, key := range []string{"profile", "collection_interval", "batch_size", "collection_mode"} {
		if !strings.Contains(err.Error(), key+": ") {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestBurst(t *testing.T) {
	tests := []struct {
		rate  float64
		burst int
		want  int
	}{
		{100, 0, 100},
		{100, 7, 7},
		{2.5, 0, 3},
		{0.1, 0, 1},
		{0, 0, 1}, // unlimited: the burst is never used, but is still sane
		{0, 5, 5},
		{1e300, 0, math.MaxInt32},
		{math.Inf(1), 0, math.MaxInt32},
		{math.NaN(), 0, math.MaxInt32},
	}
	for _, tt := range tests {
		c := Config{MaxSyscallsPerSecond: tt.rate, SyscallBurst: tt.burst}
		if got := c.Burst(); got != tt.want {
			t.Errorf("Config{MaxSyscallsPerSecond: %g, SyscallBurst: %d}.Burst() = %d, want %d", tt.rate, tt.burst, got, tt.want)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	configs := make([]Config, 0, 5)
	for _, p := range Profiles() {
		configs = append(configs, mustProfile(t, p))
	}
	// Every field away from its profile value, with the awkward ones:
	// fractional rate and interval, a byte count that is no round unit.
	odd := mustProfile(t, ProfileHighTraffic)
	odd.MaxMemoryBytes = 123456789
	odd.MaxTrackedMaps, odd.MaxTrackedPrograms, odd.MaxTrackedLinks = 1, 2, 3
	odd.CollectionInterval = 90*time.Second + 1
	odd.MaxConcurrentSyscalls = 64
	odd.MaxSyscallsPerSecond = 0.1
	odd.SyscallBurst = 9
	odd.BatchSize = 1
	odd.EnableSystemStats = true
	odd.CollectionMode = ModeIterator
	odd.HistoryBytes = 100001
	configs = append(configs, odd)

	for _, c := range configs {
		t.Run(c.Profile, func(t *testing.T) {
			s := c.String()
			if first, _, _ := strings.Cut(s, "\n"); first != "# profile: "+c.Profile {
				t.Errorf("first line %q, want the profile comment", first)
			}
			if keys := keysOf(t, s); len(keys) != len(c.fields()) {
				t.Errorf("String() has keys %q, want all %d", keys, len(c.fields()))
			}
			got, err := Load(c.Profile, writeFile(t, s))
			if err != nil {
				t.Fatalf("loading\n%s: %v", s, err)
			}
			if got != c {
				t.Errorf("round trip of\n%s\n got %+v\nwant %+v", s, got, c)
			}
		})
	}
}

func TestStringFormat(t *testing.T) {
	want := `# profile: production
max_memory_bytes: 10485760
max_tracked_maps: 500
max_tracked_programs: 200
max_tracked_links: 100
collection_interval: 1m0s
max_concurrent_syscalls: 3
max_syscalls_per_second: 100
syscall_burst: 0
batch_size: 50
enable_system_stats: false
collection_mode: auto
history_bytes: 262144
max_owners: 50
top_k: 10
system_stats_duty_cycle: 1
`
	if got := mustProfile(t, ProfileProduction).String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	// An unknown profile name cannot break out of the comment.
	c := Config{Profile: "x\nbatch_size: 1"}
	if first, rest, _ := strings.Cut(c.String(), "\n"); first != `# profile: "x\nbatch_size: 1"` || strings.Contains(rest, "batch_size: 1\n") {
		t.Errorf("String() of profile %q:\n%s", c.Profile, c.String())
	}
}

func FuzzLoad(f *testing.F) {
	for _, p := range Profiles() {
		f.Add([]byte(mustProfile(f, p).String()))
	}
	// One directory for the whole run: creating one per input costs more
	// than the rest of an iteration. Inputs run one at a time per process.
	dir := f.TempDir()
	file, again := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "again.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(ProfileProduction, file)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("Load: error without a message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Validate: %v is not a joined error", err)
			}
			for _, e := range joined.Unwrap() {
				if e.Error() == "" {
					t.Fatalf("Validate: an error without a message in %q", err)
				}
			}
			return
		}
		// Whatever was accepted is printed so that it loads back the same.
		if err := os.WriteFile(again, []byte(c.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := Load(ProfileProduction, again)
		if err != nil {
			t.Fatalf("loading String() of an accepted config:\n%s\n%v", c.String(), err)
		}
		if back != c {
			t.Fatalf("round trip:\n got %+v\nwant %+v", back, c)
		}
	})
}
