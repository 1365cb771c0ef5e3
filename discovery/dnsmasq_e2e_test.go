package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// TestDNSDiscoveryAgainstDNSMasq runs the Manager against Debian's dnsmasq: records
// are added, changed and removed (hosts file + SIGHUP, SRV records + restart), and
// stopping the server keeps the last set serving.
func TestDNSDiscoveryAgainstDNSMasq(t *testing.T) {
	srv := []testenv.SRV{
		{Name: "_http._tcp.svc.test", Target: "a.backends.test", Port: 8080, Priority: 10, Weight: 5},
		{Name: "_http._tcp.svc.test", Target: "b.backends.test", Port: 8081, Priority: 10, Weight: 1},
		{Name: "_http._tcp.svc.test", Target: "backup.backends.test", Port: 9090, Priority: 20, Weight: 1},
	}
	hosts := []string{"127.0.0.11 api.test", "127.0.0.12 api.test", "::1 api.test",
		"127.0.0.21 a.backends.test", "127.0.0.22 b.backends.test", "127.0.0.23 backup.backends.test"}
	dm := testenv.StartDNSMasq(t, "test", 1, hosts, srv...)

	h := newHarness(t, Options{})
	cfg := &model.Config{
		ControlPlane: model.ControlPlane{DNS: model.DNSResolver{Servers: []string{dm.Address}}},
		Clusters: []model.Cluster{
			{Name: "by-name", DNS: &model.DNSDiscovery{Name: "api.test", Port: 8080, MinRefresh: time.Second, MaxRefresh: 30 * time.Second}},
			{Name: "by-srv", DNS: &model.DNSDiscovery{SRV: "_http._tcp.svc.test", MinRefresh: time.Second, MaxRefresh: 30 * time.Second}},
		},
	}
	h.m.Update(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.m.WaitResolved(ctx); err != nil {
		t.Fatal(err)
	}
	h.pub.waitSet(t, "by-name", eps("127.0.0.11:8080", "127.0.0.12:8080", "[::1]:8080"))
	h.pub.waitSet(t, "by-srv", []model.Endpoint{{Address: "127.0.0.21:8080", Weight: 5}, {Address: "127.0.0.22:8081", Weight: 1}})
	st := h.waitStatus(t, "by-name", "DNS", Status.Healthy)
	if st.TTL != time.Second || st.Refresh != time.Second {
		t.Errorf("dnsmasq's TTL 1s: status TTL %s refresh %s, want 1s and 1s", st.TTL, st.Refresh)
	}

	// Records added, changed and removed: each is followed within a few TTLs.
	for _, step := range []struct {
		what  string
		hosts []string
		want  []model.Endpoint
	}{
		{"added", []string{"127.0.0.11 api.test", "127.0.0.12 api.test", "127.0.0.13 api.test"}, eps("127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080")},
		{"changed", []string{"127.0.0.11 api.test", "127.0.0.14 api.test", "127.0.0.13 api.test"}, eps("127.0.0.11:8080", "127.0.0.13:8080", "127.0.0.14:8080")},
		{"removed", []string{"127.0.0.13 api.test"}, eps("127.0.0.13:8080")},
	} {
		start := time.Now()
		dm.SetHosts(append(step.hosts, "127.0.0.21 a.backends.test", "127.0.0.22 b.backends.test")...)
		h.pub.waitSet(t, "by-name", step.want)
		t.Logf("record %s → published after %s (TTL 1s)", step.what, time.Since(start).Round(time.Millisecond))
	}

	// The name removed altogether: NXDOMAIN keeps the last set. (Were it the parent
	// of another name, it would answer NOERROR with no records: an empty answer.)
	dm.SetHosts("127.0.0.21 a.backends.test", "127.0.0.22 b.backends.test")
	st = h.waitStatus(t, "by-name", "DNS", func(s Status) bool { return s.Error == "NXDOMAIN" && s.ConsecutiveEmpty >= 2 })
	if got, _ := h.m.Endpoints("by-name"); !equal(got, eps("127.0.0.13:8080")) {
		t.Errorf("NXDOMAIN emptied the cluster: %v", got)
	}
	t.Logf("status: %s", st)
	dm.SetHosts("127.0.0.13 api.test", "127.0.0.21 a.backends.test", "127.0.0.22 b.backends.test")
	h.waitStatus(t, "by-name", "DNS", Status.Healthy)

	// New SRV weights and a target moved to another priority.
	dm.SetSRV(
		testenv.SRV{Name: "_http._tcp.svc.test", Target: "a.backends.test", Port: 8080, Priority: 10, Weight: 1},
		testenv.SRV{Name: "_http._tcp.svc.test", Target: "b.backends.test", Port: 8081, Priority: 30, Weight: 1},
	)
	h.pub.waitSet(t, "by-srv", []model.Endpoint{{Address: "127.0.0.21:8080", Weight: 1}})

	// The DNS server goes away: both clusters keep their last sets and say so.
	dm.Stop()
	for _, c := range []string{"by-name", "by-srv"} {
		st := h.waitStatus(t, c, "DNS", func(s Status) bool { return s.Error != "" })
		if st.Error != "unreachable" && st.Error != "timeout" {
			t.Errorf("%s: error %q (%s), want unreachable or timeout", c, st.Error, st.ErrorDetail)
		}
		t.Logf("status with dnsmasq stopped: %s", st)
	}
	if got, _ := h.m.Endpoints("by-name"); !equal(got, eps("127.0.0.13:8080")) {
		t.Errorf("outage emptied by-name: %v", got)
	}
	if got, _ := h.m.Endpoints("by-srv"); !equal(got, []model.Endpoint{{Address: "127.0.0.21:8080", Weight: 1}}) {
		t.Errorf("outage emptied by-srv: %v", got)
	}
	dm.Start()
	h.waitStatus(t, "by-name", "DNS", Status.Healthy)
	h.waitStatus(t, "by-srv", "DNS", Status.Healthy)
}

// TestDNSRefreshFollowsTheTTLWithinBounds checks, against dnsmasq's real TTLs, that
// the next query waits for the TTL, but never less than minRefresh or more than
// maxRefresh.
func TestDNSRefreshFollowsTheTTLWithinBounds(t *testing.T) {
	for _, tc := range []struct {
		ttl          int
		lo, hi, want time.Duration
	}{
		{ttl: 0, lo: 500 * time.Millisecond, hi: 30 * time.Second, want: 500 * time.Millisecond},
		{ttl: 3, lo: time.Second, hi: 30 * time.Second, want: 3 * time.Second},
		{ttl: 3600, lo: time.Second, hi: 2 * time.Second, want: 2 * time.Second},
	} {
		dm := testenv.StartDNSMasq(t, "test", tc.ttl, []string{"127.0.0.31 api.test"})
		src := NewDNSSource(model.DNSDiscovery{Name: "api.test", Port: 80, MinRefresh: tc.lo, MaxRefresh: tc.hi}, []string{dm.Address}, "", 0)
		res := newResults()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); src.Run(ctx, res.report) }()
		r := res.waitFor(t, "an answer", func(r Result) bool { return r.Err == nil })
		cancel()
		<-done
		if r.TTL != time.Duration(tc.ttl)*time.Second || r.Refresh != tc.want {
			t.Errorf("TTL %ds, bounds %s..%s: got TTL %s, next query in %s; want %s", tc.ttl, tc.lo, tc.hi, r.TTL, r.Refresh, tc.want)
		}
	}
}
