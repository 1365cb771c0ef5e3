// Package discoverye2e holds the end-to-end test of endpoint discovery (issue 13) with
// real parts on 127.0.0.x: Debian's dnsmasq answers for the domain "test" from a hosts
// file it reads again on SIGHUP (TTL 1 s); the sluice binary built in TestMain runs
// `sluice serve`, resolving through it (ControlPlane.spec.dns.servers), with its router
// and its xDS server; each "host" is an HTTP server and a gRPC server in the test
// process on its own loopback address (127.0.0.21, .22, …), all on the same two ports,
// as the VMs behind one DNS name would be. HTTP clients send requests through the router
// and proxyless gRPC clients (google.golang.org/grpc/xds, each its own node) send RPCs
// through the routes Sluice's xDS server gives them, the whole time, while records are
// added, changed and removed, and while dnsmasq is down.
package discoverye2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/xds"
)

// sluiceBin is the sluice binary built by TestMain.
var sluiceBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSluice(m, &sluiceBin)) }

// ---------------------------------------------------------------------------------------
// Hosts: an HTTP and a gRPC server on one loopback address

// host is one machine behind the DNS name: HTTP and gRPC on the shared ports.
type host struct {
	name, ip string
	http     *http.Server
	grpc     *grpc.Server
	mu       sync.Mutex
	last     time.Time // when the last request or RPC arrived
	n        int
}

func (h *host) seen() {
	h.mu.Lock()
	h.last, h.n = time.Now(), h.n+1
	h.mu.Unlock()
}

// lastRequest returns when the host last got a request or RPC, and how many in all.
func (h *host) lastRequest() (time.Time, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.n
}

type greeter struct {
	testgrpc.UnimplementedTestServiceServer
	h *host
}

func (g greeter) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	g.h.seen()
	return &testgrpc.SimpleResponse{ServerId: g.h.name}, nil
}

// stop is a graceful stop: no new connection, what is in flight finishes.
func (h *host) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = h.http.Shutdown(ctx)
	h.grpc.GracefulStop()
}

// startHosts starts a host on each of ips, all on one HTTP port and one gRPC port, and
// returns them with the two ports.
func startHosts(t *testing.T, ips map[string]string) (map[string]*host, int, int) {
	t.Helper()
	names := slices.Sorted(maps.Keys(ips))
	for attempt := 0; attempt < 50; attempt++ {
		httpPort, grpcPort := freePort(t), freePort(t)
		var lns []net.Listener
		ok := true
		for _, name := range names {
			ip := ips[name]
			for _, p := range []int{httpPort, grpcPort} {
				ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(p)))
				if err != nil {
					ok = false
					break
				}
				lns = append(lns, ln)
			}
		}
		if !ok {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		hosts := map[string]*host{}
		for i, name := range names {
			h := &host{name: name, ip: ips[name]}
			h.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/health" {
					h.seen()
				}
				w.Header().Set("X-Backend", name)
				fmt.Fprintln(w, name)
			})}
			h.grpc = grpc.NewServer()
			testgrpc.RegisterTestServiceServer(h.grpc, greeter{h: h})
			httpLn, grpcLn := lns[2*i], lns[2*i+1]
			go h.http.Serve(httpLn)
			go h.grpc.Serve(grpcLn)
			t.Cleanup(func() { h.http.Close(); h.grpc.Stop() })
			hosts[name] = h
		}
		return hosts, httpPort, grpcPort
	}
	t.Fatal("no pair of ports free on every host address")
	return nil, 0, 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---------------------------------------------------------------------------------------
// Traffic

// outcome is one request or RPC as its client saw it.
type outcome struct {
	at      time.Time // sent
	backend string    // who answered ("" when nobody did)
	err     string    // "" when it succeeded
}

// traffic records what a set of clients saw.
type traffic struct {
	mu   sync.Mutex
	all  []outcome
	stop chan struct{}
	wg   sync.WaitGroup
}

func newTraffic() *traffic { return &traffic{stop: make(chan struct{})} }

func (tr *traffic) record(o outcome) {
	tr.mu.Lock()
	tr.all = append(tr.all, o)
	tr.mu.Unlock()
}

// loop runs send until stopped, one call every 5 ms.
func (tr *traffic) loop(send func() outcome) {
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for {
			select {
			case <-tr.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			tr.record(send())
		}
	}()
}

func (tr *traffic) end() {
	close(tr.stop)
	tr.wg.Wait()
}

// since returns the outcomes sent at or after from.
func (tr *traffic) since(from time.Time) []outcome {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []outcome
	for _, o := range tr.all {
		if !o.at.Before(from) {
			out = append(out, o)
		}
	}
	return out
}

// firstTo returns when the first call after from that backend answered was sent.
func (tr *traffic) firstTo(backend string, from time.Time) (time.Time, bool) {
	for _, o := range tr.since(from) {
		if o.backend == backend {
			return o.at, true
		}
	}
	return time.Time{}, false
}

// failures returns every failed call.
func (tr *traffic) failures() []outcome {
	var out []outcome
	for _, o := range tr.since(time.Time{}) {
		if o.err != "" {
			out = append(out, o)
		}
	}
	return out
}

// httpClients sends GET requests through the router at url from n clients.
func httpClients(tr *traffic, url string, n int) {
	for range n {
		c := &http.Client{Timeout: 10 * time.Second}
		tr.loop(func() outcome {
			o := outcome{at: time.Now()}
			resp, err := c.Get(url)
			if err != nil {
				o.err = err.Error()
				return o
			}
			resp.Body.Close()
			o.backend = resp.Header.Get("X-Backend")
			if resp.StatusCode != http.StatusOK {
				o.err = resp.Status
			}
			return o
		})
	}
}

// grpcClients sends RPCs to xds:///target from n proxyless clients, each its own node.
func grpcClients(t *testing.T, tr *traffic, xdsAddr, target string, n int) {
	for i := range n {
		bootstrap := fmt.Sprintf(`{
			"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
			"node": {"id": "dns-e2e-%d", "cluster": "dns-e2e"}
		}`, xdsAddr, i)
		rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		stub := testgrpc.NewTestServiceClient(cc)
		tr.loop(func() outcome {
			o := outcome{at: time.Now()}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := stub.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if err != nil {
				o.err = err.Error()
				return o
			}
			o.backend = resp.GetServerId()
			return o
		})
	}
}

// ---------------------------------------------------------------------------------------
// Sluice

const configYAML = `apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: %[1]s}
  xds: {address: %[2]s}
  stateDir: %[3]s
  dns: {servers: [%[4]s]}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: web}
spec:
  dns: {name: api.test, port: %[5]d, minRefresh: 1s, maxRefresh: 5s}
  healthCheck: {path: /health, interval: 1s}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: web-canary}
spec:
  dns: {name: canary.test, port: %[5]d}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: greeter}
spec:
  protocol: h2c
  dns: {name: api.test, port: %[6]d, minRefresh: 1s, maxRefresh: 5s}
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec:
  address: %[7]s
  routes: [{hosts: ["*"], pathPrefix: /, cluster: web}]
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: greeter}
spec:
  address: %[8]s
  routes: [{hosts: ["*"], pathPrefix: /, cluster: greeter}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  strategy:
    canary:
      stableService: web
      canaryService: web-canary
      trafficRouting: {nginx: {stableIngress: web}}
      steps:
      - pause: {}
`

// sluice is a running `sluice serve`.
type sluice struct {
	*testenv.Process
	admin string
}

func (s *sluice) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// discovery returns what status says discovery found for cluster.
func (s *sluice) discovery(t *testing.T, cluster string) analyzer.DiscoveryStatus {
	t.Helper()
	var st analyzer.RolloutStatus
	s.getJSON(t, "/api/v1/rollouts/web", &st)
	for _, c := range st.Clusters {
		if c.Name == cluster && len(c.Discovery) == 1 {
			return c.Discovery[0]
		}
	}
	return analyzer.DiscoveryStatus{}
}

// xdsCaughtUp reports whether every connected node holds the newest snapshot.
func (s *sluice) xdsCaughtUp(t *testing.T) bool {
	t.Helper()
	var body struct {
		Nodes []xds.NodeStatus `json:"nodes"`
	}
	s.getJSON(t, "/api/v1/xds/nodes", &body)
	var newest uint64
	for _, n := range body.Nodes {
		newest = max(newest, n.AppliedVersion)
	}
	for _, n := range body.Nodes {
		if n.Connected && n.AppliedVersion != newest {
			return false
		}
	}
	return len(body.Nodes) > 0
}

// metric returns the sum of a series' samples whose labels include want.
func (s *sluice) metric(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestDNSDiscoveryDrivesBothDataPlanes: see the package comment. Graceful removal is
// what README's "Endpoint discovery" section says: the record goes first; the host keeps
// serving until Sluice has followed (here: its status shows the new set and every xDS
// node ACKed it — in production, the records' TTL, bounded by maxRefresh) and a drain
// period has passed; then it stops.
func TestDNSDiscoveryDrivesBothDataPlanes(t *testing.T) {
	ips := map[string]string{"h21": "127.0.0.21", "h22": "127.0.0.22", "h23": "127.0.0.23", "h24": "127.0.0.24", "canary": "127.0.0.31"}
	hosts, httpPort, grpcPort := startHosts(t, ips)
	record := func(names ...string) []string {
		lines := []string{ips["canary"] + " canary.test"}
		for _, n := range names {
			lines = append(lines, ips[n]+" api.test")
		}
		return lines
	}
	dm := testenv.StartDNSMasq(t, "test", 1, record("h21", "h22"))

	admin, xdsAddr, webAddr, grpcAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, configYAML, admin, xdsAddr, filepath.Join(t.TempDir(), "state"),
		dm.Address, httpPort, grpcPort, webAddr, grpcAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &sluice{Process: testenv.StartProcess(t, "sluice serve", sluiceBin, "serve", "-f", cfg, "--log-format", "json"), admin: admin}
	testenv.WaitFor(t, 60*time.Second, "sluice serve ready", func() bool {
		if s.Exited() {
			t.Fatalf("sluice serve exited:\n%s", s.Output())
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	web, rpc := newTraffic(), newTraffic()
	httpClients(web, "http://"+webAddr+"/", 3)
	grpcClients(t, rpc, xdsAddr, "greeter", 3)
	stopped := false
	stopTraffic := func() {
		if !stopped {
			stopped = true
			web.end()
			rpc.end()
		}
	}
	defer stopTraffic()
	both := []*traffic{web, rpc}
	planes := []string{"router", "gRPC"}

	// The first routing table already carries the discovered hosts.
	start := time.Now()
	for i, tr := range both {
		for _, h := range []string{"h21", "h22"} {
			testenv.WaitFor(t, 30*time.Second, planes[i]+" reaching "+h, func() bool { _, ok := tr.firstTo(h, start); return ok })
		}
	}
	var st analyzer.RolloutStatus
	s.getJSON(t, "/api/v1/rollouts/web", &st)
	if len(st.Clusters) != 2 || len(st.Clusters[0].Discovery) != 1 || st.Clusters[0].Discovery[0].Endpoints != 2 {
		t.Fatalf("status clusters: %+v", st.Clusters)
	}
	t.Logf("status: %s", st.Clusters[0].Discovery[0].Summary)

	// change sets the records to names: the hosts in added must get requests from both
	// data planes (it logs how long after the change each first did); those in gone are
	// removed gracefully: they serve until Sluice has followed (status shows the new set,
	// every xDS node ACKed it) and a drain period passed, then stop. No request may reach
	// them after Sluice followed.
	change := func(what string, names, added, gone []string) {
		t.Helper()
		at := time.Now()
		dm.SetHosts(record(names...)...)
		for _, h := range added {
			for i, tr := range both {
				testenv.WaitFor(t, 30*time.Second, planes[i]+" reaching "+h+" after the record was "+what, func() bool {
					_, ok := tr.firstTo(h, at)
					return ok
				})
				first, _ := tr.firstTo(h, at)
				t.Logf("record %s: %s sent its first request to %s %s after the change (TTL 1 s)", what, planes[i], h, first.Sub(at).Round(time.Millisecond))
			}
		}
		testenv.WaitFor(t, 30*time.Second, "status showing the new set", func() bool {
			return s.discovery(t, "web").Endpoints == len(names)
		})
		testenv.WaitFor(t, 30*time.Second, "every xDS node holding the new set", func() bool { return s.xdsCaughtUp(t) })
		followed := time.Now()
		if len(gone) == 0 {
			return
		}
		time.Sleep(time.Second) // the drain period: longer than any request here
		for _, n := range gone {
			last, count := hosts[n].lastRequest()
			if last.After(followed) {
				t.Errorf("%s got a request %s after Sluice followed its removal", n, last.Sub(followed))
			}
			hosts[n].stop()
			t.Logf("record %s: %s got its last request %s after the change (%d in all); stopped after the drain", what, n, last.Sub(at).Round(time.Millisecond), count)
		}
	}

	responses := func() [3]float64 {
		var out [3]float64
		for i, typ := range []string{"CDS", "LDS", "RDS"} {
			out[i] = s.metric(t, "sluice_xds_responses_total", map[string]string{"type": typ})
		}
		return out
	}
	testenv.WaitFor(t, 30*time.Second, "every xDS node holding the first set", func() bool { return s.xdsCaughtUp(t) })
	before := responses()

	change("added", []string{"h21", "h22", "h23"}, []string{"h23"}, nil)
	if w := s.metric(t, "sluice_router_excluded_requests_total", map[string]string{"cluster": "web", "reason": "warmup"}); w == 0 {
		t.Error("requests to the host added later were not kept out of analysis (warm-up)")
	}
	if n := s.metric(t, "http_requests_total", map[string]string{"cluster": "web"}); n == 0 {
		t.Error("no request to the first table's hosts counts in analysis: they were taken as cold")
	}
	change("changed", []string{"h21", "h23", "h24"}, []string{"h24"}, []string{"h22"})
	change("removed", []string{"h23", "h24"}, nil, []string{"h21"})

	// dnsmasq goes away: the last set keeps serving, and status says so.
	dm.Stop()
	down := time.Now()
	var d analyzer.DiscoveryStatus
	testenv.WaitFor(t, 30*time.Second, "status showing the DNS failure", func() bool {
		d = s.discovery(t, "web")
		return d.Error != ""
	})
	if !strings.Contains(d.Summary, "serving 2 endpoints from") || d.Endpoints != 2 {
		t.Errorf("with dnsmasq down: %+v", d)
	}
	t.Logf("status with dnsmasq down: %s", d.Summary)
	out, err := exec.Command(sluiceBin, "status", "web", "--admin", admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "endpoints of web from DNS: "+d.Error+" since ") {
		t.Errorf("sluice status: %v\n%s", err, out)
	}
	failedBefore := s.metric(t, "sluice_discovery_resolutions_total", map[string]string{"cluster": "web", "result": d.Error})
	testenv.WaitFor(t, 60*time.Second, "three more failed resolutions", func() bool {
		return s.metric(t, "sluice_discovery_resolutions_total", map[string]string{"cluster": "web", "result": d.Error}) >= failedBefore+3
	})
	for i, tr := range both {
		by := map[string]int{}
		for _, o := range tr.since(down) {
			by[o.backend]++
		}
		if by["h23"] == 0 || by["h24"] == 0 || len(by) != 2 {
			t.Errorf("%s with dnsmasq down: %v, want h23 and h24 only", planes[i], by)
		}
	}
	stopTraffic()

	for i, tr := range both {
		all, failed := tr.since(time.Time{}), tr.failures()
		if len(failed) > 0 {
			t.Errorf("%s: %d of %d calls failed, e.g. %+v", planes[i], len(failed), len(all), failed[:min(5, len(failed))])
		}
		t.Logf("%s: %d calls, none failed", planes[i], len(all))
	}
	if after := responses(); after != before {
		t.Errorf("CDS, LDS, RDS responses went from %v to %v while only records changed", before, after)
	}
	eds := s.metric(t, "sluice_xds_eds_only_pushes_total", nil)
	if eds < 3 {
		t.Errorf("sluice_xds_eds_only_pushes_total = %v, want one per record change (3 or more)", eds)
	}
	t.Logf("EDS-only pushes: %v; EDS responses %v, CDS %v, LDS %v, RDS %v", eds,
		s.metric(t, "sluice_xds_responses_total", map[string]string{"type": "EDS"}),
		s.metric(t, "sluice_xds_responses_total", map[string]string{"type": "CDS"}),
		s.metric(t, "sluice_xds_responses_total", map[string]string{"type": "LDS"}),
		s.metric(t, "sluice_xds_responses_total", map[string]string{"type": "RDS"}))
}
