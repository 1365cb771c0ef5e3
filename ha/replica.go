package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// Key directories under the prefix (see the package doc).
const (
	leaderDir   = "leader"
	statesDir   = "states/"
	replicasDir = "replicas/"
	commandsDir = "commands/"
	outcomesDir = "outcomes/"
	sharedDir   = "shared/"
)

// Options configures a Replica.
type Options struct {
	// ID names this replica; unique among the replicas (default DefaultID(Admin)).
	// A replica restarted with the same ID waits until its previous registration's
	// lease has expired.
	ID string
	// Admin is this replica's admin API address, shown to operators and other replicas.
	Admin string
	// ConfigDigest is ConfigDigest of the running config (SetConfigDigest on reload).
	ConfigDigest string
	// Logger receives leadership changes and etcd trouble (nil: no logs).
	Logger *zap.Logger
	// Registerer registers the sluice_ha_* metrics (nil: not registered).
	Registerer prometheus.Registerer
	// DialTimeout bounds each connection attempt to etcd (default 5 s).
	DialTimeout time.Duration
}

// DefaultID is a replica ID from the host name and the admin address, stable across
// restarts: e.g. "sluice-0/0.0.0.0:9900".
func DefaultID(admin string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "sluice"
	}
	return h + "/" + admin
}

// Replica is one Sluice process's membership in the replicated control plane: its lease,
// registration and candidacy. Run drives it; Terms hands out leadership. All methods are
// safe for concurrent use.
type Replica struct {
	cli    *clientv3.Client
	id     string
	admin  string
	prefix string
	ttl    time.Duration
	log    *zap.Logger
	m      *metrics
	terms  chan *Term

	mu            sync.Mutex
	digest        string
	applied       map[string]Applied
	changed       chan struct{} // registration content changed (capacity 1)
	session       *session      // current lease, nil between leases
	term          *Term         // current term, nil when not leading
	termSeq       uint64
	leader        leaderInfo
	leaderChanged chan struct{} // closed and replaced when leader or digest changes
}

// leaderInfo is what a replica knows about the current leader.
type leaderInfo struct {
	known  bool // false: etcd could not be read
	ID     string
	Digest string
	lease  clientv3.LeaseID // 0: no leader
}

// Open connects to the etcd cluster cfg names (without waiting for it) and returns a
// Replica. Call Run to join; Close when Run has returned.
func Open(cfg *model.EtcdStore, opts Options) (*Replica, error) {
	if cfg == nil {
		return nil, errors.New("ha: no etcd store configured")
	}
	if cfg.LeaseTTL < time.Second || cfg.LeaseTTL%time.Second != 0 {
		return nil, fmt.Errorf("ha: leaseTTL %s must be whole seconds, at least 1s", cfg.LeaseTTL)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if opts.ID == "" {
		opts.ID = DefaultID(opts.Admin)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	cli, err := newClient(cfg, opts.DialTimeout, log)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "/sluice/"
	}
	return &Replica{
		cli: cli, id: opts.ID, admin: opts.Admin, prefix: prefix, ttl: cfg.LeaseTTL,
		log: log.With(zap.String("replica", opts.ID)), m: m, terms: make(chan *Term),
		digest: opts.ConfigDigest, applied: map[string]Applied{}, changed: make(chan struct{}, 1),
		leaderChanged: make(chan struct{}),
	}, nil
}

// Close closes the etcd client. Call it after Run has returned.
func (r *Replica) Close() error { return r.cli.Close() }

// ID returns the replica's ID.
func (r *Replica) ID() string { return r.id }

// Terms delivers each term of leadership this replica wins, once. A term nobody
// receives before it is lost is dropped.
func (r *Replica) Terms() <-chan *Term { return r.terms }

// Term returns the current term, or nil when this replica does not lead.
func (r *Replica) Term() *Term {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.term != nil && r.term.Valid() {
		return r.term
	}
	return nil
}

// Status is what a replica knows about itself and the leader.
type Status struct {
	ID string `json:"id"`
	// Leader is the leading replica's ID ("" when there is none, or etcd cannot be read).
	Leader string `json:"leader"`
	// Leading is true while this replica holds a valid term.
	Leading bool `json:"leading"`
	// EtcdReachable is true while this replica's lease keepalives succeed.
	EtcdReachable bool `json:"etcdReachable"`
	// ConfigDigest is this replica's digest; LeaderDigest the leader's.
	ConfigDigest string `json:"configDigest"`
	LeaderDigest string `json:"leaderDigest,omitempty"`
	// ConfigMismatch is true when the leader runs a config with another digest: this
	// replica then does not stand for leader.
	ConfigMismatch bool `json:"configMismatch"`
}

// Status returns the replica's current status.
func (r *Replica) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{ID: r.id, ConfigDigest: r.digest}
	if r.leader.known && r.leader.lease != 0 {
		st.Leader, st.LeaderDigest = r.leader.ID, r.leader.Digest
		st.ConfigMismatch = r.mismatchLocked()
	}
	st.Leading = r.term != nil && r.term.Valid()
	st.EtcdReachable = r.session != nil && r.session.valid()
	return st
}

// SetConfigDigest records the digest of a reloaded config in the registration, where
// the other replicas compare theirs with the leader's.
func (r *Replica) SetConfigDigest(d string) {
	r.mu.Lock()
	r.digest = d
	r.registrationChangedLocked()
	r.electionChangedLocked()
	r.mu.Unlock()
}

// registrationChangedLocked wakes the registration writer.
func (r *Replica) registrationChangedLocked() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// electionChangedLocked wakes whoever waits on the leader or this replica's digest.
func (r *Replica) electionChangedLocked() {
	close(r.leaderChanged)
	r.leaderChanged = make(chan struct{})
	r.m.mismatch.Set(b2f(r.mismatchLocked()))
}

// mismatchLocked: a leader other than this replica runs a config with another digest.
func (r *Replica) mismatchLocked() bool {
	l := r.leader
	own := r.session != nil && l.lease == r.session.lease
	return l.known && l.lease != 0 && !own && l.Digest != "" && l.Digest != r.digest
}

func (r *Replica) setLeader(l leaderInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l == r.leader {
		return
	}
	if l.known && l.lease != 0 && (l.ID != r.leader.ID || l.lease != r.leader.lease) {
		r.log.Info("leader", zap.String("leader", l.ID), zap.String("leaderDigest", l.Digest))
	}
	r.leader = l
	if r.mismatchLocked() {
		r.log.Error("config differs from the leader's: this replica will not lead until they match",
			zap.String("configDigest", r.digest), zap.String("leaderDigest", l.Digest), zap.String("leader", l.ID))
	}
	r.electionChangedLocked()
}

func (r *Replica) key(dir, name string) string { return r.prefix + dir + name }

// Run joins the replicated control plane and keeps this replica in it until ctx is
// done: it holds a lease (a new one whenever the old one expired), registers under it,
// and stands for leader. On return every term has been lost, leadership resigned and
// the lease revoked (when etcd was reachable), so another replica takes over at once.
func (r *Replica) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.watchLeader(ctx) }()
	defer wg.Wait()
	unreachableSince := time.Time{}
	for ctx.Err() == nil {
		s, err := r.newSession(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if unreachableSince.IsZero() {
				unreachableSince = time.Now()
				r.log.Error("etcd unreachable: no lease; this replica does not lead and keeps serving the last state", zap.Error(err))
			}
			sleep(ctx, r.ttl/5)
			continue
		}
		if !unreachableSince.IsZero() {
			r.log.Info("etcd reachable again", zap.Duration("after", time.Since(unreachableSince)))
			unreachableSince = time.Time{}
		}
		s.run(ctx)
	}
	return nil
}

// watchLeader keeps r.leader current: the candidate with the oldest election key leads,
// and its registration carries its config digest.
func (r *Replica) watchLeader(ctx context.Context) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, r.ttl)
		l, rev, err := r.readLeader(rctx)
		cancel()
		if err != nil {
			r.setLeader(leaderInfo{})
			sleep(ctx, r.ttl/5)
			continue
		}
		r.setLeader(l)
		// Watch the election and the leader's registration; read again on any change.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		elec := r.cli.Watch(wctx, r.key(leaderDir, "/"), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		var reg clientv3.WatchChan
		if l.lease != 0 {
			reg = r.cli.Watch(wctx, r.key(replicasDir, l.ID), clientv3.WithRev(rev+1))
		}
		select {
		case <-elec:
		case <-reg:
		case <-ctx.Done():
		}
		cancel()
	}
}

// readLeader reads the election's oldest candidate and its registration at one revision.
func (r *Replica) readLeader(ctx context.Context) (leaderInfo, int64, error) {
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.key(leaderDir, "/"), clientv3.WithFirstCreate()...),
		clientv3.OpGet(r.key(replicasDir, ""), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return leaderInfo{}, 0, err
	}
	l := leaderInfo{known: true}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		l.ID, l.lease = string(kvs[0].Value), clientv3.LeaseID(kvs[0].Lease)
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			var in Info
			if json.Unmarshal(kv.Value, &in) == nil && in.ID == l.ID {
				l.Digest = in.ConfigDigest
			}
		}
	}
	return l, resp.Header.Revision, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
