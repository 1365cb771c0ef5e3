package discovery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// DefaultDebounce is how long the Manager gathers answers before publishing.
const DefaultDebounce = 100 * time.Millisecond

// Options configures a Manager. Zero fields take the defaults.
type Options struct {
	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics not registered
	// OnChange receives the clusters whose set changed, sorted by name. It is called
	// from one goroutine, never concurrently, in order; it should not block for long
	// (answers keep being gathered meanwhile, and are published after it returns).
	OnChange func([]Change)
	// Debounce gathers the answers of this long into one OnChange (default 100 ms).
	Debounce time.Duration
	// KubeClient builds the Kubernetes client (default DefaultKubeClient).
	KubeClient KubeClientFunc
	// ResolvConf is read when the configuration names no DNS servers
	// (default /etc/resolv.conf).
	ResolvConf string
	// DNSTimeout bounds one DNS query to one server (default 2 s).
	DNSTimeout time.Duration
	// Now is the clock for status times (default time.Now).
	Now func() time.Time
}

// Change is a cluster's new endpoint set.
type Change struct {
	Cluster string
	// Endpoints is the cluster's whole current set: its fixed endpoints and all that
	// its sources found, one per address, sorted by address. Draining ones are in it
	// with Draining set.
	Endpoints []model.Endpoint
	// Removed: the cluster left the configuration or no longer discovers; serve its
	// configured endpoints again.
	Removed bool
}

// Manager runs the discovery sources the configuration asks for and publishes each
// discovered cluster's set when it changes.
type Manager struct {
	opts   Options
	log    *zap.Logger
	m      *metrics
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	mu        sync.Mutex
	clusters  map[string]*clusterState
	dirty     map[string]bool // clusters whose set may have changed
	removed   map[string]bool // clusters to announce as Removed
	published map[string][]model.Endpoint
	// delivering: changes were taken and OnChange has not returned yet.
	delivering bool
	// changed is closed and replaced whenever the state moves (for WaitResolved).
	changed chan struct{}
}

type clusterState struct {
	fixed   []model.Endpoint
	sources []*sourceState
}

// sourceState is one running Source and what it has found.
type sourceState struct {
	key     string // the configuration it runs: a different key restarts it
	cancel  context.CancelFunc
	stopped bool
	status  Status
}

// NewManager returns a Manager running no source; Update starts them.
func NewManager(opts Options) *Manager {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.KubeClient == nil {
		opts.KubeClient = DefaultKubeClient
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, log: log, m: newMetrics(opts.Registerer), now: opts.Now, ctx: ctx, cancel: cancel,
		kick:     make(chan struct{}, 1),
		clusters: map[string]*clusterState{}, dirty: map[string]bool{}, removed: map[string]bool{},
		published: map[string][]model.Endpoint{}, changed: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.loop()
	return m
}

// Close stops every source and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Update makes the running sources match cfg: a cluster with a dns or kubernetes
// block gets a source for each; a source whose settings did not change keeps running
// with what it has found; a cluster that no longer discovers is announced Removed.
// A change of a cluster's fixed endpoints is published without restarting anything.
func (m *Manager) Update(cfg *model.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, c := range cfg.Clusters {
		if c.DNS == nil && c.Kubernetes == nil {
			continue
		}
		want[c.Name] = true
		delete(m.removed, c.Name)
		cs := m.clusters[c.Name]
		if cs == nil {
			cs = &clusterState{}
			m.clusters[c.Name] = cs
		}
		cs.fixed = merge(c.Endpoints)
		var next []*sourceState
		if c.DNS != nil {
			key := fmt.Sprintf("dns %+v servers %v", *c.DNS, cfg.ControlPlane.DNS.Servers)
			next = append(next, m.keepOrStart(c.Name, cs, key, func() Source {
				return NewDNSSource(*c.DNS, cfg.ControlPlane.DNS.Servers, m.opts.ResolvConf, m.opts.DNSTimeout)
			}))
		}
		if c.Kubernetes != nil {
			key := fmt.Sprintf("kubernetes %+v kubeconfig %q", *c.Kubernetes, cfg.ControlPlane.Kubernetes.Kubeconfig)
			next = append(next, m.keepOrStart(c.Name, cs, key, func() Source {
				return NewKubernetesSource(*c.Kubernetes, cfg.ControlPlane.Kubernetes.Kubeconfig, m.opts.KubeClient)
			}))
		}
		for _, st := range cs.sources {
			if !slices.Contains(next, st) {
				m.stop(st)
			}
		}
		cs.sources = next
		m.dirty[c.Name] = true
	}
	for name, cs := range m.clusters {
		if want[name] {
			continue
		}
		for _, st := range cs.sources {
			m.stop(st)
		}
		delete(m.clusters, name)
		delete(m.dirty, name)
		delete(m.published, name)
		m.removed[name] = true
		m.m.forget(name)
	}
	m.moved()
}

// keepOrStart returns cs's source running key, or starts a new one.
func (m *Manager) keepOrStart(cluster string, cs *clusterState, key string, build func() Source) *sourceState {
	for _, st := range cs.sources {
		if st.key == key {
			return st
		}
	}
	src := build()
	ctx, cancel := context.WithCancel(m.ctx)
	st := &sourceState{key: key, cancel: cancel, status: Status{Cluster: cluster, Source: src.Kind(), Target: src.Target()}}
	m.log.Info("discovery started", zap.String("cluster", cluster), zap.String("source", src.Kind()), zap.String("target", src.Target()))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		src.Run(ctx, func(r Result) { m.report(st, r) })
	}()
	return st
}

func (m *Manager) stop(st *sourceState) {
	st.stopped = true
	st.cancel()
}

// report records one answer of a source.
func (m *Manager) report(st *sourceState, r Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.stopped {
		return
	}
	now := m.now()
	s := &st.status
	log := m.log.With(zap.String("cluster", s.Cluster), zap.String("source", s.Source), zap.String("target", s.Target))
	s.Answers++
	s.Refresh = r.Refresh
	kind := kindOf(r.Err)
	good := r.Err == nil && serving(r.Endpoints) > 0
	if r.Err == nil && !good {
		kind = ResultEmpty
	}
	m.m.resolutions.WithLabelValues(s.Cluster, kind).Inc()
	if good {
		if s.Error != "" {
			log.Info("discovery recovered", zap.String("after", s.Error), zap.Duration("failedFor", now.Sub(s.ErrorSince)), zap.Int("endpoints", serving(r.Endpoints)))
		}
		s.Error, s.ErrorDetail, s.ErrorSince, s.ConsecutiveEmpty = "", "", time.Time{}, 0
		s.LastSuccess, s.TTL = now, r.TTL
		if !equal(s.Endpoints, r.Endpoints) {
			added, removed := diff(s.Endpoints, r.Endpoints)
			log.Info("discovered endpoints changed", zap.Int("endpoints", serving(r.Endpoints)), zap.Int("draining", len(r.Endpoints)-serving(r.Endpoints)),
				zap.Strings("added", added), zap.Strings("removed", removed))
			s.Endpoints, s.LastChange = r.Endpoints, now
			m.dirty[s.Cluster] = true
		}
		m.setLastSuccess(s.Cluster)
	} else {
		short, detail := "empty answer", "the answer has no endpoint"
		if r.Err != nil {
			short, detail = shortOf(r.Err), r.Err.Error()
		} else if len(r.Endpoints) > 0 {
			short, detail = "no ready endpoint", fmt.Sprintf("all %d endpoints are terminating", len(r.Endpoints))
		}
		if kind == ResultEmpty || kind == ResultNXDomain {
			s.ConsecutiveEmpty++
		} else {
			s.ConsecutiveEmpty = 0
		}
		if short != s.Error {
			s.ErrorSince = now
			log.Warn("discovery failed; the last good endpoints keep serving", zap.String("error", detail),
				zap.Int("serving", serving(s.Endpoints)), zap.Time("servingSince", s.LastSuccess))
		}
		s.Error, s.ErrorDetail = short, detail
	}
	m.moved()
}

// setLastSuccess sets the cluster's gauge to its newest good answer.
func (m *Manager) setLastSuccess(cluster string) {
	var last time.Time
	for _, st := range m.clusters[cluster].sources {
		if st.status.LastSuccess.After(last) {
			last = st.status.LastSuccess
		}
	}
	m.m.lastSuccess.WithLabelValues(cluster).Set(float64(last.UnixNano()) / 1e9)
}

// moved wakes the publishing loop and WaitResolved; the caller holds mu.
func (m *Manager) moved() {
	close(m.changed)
	m.changed = make(chan struct{})
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// loop publishes changes, Debounce after the first answer that may change a set.
func (m *Manager) loop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
		}
		t := time.NewTimer(m.opts.Debounce)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select { // answers during the wait are published now
		case <-m.kick:
		default:
		}
		changes := m.collect()
		if len(changes) > 0 && m.opts.OnChange != nil {
			m.opts.OnChange(changes)
		}
		m.mu.Lock()
		m.delivering = false
		m.moved()
		m.mu.Unlock()
	}
}

// collect takes the sets that changed since the last publication.
func (m *Manager) collect() []Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Change
	for name := range m.removed {
		out = append(out, Change{Cluster: name, Removed: true})
	}
	clear(m.removed)
	for name := range m.dirty {
		cs := m.clusters[name]
		set := cs.current()
		m.m.endpoints.WithLabelValues(name).Set(float64(serving(set)))
		if prev, ok := m.published[name]; ok && equal(prev, set) {
			continue
		}
		m.published[name] = set
		out = append(out, Change{Cluster: name, Endpoints: set})
	}
	clear(m.dirty)
	slices.SortStableFunc(out, func(a, b Change) int { return strings.Compare(a.Cluster, b.Cluster) })
	m.delivering = len(out) > 0
	return out
}

// current is the cluster's fixed endpoints plus every source's last good set.
func (cs *clusterState) current() []model.Endpoint {
	sets := [][]model.Endpoint{cs.fixed}
	for _, st := range cs.sources {
		sets = append(sets, st.status.Endpoints)
	}
	return merge(sets...)
}

// WaitResolved returns once every source has answered at least once (well or not)
// and what they found has been published, or when ctx ends. Startup calls it, with a
// deadline, so that the first snapshot carries discovered endpoints.
func (m *Manager) WaitResolved(ctx context.Context) error {
	for {
		m.mu.Lock()
		done := len(m.dirty) == 0 && len(m.removed) == 0 && !m.delivering
		for _, cs := range m.clusters {
			for _, st := range cs.sources {
				done = done && st.status.Answers > 0
			}
		}
		ch := m.changed
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Endpoints returns the set last published for cluster, and whether the cluster is
// discovered at all.
func (m *Manager) Endpoints(cluster string) ([]model.Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set, ok := m.published[cluster]
	return set, ok
}

// Status returns every source's status, by cluster, DNS before Kubernetes.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Status
	for _, cs := range m.clusters {
		for _, st := range cs.sources {
			out = append(out, st.status)
		}
	}
	slices.SortStableFunc(out, func(a, b Status) int {
		if c := strings.Compare(a.Cluster, b.Cluster); c != 0 {
			return c
		}
		return strings.Compare(a.Source, b.Source)
	})
	return out
}

// diff lists the addresses only in b (added) and only in a (removed), at most 10 each.
func diff(a, b []model.Endpoint) (added, removed []string) {
	only := func(x, y []model.Endpoint) []string {
		in := make(map[string]bool, len(y))
		for _, e := range y {
			in[e.Address] = true
		}
		var out []string
		for _, e := range x {
			if len(out) < 10 && !in[e.Address] {
				out = append(out, e.Address)
			}
		}
		return out
	}
	return only(b, a), only(a, b)
}
