package exposition

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// hammer runs clients goroutines on one keep-alive transport, each making
// requests scrapes of url, and returns how many got each status code. A
// transport error or a body shorter than its Content-Length fails the test.
func hammer(t *testing.T, url string, clients, requests int) map[int]int {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			for range requests {
				resp, err := c.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.ContentLength >= 0 && n != resp.ContentLength {
					t.Errorf("body: %d of %d bytes: %v", n, resp.ContentLength, err)
					return
				}
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return codes
}

// counted returns the requests_total of code, and in flight, from a scrape.
func counted(t *testing.T, base string, code int) (requests, inFlight string) {
	t.Helper()
	body := get(t, base+"/metrics").body
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, fmt.Sprintf("%s{code=\"%d\"} ", handlerRequests, code)); ok {
			requests = v
		}
		if v, ok := strings.CutPrefix(line, handlerInFlight+" "); ok {
			inFlight = v
		}
	}
	return requests, inFlight
}

// 64 clients scraping a cached server at once, below the in-flight limit:
// every scrape succeeds with its whole body, and the handler's counters
// account for every one.
func TestConcurrentScrapesBelowLimit(t *testing.T) {
	const clients, requests = 64, 20
	_, base := startServer(t, ServerConfig{MaxRequestsInFlight: clients}, cachedTestRegistry(t))
	codes := hammer(t, base+"/metrics", clients, requests)
	if codes[http.StatusOK] != clients*requests || len(codes) != 1 {
		t.Errorf("status codes %v, want %d × 200", codes, clients*requests)
	}
	if n, inFlight := counted(t, base, http.StatusOK); n != fmt.Sprint(clients*requests) || inFlight != "1" {
		t.Errorf("requests_total{code=200} %s, in flight %s; want %d and 1 (this scrape)", n, inFlight, clients*requests)
	}
}

// 64 clients against a server whose scrapes are slow to prepare (an
// uncached gatherer taking milliseconds) and whose limit is 4: scrapes
// beyond the limit get 503 at once; no scrape fails otherwise, and the
// counters add up.
func TestConcurrentScrapesAboveLimit(t *testing.T) {
	const clients, requests, limit = 64, 10, 4
	reg := testRegistry(publish(testSnapshot()))
	slow := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		time.Sleep(2 * time.Millisecond)
		return reg.Gather()
	})
	_, base := startServer(t, ServerConfig{MaxRequestsInFlight: limit}, slow)
	codes := hammer(t, base+"/metrics", clients, requests)
	if codes[http.StatusOK]+codes[http.StatusServiceUnavailable] != clients*requests {
		t.Fatalf("status codes %v: want only 200 and 503, %d in all", codes, clients*requests)
	}
	if codes[http.StatusServiceUnavailable] == 0 || codes[http.StatusOK] == 0 {
		t.Errorf("status codes %v: want both 200 (within the limit) and 503 (over it)", codes)
	}
	n503, _ := counted(t, base, http.StatusServiceUnavailable)
	n200, _ := counted(t, base, http.StatusOK)
	if n503 != fmt.Sprint(codes[http.StatusServiceUnavailable]) || n200 != fmt.Sprint(codes[http.StatusOK]+1) {
		t.Errorf("counted 200: %s, 503: %s; clients saw %v (plus one 200 to count)", n200, n503, codes)
	}
	t.Logf("status codes %v", codes)
}
