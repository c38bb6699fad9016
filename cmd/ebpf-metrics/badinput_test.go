package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadWebInputExitsTwo extends TestBadConfigurationExitsTwo to the web
// configuration file and the --web.* and --log.* flags: each is rejected
// before anything starts, with exit code 2 and a message that names the
// flag, and the key or the line at fault; with --config.check too.
func TestBadWebInputExitsTwo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	webConfig := func(name, content string) string { return "--web.config.file=" + write(name, content) }
	for _, tc := range []struct {
		name string
		args []string
		want []string // all in stderr
	}{
		{"web config: malformed YAML", []string{webConfig("malformed.yml", "tls_server_config:\n  cert_file: [a\n")},
			[]string{"--web.config.file", "malformed.yml", "line 2"}},
		{"web config: not a mapping", []string{webConfig("list.yml", "- basic_auth_users\n")},
			[]string{"--web.config.file", "list.yml"}},
		{"web config: unknown key", []string{webConfig("unknown.yml", "basic_auth_user:\n  dave: x\n")},
			[]string{"--web.config.file", "basic_auth_user"}},
		{"web config: unknown nested key", []string{webConfig("nested.yml", "tls_server_config:\n  cert_fil: c.pem\n")},
			[]string{"--web.config.file", "cert_fil"}},
		{"web config: missing cert file", []string{webConfig("nocert.yml", "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n")},
			[]string{"--web.config.file", "cert_file", "/nonexistent/cert.pem"}},
		{"web config: cert without key", []string{webConfig("nokey.yml", "tls_server_config:\n  cert_file: /etc/hostname\n")},
			[]string{"--web.config.file", "key_file"}},
		{"web config: cert not PEM", []string{webConfig("notpem.yml", "tls_server_config:\n  cert_file: "+write("cert.pem", "not a certificate\n")+"\n  key_file: "+write("key.pem", "not a key\n")+"\n")},
			[]string{"--web.config.file", "X509KeyPair"}},
		{"web config: bad bcrypt hash", []string{webConfig("hash.yml", "basic_auth_users:\n  dave: plain-password\n")},
			[]string{"--web.config.file", "basic_auth_users", `"dave"`, "bcrypt"}},
		{"web config: truncated bcrypt hash", []string{webConfig("short.yml", "basic_auth_users:\n  alice: $2a$04$czJcoD7lGO6lRnDwCyr2Vu\n")},
			[]string{"--web.config.file", "basic_auth_users", `"alice"`}},
		{"web config: bad TLS version", []string{webConfig("version.yml", "tls_server_config:\n  min_version: TLS99\n")},
			[]string{"--web.config.file", "TLS99"}},
		{"web config: header not allowed", []string{webConfig("header.yml", "http_server_config:\n  headers:\n    X-Anything: yes\n")},
			[]string{"--web.config.file", "X-Anything"}},
		{"web config: missing file", []string{"--web.config.file=/nonexistent/web.yml"}, []string{"--web.config.file", "/nonexistent/web.yml"}},
		{"web config: a directory", []string{"--web.config.file=" + dir}, []string{"--web.config.file", "is a directory"}},
		// Before: read without bound, until the agent ran out of memory.
		{"web config: endless", []string{"--web.config.file=/dev/zero"}, []string{"--web.config.file", "larger than"}},
		{"web config: too large", []string{webConfig("large.yml", "# "+strings.Repeat("x", 2<<20)+"\n")}, []string{"--web.config.file", "larger than"}},
		{"telemetry path: relative", []string{"--web.telemetry-path=metrics"}, []string{"--web.telemetry-path", "must start with /"}},
		{"telemetry path: reserved", []string{"--web.telemetry-path=/-/metrics"}, []string{"--web.telemetry-path", "reserved"}},
		{"telemetry path: pattern", []string{"--web.telemetry-path=/{x}"}, []string{"--web.telemetry-path"}},
		{"listen address: no port", []string{"--web.listen-address=localhost"}, []string{"--web.listen-address", "localhost"}},
		{"listen address: bad port", []string{"--web.listen-address=:99999"}, []string{"--web.listen-address", "99999"}},
		{"listen address: not TCP", []string{"--web.listen-address=vsock://:9436"}, []string{"--web.listen-address", "only TCP"}},
		{"max requests: negative", []string{"--web.max-requests=-1"}, []string{"--web.max-requests"}},
		{"max requests: not a number", []string{"--web.max-requests=many"}, []string{"--web.max-requests", "many"}},
		{"scrape timeout: negative", []string{"--web.scrape-timeout=-1s"}, []string{"--web.scrape-timeout"}},
		{"scrape timeout: malformed", []string{"--web.scrape-timeout=soon"}, []string{"--web.scrape-timeout", "soon"}},
		{"otlp endpoint: no scheme", []string{"--otlp.endpoint=collector:4318"}, []string{"--otlp.endpoint", "http://"}},
		{"otlp protocol", []string{"--otlp.endpoint=http://c:4318", "--otlp.protocol=udp"}, []string{"--otlp.protocol", "udp"}},
		{"otlp interval", []string{"--otlp.endpoint=http://c:4318", "--otlp.interval=1ms"}, []string{"--otlp.interval", "minimum"}},
		{"otlp timeout", []string{"--otlp.timeout=-1s"}, []string{"--otlp.timeout"}},
		{"otlp header", []string{"--otlp.endpoint=http://c:4318", "--otlp.header=Authorization"}, []string{"--otlp.header", "KEY=VALUE"}},
		{"otlp tls without https", []string{"--otlp.endpoint=http://c:4318", "--otlp.tls.ca-file=/etc/hostname"}, []string{"--otlp.tls", "https://"}},
		{"otlp ca file missing", []string{"--otlp.endpoint=https://c:4318", "--otlp.tls.ca-file=/nonexistent/ca.pem"}, []string{"--otlp.tls.ca-file", "/nonexistent/ca.pem"}},
		{"log level", []string{"--log.level=loud"}, []string{"log level", "loud"}},
		{"log format", []string{"--log.format=xml"}, []string{"log format", "xml"}},
		{"profile: empty", []string{"--profile="}, []string{"profile"}},
		{"flag without value", []string{"--config.file"}, []string{"config.file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, check := range []bool{false, true} {
				args := tc.args
				if check {
					args = append(args[:len(args):len(args)], "--config.check")
				}
				var stdout, stderr bytes.Buffer
				cmd := exec.Command(agentBin, args...)
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if code := exitCode(err); code != 2 {
					t.Fatalf("%v: exit %d, want 2\n%s", args, code, stderr.String())
				}
				for _, want := range tc.want {
					if !strings.Contains(stderr.String(), want) {
						t.Fatalf("%v: message does not name %q:\n%s", args, want, stderr.String())
					}
				}
				if stdout.Len() != 0 && check {
					t.Fatalf("%v: printed a configuration although it is invalid:\n%s", args, stdout.String())
				}
			}
		})
	}
}
