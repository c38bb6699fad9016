package exposition

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The status page replaces the landing page and the extra handlers are
// served behind the same authentication as the metrics.
func TestServerLandingAndHandlers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "web.yml")
	// dave:scrape-secret, as in TestServerWebConfig.
	const config = "basic_auth_users:\n  dave: $2a$04$czJcoD7lGO6lRnDwCyr2Vutdx.7riWiMD9aqe781zdCuR/z18rYkq\n"
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	text := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(s)) })
	}
	_, base := startServer(t, ServerConfig{
		WebConfigFile: file,
		Landing:       text("status page"),
		Handlers:      map[string]http.Handler{"GET /api/v1/history": text("history")},
	}, testRegistry(publish(testSnapshot())))

	for path, want := range map[string]string{"/": "status page", "/api/v1/history": "history", "/metrics": "odigos_ebpf_objects"} {
		if r := get(t, base+path); r.code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, r.code)
		}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.SetBasicAuth("dave", "scrape-secret")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, body, want)
		}
	}
}

func TestServerHandlerConflict(t *testing.T) {
	_, err := NewServer(ServerConfig{
		ListenAddresses: []string{"127.0.0.1:0"},
		Handlers:        map[string]http.Handler{"GET /metrics": http.NotFoundHandler()},
	}, testRegistry(publish(testSnapshot())), nil)
	if err == nil || !strings.Contains(err.Error(), "GET /metrics") {
		t.Errorf("%v, want an error naming the pattern", err)
	}
}
