// Checks of the web flags and of the web configuration file, made before
// anything starts so that a bad one exits 2 naming it.

package exposition

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

func (cfg *ServerConfig) validate() error {
	if len(cfg.ListenAddresses) == 0 {
		return errors.New("no listen address")
	}
	for _, a := range cfg.ListenAddresses {
		if err := CheckListenAddress(a); err != nil {
			return err
		}
	}
	return CheckTelemetryPath(cfg.TelemetryPath)
}

// CheckListenAddress accepts a TCP listen address, host:port (the host may
// be empty, the port a number or a service name), without binding it.
func CheckListenAddress(a string) error {
	if strings.Contains(a, "://") {
		return fmt.Errorf("listen address %q: only TCP host:port addresses are supported", a)
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("listen address %q: want host:port, such as :9436 or 127.0.0.1:9436", a)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("listen address %q: %w", a, err)
	}
	return nil
}

// CheckTelemetryPath accepts the paths that http.ServeMux matches exactly as
// written: no pattern syntax, no "." or ".." segment, no "//".
func CheckTelemetryPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("telemetry path %q: %s", p, why) }
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	for _, r := range p {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("._~/-", r)) {
			return bad("only letters, digits and ._~/- are allowed")
		}
	}
	if c := path.Clean(p); c != p && c+"/" != p {
		return bad("must be a clean path")
	}
	if strings.HasPrefix(p, "/-/") || p == "/debug" || strings.HasPrefix(p, "/debug/") ||
		strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/static/") {
		return bad("/-/, /debug/, /api/ (the history) and /static/ (the status page) are reserved")
	}
	return nil
}

// maxWebConfigBytes bounds a web configuration file: exporter-toolkit
// reads the whole file, and a wrong path (/dev/zero, a log) would cost the
// agent all its memory.
const maxWebConfigBytes = 1 << 20

// ValidateWebConfig checks an exporter-toolkit web configuration file as
// web.Validate does (YAML, unknown keys, TLS files, bcrypt hashes, headers),
// and also refuses a file larger than 1 MiB and names the user whose
// password is not a bcrypt hash, which web.Validate does not. "" is valid:
// no TLS, no authentication.
func ValidateWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if f, err := os.Open(path); err == nil { // else web.Validate says why
		data, err := io.ReadAll(io.LimitReader(f, maxWebConfigBytes+1))
		f.Close()
		if len(data) > maxWebConfigBytes {
			return fmt.Errorf("larger than %d bytes", maxWebConfigBytes)
		}
		var users struct {
			Users map[string]string `yaml:"basic_auth_users"`
		}
		if err == nil && yaml.Unmarshal(data, &users) == nil { // else web.Validate reports the syntax
			for _, user := range slices.Sorted(maps.Keys(users.Users)) {
				if _, err := bcrypt.Cost([]byte(users.Users[user])); err != nil {
					return fmt.Errorf("basic_auth_users: the password of %q is not a bcrypt hash "+
						"(make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'): %w", user, err)
				}
			}
		}
	}
	return web.Validate(path)
}
