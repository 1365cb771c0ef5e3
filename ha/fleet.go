package ha

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"
)

// ReplicaLabel is the label FleetGatherer adds to every series: the ID of the replica
// whose router counted it. Queries that sum (sum(rate(...))) aggregate it away.
const ReplicaLabel = "replica"

// FleetOptions configures FleetGatherer.
type FleetOptions struct {
	// Path is where a replica's admin API serves its router series, e.g.
	// /api/v1/router/metrics (in any format promhttp negotiates).
	Path string
	// Token returns the admin API's bearer token, sent to the other replicas (nil or "":
	// none). Replicas share their config, so they share the token.
	Token func() string
	// Timeout bounds each replica's answer (default 500 ms).
	Timeout time.Duration
	// Client makes the requests (default: a plain http.Client).
	Client *http.Client
}

// fleetGatherer is the Gatherer FleetGatherer returns.
type fleetGatherer struct {
	r     *Replica
	local prometheus.Gatherer
	opts  FleetOptions

	mu       sync.Mutex
	peers    []Info    // the other live replicas, as last read
	readAt   time.Time // when peers was read
	lastErrs map[string]string
}

// FleetGatherer returns a prometheus.Gatherer of the router series of every live
// replica: local's as this replica's, the others' fetched from their admin API at
// opts.Path, each series labelled replica="ID" (ReplicaLabel). Fed to the embedded
// PromQL store and the judge, it lets the leader's analysis see the traffic of every
// router of the fleet, not only its own. A replica that does not answer in time is left
// out of that gather — its series go stale, as after a failed Prometheus scrape — and
// the error is logged once per replica and distinct message. The live replicas are read
// from etcd at most once a second; while etcd is unreachable the last list is used.
func (r *Replica) FleetGatherer(local prometheus.Gatherer, opts FleetOptions) prometheus.Gatherer {
	if opts.Timeout <= 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	return &fleetGatherer{r: r, local: local, opts: opts, lastErrs: map[string]string{}}
}

// peerList returns the other live replicas, reading them from etcd when the list is
// older than a second.
func (f *fleetGatherer) peerList() []Info {
	f.mu.Lock()
	fresh := time.Since(f.readAt) < time.Second
	peers := f.peers
	f.mu.Unlock()
	if fresh {
		return peers
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.Timeout)
	v, err := f.r.View(ctx)
	cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readAt = time.Now()
	if err != nil {
		return f.peers // etcd unreachable: keep gathering from the replicas last seen
	}
	f.peers = f.peers[:0:0]
	for _, in := range v.Replicas {
		if in.ID != f.r.id && in.Admin != "" {
			f.peers = append(f.peers, in)
		}
	}
	return f.peers
}

// Gather returns every replica's families merged by name, each series labelled with
// its replica. It fails only when the local gather fails; a replica that does not
// answer is logged and left out.
func (f *fleetGatherer) Gather() ([]*dto.MetricFamily, error) {
	peers := f.peerList()
	type answer struct {
		id  string
		mfs []*dto.MetricFamily
		err error
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mfs, err := f.fetch(p.Admin)
			answers[i] = answer{id: p.ID, mfs: mfs, err: err}
		}()
	}
	local, lerr := f.local.Gather()
	wg.Wait()

	merged := map[string]*dto.MetricFamily{}
	add := func(id string, mfs []*dto.MetricFamily) {
		for _, mf := range mfs {
			into := merged[mf.GetName()]
			if into == nil {
				into = &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type, Unit: mf.Unit}
				merged[mf.GetName()] = into
			} else if into.GetType() != mf.GetType() {
				continue // another Sluice version's series of another type: not comparable
			}
			for _, m := range mf.GetMetric() {
				into.Metric = append(into.Metric, withReplica(m, id))
			}
		}
	}
	add(f.r.id, local)
	for _, a := range answers {
		f.noteError(a.id, a.err)
		if a.err == nil {
			add(a.id, a.mfs)
		}
	}
	out := make([]*dto.MetricFamily, 0, len(merged))
	for _, mf := range merged {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, lerr
}

// fetch reads one replica's router series from its admin API.
func (f *fleetGatherer) fetch(admin string) ([]*dto.MetricFamily, error) {
	base := admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+f.opts.Path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	if f.opts.Token != nil {
		if t := f.opts.Token(); t != "" {
			req.Header.Set("Authorization", "Bearer "+t)
		}
	}
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s%s: HTTP %d: %s", admin, f.opts.Path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, fmt.Errorf("%s%s: %w", admin, f.opts.Path, err)
		}
		out = append(out, mf)
	}
}

// noteError logs a replica's error once per distinct message, and its recovery.
func (f *fleetGatherer) noteError(id string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if f.lastErrs[id] == msg {
		return
	}
	if msg == "" {
		f.r.log.Info("router series of a replica readable again", zap.String("peer", id))
		delete(f.lastErrs, id)
		return
	}
	f.lastErrs[id] = msg
	f.r.log.Warn("cannot read a replica's router series: its traffic is missing from analysis until it answers",
		zap.String("peer", id), zap.Error(err))
}

// withReplica returns m with the replica label added (m itself is not modified).
func withReplica(m *dto.Metric, id string) *dto.Metric {
	name, value := ReplicaLabel, id
	labels := make([]*dto.LabelPair, 0, len(m.GetLabel())+1)
	for _, lp := range m.GetLabel() {
		if lp.GetName() != ReplicaLabel {
			labels = append(labels, lp)
		}
	}
	labels = append(labels, &dto.LabelPair{Name: &name, Value: &value})
	sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
	return &dto.Metric{Label: labels, Counter: m.Counter, Gauge: m.Gauge, Histogram: m.Histogram,
		Summary: m.Summary, Untyped: m.Untyped, TimestampMs: m.TimestampMs}
}
