package ha

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// shutdownTimeout bounds resigning and revoking on shutdown: when etcd does not answer
// by then, the lease expires on its own.
const shutdownTimeout = 2 * time.Second

// session is one lease of a replica and what hangs on it: the registration and the
// candidacy. It ends when etcd reports the lease gone, or on shutdown.
type session struct {
	r      *Replica
	lease  clientv3.LeaseID
	ctx    context.Context // done when the session ends
	cancel context.CancelFunc
	cs     *concurrency.Session

	mu         sync.Mutex
	validUntil time.Time     // last successful keepalive's send time + TTL/2
	renewed    chan struct{} // closed and replaced at every successful keepalive
	expired    chan struct{} // closed when etcd reports the lease gone
	expireOnce sync.Once
	registered chan struct{} // closed once the registration is written
	regOnce    sync.Once
}

// newSession grants a lease. Its validity starts from the moment the grant was sent.
func (r *Replica) newSession(ctx context.Context) (*session, error) {
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, r.ttl)
	resp, err := r.cli.Grant(gctx, int64(r.ttl/time.Second))
	cancel()
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lease: resp.ID, validUntil: sent.Add(r.ttl / 2),
		renewed: make(chan struct{}), expired: make(chan struct{}), registered: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(ctx)
	// The concurrency session shares the lease; it keeps its own keepalive stream, and
	// closing it revokes the lease.
	s.cs, err = concurrency.NewSession(r.cli, concurrency.WithLease(resp.ID), concurrency.WithContext(s.ctx))
	if err != nil {
		s.cancel()
		return nil, err
	}
	if resp.TTL > int64(r.ttl/time.Second) {
		r.log.Warn("etcd raised the lease TTL: failover takes this long", zap.Int64("grantedTTLSeconds", resp.TTL),
			zap.Duration("leaseTTL", r.ttl))
	}
	return s, nil
}

// run keeps the session until the lease is gone or ctx is done, then cleans up.
func (s *session) run(ctx context.Context) {
	r := s.r
	r.mu.Lock()
	r.session = s
	r.electionChangedLocked()
	r.mu.Unlock()
	r.m.reachable.Set(1)
	r.log.Info("lease granted", zap.String("lease", leaseHex(s.lease)), zap.Duration("ttl", r.ttl))

	var wg sync.WaitGroup
	for _, f := range []func(){s.keepalive, s.register, s.campaign} {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	select {
	case <-ctx.Done():
	case <-s.expired:
		r.log.Warn("lease expired: registering and standing for leader again with a new lease", zap.String("lease", leaseHex(s.lease)))
	}
	s.cancel()
	wg.Wait()
	r.mu.Lock()
	r.session = nil
	r.electionChangedLocked()
	r.mu.Unlock()
	r.m.reachable.Set(0)
	if ctx.Err() != nil {
		// Shutdown: revoke the lease so that the registration goes at once.
		cctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if _, err := r.cli.Revoke(cctx, s.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.log.Warn("revoke lease on shutdown", zap.Error(err))
		}
		cancel()
	}
}

func (s *session) valid() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Before(s.validUntil)
}

func (s *session) until() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.validUntil
}

// waitValid blocks until the lease is valid; false when the session ends first.
func (s *session) waitValid() bool {
	for {
		s.mu.Lock()
		ok, renewed := time.Now().Before(s.validUntil), s.renewed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-renewed:
		case <-s.expired:
			return false
		case <-s.ctx.Done():
			return false
		}
	}
}

func (s *session) expire() {
	s.expireOnce.Do(func() { close(s.expired) })
}

// keepalive renews the lease every TTL/5 with a request of its own, so that the send
// time of each successful renewal is known: etcd keeps the lease at least TTL after it,
// and the replica counts on it for only TTL/2. After a failure it tries again at once
// (an etcd leader election stalls renewals for a second or two).
func (s *session) keepalive() {
	r := s.r
	interval := max(r.ttl/5, 100*time.Millisecond)
	timeout := max(r.ttl/4, 250*time.Millisecond)
	for {
		next := interval
		sent := time.Now()
		cctx, cancel := context.WithTimeout(s.ctx, timeout)
		_, err := r.cli.KeepAliveOnce(cctx, s.lease)
		cancel()
		switch {
		case err == nil:
			s.mu.Lock()
			if u := sent.Add(r.ttl / 2); u.After(s.validUntil) {
				s.validUntil = u
			}
			close(s.renewed)
			s.renewed = make(chan struct{})
			s.mu.Unlock()
			r.m.reachable.Set(1)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.expire()
			return
		case s.ctx.Err() != nil:
			return
		default:
			r.m.keepaliveFail.Inc()
			if !s.valid() {
				r.m.reachable.Set(0)
			}
			next = 50 * time.Millisecond
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(time.Until(sent.Add(next))):
		}
	}
}

// campaign stands for leader while the session lasts, leading whenever elected.
func (s *session) campaign() {
	r := s.r
	el := concurrency.NewElection(s.cs, r.key(leaderDir, ""))
	select {
	case <-s.registered:
	case <-s.ctx.Done():
		return
	}
	for s.ctx.Err() == nil {
		if !s.waitValid() {
			return
		}
		r.mu.Lock()
		mismatch, changed := r.mismatchLocked(), r.leaderChanged
		r.mu.Unlock()
		if mismatch {
			// Another replica leads with another config: do not stand until that changes.
			select {
			case <-changed:
			case <-s.ctx.Done():
			}
			continue
		}
		cctx, cancel := context.WithCancel(s.ctx)
		go s.withdrawOnMismatch(cctx, cancel)
		err := el.Campaign(cctx, r.id)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				r.log.Debug("campaign", zap.Error(err))
				sleep(s.ctx, r.ttl/5)
			}
			continue
		}
		s.lead(el)
	}
}

// withdrawOnMismatch cancels a campaign when a replica with another config leads.
func (s *session) withdrawOnMismatch(ctx context.Context, cancel context.CancelFunc) {
	r := s.r
	for {
		r.mu.Lock()
		mismatch, changed := r.mismatchLocked(), r.leaderChanged
		r.mu.Unlock()
		if mismatch {
			cancel()
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// lead holds the leadership won in el: a term at a time. A term lost to missing
// keepalives is followed by another on the same key once keepalives succeed again and
// the key is still ours (then no other replica can have led in between).
func (s *session) lead(el *concurrency.Election) {
	r := s.r
	key, rev := el.Key(), el.Rev()
	for {
		if !s.waitValid() {
			return
		}
		modRev, err := s.claim(key, rev)
		if errors.Is(err, errKeyGone) {
			r.log.Warn("election key gone: standing for leader again")
			return
		}
		if err != nil {
			sleep(s.ctx, r.ttl/5)
			continue
		}
		t := r.beginTerm(s, key, rev, modRev)
		reason := s.hold(t)
		r.endTerm(t, reason)
		switch reason {
		case reasonKeepalive:
			continue
		case reasonShutdown:
			cctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			if err := el.Resign(cctx); err != nil {
				r.log.Warn("resign on shutdown", zap.Error(err))
			}
			cancel()
			return
		default:
			return
		}
	}
}

var errKeyGone = errors.New("ha: election key gone")

// claim starts a term on the election key: it rewrites the key if it still has our
// create revision and lease, and returns the key's new mod revision. The term's writes
// are fenced on it, so that a write of an earlier term on the same key that reaches etcd
// late (held in a partitioned connection) is refused too.
func (s *session) claim(key string, rev int64) (int64, error) {
	cctx, cancel := context.WithTimeout(s.ctx, s.r.ttl/2)
	defer cancel()
	resp, err := s.r.cli.Txn(cctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", rev),
		clientv3.Compare(clientv3.LeaseValue(key), "=", s.lease),
	).Then(clientv3.OpPut(key, s.r.id, clientv3.WithLease(s.lease))).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, errKeyGone
	}
	return resp.Header.Revision, nil
}

// hold keeps term t until it must end, and returns why: keepalives missing for TTL/2,
// the lease expired, the key deleted, a fenced write refused, or shutdown.
func (s *session) hold(t *Term) string {
	deleted := s.watchDeleted(t.key, t.rev)
	for {
		left := time.Until(s.until())
		if left <= 0 {
			return reasonKeepalive
		}
		timer := time.NewTimer(left)
		select {
		case <-timer.C:
			continue
		case <-deleted:
			timer.Stop()
			return reasonDeposed
		case <-t.lost: // a fenced write was refused
			timer.Stop()
			return t.Reason()
		case <-s.expired:
			timer.Stop()
			return reasonExpired
		case <-s.ctx.Done():
			timer.Stop()
			if s.expiredNow() {
				return reasonExpired
			}
			return reasonShutdown
		}
	}
}

func (s *session) expiredNow() bool {
	select {
	case <-s.expired:
		return true
	default:
		return false
	}
}

// watchDeleted returns a channel closed when the key is deleted or recreated after
// revision rev (an operator's etcdctl del, or the lease expiring). After a watch error
// (etcd restarted, history compacted) it checks the key and watches again; it ends with
// the session.
func (s *session) watchDeleted(key string, rev int64) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		from := rev
		for s.ctx.Err() == nil {
			wch := s.r.cli.Watch(s.ctx, key, clientv3.WithRev(from))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete || ev.Kv.CreateRevision != rev {
						close(gone)
						return
					}
				}
				from = wr.Header.Revision + 1
			}
			for s.ctx.Err() == nil {
				sleep(s.ctx, s.r.ttl/5)
				ok, at, err := s.holds(key, rev)
				if err != nil {
					continue
				}
				if !ok {
					close(gone)
					return
				}
				from = at + 1
				break
			}
		}
	}()
	return gone
}

// holds reports whether the election key still exists with our create revision and
// lease, and the revision at which etcd answered.
func (s *session) holds(key string, rev int64) (bool, int64, error) {
	cctx, cancel := context.WithTimeout(s.ctx, s.r.ttl/2)
	defer cancel()
	resp, err := s.r.cli.Get(cctx, key)
	if err != nil {
		return false, 0, err
	}
	kvs := resp.Kvs
	return len(kvs) == 1 && kvs[0].CreateRevision == rev && clientv3.LeaseID(kvs[0].Lease) == s.lease, resp.Header.Revision, nil
}

func leaseHex(id clientv3.LeaseID) string { return hex16(int64(id)) }
