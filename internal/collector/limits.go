package collector

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// limiter is a token bucket: tokens refill at rate per second up to burst,
// every system call takes one, and a caller that finds the bucket empty
// reserves its token and sleeps until it is due. It is written out rather
// than taken from golang.org/x/time/rate because waiting there allocates a
// timer per wait, and the cycle must allocate nothing.
type limiter struct {
	rate  float64 // tokens per second; 0 = unlimited
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time

	timers chan *time.Timer // reusable timers, one per concurrent waiter
	waitNs atomic.Uint64    // time callers spent waiting, summed over concurrent callers
}

func newLimiter(rate float64, burst, waiters int) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
	l.timers = make(chan *time.Timer, waiters)
	for range waiters {
		t := time.NewTimer(time.Hour)
		t.Stop()
		l.timers <- t
	}
	return l
}

// reserve takes n tokens and returns how long the caller must wait before
// using them.
func (l *limiter) reserve(n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if elapsed := now.Sub(l.last).Seconds(); elapsed > 0 {
		l.tokens = math.Min(l.burst, l.tokens+elapsed*l.rate)
	}
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// wait blocks until n tokens are available, ctx is done or quit is closed.
func (l *limiter) wait(ctx context.Context, quit <-chan struct{}, n int) error {
	if l.rate <= 0 {
		return nil
	}
	d := l.reserve(n)
	if d <= 0 {
		return nil
	}
	start := time.Now()
	defer func() { l.waitNs.Add(uint64(time.Since(start))) }()
	var t *time.Timer
	select {
	case t = <-l.timers:
	case <-ctx.Done():
		return ctx.Err()
	case <-quit:
		return ErrClosed
	}
	defer func() { l.timers <- t }()
	t.Reset(d)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-quit:
		t.Stop()
		return ErrClosed
	}
}

// gate implements kernel.Gate: it admits at most maxInFlight system calls at
// once and no more than the limiter allows, counts every call and every
// failure, and logs failures with their context.
type gate struct {
	ctx      context.Context // the running cycle's; set before each cycle
	quit     chan struct{}   // closed by stop: every Acquire fails from then on
	quitOnce sync.Once
	sem      chan struct{}
	lim      *limiter
	logger   *slog.Logger
	calls    [kernel.NumOps]atomic.Uint64
	failures [kernel.NumOps]atomic.Uint64

	inFlight    atomic.Int32
	maxInFlight atomic.Int32 // the most ever seen at once, for tests

	logged atomic.Int32 // failures logged in this cycle
	// fdinfoMissing: ErrFDInfoMissing was logged. It says the procfs is
	// wrong, which one line says once; every cycle counts it still.
	fdinfoMissing atomic.Bool
}

// maxLoggedPerCycle bounds the failure lines one cycle writes: a kernel
// that refuses everything must not flood the log.
const maxLoggedPerCycle = 10

func newGate(maxInFlight int, lim *limiter, logger *slog.Logger) *gate {
	return &gate{sem: make(chan struct{}, maxInFlight), lim: lim, logger: logger, ctx: context.Background(),
		quit: make(chan struct{})}
}

// stop makes every Acquire fail with ErrClosed, at once for those waiting.
func (g *gate) stop() { g.quitOnce.Do(func() { close(g.quit) }) }

func (g *gate) Acquire(op kernel.Op) error {
	select {
	case <-g.quit:
		return ErrClosed
	default:
	}
	if err := g.lim.wait(g.ctx, g.quit, op.Calls()); err != nil {
		return err
	}
	select {
	case g.sem <- struct{}{}:
	case <-g.ctx.Done():
		return g.ctx.Err()
	case <-g.quit:
		return ErrClosed
	}
	n := g.inFlight.Add(1)
	for {
		m := g.maxInFlight.Load()
		if n <= m || g.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return nil
}

func (g *gate) Release(op kernel.Op, k kernel.Kind, id uint32, err error) {
	g.inFlight.Add(-1)
	<-g.sem
	g.calls[op].Add(uint64(op.Calls()))
	if err == nil || unsettled(op, k, err) {
		return
	}
	g.failures[op].Add(1)
	if err == kernel.ErrFDInfoMissing {
		if !g.fdinfoMissing.Swap(true) {
			g.logger.Error("reading the fdinfo of the agent's own fds failed: memory of maps and programs is unknown",
				"err", err, "hint", "--path.procfs must be the procfs of the agent's pid namespace, without hidepid")
		}
		return
	}
	if g.logged.Add(1) <= maxLoggedPerCycle {
		g.logger.Warn("kernel operation failed", "op", op.String(), "type", k.String(), "id", id, "err", err)
	}
}

// unsettled reports a link the kernel is still creating: GET_NEXT_ID lists
// it as soon as its ID is allocated (bpf_link_prime), but GET_FD_BY_ID
// answers EAGAIN until the attachment is done (bpf_link_settle): "pretend it
// doesn't exist yet". For a link type whose attachment takes milliseconds
// (raw tracepoints, trampolines) a listing can meet one. It is not a
// failure; the link is counted, unreadable for this cycle, and read in full
// at the next.
func unsettled(op kernel.Op, k kernel.Kind, err error) bool {
	return op == kernel.OpGetFD && k == kernel.KindLink && err == unix.EAGAIN
}
