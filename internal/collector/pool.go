package collector

import (
	"sync"
	"sync/atomic"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// pool runs the jobs of a batch on a fixed set of workers, each with its own
// Reader and buffers. The workers are started once; running a batch hands
// them the batch size over channels and waits. A batch of one job, or a
// pool of one worker, runs on the caller's goroutine instead: no hand-off,
// and no blocking at all.
//
// Blocking on a channel or a WaitGroup makes the Go runtime take a wait
// record (a sudog) from a per-P cache; records migrate between Ps, and a
// garbage collection empties the shared cache, so about once in ten to
// twenty multi-worker cycles the runtime allocates one (112 bytes). The
// collector's own code allocates nothing.
type pool struct {
	inline  kernel.Reader // for batches run on the caller's goroutine
	readers []kernel.Reader
	jobs    []job
	n       int
	next    atomic.Int64
	start   []chan struct{}
	done    sync.WaitGroup
	quit    chan struct{}
	exit    sync.WaitGroup
	once    sync.Once
}

func newPool(src kernel.Source, workers int, jobs []job) (*pool, error) {
	inline, err := src.NewReader()
	if err != nil {
		return nil, err
	}
	p := &pool{inline: inline, jobs: jobs, quit: make(chan struct{})}
	if workers == 1 {
		return p, nil
	}
	for range workers {
		r, err := src.NewReader()
		if err != nil {
			p.stop()
			return nil, err
		}
		p.readers = append(p.readers, r)
	}
	p.start = make([]chan struct{}, workers)
	p.exit.Add(workers)
	for i, r := range p.readers {
		p.start[i] = make(chan struct{}, 1)
		go p.work(p.start[i], r)
	}
	return p, nil
}

func (p *pool) work(start <-chan struct{}, r kernel.Reader) {
	defer p.exit.Done()
	for {
		select {
		case <-p.quit:
			return
		case <-start:
		}
		for {
			i := int(p.next.Add(1) - 1)
			if i >= p.n {
				break
			}
			read(r, &p.jobs[i])
		}
		p.done.Done()
	}
}

// run reads jobs[:n] and returns when all are done.
func (p *pool) run(n int) {
	if n == 1 || len(p.start) == 0 {
		for i := range n {
			read(p.inline, &p.jobs[i])
		}
		return
	}
	p.n = n
	p.next.Store(0)
	workers := min(len(p.start), n)
	p.done.Add(workers)
	for i := range workers {
		p.start[i] <- struct{}{}
	}
	p.done.Wait()
}

func (p *pool) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.exit.Wait()
		p.inline.Close()
		for _, r := range p.readers {
			r.Close()
		}
	})
}

// read runs job j with reader r, and keeps a program's maps with it: only
// a full read has them.
func read(r kernel.Reader, j *job) {
	j.err = r.Read(j.kind, j.id, j.need, j.rec)
	j.maps.N = 0
	if j.kind == kernel.KindProg && j.need&kernel.NeedDetails != 0 {
		j.maps.N = copy(j.maps.IDs[:], r.UsedMaps())
	}
}
