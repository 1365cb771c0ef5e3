package discovery

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sluice-mesh/sluice/model"
)

// plane records what it is given, like the router or the xDS server would serve it.
type plane struct {
	mu      sync.Mutex
	applied []*model.Snapshot
	waited  []uint64
	refuse  bool
}

func (p *plane) Apply(s *model.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse {
		return errors.New("refused")
	}
	p.applied = append(p.applied, s)
	return nil
}

func (p *plane) WaitApplied(_ context.Context, v uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waited = append(p.waited, v)
	return nil
}

func (p *plane) last() *model.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied[len(p.applied)-1]
}

func TestOverlayPutsDiscoveredEndpointsIntoSnapshots(t *testing.T) {
	router, xds := &plane{}, &plane{}
	o := NewOverlay(nil, router, xds)
	fixed := eps("192.0.2.1:80")
	snap := func(v uint64, weight int) *model.Snapshot {
		return &model.Snapshot{Version: v, Clusters: []model.Cluster{
			{Name: "api", Endpoints: fixed}, {Name: "static", Endpoints: eps("192.0.2.9:80")}},
			Listeners: []model.Listener{{Name: "edge", Routes: []model.Route{{Cluster: "api", Split: []model.WeightedCluster{{Cluster: "api", Weight: weight}}}}}}}
	}
	// Discovery answers before the analyzer's first snapshot: kept for it.
	found := []model.Endpoint{{Address: "10.0.0.1:80", Weight: 1}, {Address: "10.0.0.2:80", Weight: 1, Draining: true}}
	o.OnChange([]Change{{Cluster: "api", Endpoints: found}})
	if len(router.applied) != 0 {
		t.Fatal("applied before the analyzer's first snapshot")
	}
	s7 := snap(7, 100)
	if err := o.Apply(s7); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*plane{router, xds} {
		got := p.last()
		if !equal(got.Cluster("api").Endpoints, found) || !equal(got.Cluster("static").Endpoints, eps("192.0.2.9:80")) {
			t.Errorf("snapshot clusters %+v", got.Clusters)
		}
	}
	if !equal(s7.Cluster("api").Endpoints, fixed) {
		t.Error("the analyzer's snapshot was modified")
	}

	// A discovery change re-applies the last snapshot: same listeners, new endpoints,
	// a newer version.
	o.OnChange([]Change{{Cluster: "api", Endpoints: eps("10.0.0.3:80")}})
	got := router.last()
	if got.Version <= 1 || &got.Listeners[0] != &s7.Listeners[0] || !equal(got.Cluster("api").Endpoints, eps("10.0.0.3:80")) {
		t.Errorf("re-applied %+v", got)
	}
	// The analyzer's versions map onto the overlay's: waiting for 7 waits for the
	// snapshot that carried it (version 1), not for a later discovery push.
	if err := o.WaitApplied(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	if err := o.Apply(snap(8, 50)); err != nil {
		t.Fatal(err)
	}
	if err := o.WaitApplied(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	if router.waited[0] != 1 || router.waited[1] != 3 {
		t.Errorf("waited for %v, want [1 3]", router.waited)
	}
	if err := o.WaitApplied(context.Background(), 9); err == nil {
		t.Error("waiting for a version never applied succeeded")
	}
	if !equal(router.last().Cluster("api").Endpoints, eps("10.0.0.3:80")) {
		t.Error("a new analyzer snapshot lost the discovered endpoints")
	}

	// Removed: the configured endpoints again.
	o.OnChange([]Change{{Cluster: "api", Removed: true}})
	if !equal(router.last().Cluster("api").Endpoints, fixed) {
		t.Errorf("after Removed: %v", router.last().Cluster("api").Endpoints)
	}
	// A refusing plane makes Apply fail (the analyzer retries), and the others still get it.
	xds.refuse = true
	if err := o.Apply(snap(9, 10)); err == nil {
		t.Error("a refused snapshot was not reported")
	}
	if router.last().Listeners[0].Routes[0].Split[0].Weight != 10 {
		t.Error("the router did not get the snapshot the xDS server refused")
	}
}
