package history

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
	"time"
)

type apiResponse struct {
	Series []struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
		Points [][2]float64      `json:"points"`
	} `json:"series"`
	Error string `json:"error"`
}

func get(t *testing.T, h http.Handler, query string) (int, apiResponse) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Path+"?"+query, nil))
	var resp apiResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%s: %v: %s", query, err, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return rec.Code, resp
}

func TestHandler(t *testing.T) {
	h := newHistory(t, MinBytes)
	a := h.Series("odigos_ebpf_objects", Label{"type", "map"})
	b := h.Series("odigos_ebpf_last_collection_duration_seconds")
	// Rows at 1700000000, 1700000001, ... 1700000009 s.
	for i := range 10 {
		h.Begin(1_700_000_000_000 + int64(i)*1000)
		h.Set(a, float64(40+i))
		h.Set(b, 0.0015)
		h.Commit()
	}
	hd := NewHandler(h, 1)

	code, resp := get(t, hd, "")
	if code != 200 || len(resp.Series) != 2 {
		t.Fatalf("%d %+v", code, resp)
	}
	s := resp.Series[1]
	if s.Name != "odigos_ebpf_objects" || !reflect.DeepEqual(s.Labels, map[string]string{"type": "map"}) ||
		len(s.Points) != 10 || s.Points[9] != [2]float64{1_700_000_009_000, 49} {
		t.Errorf("%+v", s)
	}
	if p := resp.Series[0].Points[0]; p != [2]float64{1_700_000_000_000, 0.0015} {
		t.Errorf("%v", p)
	}

	for _, c := range []struct {
		query  string
		points int
	}{
		{"name=odigos_ebpf_objects&start=1700000002&end=1700000004.5", 3},
		{"name=odigos_ebpf_objects&start=1700000002.001", 7},
		{"name=odigos_ebpf_objects&start=" + url.QueryEscape("2023-11-14T22:13:22Z") + "&end=" + url.QueryEscape("2023-11-14T22:13:23.999999999Z"), 2},
		{"name=odigos_ebpf_objects&end=1700000000", 1},
		{"name=odigos_ebpf_objects&points=3", 3},
	} {
		code, resp := get(t, hd, c.query)
		if code != 200 || len(resp.Series) != 1 || len(resp.Series[0].Points) != c.points {
			t.Errorf("%s: %d %+v, want %d points", c.query, code, resp, c.points)
		}
	}
	if _, resp := get(t, hd, "name=nothing"); len(resp.Series) != 0 {
		t.Errorf("unknown name: %+v", resp)
	}
	if _, resp := get(t, hd, "start=1800000000"); len(resp.Series) != 0 {
		t.Errorf("after the last row: %+v", resp)
	}
	for _, q := range []string{"start=yesterday", "end=NaN", "start=5&end=4", "end=1e300", "points=0", "points=11001", "points=x"} {
		if code, resp := get(t, hd, q); code != 400 || resp.Error == "" {
			t.Errorf("%s: %d %+v", q, code, resp)
		}
	}
}

// Queries beyond the bound in flight get 503 at once.
func TestHandlerInFlight(t *testing.T) {
	h := newHistory(t, MinBytes)
	hd := NewHandler(h, 1).(*handler)
	hd.sem <- struct{}{} // one query in flight
	if code, resp := get(t, hd, ""); code != http.StatusServiceUnavailable || resp.Error == "" {
		t.Errorf("%d %+v", code, resp)
	}
	<-hd.sem
	if code, _ := get(t, hd, ""); code != 200 {
		t.Errorf("%d", code)
	}
}

func TestParseTime(t *testing.T) {
	for s, want := range map[string]time.Time{
		"1700000000":                     time.Unix(1700000000, 0),
		"1700000000.25":                  time.Unix(1700000000, 250e6),
		"2023-11-14T22:13:20Z":           time.Unix(1700000000, 0),
		"2023-11-14T23:13:20.5+01:00":    time.Unix(1700000000, 500e6),
		"2023-11-14T22:13:20.000000001Z": time.Unix(1700000000, 1),
	} {
		got, err := parseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", s, got, err, want)
		}
	}
}
