package discovery

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluice-mesh/sluice/model"
)

// published records what a Manager publishes.
type published struct {
	mu      sync.Mutex
	calls   [][]Change
	sets    map[string][]model.Endpoint
	busy    bool
	overlap bool
	new     chan struct{}
}

func (p *published) onChange(cs []Change) {
	p.mu.Lock()
	if p.busy {
		p.overlap = true
	}
	p.busy = true
	p.calls = append(p.calls, cs)
	for _, c := range cs {
		if c.Removed {
			delete(p.sets, c.Cluster)
		} else {
			p.sets[c.Cluster] = c.Endpoints
		}
	}
	p.busy = false
	p.mu.Unlock()
	select {
	case p.new <- struct{}{}:
	default:
	}
}

// waitSet waits until the cluster's published set is want (nil: removed).
func (p *published) waitSet(t *testing.T, cluster string, want []model.Endpoint) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		p.mu.Lock()
		got, ok := p.sets[cluster]
		p.mu.Unlock()
		if (want == nil && !ok) || (want != nil && ok && equal(got, want)) {
			return
		}
		select {
		case <-p.new:
		case <-deadline:
			t.Fatalf("cluster %s: published %v (present %v), want %v", cluster, got, ok, want)
		}
	}
}

type harness struct {
	m    *Manager
	pub  *published
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	h := &harness{pub: &published{sets: map[string][]model.Endpoint{}, new: make(chan struct{}, 1)}, reg: prometheus.NewRegistry(), logs: logs}
	opts.Logger, opts.Registerer, opts.OnChange = zap.New(core), h.reg, h.pub.onChange
	opts.Debounce = 20 * time.Millisecond
	h.m = NewManager(opts)
	t.Cleanup(h.m.Close)
	return h
}

// waitStatus waits until the cluster's status for source satisfies ok.
func (h *harness) waitStatus(t *testing.T, cluster, source string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var last Status
		for _, s := range h.m.Status() {
			if s.Cluster == cluster && s.Source == source {
				last = s
				if ok(s) {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s %s: status %+v never matched", cluster, source, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dnsCluster(name, host string, port int, fixed ...model.Endpoint) model.Cluster {
	return model.Cluster{Name: name, Endpoints: fixed,
		DNS: &model.DNSDiscovery{Name: host, Port: port, MinRefresh: 20 * time.Millisecond, MaxRefresh: 50 * time.Millisecond}}
}

func config(servers []string, clusters ...model.Cluster) *model.Config {
	return &model.Config{ControlPlane: model.ControlPlane{DNS: model.DNSResolver{Servers: servers}}, Clusters: clusters}
}

func TestManagerKeepsTheLastGoodSetThroughFailures(t *testing.T) {
	ts := startServer(t, records("api.test. 30 IN A 10.0.0.1", "api.test. 30 IN A 10.0.0.2"))
	h := newHarness(t, Options{})
	fixed := model.Endpoint{Address: "192.0.2.1:8080", Weight: 3}
	h.m.Update(config([]string{ts.addr}, dnsCluster("api", "api.test", 8080, fixed), model.Cluster{Name: "static", Endpoints: eps("192.0.2.9:80")}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.m.WaitResolved(ctx); err != nil {
		t.Fatal(err)
	}
	want := []model.Endpoint{eps("10.0.0.1:8080")[0], eps("10.0.0.2:8080")[0], fixed}
	h.pub.waitSet(t, "api", want) // already there: WaitResolved waits for publication
	if got, ok := h.m.Endpoints("api"); !ok || !equal(got, want) {
		t.Errorf("Endpoints(api) = %v, %v", got, ok)
	}
	if _, ok := h.m.Endpoints("static"); ok {
		t.Error("a cluster without discovery is not managed")
	}
	st := h.waitStatus(t, "api", "DNS", Status.Healthy)
	if st.TTL != 30*time.Second || st.Refresh != 50*time.Millisecond || st.Target != "api.test:8080 (A/AAAA)" {
		t.Errorf("status %+v: want TTL 30s, refresh capped at maxRefresh 50ms", st)
	}
	goodAt := st.LastSuccess

	for _, tc := range []struct {
		answer     func(dns.Question, bool) *dns.Msg
		short      string
		result     string
		emptyCount bool
	}{
		{rcode(dns.RcodeServerFailure), "SERVFAIL", ResultServFail, false},
		{func(dns.Question, bool) *dns.Msg { return nil }, "timeout", ResultTimeout, false},
		{records(), "NXDOMAIN", ResultNXDomain, true},
		{records("api.test. 30 IN TXT \"x\""), "empty answer", ResultEmpty, true},
	} {
		before := testutil.ToFloat64(h.m.m.resolutions.WithLabelValues("api", tc.result))
		ts.set(tc.answer)
		st := h.waitStatus(t, "api", "DNS", func(s Status) bool { return s.Error == tc.short && (!tc.emptyCount || s.ConsecutiveEmpty >= 3) })
		if !equal(st.Endpoints, want[:2]) || !st.LastSuccess.Equal(goodAt) {
			t.Errorf("%s: status serves %v from %v, want the last good set from %v", tc.short, st.Endpoints, st.LastSuccess, goodAt)
		}
		line := st.String()
		if !strings.HasPrefix(line, "DNS: "+tc.short+" since ") || !strings.Contains(line, ", serving 2 endpoints from "+goodAt.Format("15:04:05")) {
			t.Errorf("status line %q", line)
		}
		if got, _ := h.m.Endpoints("api"); !equal(got, want) {
			t.Errorf("%s: published %v, want the last good set kept", tc.short, got)
		}
		if after := testutil.ToFloat64(h.m.m.resolutions.WithLabelValues("api", tc.result)); after <= before {
			t.Errorf("resolutions_total{result=%q} did not grow", tc.result)
		}
	}
	// Each failure was logged once, however often it repeated.
	if n := h.logs.FilterMessage("discovery failed; the last good endpoints keep serving").Len(); n != 4 {
		t.Errorf("%d failure logs for 4 distinct failures, each repeated many times", n)
	}
	if testutil.ToFloat64(h.m.m.endpoints.WithLabelValues("api")) != 3 {
		t.Error("sluice_discovery_endpoints{cluster=api} is not 3 (2 discovered + 1 fixed)")
	}
	if ts := testutil.ToFloat64(h.m.m.lastSuccess.WithLabelValues("api")); int64(ts) != goodAt.Unix() {
		t.Errorf("last success timestamp %v, want %v", ts, goodAt.Unix())
	}

	// Recovery with a new set.
	ts.set(records("api.test. 30 IN A 10.0.0.3"))
	want = []model.Endpoint{eps("10.0.0.3:8080")[0], fixed}
	h.pub.waitSet(t, "api", want)
	h.waitStatus(t, "api", "DNS", Status.Healthy)
	if h.logs.FilterMessage("discovery recovered").Len() != 1 {
		t.Error("recovery not logged once")
	}
	if h.pub.overlap {
		t.Error("OnChange ran concurrently")
	}
	// Every publication changed something.
	h.pub.mu.Lock()
	seen := map[string][]model.Endpoint{}
	for _, call := range h.pub.calls {
		for _, c := range call {
			if prev, ok := seen[c.Cluster]; ok && equal(prev, c.Endpoints) {
				t.Errorf("published an unchanged set for %s: %v", c.Cluster, c.Endpoints)
			}
			seen[c.Cluster] = c.Endpoints
		}
	}
	h.pub.mu.Unlock()
}

func TestManagerUpdateKeepsRestartsAndRemoves(t *testing.T) {
	ts := startServer(t, records("a.test. 30 IN A 10.0.0.1", "b.test. 30 IN A 10.0.0.2"))
	h := newHarness(t, Options{})
	cfg := config([]string{ts.addr}, dnsCluster("one", "a.test", 80), dnsCluster("two", "a.test", 80))
	h.m.Update(cfg)
	h.pub.waitSet(t, "one", eps("10.0.0.1:80"))
	h.pub.waitSet(t, "two", eps("10.0.0.1:80"))
	first := h.waitStatus(t, "one", "DNS", func(s Status) bool { return s.Answers >= 2 })

	// The same settings again: the source keeps running with what it found.
	h.m.Update(config([]string{ts.addr}, dnsCluster("one", "a.test", 80, eps("192.0.2.1:80")...), dnsCluster("two", "b.test", 81)))
	h.pub.waitSet(t, "one", eps("10.0.0.1:80", "192.0.2.1:80")) // fixed endpoints changed: republished
	h.pub.waitSet(t, "two", eps("10.0.0.2:81"))                 // new name: a new source
	kept := h.waitStatus(t, "one", "DNS", func(s Status) bool { return true })
	if kept.Answers < first.Answers || !kept.LastChange.Equal(first.LastChange) {
		t.Errorf("source restarted on an unchanged spec: %+v then %+v", first, kept)
	}

	// Dropping discovery from a cluster announces it Removed and forgets its series.
	h.m.Update(config([]string{ts.addr}, dnsCluster("one", "a.test", 80), model.Cluster{Name: "two", Endpoints: eps("192.0.2.2:80")}))
	h.pub.waitSet(t, "two", nil)
	if n := len(h.m.Status()); n != 1 {
		t.Errorf("%d statuses, want the one of cluster one", n)
	}
	if n := testutil.CollectAndCount(h.m.m.endpoints); n != 1 {
		t.Errorf("%d endpoint gauges, want one", n)
	}
}

func TestManagerKubernetes(t *testing.T) {
	cs := fake.NewClientset(slice("prod", "api", "api-a", httpPort, ep{ip: "10.0.0.1"}, ep{ip: "10.0.0.2"}))
	var kubeconfigs []string
	var mu sync.Mutex
	h := newHarness(t, Options{KubeClient: func(kc string) (SliceClient, error) {
		mu.Lock()
		kubeconfigs = append(kubeconfigs, kc)
		mu.Unlock()
		return fakeDiscovery(cs), nil
	}})
	cfg := &model.Config{ControlPlane: model.ControlPlane{Kubernetes: model.KubernetesClient{Kubeconfig: "/etc/kube"}},
		Clusters: []model.Cluster{{Name: "api", Kubernetes: &model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortName: "http"}}}}
	h.m.Update(cfg)
	h.pub.waitSet(t, "api", eps("10.0.0.1:8080", "10.0.0.2:8080"))
	st := h.waitStatus(t, "api", "Kubernetes", Status.Healthy)
	if !strings.HasPrefix(st.String(), "Kubernetes: 2 endpoints, listed ") || st.Target != "prod/api port http" {
		t.Errorf("status %q target %q", st.String(), st.Target)
	}
	mu.Lock()
	if !cmp.Equal(kubeconfigs, []string{"/etc/kube"}) {
		t.Errorf("kubeconfigs %v, want the ControlPlane's", kubeconfigs)
	}
	mu.Unlock()

	// Every pod terminating: they drain, and the set stays (no ready endpoint is an
	// empty answer); the status says so.
	api := cs.DiscoveryV1().EndpointSlices("prod")
	if _, err := api.Update(context.Background(), slice("prod", "api", "api-a", httpPort,
		ep{ip: "10.0.0.1", ready: no, serving: yes, terminating: yes}, ep{ip: "10.0.0.2", ready: no, serving: no, terminating: yes}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st = h.waitStatus(t, "api", "Kubernetes", func(s Status) bool { return s.Error == "no ready endpoint" })
	if !strings.Contains(st.String(), "no ready endpoint since ") || !strings.Contains(st.String(), "serving 2 endpoints from") {
		t.Errorf("status %q", st.String())
	}
	if got, _ := h.m.Endpoints("api"); !equal(got, eps("10.0.0.1:8080", "10.0.0.2:8080")) {
		t.Errorf("published %v, want the last good set", got)
	}
	// A replacement becomes ready while one old pod still drains.
	if _, err := api.Update(context.Background(), slice("prod", "api", "api-a", httpPort,
		ep{ip: "10.0.0.1", ready: no, serving: yes, terminating: yes}, ep{ip: "10.0.0.3", ready: yes}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.pub.waitSet(t, "api", []model.Endpoint{{Address: "10.0.0.1:8080", Weight: 1, Draining: true}, {Address: "10.0.0.3:8080", Weight: 1}})
	if st := h.waitStatus(t, "api", "Kubernetes", Status.Healthy); !strings.Contains(st.String(), "1 endpoint, listed") || !strings.Contains(st.String(), ", 1 draining") {
		t.Errorf("status %q", st.String())
	}
}

func TestStatusLines(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2026, 1, 2, h, m, s, 0, time.UTC) }
	for _, tc := range []struct {
		s    Status
		want string
	}{
		{Status{Source: "DNS"}, "DNS: waiting for the first answer"},
		{Status{Source: "DNS", Answers: 1, Endpoints: eps("a:1", "b:1", "c:1"), LastSuccess: at(12, 1, 5), TTL: 30 * time.Second, Refresh: 30 * time.Second},
			"DNS: 3 endpoints, resolved 12:01:05 (TTL 30s, next in 30s)"},
		{Status{Source: "DNS", Answers: 9, Endpoints: eps("a:1", "b:1", "c:1"), LastSuccess: at(12, 1, 5), Error: "SERVFAIL", ErrorSince: at(12, 3, 0)},
			"DNS: SERVFAIL since 12:03:00, serving 3 endpoints from 12:01:05"},
		{Status{Source: "DNS", Answers: 9, Endpoints: eps("a:1"), LastSuccess: at(12, 1, 5), Error: "NXDOMAIN", ErrorSince: at(12, 3, 0), ConsecutiveEmpty: 4},
			"DNS: NXDOMAIN since 12:03:00 (4 empty answers in a row), serving 1 endpoint from 12:01:05"},
		{Status{Source: "Kubernetes", Answers: 2, Error: "forbidden: …", ErrorSince: at(9, 0, 0)},
			"Kubernetes: forbidden: … since 09:00:00, serving nothing discovered yet"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
