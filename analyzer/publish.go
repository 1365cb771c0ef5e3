package analyzer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// publisher applies snapshots to the data planes on its own goroutine, so that neither
// a decision nor a read waits for a fleet push. Only the newest snapshot matters: one
// handed over while another is being applied replaces it. A refused snapshot (Apply
// error, NACK, ACK timeout) is reported and tried again with exponential backoff, its
// error logged once per distinct message — a data plane that keeps refusing never makes
// a hot loop. A newer snapshot (an abort, say) is applied at once, backoff or not.
type publisher struct {
	ctx     context.Context
	planes  []DataPlane
	log     *zap.Logger
	timeout func() time.Duration
	clock   Clock
	report  func(map[string]Applied)

	version atomic.Uint64 // snapshot versions, increasing across submits and retries

	mu      sync.Mutex
	want    *pubJob // newest snapshot not yet applied, or being retried
	kick    chan struct{}
	lastOK  map[string]uint64 // rollout → Gen of the last snapshot every plane applied
	lastErr string            // last error logged
}

type pubJob struct {
	snap *model.Snapshot
	gens map[string]Applied
	// changed: rollouts whose Gen differs from the last applied snapshot (an error is
	// theirs; the others' routing did not change).
	changed map[string]bool
	tries   int
}

const (
	publishRetryMin = 250 * time.Millisecond
	publishRetryMax = 30 * time.Second
)

func newPublisher(ctx context.Context, planes []DataPlane, log *zap.Logger, timeout func() time.Duration, clock Clock,
	report func(map[string]Applied)) *publisher {
	p := &publisher{ctx: ctx, planes: planes, log: log, timeout: timeout, clock: clock, report: report,
		kick: make(chan struct{}, 1), lastOK: map[string]uint64{}}
	go p.run()
	return p
}

// submit makes snap the snapshot to apply (it sets snap.Version); gens are each
// rollout's routing in it.
func (p *publisher) submit(snap *model.Snapshot, gens map[string]Applied) {
	snap.Version = p.version.Add(1)
	p.mu.Lock()
	p.want = &pubJob{snap: snap, gens: gens}
	p.mu.Unlock()
	p.poke()
}

func (p *publisher) run() {
	backoff := time.Duration(0)
	for {
		var retry <-chan time.Time
		if backoff > 0 {
			retry = p.clock.After(backoff)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-retry:
		}
		p.mu.Lock()
		job := p.want
		p.mu.Unlock()
		if job == nil {
			backoff = 0
			continue
		}
		if job.changed == nil {
			job.changed = map[string]bool{}
			for n, a := range job.gens {
				if p.lastOK[n] != a.Gen {
					job.changed[n] = true
				}
			}
		}
		err := p.apply(job)
		if errors.Is(err, errSuperseded) {
			backoff = 0
			p.poke()
			continue
		}
		p.mu.Lock()
		current := p.want == job
		if current && err == nil {
			p.want = nil
		}
		p.mu.Unlock()
		if err == nil {
			for n, a := range job.gens {
				p.lastOK[n] = a.Gen
			}
			if p.lastErr != "" {
				p.log.Info("data planes applied the routing again", zap.Uint64("version", job.snap.Version))
				p.lastErr = ""
			}
			backoff = 0
			p.reportAll(job, nil)
			continue
		}
		if err.Error() != p.lastErr {
			p.lastErr = err.Error()
			p.log.Error("data plane refused the routing; retrying with backoff (logged once per distinct error)",
				zap.Uint64("version", job.snap.Version), zap.Error(err))
		}
		p.reportAll(job, err)
		if !current {
			backoff = 0 // a newer snapshot is waiting: apply it now
			continue
		}
		backoff = min(max(backoff*2, publishRetryMin), publishRetryMax)
	}
}

// apply hands job's snapshot to every plane and waits until all applied it (or one
// refused). A retry gets a new version, so a plane never mistakes it for the old one.
func (p *publisher) apply(job *pubJob) error {
	if len(p.planes) == 0 {
		return nil
	}
	if job.tries > 0 {
		snap := *job.snap
		snap.Version = p.version.Add(1)
		job.snap = &snap
	}
	job.tries++
	var err error
	for _, dp := range p.planes {
		err = errors.Join(err, dp.Apply(job.snap))
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout())
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(p.planes))
	for i, dp := range p.planes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = dp.WaitApplied(ctx, job.snap.Version)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return errors.Join(errs...)
	case <-p.kick:
		// A newer snapshot (an abort, say) must not wait for this one's ACKs: the
		// planes converge on the newest anyway.
		cancel()
		<-done
		return errSuperseded
	}
}

// errSuperseded: a newer snapshot arrived while this one was being applied.
var errSuperseded = errors.New("superseded by a newer snapshot")

func (p *publisher) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// reportAll tells the controller: on success every rollout's routing is in effect; on
// an error, only the rollouts whose routing this snapshot changed are told (the others
// keep what they had).
func (p *publisher) reportAll(job *pubJob, err error) {
	at := p.clock.Now()
	out := map[string]Applied{}
	for n, a := range job.gens {
		if err != nil && !job.changed[n] {
			continue
		}
		a.Err, a.At = err, at
		out[n] = a
	}
	if len(out) > 0 {
		p.report(out)
	}
}
