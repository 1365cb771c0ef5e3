package analyzer

import (
	"fmt"

	"go.uber.org/zap"
)

// pollHealth asks every data plane for the health of every configured cluster (on the
// decision goroutine, each tick): the result is the next Steps' Inputs.Health and what
// status shows. A change of a cluster's healthy, ejected or total endpoints in a data
// plane — a failed health check, an ejection, a recovery — is logged, and is a
// healthChanged event of every rollout that uses the cluster; the first view of a
// cluster is logged only. The gauges sluice_cluster_{healthy,ejected}_endpoints and
// sluice_cluster_endpoints follow it.
func (c *Controller) pollHealth() {
	if len(c.opts.Health) == 0 {
		return
	}
	next := make(map[string]ClusterHealth, len(c.cfg.Clusters))
	for i := range c.cfg.Clusters {
		name := c.cfg.Clusters[i].Name
		for _, src := range c.opts.Health {
			healthy, ejected, total, known := src.Reporter.ClusterHealth(name)
			if !known {
				continue
			}
			p := PlaneHealth{Plane: src.Plane, Healthy: healthy, Ejected: ejected, Total: total}
			next[name] = append(next[name], p)
			c.metrics.setClusterHealth(name, p)
			was, seen := planeOf(c.health[name], src.Plane)
			switch {
			case !seen:
				c.log.Info("cluster health", zap.String("cluster", name), zap.String("plane", src.Plane),
					zap.Int("healthy", healthy), zap.Int("ejected", ejected), zap.Int("total", total))
			case was != p:
				c.healthChanged(name, was, p)
			}
		}
	}
	for name, old := range c.health {
		for _, p := range old {
			if _, still := planeOf(next[name], p.Plane); !still {
				c.metrics.forgetClusterHealth(name, p.Plane)
			}
		}
	}
	c.health = next
}

func planeOf(h ClusterHealth, plane string) (PlaneHealth, bool) {
	for _, p := range h {
		if p.Plane == plane {
			return p, true
		}
	}
	return PlaneHealth{}, false
}

// healthChanged logs a cluster's health change and emits it as an event of each rollout
// whose stable or canary the cluster is.
func (c *Controller) healthChanged(cluster string, was, now PlaneHealth) {
	used := false
	for i := range c.cfg.Rollouts {
		r := &c.cfg.Rollouts[i]
		st := c.states[r.Name]
		if st == nil {
			continue
		}
		role := ""
		switch cluster {
		case st.Canary:
			role = "canary"
		case st.Stable:
			role = "stable"
		default:
			continue
		}
		used = true
		c.emit(&Event{Type: EventHealthChanged, Rollout: r.Name, Revision: st.Revision, Step: st.Step,
			Weight: st.SetWeight, Time: c.clock.Now(),
			Message: fmt.Sprintf("%s %s: %s healthy endpoints in %s (was %s)",
				role, cluster, counts(now), now.Plane, counts(was))})
	}
	if !used {
		c.log.Info("cluster health changed", zap.String("cluster", cluster), zap.String("plane", now.Plane),
			zap.String("now", counts(now)), zap.String("was", counts(was)))
	}
}

// counts is "1/2", or "1/2, 1 ejected".
func counts(p PlaneHealth) string {
	if p.Ejected > 0 {
		return fmt.Sprintf("%d/%d, %d ejected", p.Healthy, p.Total, p.Ejected)
	}
	return fmt.Sprintf("%d/%d", p.Healthy, p.Total)
}
