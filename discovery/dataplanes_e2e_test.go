package discovery

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/router"
	"github.com/sluice-mesh/sluice/xds"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// pod is an HTTP server on its own loopback address standing in for a pod; a request
// to /hold waits until release is closed.
type pod struct {
	ip      string
	srv     *http.Server
	hits    atomic.Int64
	holding atomic.Int64
	release chan struct{}
}

// startPods starts a pod on each ip, all on one port, and returns them and the port.
func startPods(t *testing.T, ips ...string) (map[string]*pod, int32) {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		pods := map[string]*pod{}
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			p := &pod{ip: ip, release: make(chan struct{})}
			p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p.hits.Add(1)
				if r.URL.Path == "/hold" {
					p.holding.Add(1)
					<-p.release
				}
				w.Header().Set("X-Pod", p.ip)
			})}
			go p.srv.Serve(ln)
			t.Cleanup(func() { p.srv.Close() })
			pods[ip] = p
		}
		if ok {
			return pods, int32(port)
		}
		for _, p := range pods {
			p.srv.Close()
		}
	}
	t.Fatal("no port free on every pod address")
	return nil, 0
}

// TestKubernetesDiscoveryDrivesTheDataPlanes: a Manager, through an Overlay, feeds
// Sluice's router (real HTTP pods on 127.0.0.4x, requests sent through it the whole
// time) and its xDS server (a strict fake Envoy), while the Service's EndpointSlice
// scales up and rolls its pods; a request in flight on the terminating pod must finish.
// The slices live in client-go's fake clientset, watched through the Manager's informer:
// a real kube-apiserver refuses loopback addresses in EndpointSlices, and this machine
// can send traffic to loopback addresses only (TestKubernetesDiscoveryAgainstARealAPIServer
// runs the same informer against the real one).
func TestKubernetesDiscoveryDrivesTheDataPlanes(t *testing.T) {
	cs := fake.NewClientset()
	client := func(string) (SliceClient, error) { return fakeDiscovery(cs), nil }
	slices := cs.DiscoveryV1().EndpointSlices("sluice")
	pods, port := startPods(t, "127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44")
	ports := map[string]int32{"http": port}
	rt, err := router.New(router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	xs, err := xds.New(xds.Options{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := xs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer xs.Stop()
	ov := NewOverlay(nil, rt, xs)
	m := NewManager(Options{OnChange: ov.OnChange, KubeClient: client})
	defer m.Close()

	ctx := context.Background()
	if _, err := slices.Create(ctx, slice("sluice", "web", "web-a", ports,
		ep{ip: "127.0.0.41", ready: yes}, ep{ip: "127.0.0.42", ready: yes}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := &model.Config{
		Clusters: []model.Cluster{{Name: "web", Kubernetes: &model.KubernetesDiscovery{Service: "web", Namespace: "sluice", PortName: "http"}}},
		Listeners: []model.Listener{{Name: "web", Address: "127.0.0.1:0",
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "web"}}}},
	}
	m.Update(cfg)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.WaitResolved(wctx); err != nil {
		t.Fatal(err)
	}
	// What the analyzer would apply: the configuration's routing, no endpoints of its own.
	if err := ov.Apply(&model.Snapshot{Version: 1, Clusters: cfg.Clusters, Listeners: cfg.Listeners}); err != nil {
		t.Fatal(err)
	}
	if err := ov.WaitApplied(ctx, 1); err != nil {
		t.Fatal(err)
	}
	url := "http://" + rt.Addr("127.0.0.1:0")
	cc, err := grpc.NewClient(xs.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	envoy, err := xdstest.Start(ctx, cc, xdstest.Options{Node: &corev3.Node{Id: "kube-e2e", Cluster: "edge"}})
	if err != nil {
		t.Fatal(err)
	}
	defer envoy.Stop()

	// Clients through the router, the whole time.
	var mu sync.Mutex
	var failed []string
	served := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				resp, err := c.Get(url + "/")
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err.Error())
				case resp.StatusCode != http.StatusOK:
					failed = append(failed, resp.Status)
				default:
					served++
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	endpointsOf := func() map[string]corev3.HealthStatus {
		_, cla, ok := envoy.Cluster("web")
		out := map[string]corev3.HealthStatus{}
		if !ok || cla == nil {
			return out
		}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				out[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = lb.GetHealthStatus()
			}
		}
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (the fake Envoy holds %v)", what, endpointsOf())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	reached := func(ip string) func() bool {
		from := pods[ip].hits.Load()
		return func() bool { return pods[ip].hits.Load() > from+5 }
	}
	waitFor("requests to both pods", func() bool { return pods["127.0.0.41"].hits.Load() > 5 && pods["127.0.0.42"].hits.Load() > 5 })
	waitFor("the fake Envoy holding both", func() bool { return len(endpointsOf()) == 2 })

	update := func(what string, eps ...ep) time.Time {
		t.Helper()
		if _, err := slices.Update(ctx, slice("sluice", "web", "web-a", ports, eps...), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}

	// Scale-up.
	at := update("scale-up", ep{ip: "127.0.0.41", ready: yes}, ep{ip: "127.0.0.42", ready: yes}, ep{ip: "127.0.0.43", ready: yes})
	waitFor("the new pod getting requests", reached("127.0.0.43"))
	t.Logf("scale-up: the router sent requests to the new pod %s after the EndpointSlice update", time.Since(at).Round(time.Millisecond))
	waitFor("the fake Envoy holding three", func() bool { return len(endpointsOf()) == 3 })

	// A request held on .41; then a rolling update: .41 terminating, .44 new and ready.
	for _, p := range pods {
		if p.ip != "127.0.0.41" {
			close(p.release) // only .41 holds requests
		}
	}
	held := make(chan error, 1)
	go func() {
		for {
			resp, err := http.Get(url + "/hold")
			if err != nil {
				held <- err
				return
			}
			resp.Body.Close()
			if resp.Header.Get("X-Pod") == "127.0.0.41" {
				held <- nil
				return
			}
		}
	}()
	waitFor("a request held on the pod about to terminate", func() bool { return pods["127.0.0.41"].holding.Load() == 1 })
	update("rolling update", ep{ip: "127.0.0.41", ready: no, serving: yes, terminating: yes},
		ep{ip: "127.0.0.42", ready: yes}, ep{ip: "127.0.0.43", ready: yes}, ep{ip: "127.0.0.44", ready: yes})
	waitFor("the fake Envoy holding .41 as DRAINING", func() bool { return endpointsOf()["127.0.0.41"] == corev3.HealthStatus_DRAINING })
	waitFor("the new pod getting requests", reached("127.0.0.44"))
	drained := pods["127.0.0.41"].hits.Load()
	for _, ip := range []string{"127.0.0.42", "127.0.0.43", "127.0.0.44"} {
		waitFor("requests to "+ip, reached(ip))
	}
	if n := pods["127.0.0.41"].hits.Load(); n != drained {
		t.Errorf("the terminating pod got %d new requests", n-drained)
	}
	close(pods["127.0.0.41"].release)
	if err := <-held; err != nil {
		t.Errorf("the request in flight on the terminating pod failed: %v", err)
	}

	// The terminating pod gone.
	update("old pod gone", ep{ip: "127.0.0.42", ready: yes}, ep{ip: "127.0.0.43", ready: yes}, ep{ip: "127.0.0.44", ready: yes})
	waitFor("the fake Envoy without .41", func() bool { _, still := endpointsOf()["127.0.0.41"]; return !still && len(endpointsOf()) == 3 })
	pods["127.0.0.41"].srv.Close()

	close(stop)
	wg.Wait()
	if st := envoy.Stats(); len(st.Violations) > 0 || st.NACKs > 0 {
		t.Errorf("fake Envoy: %v, %d NACKs (%s)", st.Violations, st.NACKs, st.LastNACK)
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests through the router failed: %v", len(failed), served+len(failed), failed[:min(5, len(failed))])
	}
	t.Logf("%d requests through the router while the Service scaled up and rolled, none failed", served)
	if h, _, n, _ := rt.ClusterHealth("web"); h != 3 || n != 3 {
		t.Errorf("router health of web: %d/%d, want 3/3", h, n)
	}
}
