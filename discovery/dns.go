package discovery

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// DNSSource resolves a Cluster's dns block again and again: after the answer's TTL,
// bounded by MinRefresh and MaxRefresh, and after a failure at MinRefresh, doubling up
// to MaxRefresh.
type DNSSource struct {
	spec model.DNSDiscovery
	// newResolver is called until it succeeds (the system configuration may be missing
	// at first).
	newResolver func() (*resolver, error)
}

// NewDNSSource resolves spec through servers ("ADDR:PORT"), or when there are none,
// the resolver configuration in resolvConf (DefaultResolvConf when ""). timeout bounds
// each query (0: 2s).
func NewDNSSource(spec model.DNSDiscovery, servers []string, resolvConf string, timeout time.Duration) *DNSSource {
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	if spec.MinRefresh <= 0 {
		spec.MinRefresh = time.Second
	}
	spec.MaxRefresh = max(spec.MaxRefresh, spec.MinRefresh)
	return &DNSSource{spec: spec, newResolver: func() (*resolver, error) { return newResolver(servers, resolvConf, timeout) }}
}

// Kind returns "DNS".
func (s *DNSSource) Kind() string { return "DNS" }

// Target returns "NAME:PORT (A/AAAA)" or "SRV-NAME (SRV)".
func (s *DNSSource) Target() string {
	if s.spec.SRV != "" {
		return s.spec.SRV + " (SRV)"
	}
	return net.JoinHostPort(s.spec.Name, strconv.Itoa(s.spec.Port)) + " (A/AAAA)"
}

// Run resolves until ctx ends.
func (s *DNSSource) Run(ctx context.Context, report func(Result)) {
	var res *resolver
	failures := 0
	for {
		var r Result
		var ans answer
		var err error
		if res == nil {
			res, err = s.newResolver()
		}
		if res != nil {
			if s.spec.SRV != "" {
				ans, err = res.srv(ctx, s.spec.SRV)
			} else {
				ans, err = res.host(ctx, s.spec.Name, s.spec.Port)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			r = Result{Endpoints: ans.endpoints, TTL: ans.ttl, Refresh: refreshAfter(ans.ttl, s.spec.MinRefresh, s.spec.MaxRefresh)}
		} else {
			failures++
			r = Result{Err: err, Refresh: retryAfter(failures, s.spec.MinRefresh, s.spec.MaxRefresh)}
		}
		report(r)
		t := time.NewTimer(r.Refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refreshAfter is the TTL bounded by min and max.
func refreshAfter(ttl, lo, hi time.Duration) time.Duration {
	return min(max(ttl, lo), hi)
}

// retryAfter is the delay after the n-th failure in a row: lo, 2·lo, 4·lo … up to hi.
func retryAfter(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}
