// Package mesh holds the mesh end-to-end test of issue 7 §3, with real parts on 127.0.0.1:
// the sluice binary built once in TestMain runs `sluice serve` (xDS server, controller,
// admin API) and `sluice demo-backend --grpc` for a stable and a canary version of a gRPC
// service instrumented as a service owner would (instrument package); Debian's prometheus
// scrapes both backends every second; and proxyless gRPC clients in the test process
// (google.golang.org/grpc/xds, target xds:///greeter, each with its own node id) send RPCs
// continuously through routes Sluice's xDS server gives them, recording which backend
// answered every RPC. The Rollout's analysis asks the real Prometheus for the canary's
// error ratio (testdata/sluice.yaml).
package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/xds"
)

// sluiceBin is the sluice binary built by TestMain.
var sluiceBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSluice(m, &sluiceBin)) }

// ---------------------------------------------------------------------------------------
// Processes

// proc is a child process of the test (testenv.Process).
type proc = testenv.Process

// startProc runs the sluice binary with args; see testenv.StartProcess.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return testenv.StartProcess(t, name, sluiceBin, args...)
}

// backend is a running `sluice demo-backend --grpc`.
type backend struct {
	name       string
	http, grpc string // addresses: HTTP (/metrics) and gRPC (TestService)
}

var (
	httpLine = regexp.MustCompile(`demo-backend \S+ http (\S+)`)
	grpcLine = regexp.MustCompile(`demo-backend \S+ grpc (\S+)`)
)

// startBackend runs a demo backend named name on free ports, answering errorRate of its
// RPCs with INTERNAL, and waits until it listens.
func startBackend(t *testing.T, name string, errorRate float64) backend {
	t.Helper()
	p := startProc(t, "demo-backend "+name, "demo-backend", "--listen", "127.0.0.1:0",
		"--grpc", "127.0.0.1:0", "--name", name, "--error-rate", fmt.Sprint(errorRate),
		"--latency", "2ms", "--log-level", "warn")
	b := backend{name: name}
	testenv.WaitFor(t, 20*time.Second, "demo-backend "+name+" listening", func() bool {
		if p.Exited() {
			t.Fatalf("demo-backend %s exited:\n%s", name, p.Output())
		}
		out := p.Output()
		h, g := httpLine.FindStringSubmatch(out), grpcLine.FindStringSubmatch(out)
		if h == nil || g == nil {
			return false
		}
		b.http, b.grpc = h[1], g[1]
		return true
	})
	return b
}

// serve is a running `sluice serve`.
type serve struct {
	*proc
	admin, xds string
}

// startServe runs `sluice serve -f cfgPath` and waits until its admin API is ready.
func startServe(t *testing.T, cfgPath, admin, xdsAddr string) *serve {
	t.Helper()
	p := startProc(t, "sluice serve", "serve", "-f", cfgPath, "--log-format", "json")
	s := &serve{proc: p, admin: admin, xds: xdsAddr}
	testenv.WaitFor(t, 30*time.Second, "sluice serve ready", func() bool {
		if p.Exited() {
			t.Fatalf("sluice serve exited:\n%s", p.Output())
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// getJSON decodes GET http://admin/path into v; it reports whether the API answered 200.
func (s *serve) getJSON(path string, v any) bool {
	resp, err := http.Get("http://" + s.admin + path)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	return json.NewDecoder(resp.Body).Decode(v) == nil
}

// waitStatus polls GET /api/v1/rollouts/greeter until cond holds, calling each (when
// set) on every status read, and returns the status that satisfied cond.
func (s *serve) waitStatus(t *testing.T, within time.Duration, what string,
	each func(analyzer.RolloutStatus), cond func(analyzer.RolloutStatus) bool) analyzer.RolloutStatus {
	t.Helper()
	var last analyzer.RolloutStatus
	deadline := time.Now().Add(within)
	for {
		var st analyzer.RolloutStatus
		if s.getJSON("/api/v1/rollouts/"+rolloutName, &st) {
			last = st
			if each != nil {
				each(st)
			}
			if cond(st) {
				return st
			}
		}
		if s.Exited() {
			t.Fatalf("sluice serve exited while waiting for %s", what)
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", " ")
			t.Fatalf("timed out after %s waiting for %s; last status:\n%s", within, what, b)
		}
		time.Sleep(50 * time.Millisecond) // the admin API's poll interval
	}
}

// nodes returns the xDS nodes Sluice reports (GET /api/v1/xds/nodes).
func (s *serve) nodes(t *testing.T) []xds.NodeStatus {
	t.Helper()
	var body struct {
		Nodes []xds.NodeStatus `json:"nodes"`
	}
	if !s.getJSON("/api/v1/xds/nodes", &body) {
		t.Fatal("GET /api/v1/xds/nodes failed")
	}
	return body.Nodes
}

// ---------------------------------------------------------------------------------------
// Proxyless gRPC clients

// obs is one RPC as a client saw it.
type obs struct {
	sent    time.Time
	backend string // the backend that answered (from the peer address); "" when none did
	ok      bool   // the RPC succeeded
}

// client is a proxyless gRPC client of xds:///greeter sending one RPC every period until
// stopped, recording who answered each.
type client struct {
	id     string
	mu     sync.Mutex
	obs    []obs
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startClients starts n proxyless clients, each with its own xDS node id (and so its
// own ADS stream to Sluice at xdsAddr), each sending an RPC every period. byAddr maps a
// backend's gRPC address to its name.
func startClients(t *testing.T, n int, xdsAddr string, byAddr map[string]string, period time.Duration) []*client {
	t.Helper()
	var cs []*client
	for i := range n {
		id := fmt.Sprintf("%s-grpc-%d", t.Name(), i)
		bootstrap := fmt.Sprintf(`{
			"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
			"node": {"id": %q, "cluster": "mesh-e2e"}
		}`, xdsAddr, id)
		rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("xds:///"+rolloutName, grpc.WithResolvers(rb),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &client{id: id, cancel: cancel}
		stub := testgrpc.NewTestServiceClient(cc)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var p peer.Peer
				o := obs{sent: time.Now()}
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second) // generous: a late answer on a loaded machine is still one
				resp, err := stub.UnaryCall(rctx, &testgrpc.SimpleRequest{}, grpc.Peer(&p))
				rcancel()
				if ctx.Err() != nil {
					return // stopped mid-RPC: not an observation
				}
				if p.Addr != nil {
					o.backend = byAddr[p.Addr.String()]
				}
				if err == nil {
					o.ok = true
					if resp.GetServerId() != o.backend {
						o.backend = "mismatch:" + resp.GetServerId() + "/" + o.backend
					}
				}
				c.mu.Lock()
				c.obs = append(c.obs, o)
				c.mu.Unlock()
			}
		}()
		t.Cleanup(func() { c.stop(); _ = cc.Close() })
		cs = append(cs, c)
	}
	return cs
}

func (c *client) stop() {
	c.cancel()
	c.wg.Wait()
}

// between returns the client's observations of RPCs sent at or after from, and before to
// (zero: no end).
func (c *client) between(from, to time.Time) []obs {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []obs
	for _, o := range c.obs {
		if !o.sent.Before(from) && (to.IsZero() || o.sent.Before(to)) {
			out = append(out, o)
		}
	}
	return out
}

// tally counts observations by backend ("" for RPCs no backend answered).
func tally(os []obs) map[string]int {
	m := map[string]int{}
	for _, o := range os {
		m[o.backend]++
	}
	return m
}

// lastSentTo returns when the last RPC answered by backend was sent (zero: never).
func lastSentTo(os []obs, backend string) time.Time {
	var last time.Time
	for _, o := range os {
		if o.backend == backend && o.sent.After(last) {
			last = o.sent
		}
	}
	return last
}
