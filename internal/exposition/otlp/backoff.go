package otlp

import (
	"log/slog"
	"sync"
	"time"
)

// Backoff of the failure log: after a logged failure, the next one is logged
// no sooner than firstRepeat later, then twice as late each time, up to
// maxRepeat. An endpoint down for a day logs a few dozen lines, not one per
// push.
const (
	firstRepeat = 30 * time.Second
	maxRepeat   = 30 * time.Minute
)

// failureLog logs the first failure of a run of failures at once, then
// at growing intervals with the number of failures suppressed in between,
// and the first success after failures.
type failureLog struct {
	logger *slog.Logger
	msg    string
	now    func() time.Time

	mu         sync.Mutex
	failures   int // since the last success
	suppressed int // since the last line logged
	delay      time.Duration
	next       time.Time // no line before this
}

func newFailureLog(logger *slog.Logger, msg string) *failureLog {
	return &failureLog{logger: logger, msg: msg, now: time.Now}
}

func (l *failureLog) failure(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.failures++
	if l.failures > 1 && now.Before(l.next) {
		l.suppressed++
		return
	}
	if l.failures == 1 {
		l.delay = firstRepeat
	} else {
		l.delay = min(2*l.delay, maxRepeat)
	}
	l.next = now.Add(l.delay)
	l.logger.Warn(l.msg, "err", err, "failures", l.failures, "suppressed", l.suppressed, "next_log_in", l.delay)
	l.suppressed = 0
}

func (l *failureLog) success() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == 0 {
		return
	}
	l.logger.Info("OTLP export succeeded after failures", "failures", l.failures)
	l.failures, l.suppressed = 0, 0
}
