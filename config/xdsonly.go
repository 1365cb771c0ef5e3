package config

import (
	"regexp"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/sluice-mesh/sluice/model"
)

// warnXDSOnly warns, when the ControlPlane serves xDS, about each built-in measurement
// (a prometheus provider with no address, or the judge reading the router in-process)
// of ref that analyses a Cluster no Listener route served by Sluice's router reaches.
// Such a Cluster's traffic goes through Envoy or proxyless gRPC clients, which the
// built-in store never sees: the measurement would wait for traffic forever (LowTraffic)
// or find no data.
func (l *loader) warnXDSOnly(rd *rolloutDoc, ref *refDoc, metrics []model.Metric) {
	if l.cfg.ControlPlane.XDS == nil {
		return
	}
	for _, m := range metrics {
		for _, c := range l.builtInClusters(m) {
			if l.routerReaches(c) {
				continue
			}
			key := "xds-only\x00" + rd.r.Name + "\x00" + m.Name + "\x00" + c
			if rd.d.warned[key] {
				continue
			}
			rd.d.warned[key] = true
			rd.d.warnf(ref.at, CodeSuspicious, "%s: metric %q analyses Cluster %q with Sluice's built-in store (no address), but no Listener route "+
				"of Sluice's router reaches %q: its traffic goes through Envoy or gRPC clients over xDS, which the built-in store never sees, "+
				"so the measurement would wait for traffic forever (LowTraffic) or find no data; set the provider's address to a Prometheus "+
				"that scrapes those clients (Envoy: envoy_cluster_upstream_rq_total), or route %q through a Listener",
				ref.path, m.Name, c, c, c)
		}
	}
}

// builtInClusters returns the Clusters a built-in measurement of m reads: the values of
// the cluster label its query selects (a regular expression is matched, anchored, against
// the defined Clusters), or the judge's baseline and canary. Nil for any other metric.
func (l *loader) builtInClusters(m model.Metric) []string {
	seen := map[string]bool{}
	switch p := m.Provider; {
	case p.Judge != nil && p.Judge.PrometheusAddress == "":
		for _, c := range []string{p.Judge.Baseline, p.Judge.Canary} {
			if c != "" {
				seen[c] = true
			}
		}
	case p.Prometheus != nil && p.Prometheus.Address == "":
		expr, err := promParser.ParseExpr(p.Prometheus.Query)
		if err != nil {
			return nil // reported where the query is checked
		}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			for _, lm := range vs.LabelMatchers {
				if lm.Name != "cluster" {
					continue
				}
				switch lm.Type {
				case labels.MatchEqual:
					seen[lm.Value] = true
				case labels.MatchRegexp:
					re, err := regexp.Compile("^(?:" + lm.Value + ")$")
					if err != nil {
						continue
					}
					for _, c := range l.cfg.Clusters {
						if re.MatchString(c.Name) {
							seen[c.Name] = true
						}
					}
				}
			}
			return nil
		})
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		if l.cfg.Cluster(c) != nil { // an unknown name is another problem
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// routerReaches reports whether a Listener route — which Sluice's router serves — sends
// traffic to cluster: a route naming it, or a route owned by a rollout one of whose two
// Clusters it is (the rollout splits that route between them).
func (l *loader) routerReaches(cluster string) bool {
	for i := range l.cfg.Listeners {
		if routesTo(&l.cfg.Listeners[i], cluster) {
			return true
		}
	}
	for _, rd := range l.rollouts {
		a, b, ingress := "", "", ""
		if c := rd.r.Canary; c != nil {
			a, b, ingress = c.StableService, c.CanaryService, c.StableIngress
		} else if g := rd.r.BlueGreen; g != nil {
			a, b, ingress = g.ActiveService, g.PreviewService, g.ActiveIngress
		}
		if cluster != a && cluster != b {
			continue
		}
		for i := range l.cfg.Listeners {
			ln := &l.cfg.Listeners[i]
			if ingress != "" && ingress != ln.Name {
				continue
			}
			if (a != "" && routesTo(ln, a)) || (b != "" && routesTo(ln, b)) {
				return true
			}
		}
	}
	return false
}
