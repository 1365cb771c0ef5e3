package analyzer

import "time"

// DiscoveryStatus is what one discovery source (DNS, Kubernetes EndpointSlices) has
// found for a cluster, as status, the admin API and the web view show it next to the
// cluster's health.
type DiscoveryStatus struct {
	Source string `json:"source"` // "DNS" or "Kubernetes"
	Target string `json:"target"` // what it watches: a host name, an SRV name, namespace/service
	// Endpoints is how many endpoints of the last good answer take traffic; Draining how
	// many are going away.
	Endpoints int `json:"endpoints"`
	Draining  int `json:"draining,omitempty"`
	// LastSuccess is when the last good answer came (nil: none yet).
	LastSuccess *time.Time `json:"lastSuccess,omitempty"`
	// Error is the current failure in short ("SERVFAIL", "timeout", "NXDOMAIN", "empty
	// answer", …; "" when the last answer was good), since ErrorSince. The last good set
	// keeps serving meanwhile.
	Error      string     `json:"error,omitempty"`
	ErrorSince *time.Time `json:"errorSince,omitempty"`
	// Summary is all of it in one line, e.g. "DNS: SERVFAIL since 12:03:10, serving 3
	// endpoints from 12:01:05" (times in the server's time zone).
	Summary string `json:"summary"`
}

// DiscoveryReporter tells the discovery state of a cluster (nothing for a cluster that
// does not discover). It must answer at once, without I/O: the controller asks on every
// tick.
type DiscoveryReporter interface {
	ClusterDiscovery(cluster string) []DiscoveryStatus
}

// pollDiscovery reads every configured cluster's discovery state for status.
func (c *Controller) pollDiscovery() {
	if c.opts.Discovery == nil {
		return
	}
	next := map[string][]DiscoveryStatus{}
	for i := range c.cfg.Clusters {
		name := c.cfg.Clusters[i].Name
		if d := c.opts.Discovery.ClusterDiscovery(name); len(d) > 0 {
			next[name] = d
		}
	}
	c.discovery = next
}
