package analyzer

import (
	"slices"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// ownerOf returns the rollout that owns route rt of listener l, or nil. A rollout owns a
// route whose configured cluster is one of its two services (canary: stable or canary;
// blue/green: active or preview), on its ingress listener when it names one. Accepting
// either service lets a user swap the names in the config for the next release.
func ownerOf(cfg *model.Config, l *model.Listener, rt *model.Route) *model.Rollout {
	for i := range cfg.Rollouts {
		r := &cfg.Rollouts[i]
		a, b := services(r)
		ingress := ""
		if r.Canary != nil {
			ingress = r.Canary.StableIngress
		} else if r.BlueGreen != nil {
			ingress = r.BlueGreen.ActiveIngress
		}
		if ingress != "" && ingress != l.Name {
			continue
		}
		if rt.Cluster == a || (b != "" && rt.Cluster == b) {
			return r
		}
	}
	return nil
}

// BuildSnapshot returns what the data planes should serve for cfg with the rollouts in
// states (by rollout name; a rollout without a state is at its start: 100% stable).
// For each owned route it fills Split {stable: 100-w, canary: w}, the managed header
// routes (in managedRoutes order, then the blue/green preview route), the mirrors, the
// InternalCluster (the canary while the release is in progress, "" otherwise) and
// Rollout. Version is left 0 for the caller to set. It does not modify cfg.
func BuildSnapshot(cfg *model.Config, states map[string]*State) *model.Snapshot {
	snap := &model.Snapshot{
		Clusters:  slices.Clone(cfg.Clusters),
		Listeners: make([]model.Listener, len(cfg.Listeners)),
	}
	for i := range cfg.Listeners {
		l := cfg.Listeners[i]
		l.Routes = slices.Clone(l.Routes)
		for j := range l.Routes {
			rt := &l.Routes[j]
			r := ownerOf(cfg, &cfg.Listeners[i], rt)
			if r == nil {
				continue
			}
			st := states[r.Name]
			if st == nil {
				fresh := NewState(r, nil, time.Time{})
				st = &fresh
			}
			fillRoute(rt, r, st)
		}
		snap.Listeners[i] = l
	}
	return snap
}

func fillRoute(rt *model.Route, r *model.Rollout, st *State) {
	w := min(max(st.SetWeight, 0), 100)
	rt.Rollout = r.Name
	rt.Split = []model.WeightedCluster{{Cluster: st.Stable, Weight: 100 - w}, {Cluster: st.Canary, Weight: w}}
	rt.HeaderRoutes = nil
	rt.Mirrors = nil
	rt.InternalCluster = ""
	if st.Aborted {
		return // every request back to stable: no header routes, no mirrors, no internal
	}
	var order []string
	if r.Canary != nil {
		order = r.Canary.ManagedRoutes
	}
	rank := func(name string) int {
		if i := slices.Index(order, name); i >= 0 {
			return i
		}
		return len(order)
	}
	hr := slices.Clone(st.HeaderRoutes)
	slices.SortStableFunc(hr, func(a, b model.HeaderRoute) int { return rank(a.Name) - rank(b.Name) })
	rt.HeaderRoutes = hr
	rt.Mirrors = slices.Clone(st.Mirrors)
	if !st.Completed {
		rt.InternalCluster = st.Canary
	}
}
