package otlp

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFailureLog: the first failure is logged at once, the next ones at
// doubling intervals (30s, 1m, 2m... up to 30m) with the count suppressed
// in between; a success after failures is logged and starts over.
func TestFailureLog(t *testing.T) {
	logs := &logBuffer{}
	l := newFailureLog(slog.New(slog.NewTextHandler(logs, nil)), "OTLP export failed")
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	boom := errors.New("boom")

	// One failure every 10 s for two hours.
	var logged []time.Duration
	for s := 0; s <= 7200; s += 10 {
		now = time.Unix(int64(s), 0)
		before := logs.count("OTLP export failed")
		l.failure(boom)
		if logs.count("OTLP export failed") > before {
			logged = append(logged, time.Duration(s)*time.Second)
		}
	}
	want := []time.Duration{0, 30 * time.Second, 90 * time.Second, 210 * time.Second, 450 * time.Second,
		930 * time.Second, 1890 * time.Second, 3690 * time.Second, 5490 * time.Second}
	if len(logged) != len(want) {
		t.Fatalf("logged at %v, want %v", logged, want)
	}
	for i := range want {
		if logged[i] != want[i] {
			t.Fatalf("logged at %v, want %v", logged, want)
		}
	}
	// The second line says how many were suppressed since the first.
	if !strings.Contains(logs.lines[1], "failures=4 suppressed=2") {
		t.Errorf("second line: %s", logs.lines[1])
	}

	l.success()
	l.success()
	if n := logs.count("succeeded after failures"); n != 1 || !strings.Contains(logs.lines[len(logs.lines)-1], "failures=721") {
		t.Errorf("%d recovery lines:\n%s", n, logs)
	}
	before := logs.count("OTLP export failed")
	l.failure(boom)
	if logs.count("OTLP export failed") != before+1 {
		t.Error("the first failure after a success was not logged at once")
	}
}
