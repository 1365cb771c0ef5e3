// Package hae2e holds the end-to-end test of issue 14 (several Sluice replicas on etcd),
// with real parts on 127.0.0.1: a three-member etcd cluster (Debian's etcd-server),
// replicas of the sluice binary built in TestMain running `sluice serve` (router, xDS
// server, embedded analysis, admin API), each reaching every etcd member through its own
// TCP proxy (testenv.Proxy) so that the test can cut one replica off etcd, a stable and
// a canary gRPC backend (internal/demobackend), and in the test process: gRPC clients
// that load every replica's router as a fleet behind an L4 balancer would (round robin,
// a call on a router that died is retried on another), proxyless gRPC clients
// (google.golang.org/grpc/xds) on two replicas' xDS servers, a strict fake Envoy
// (xds/xdstest) on every replica's xDS server recording each weight it is sent, a poller
// of every replica's rollout status, and a watch on etcd that checks every committed
// state against the one before it.
package hae2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/demobackend"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/xds/xdstest"

	"github.com/prometheus/client_golang/prometheus"
)

// sluiceBin is the sluice binary built by TestMain.
var sluiceBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSluice(m, &sluiceBin)) }

const (
	rolloutName = "greeter"
	leaseTTL    = 2 * time.Second
	prefix      = "/sluice-e2e/"
)

// configTemplate is every replica's configuration; ${...} are filled per replica
// (addresses may differ between replicas: the config digest leaves them out). ${PAUSE}
// lets one replica run a config that differs in what decides.
const configTemplate = `apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: "${ADMIN}"}
  xds: {address: "${XDS}", ackTimeout: 5s}
  minRequests: 5
  store:
    etcd:
      endpoints: [${ENDPOINTS}]
      prefix: ` + prefix + `
      leaseTTL: 2s
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: greeter-stable}
spec:
  protocol: h2c
  warmup: 0s   # a restarted replica's traffic counts at once
  endpoints: [{address: "${STABLE}"}]
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: greeter-canary}
spec:
  protocol: h2c
  warmup: 0s
  endpoints: [{address: "${CANARY}"}]
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: greeter}
spec:
  address: "${LISTEN}"
  routes: [{name: grpc, hosts: ["*"], pathPrefix: /, cluster: greeter-stable}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: greeter
  annotations: {sluice.dev/revision: v2}
spec:
  strategy:
    canary:
      stableService: greeter-stable
      canaryService: greeter-canary
      trafficRouting: {nginx: {stableIngress: greeter}}
      steps:
        - setWeight: 20
        - pause: {duration: ${PAUSE}}
        - analysis: {templates: [{templateName: fleet}]}
        - setWeight: 50
        - pause: {}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: fleet}
spec:
  dryRun: [{metricName: replicas-seen}]
  metrics:
    # Over the router series of every replica (the leader gathers them; sum drops the
    # replica label).
    - name: error-ratio
      interval: 1s
      count: 100
      failureLimit: 0
      successCondition: result[0] <= 0.05
      provider:
        prometheus:
          query: |
            sum(rate(http_errors_total{cluster="greeter-canary"}[10s]))
            /
            sum(rate(http_requests_total{cluster="greeter-canary"}[10s]))
    # A web metric the test can hold in flight (gate): the leader's measurements come from it.
    - name: gate
      interval: 1s
      count: 100
      successCondition: result == 1
      provider:
        web: {url: "${GATE}", jsonPath: "{$.value}", timeoutSeconds: 20}
    # How many replicas' routers the analysis sees (recorded, never deciding).
    - name: replicas-seen
      interval: 1s
      count: 100
      successCondition: result[0] >= 3
      provider:
        prometheus:
          query: count(count by (replica) (http_requests_total{cluster="greeter-canary"}))
`

// ---------------------------------------------------------------------------------------
// The replicas

// replica is one `sluice serve` of the fleet, restartable on the same addresses.
type replica struct {
	top                      *testing.T // owns the processes: a restart in a subtest outlives it
	name                     string
	cfgPath                  string
	admin, listen, xds       string
	proxies                  []*testenv.Proxy // one per etcd member
	proc                     *testenv.Process
	watcher                  *weightWatcher // on its xDS server
	poller                   *statusPoller  // of its rollout status
	startedAt                time.Time
	restarted                bool
	killedAt                 time.Time
	firstStatus, firstXDS    int // what it served first after its last start (-1: not yet)
	mu                       sync.Mutex
	statusHistory, xdsWeight []int
	violations               []string // the fake Envoy's: moments a real Envoy would answer 503
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newReplica writes a replica's config: its own addresses, etcd reached through its own
// proxies; pause is the Rollout's timed pause (another value changes the config digest).
func newReplica(t *testing.T, name string, etcd *testenv.EtcdCluster, stable, canary, gate, pause string) *replica {
	t.Helper()
	r := &replica{top: t, name: name, admin: freeAddr(t), listen: freeAddr(t), xds: freeAddr(t)}
	var eps []string
	for _, ep := range etcd.Endpoints() {
		p := testenv.StartProxy(t, strings.TrimPrefix(ep, "http://"))
		r.proxies = append(r.proxies, p)
		eps = append(eps, strconv.Quote(p.URL()))
	}
	cfg := strings.NewReplacer("${ADMIN}", r.admin, "${XDS}", r.xds, "${LISTEN}", r.listen,
		"${ENDPOINTS}", strings.Join(eps, ", "), "${STABLE}", stable, "${CANARY}", canary, "${GATE}", gate, "${PAUSE}", pause).Replace(configTemplate)
	r.cfgPath = filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs `sluice serve` and waits until it is ready; a fake Envoy connects to its
// xDS server and a poller reads its status from the first moment each can.
func (r *replica) start(t *testing.T) {
	t.Helper()
	if err := r.launch(); err != nil {
		t.Fatal(err)
	}
}

// launch is start for any goroutine: it returns what went wrong.
func (r *replica) launch() error {
	r.mu.Lock()
	r.firstStatus, r.firstXDS = -1, -1
	r.mu.Unlock()
	r.startedAt = time.Now()
	r.proc = testenv.StartProcess(r.top, r.name, sluiceBin, "serve", "-f", r.cfgPath, "--log-format", "json")
	r.watcher = watchWeights(r.top, r)
	r.poller = pollStatus(r.top, r)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r.proc.Exited() {
			return fmt.Errorf("%s exited:\n%s", r.name, r.proc.Output())
		}
		if resp, err := http.Get("http://" + r.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60s", r.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the replica as kill -9 does.
func (r *replica) kill9() {
	r.killedAt = time.Now()
	r.proc.Kill()
	r.watcher.stop()
	r.poller.stop()
}

// alive reports whether the replica's process runs.
func (r *replica) alive() bool { return r.proc != nil && !r.proc.Exited() }

func getJSON(addr, path string, v any) error {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// replicasView is GET /api/v1/replicas.
type replicasView struct {
	Self           string    `json:"self"`
	Leader         string    `json:"leader"`
	Leading        bool      `json:"leading"`
	EtcdReachable  bool      `json:"etcdReachable"`
	ConfigDigest   string    `json:"configDigest"`
	ConfigMismatch bool      `json:"configMismatch"`
	Error          string    `json:"error"`
	Replicas       []ha.Info `json:"replicas"`
}

func (r *replica) view() (replicasView, error) {
	var v replicasView
	err := getJSON(r.admin, "/api/v1/replicas", &v)
	return v, err
}

func (r *replica) status() (analyzer.RolloutStatus, error) {
	var st analyzer.RolloutStatus
	err := getJSON(r.admin, "/api/v1/rollouts/"+rolloutName, &st)
	return st, err
}

// metric returns the value of a series in the replica's /metrics ("" when absent).
func (r *replica) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + r.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimSpace(line[len(series):])
		}
	}
	return ""
}

// cli runs the sluice command line and returns its exit code and output.
func cli(args ...string) (int, string) {
	cmd := exec.Command(sluiceBin, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return code, string(out)
}

// ---------------------------------------------------------------------------------------
// What every replica serves, seen from outside

// weightWatcher is a strict fake Envoy on a replica's xDS server that records every
// canary weight of the greeter route it is sent.
type weightWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func watchWeights(t *testing.T, r *replica) *weightWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &weightWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			conn, err := grpc.NewClient(r.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return
			}
			c, err := xdstest.Start(ctx, conn, xdstest.Options{Node: &corev3.Node{Id: "watcher-" + r.name, Cluster: "e2e"},
				OnResponse: func(resp *discoverygrpc.DiscoveryResponse, nacked bool) {
					if resp.GetTypeUrl() != resourcev3.RouteType || nacked {
						return
					}
					if w, ok := canaryWeight(resp); ok {
						r.recordXDS(w)
					}
				}})
			if err != nil {
				conn.Close()
				sleep(ctx, 20*time.Millisecond)
				continue
			}
			for ctx.Err() == nil && c.Err() == nil {
				sleep(ctx, 100*time.Millisecond)
			}
			r.mu.Lock()
			r.violations = append(r.violations, c.Stats().Violations...)
			r.mu.Unlock()
			c.Stop()
			conn.Close()
			sleep(ctx, 20*time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *weightWatcher) stop() { w.cancel(); <-w.done }

// canaryWeight finds the canary's weight in an RDS response: its share of a weighted
// route, or 100 and 0 for a route to the canary or the stable alone.
func canaryWeight(resp *discoverygrpc.DiscoveryResponse) (int, bool) {
	for _, a := range resp.GetResources() {
		var rc routev3.RouteConfiguration
		if proto.Unmarshal(a.GetValue(), &rc) != nil {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if len(rt.GetMatch().GetHeaders()) > 0 {
					continue // a header route, not the split
				}
				switch rt.GetRoute().GetCluster() {
				case "greeter-canary":
					return 100, true
				case "greeter-stable":
					return 0, true
				}
				total, canary := 0, 0
				for _, wc := range rt.GetRoute().GetWeightedClusters().GetClusters() {
					total += int(wc.GetWeight().GetValue())
					if wc.GetName() == "greeter-canary" {
						canary = int(wc.GetWeight().GetValue())
					}
				}
				if total > 0 {
					return canary * 100 / total, true
				}
			}
		}
	}
	return 0, false
}

func (r *replica) recordXDS(w int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstXDS < 0 {
		r.firstXDS = w
	}
	if n := len(r.xdsWeight); n == 0 || r.xdsWeight[n-1] != w {
		r.xdsWeight = append(r.xdsWeight, w)
	}
}

// statusPoller reads a replica's rollout status every 50 ms and records each setWeight.
type statusPoller struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func pollStatus(t *testing.T, r *replica) *statusPoller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &statusPoller{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			if st, err := r.status(); err == nil {
				r.mu.Lock()
				if r.firstStatus < 0 {
					r.firstStatus = st.SetWeight
				}
				if n := len(r.statusHistory); n == 0 || r.statusHistory[n-1] != st.SetWeight {
					r.statusHistory = append(r.statusHistory, st.SetWeight)
				}
				r.mu.Unlock()
			}
			sleep(ctx, 50*time.Millisecond)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *statusPoller) stop() { p.cancel(); <-p.done }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ---------------------------------------------------------------------------------------
// Clients

// load counts calls: by backend, failed, retried.
type load struct {
	name    string
	ok      atomic.Int64
	failed  atomic.Int64
	mu      sync.Mutex
	byName  map[string]int
	lastErr string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (l *load) record(server string, err error) {
	if err != nil {
		l.failed.Add(1)
		l.mu.Lock()
		l.lastErr = err.Error()
		l.mu.Unlock()
		return
	}
	l.ok.Add(1)
	l.mu.Lock()
	l.byName[server]++
	l.mu.Unlock()
}

// snapshot returns the calls by backend so far.
func (l *load) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.byName {
		out[k] = v
	}
	return out
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// run starts n goroutines calling stub every period until stop.
func (l *load) run(n int, period time.Duration, stub testgrpc.TestServiceClient) {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := stub.UnaryCall(cctx, &testgrpc.SimpleRequest{})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				l.record(resp.GetServerId(), err)
			}
		}()
	}
}

// retryPolicy retries a call that a dying router could not answer on another router:
// what a client of a fleet behind an L4 balancer gets from the balancer's health checks.
const retryPolicy = `{"loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s",
    "maxBackoff": "0.5s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// routerLoad calls through every replica's router, round robin.
func routerLoad(t *testing.T, reps []*replica) *load {
	t.Helper()
	res := manual.NewBuilderWithScheme("routers")
	var addrs []resolver.Address
	for _, r := range reps {
		addrs = append(addrs, resolver.Address{Addr: r.listen})
	}
	res.InitialState(resolver.State{Addresses: addrs})
	cc, err := grpc.NewClient("routers:///fleet", grpc.WithResolvers(res), grpc.WithDefaultServiceConfig(retryPolicy),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l := &load{name: "routers", byName: map[string]int{}}
	l.run(3, 15*time.Millisecond, testgrpc.NewTestServiceClient(cc))
	t.Cleanup(func() { l.stop(); cc.Close() })
	return l
}

// xdsLoad is a proxyless gRPC client of xds:///greeter on r's xDS server.
func xdsLoad(t *testing.T, r *replica) *load {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "proxyless-%s", "cluster": "e2e"}
	}`, r.xds, r.name)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+rolloutName, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l := &load{name: "proxyless on " + r.name, byName: map[string]int{}}
	l.run(1, 15*time.Millisecond, testgrpc.NewTestServiceClient(cc))
	t.Cleanup(func() { l.stop(); cc.Close() })
	return l
}

// startBackend serves a demo gRPC backend named name on a free port.
func startBackend(t *testing.T, name string) string {
	t.Helper()
	b, err := demobackend.New(prometheus.NewRegistry(), prometheus.NewRegistry(), demobackend.Options{Name: name, Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Serve(ctx, hl, gl, zap.NewNop()) }()
	t.Cleanup(func() { cancel(); <-done })
	return gl.Addr().String()
}

// ---------------------------------------------------------------------------------------
// etcd, as the test sees it

// stateLog watches the rollout's state in etcd (straight to the members, not through the
// replicas' proxies) and checks every committed state against the previous one: within
// a release the step, the routing generation and each analysis metric's count never go
// back — a write from a leader that had lost its term would show as such a step back.
type stateLog struct {
	mu       sync.Mutex
	states   []analyzer.State
	problems []string
	cancel   context.CancelFunc
	done     chan struct{}
}

func watchStates(t *testing.T, endpoints []string) *stateLog {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &stateLog{cancel: cancel, done: make(chan struct{})}
	key := prefix + "states/" + rolloutName
	go func() {
		defer close(l.done)
		from := int64(1)
		for ctx.Err() == nil {
			for wr := range cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(from)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypePut {
						l.add(ev.Kv.ModRevision, ev.Kv.Value)
					}
					from = ev.Kv.ModRevision + 1
				}
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-l.done; cli.Close() })
	return l
}

func (l *stateLog) add(rev int64, b []byte) {
	st, err := analyzer.DecodeState(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.problems = append(l.problems, fmt.Sprintf("revision %d: unreadable state: %v", rev, err))
		return
	}
	if n := len(l.states); n > 0 {
		prev := l.states[n-1]
		if prev.Revision == st.Revision && prev.StartedAt.Equal(st.StartedAt) {
			if st.Step < prev.Step || st.Gen < prev.Gen {
				l.problems = append(l.problems, fmt.Sprintf("revision %d: step %d gen %d after step %d gen %d", rev, st.Step, st.Gen, prev.Step, prev.Gen))
			}
			for _, run := range st.Runs {
				for _, pr := range prev.Runs {
					if pr.ID != run.ID {
						continue
					}
					for i, m := range run.Metrics {
						if i < len(pr.Metrics) && m.Count < pr.Metrics[i].Count {
							l.problems = append(l.problems, fmt.Sprintf("revision %d: run %d metric %s count %d after %d",
								rev, run.ID, m.Name, m.Count, pr.Metrics[i].Count))
						}
					}
				}
			}
		}
	}
	l.states = append(l.states, *st)
}

func (l *stateLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Errorf("etcd: %s", p)
	}
}

func (l *stateLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.states)
}

// gate is the web metric's endpoint: it answers {"value": 1} at once, or, while held,
// lets a measurement arrive and keeps it in flight until released.
type gate struct {
	mu      sync.Mutex
	held    bool
	arrived chan struct{} // receives when a held measurement arrives
	release chan struct{} // closed to answer the held ones
}

func startGate(t *testing.T) (string, *gate) {
	t.Helper()
	g := &gate{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		held, release := g.held, g.release
		g.mu.Unlock()
		if held {
			select {
			case g.arrived <- struct{}{}:
			default:
			}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value": 1}`)
	}))
	t.Cleanup(func() { g.open(); srv.Close() })
	return srv.URL + "/measure", g
}

// hold makes the next measurements wait in flight.
func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.release = true, make(chan struct{})
}

// open answers every held measurement and stops holding.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.held = false
		close(g.release)
	}
}

// etcdFollower returns the index of a member that is not etcd's raft leader.
func etcdFollower(t *testing.T, etcd *testenv.EtcdCluster) int {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i, ep := range etcd.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err == nil && st.Leader != st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no etcd member says it follows")
	return -1
}
