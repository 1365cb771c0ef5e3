package main

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/discovery"
)

// resolveWait bounds how long `sluice serve` waits at start for every discovered
// cluster's first answer, so that the first routing table carries the discovered
// endpoints. A cluster still unresolved then is served with its fixed endpoints (503
// without any) until its answer comes, which is applied at once.
const resolveWait = 5 * time.Second

// waitResolved waits up to resolveWait for every discovery source's first answer.
func waitResolved(ctx context.Context, mgr *discovery.Manager, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, resolveWait)
	defer cancel()
	start := time.Now()
	if err := mgr.WaitResolved(ctx); errors.Is(err, context.DeadlineExceeded) {
		log.Warn("endpoint discovery: not every cluster answered in time; serving what is known, the rest follows when it answers",
			zap.Duration("waited", resolveWait))
		return
	}
	if st := mgr.Status(); len(st) > 0 {
		log.Info("endpoint discovery: first answers in", zap.Duration("took", time.Since(start)), zap.Int("sources", len(st)))
	}
}

// discoveryReporter shows the Manager's findings in rollout status
// (analyzer.DiscoveryReporter).
type discoveryReporter struct{ mgr *discovery.Manager }

// ClusterDiscovery returns what each of cluster's discovery sources found.
func (d discoveryReporter) ClusterDiscovery(cluster string) []analyzer.DiscoveryStatus {
	var out []analyzer.DiscoveryStatus
	for _, s := range d.mgr.Status() {
		if s.Cluster != cluster {
			continue
		}
		ds := analyzer.DiscoveryStatus{Source: s.Source, Target: s.Target, Error: s.Error, Summary: s.String()}
		for _, ep := range s.Endpoints {
			if ep.Draining {
				ds.Draining++
			} else {
				ds.Endpoints++
			}
		}
		if !s.LastSuccess.IsZero() {
			t := s.LastSuccess
			ds.LastSuccess = &t
		}
		if s.Error != "" && !s.ErrorSince.IsZero() {
			t := s.ErrorSince
			ds.ErrorSince = &t
		}
		out = append(out, ds)
	}
	return out
}
