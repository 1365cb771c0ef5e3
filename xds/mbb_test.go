package xds

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// rolloutModel is a listener "web" with one route owned by a rollout of "api-canary",
// internal traffic marked by x-internal-test from 127.0.0.0/8, and the clusters the
// analyzer would publish. canary < 0 means no rollout in progress (100% stable, no
// internal cluster); promoted means the route now goes to the canary alone.
func rolloutModel(version uint64, canary int, promoted bool) *model.Snapshot {
	ep := func(a string) []model.Endpoint { return []model.Endpoint{{Address: a, Weight: 1}} }
	snap := &model.Snapshot{
		Version: version,
		Clusters: []model.Cluster{
			{Name: "api-canary", Endpoints: ep("127.0.0.1:7002"), ConnectTimeout: time.Second},
			{Name: "api-stable", Endpoints: ep("127.0.0.1:7001"), ConnectTimeout: time.Second},
		},
		Listeners: []model.Listener{{
			Name: "web", Address: "127.0.0.1:10000",
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "api", Hosts: []string{"api.example.com"}, PathPrefix: "/", Cluster: "api-stable"}},
		}},
	}
	r := &snap.Listeners[0].Routes[0]
	switch {
	case promoted:
		r.Cluster = "api-canary"
	case canary >= 0:
		r.Rollout = "api"
		r.Split = []model.WeightedCluster{{Cluster: "api-stable", Weight: 100 - canary}, {Cluster: "api-canary", Weight: canary}}
		r.InternalCluster = "api-canary"
		r.HeaderRoutes = []model.HeaderRoute{{Name: "beta", Cluster: "api-canary",
			Headers: []model.HeaderMatch{{Name: "x-beta", Value: model.StringMatch{Exact: "1"}}}}}
	}
	return snap
}

// envoyFleet is a few strict fake Envoys on one Sluice.
type envoyFleet struct {
	t       *testing.T
	s       *Server
	clients []*xdstest.Client
}

func startFleet(t *testing.T, n int, first *model.Snapshot) *envoyFleet {
	t.Helper()
	s := startXDS(t, "127.0.0.1:0", nil)
	if err := s.Apply(first); err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, s.Addr().String())
	f := &envoyFleet{t: t, s: s}
	for i := range n {
		f.clients = append(f.clients, startEnvoy(t, cc, xdstest.Options{Node: &corev3.Node{Id: fmt.Sprintf("envoy-%d", i), Cluster: "edge"}}))
	}
	f.settle(first.Version)
	return f
}

// settle waits until every client holds version v, then checks that no fake Envoy saw a
// 503 window, NACKed, or still waits for endpoints.
func (f *envoyFleet) settle(v uint64) {
	f.t.Helper()
	eventually(f.t, 10*time.Second, fmt.Sprintf("%d nodes connected", len(f.clients)), func() bool {
		n := 0
		for _, ns := range f.s.Nodes() {
			if ns.Connected {
				n++
			}
		}
		return n == len(f.clients)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.s.WaitApplied(ctx, v); err != nil {
		f.t.Fatalf("version %d: %v", v, err)
	}
	for i, c := range f.clients {
		st := c.Stats()
		if len(st.Violations) > 0 || st.NACKs > 0 || len(st.Warming) > 0 || st.Served503 > 0 {
			f.t.Fatalf("version %d, envoy-%d: %d 503 windows %q, %d NACKs (%s), warming %v, %d 503s served",
				v, i, len(st.Violations), st.Violations, st.NACKs, st.LastNACK, st.Warming, st.Served503)
		}
	}
}

func (f *envoyFleet) apply(snap *model.Snapshot) {
	f.t.Helper()
	if err := f.s.Apply(snap); err != nil {
		f.t.Fatal(err)
	}
	f.settle(snap.Version)
}

// ask sends a request through every client's listener "web" and returns the clusters.
func (f *envoyFleet) ask(req xdstest.Request) []xdstest.Result {
	var out []xdstest.Result
	for _, c := range f.clients {
		out = append(out, c.Match("web", req))
	}
	return out
}

// TestMakeBeforeBreakThroughARollout drives a fleet of strict fake Envoys through
// everything a rollout and its operator do: start (a new internal cluster), weight
// steps, abort, a new start, promotion, then configuration reloads that change a
// cluster's definition, add a cluster with a route to it, and remove both. After every
// response each fake Envoy checked that no route sent traffic to an absent or warming
// cluster (a 503 window), and at the end of every step that no cluster still waits for
// its endpoints. On go-control-plane's snapshot cache with two back-to-back snapshots
// (the code before this test) the rollout start and end open 503 windows and the
// changed cluster never gets its endpoints again.
func TestMakeBeforeBreakThroughARollout(t *testing.T) {
	f := startFleet(t, 3, rolloutModel(1, -1, false))
	internal := xdstest.Request{Host: "api.example.com", Path: "/x", Peer: netip.MustParseAddr("127.0.0.1"),
		Header: http.Header{"X-Internal-Test": {"true"}}}

	f.apply(rolloutModel(2, 10, false)) // rollout start: api-canary-internal appears
	for _, r := range f.ask(internal) {
		if r.Status != 200 || r.Cluster != "api-canary-internal" {
			t.Fatalf("internal request at rollout start: %+v", r)
		}
	}
	f.apply(rolloutModel(3, 50, false))
	f.apply(rolloutModel(4, 0, false)) // abort: weight 0 …
	f.apply(rolloutModel(5, -1, false))
	for _, r := range f.ask(internal) { // … and the rollout's routes go
		if r.Status != 200 || r.Cluster != "api-stable" {
			t.Fatalf("internal request after the abort: %+v", r)
		}
	}
	f.apply(rolloutModel(6, 20, false)) // retry
	f.apply(rolloutModel(7, 100, false))
	f.apply(rolloutModel(8, 0, true)) // promoted: the canary alone, no internal cluster
	for _, r := range f.ask(xdstest.Request{Host: "api.example.com", Path: "/"}) {
		if r.Status != 200 || r.Cluster != "api-canary" {
			t.Fatalf("after promotion: %+v", r)
		}
	}

	// Reload: the stable cluster's definition changes (connect timeout). Envoy re-creates
	// it and waits for its endpoints; they must come again.
	reload := rolloutModel(9, 0, true)
	reload.Clusters[1].ConnectTimeout = 3 * time.Second
	f.apply(reload)
	for i, c := range f.clients {
		cl, cla, ok := c.Cluster("api-stable")
		if !ok || cl.GetConnectTimeout().AsDuration() != 3*time.Second || len(cla.GetEndpoints()) != 1 {
			t.Fatalf("envoy-%d: api-stable after the reload: %v %v %v", i, ok, cl, cla)
		}
	}
	// Reload: a new cluster and a route to it, in one step …
	add := rolloutModel(10, 0, true)
	add.Clusters[1].ConnectTimeout = 3 * time.Second
	add.Clusters = append(add.Clusters, model.Cluster{Name: "static", Endpoints: []model.Endpoint{{Address: "127.0.0.1:7100", Weight: 1}}})
	add.Listeners[0].Routes = append([]model.Route{{Name: "static", Hosts: []string{"api.example.com"}, PathPrefix: "/static/", Cluster: "static"}},
		add.Listeners[0].Routes...)
	f.apply(add)
	for _, r := range f.ask(xdstest.Request{Host: "api.example.com", Path: "/static/a.css"}) {
		if r.Status != 200 || r.Cluster != "static" {
			t.Fatalf("new route: %+v", r)
		}
	}
	// … and both gone again.
	gone := rolloutModel(11, 0, true)
	gone.Clusters[1].ConnectTimeout = 3 * time.Second
	f.apply(gone)
	for i, c := range f.clients {
		if _, _, ok := c.Cluster("static"); ok {
			t.Fatalf("envoy-%d still holds the removed cluster", i)
		}
		if _, _, ok := c.Cluster("api-canary-internal"); ok {
			t.Fatalf("envoy-%d still holds the internal cluster after the rollout", i)
		}
	}
	for _, r := range f.ask(xdstest.Request{Host: "api.example.com", Path: "/static/a.css"}) {
		if r.Status != 200 || r.Cluster != "api-canary" {
			t.Fatalf("after removing the static route: %+v", r)
		}
	}
}

// TestEndpointsFollowAChangedCluster: a cluster whose definition changes is re-created by
// Envoy, which then waits for its endpoints (go-control-plane#245, envoy#13009). The
// fake Envoy's cluster must not stay warming, and the endpoints must be sent after the
// cluster, not before.
func TestEndpointsFollowAChangedCluster(t *testing.T) {
	f := startFleet(t, 1, rolloutModel(1, 10, false))
	c := f.clients[0]
	snap := rolloutModel(2, 10, false)
	snap.Clusters[0].ConnectTimeout = 2 * time.Second // api-canary changes
	if err := f.s.Apply(snap); err != nil {
		t.Fatal(err)
	}
	// settle fails while the re-created cluster waits for its endpoints.
	f.settle(2)
	if cl, cla, ok := c.Cluster("api-canary"); !ok || cl.GetConnectTimeout().AsDuration() != 2*time.Second || len(cla.GetEndpoints()) != 1 {
		t.Fatalf("api-canary: usable %v, %v, endpoints %v", ok, cl, cla)
	}
	if got := c.Accepted(resourcev3.EndpointType); got == "" {
		t.Fatal("no endpoints accepted")
	}
}

// TestStrictEnvoyNACKsAnOversizedRegex: a regex over RE2's default program size is
// refused by Check before it is sent (the fake Envoy would NACK it, as Envoy does).
func TestStrictEnvoyNACKsAnOversizedRegex(t *testing.T) {
	f := startFleet(t, 1, rolloutModel(1, 10, false))
	snap := rolloutModel(2, 10, false)
	snap.Listeners[0].Routes[0].HeaderRoutes[0].Headers[0].Value = model.StringMatch{Regex: strings.Repeat("(a|bc)+", 20)}
	err := f.s.Apply(snap)
	if err == nil || !strings.Contains(err.Error(), "RE2 program size") {
		t.Fatalf("Apply = %v, want Check to refuse the regex by its RE2 program size", err)
	}
}
