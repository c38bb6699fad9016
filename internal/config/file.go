package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"go.yaml.in/yaml/v3"
)

// maxFileBytes bounds what Load reads: a configuration is a dozen lines, and
// a wrong path (a log, /dev/zero) must not cost the agent its memory budget.
const maxFileBytes = 1 << 20

// field ties a YAML key to the Config field it sets. ptr is one of *uint64,
// *int, *float64, *bool, *string, *time.Duration.
type field struct {
	key string
	ptr any
}

// fields lists every key of the file, in the order String prints them. It is
// the one place that maps keys to fields, for reading and for printing.
func (c *Config) fields() []field {
	return []field{
		{keyMaxMemoryBytes, &c.MaxMemoryBytes},
		{keyMaxTrackedMaps, &c.MaxTrackedMaps},
		{keyMaxTrackedPrograms, &c.MaxTrackedPrograms},
		{keyMaxTrackedLinks, &c.MaxTrackedLinks},
		{keyCollectionInterval, &c.CollectionInterval},
		{keyMaxConcurrentSyscalls, &c.MaxConcurrentSyscalls},
		{keyMaxSyscallsPerSecond, &c.MaxSyscallsPerSecond},
		{keySyscallBurst, &c.SyscallBurst},
		{keyBatchSize, &c.BatchSize},
		{keyEnableSystemStats, &c.EnableSystemStats},
		{keyCollectionMode, &c.CollectionMode},
		{keyHistoryBytes, &c.HistoryBytes},
		{keyMaxOwners, &c.MaxOwners},
		{keyTopK, &c.TopK},
		{keyStatsDutyCycle, &c.SystemStatsDutyCycle},
	}
}

// Load returns the named profile with the keys present in file (if not "")
// overriding its values. Unknown keys, repeated keys, values of the wrong
// type and files of more than one YAML document are errors that name the
// file, the line and the key; Load reports all of them at once
// (errors.Join). Whatever the errors, the Config returned holds every value
// that could be read, over the named profile (or, if that name is unknown,
// the default profile), so that the caller can go on to apply its flags
// and Validate, and report every problem in one go.
func Load(profile, file string) (Config, error) {
	var errs []error
	c, err := ForProfile(profile)
	if err != nil {
		errs = append(errs, err)
		c, _ = ForProfile(DefaultProfile)
		c.Profile = profile
	}
	if file == "" {
		return c, errors.Join(errs...)
	}
	data, err := readFile(file)
	if err != nil {
		return c, errors.Join(append(errs, fmt.Errorf("reading config file: %w", err))...)
	}
	if err := c.apply(data); err != nil {
		errs = append(errs, fmt.Errorf("parsing config file %s: %w", file, err))
	}
	return c, errors.Join(errs...)
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err // a directory fails here: "read <name>: is a directory"
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileBytes)
	}
	return data, nil
}

// apply overrides c with the keys of the YAML document in data. It walks a
// yaml.Node rather than decoding into a struct with KnownFields(true): the
// effect is the same (unknown keys are rejected), but yaml's own type
// errors name a Go type and not the key, and a user needs the key.
func (c *Config) apply(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil // an empty file overrides nothing
	} else if err != nil {
		return err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return fmt.Errorf("line %d: a second YAML document; the file must hold one", next.Line)
	} else if !errors.Is(err, io.EOF) {
		return err
	}

	if len(doc.Content) == 0 {
		return nil // comments only
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil // "---" or "~" alone
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want keys and values such as \"batch_size: 50\"", root.Line)
	}

	fields := c.fields()
	seen := make(map[string]int, len(fields)) // key -> line
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), resolve(root.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: a key must be a name such as \"batch_size\"", k.Line))
			continue
		}
		f, ok := lookup(fields, k.Value)
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: unknown key %q, want one of %s", k.Line, k.Value, keyList(fields)))
			continue
		}
		if line, ok := seen[k.Value]; ok {
			errs = append(errs, fmt.Errorf("line %d: %s: repeated, first set at line %d", k.Line, k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		if err := decodeValue(v, f.ptr); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s: %w", v.Line, k.Value, err))
		}
	}
	return errors.Join(errs...)
}

// resolve follows an alias (*name) to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func lookup(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

func keyList(fields []field) string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return strings.Join(keys, ", ")
}

// decodeValue sets *ptr from a scalar node. The messages say what was
// expected, in the user's terms, and quote what was found.
func decodeValue(n *yaml.Node, ptr any) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a single value, not a list or a mapping")
	}
	if n.ShortTag() == "!!null" {
		// yaml would leave the field unchanged: say so rather than
		// silently keep the profile's value.
		return errors.New("missing value")
	}
	switch p := ptr.(type) {
	case *uint64:
		return decodeBytes(n, p)
	case *time.Duration:
		// A bare number is rejected rather than read as nanoseconds.
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("want a duration such as \"60s\" or \"1m30s\", got %q", n.Value)
		}
		*p = d
	// The tags are checked first: yaml would truncate 1.5 into an int.
	case *int:
		if n.ShortTag() != "!!int" || n.Decode(p) != nil {
			return fmt.Errorf("want an integer, got %q", n.Value)
		}
	case *float64:
		if t := n.ShortTag(); t != "!!int" && t != "!!float" || n.Decode(p) != nil {
			return fmt.Errorf("want a number, got %q", n.Value)
		}
	case *bool:
		if n.ShortTag() != "!!bool" || n.Decode(p) != nil {
			return fmt.Errorf("want true or false, got %q", n.Value)
		}
	case *string:
		if n.Decode(p) != nil {
			return fmt.Errorf("want a string, got %q", n.Value)
		}
	default:
		return fmt.Errorf("internal error: no decoder for %T", ptr)
	}
	return nil
}

// decodeBytes accepts an integer (bytes) or a string with a unit, read by
// units.ParseStrictBytes: "10MiB" is 10×2^20 and "5MB" is 5×10^6, as "Mi" and
// "M" in Kubernetes. ParseBase2Bytes would read "5MB" as 5×2^20, so that
// "MB" would mean one thing here and another in the pod's resource limits.
func decodeBytes(n *yaml.Node, p *uint64) error {
	bad := fmt.Errorf("want a number of bytes such as 10485760 or \"10MiB\", got %q", n.Value)
	switch n.ShortTag() {
	case "!!int":
		if n.Decode(p) != nil {
			return bad // negative, or too large for 64 bits
		}
		return nil
	case "!!str":
		if v, err := strconv.ParseUint(n.Value, 10, 64); err == nil {
			*p = v // digits only: units wants a unit
			return nil
		}
		// Negative also when the value overflowed int64.
		if v, err := units.ParseStrictBytes(n.Value); err == nil && v >= 0 {
			*p = uint64(v)
			return nil
		}
	}
	return bad
}

// String returns the configuration as a YAML file with every key, preceded
// by a comment naming the profile: what --config.check prints. Loading it
// with Load and the same profile gives the same Config.
func (c Config) String() string {
	name := c.Profile
	if _, err := ForProfile(name); err != nil {
		name = strconv.Quote(name) // a newline must not end the comment
	}
	head := "# profile: " + name + "\n"

	m := yaml.Node{Kind: yaml.MappingNode}
	for _, f := range c.fields() {
		var v any
		switch p := f.ptr.(type) {
		case *uint64:
			v = *p // an integer, exact, rather than a rounded "10MiB"
		case *int:
			v = *p
		case *float64:
			v = *p
		case *bool:
			v = *p
		case *string:
			v = *p
		case *time.Duration:
			v = p.String() // "1m0s"; yaml would print nanoseconds
		}
		var val yaml.Node
		if err := val.Encode(v); err != nil {
			return head + "# error: " + err.Error() + "\n" // not reached: every value is a basic scalar
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, &val)
	}
	out, err := yaml.Marshal(&m)
	if err != nil {
		return head + "# error: " + err.Error() + "\n" // not reached, as above
	}
	return head + string(out)
}
