package discovery

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluice-mesh/sluice/model"
)

// ep is an EndpointSlice endpoint with its conditions (nil: unset).
type ep struct {
	ip                          string
	ready, serving, terminating *bool
}

var yes, no = ptr(true), ptr(false)

func ptr[T any](v T) *T { return &v }

// slice builds an EndpointSlice of service in namespace with one port per name:number.
func slice(ns, service, name string, ports map[string]int32, endpoints ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range endpoints {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}})
	}
	return s
}

var httpPort = map[string]int32{"http": 8080}

func TestFromSlicesConditionsAndPorts(t *testing.T) {
	spec := model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortName: "http"}
	draining := func(a string) model.Endpoint { return model.Endpoint{Address: a, Weight: 1, Draining: true} }
	v6 := slice("prod", "api", "api-v6", httpPort, ep{ip: "fd00::5", ready: yes})
	v6.AddressType = discoveryv1.AddressTypeIPv6
	fqdn := slice("prod", "api", "api-fqdn", httpPort, ep{ip: "pod.example.com"})
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	udp := slice("prod", "api", "api-udp", map[string]int32{"http": 8080})
	udp.Ports[0].Protocol = ptr(corev1.ProtocolUDP)
	udp.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.0.9.9"}}}

	for _, tc := range []struct {
		name   string
		spec   model.KubernetesDiscovery
		slices []any
		want   []model.Endpoint
		err    string
	}{
		{"conditions per the EndpointSlice API", spec, []any{slice("prod", "api", "api-1", httpPort,
			ep{ip: "10.0.0.1", ready: yes},
			ep{ip: "10.0.0.2"},                                            // nil ready means ready
			ep{ip: "10.0.0.3", ready: no, serving: no},                    // starting or failing readiness: left out
			ep{ip: "10.0.0.4", ready: no, serving: yes, terminating: yes}, // terminating, still serving: drain
			ep{ip: "10.0.0.5", ready: no, serving: no, terminating: yes},  // terminating, not serving: drain too
			ep{ip: "10.0.0.6", ready: yes, terminating: yes},              // publishNotReadyAddresses: terminating wins
			ep{ip: "not-an-ip", ready: yes},
		)}, []model.Endpoint{eps("10.0.0.1:8080")[0], eps("10.0.0.2:8080")[0], draining("10.0.0.4:8080"), draining("10.0.0.5:8080"), draining("10.0.0.6:8080")}, ""},
		{"several slices, one address in two (ready wins), other services and namespaces ignored", spec, []any{
			slice("prod", "api", "api-1", httpPort, ep{ip: "10.0.0.1", terminating: yes, ready: no}),
			slice("prod", "api", "api-2", httpPort, ep{ip: "10.0.0.1", ready: yes}, ep{ip: "10.0.0.2"}),
			slice("prod", "web", "web-1", httpPort, ep{ip: "10.0.1.1"}),
			slice("staging", "api", "api-1", httpPort, ep{ip: "10.0.2.1"}),
			v6, fqdn,
		}, eps("10.0.0.1:8080", "10.0.0.2:8080", "[fd00::5]:8080"), ""},
		{"port by number matches the endpoints' port", model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortNumber: 9090},
			[]any{slice("prod", "api", "api-1", map[string]int32{"http": 8080, "metrics": 9090}, ep{ip: "10.0.0.1"})}, eps("10.0.0.1:9090"), ""},
		{"pods with different target ports sit in different slices", spec, []any{
			slice("prod", "api", "api-old", map[string]int32{"http": 8080}, ep{ip: "10.0.0.1"}),
			slice("prod", "api", "api-new", map[string]int32{"http": 8081}, ep{ip: "10.0.0.2"}),
		}, eps("10.0.0.1:8080", "10.0.0.2:8081"), ""},
		{"no port chosen, one port", model.KubernetesDiscovery{Service: "api", Namespace: "prod"},
			[]any{slice("prod", "api", "api-1", httpPort, ep{ip: "10.0.0.1"})}, eps("10.0.0.1:8080"), ""},
		{"no port chosen, several", model.KubernetesDiscovery{Service: "api", Namespace: "prod"},
			[]any{slice("prod", "api", "api-1", map[string]int32{"http": 8080, "grpc": 9000}, ep{ip: "10.0.0.1"})}, nil,
			"Service prod/api has several ports (grpc (9000), http (8080)): set kubernetes.port to one of them"},
		{"no such port name", model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortName: "grpc"},
			[]any{slice("prod", "api", "api-1", httpPort, ep{ip: "10.0.0.1"})}, nil,
			"the EndpointSlices of prod/api have no a port named \"grpc\" (they have http (8080))"},
		{"UDP ports are not dialled", spec, []any{udp}, nil, ""},
		{"no slices: an empty answer", spec, nil, nil, ""},
		{"slices without endpoints: an empty answer", spec, []any{slice("prod", "api", "api-1", httpPort)}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fromSlices(tc.spec, tc.slices)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equal(tc.want, got) {
				t.Errorf("(-want +got):\n%s", cmp.Diff(tc.want, got))
			}
		})
	}
}

// results collects a source's reports for a test.
type results struct {
	mu     sync.Mutex
	got    []Result
	cursor int // reports before it were matched or passed over already
	new    chan struct{}
}

func newResults() *results { return &results{new: make(chan struct{}, 1)} }

func (r *results) report(res Result) {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.mu.Unlock()
	select {
	case r.new <- struct{}{}:
	default:
	}
}

// waitFor waits for a report, after the one the previous waitFor returned, that
// satisfies ok.
func (r *results) waitFor(t *testing.T, what string, ok func(Result) bool) Result {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		for ; r.cursor < len(r.got); r.cursor++ {
			if res := r.got[r.cursor]; ok(res) {
				r.cursor++
				r.mu.Unlock()
				return res
			}
		}
		last := r.got
		r.mu.Unlock()
		select {
		case <-r.new:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; reports: %+v", what, last)
		}
	}
}

func hasEndpoints(want ...model.Endpoint) func(Result) bool {
	return func(r Result) bool { return r.Err == nil && equal(r.Endpoints, want) }
}

// fakeClient is SliceClient over a fake clientset; like the fake clientset itself, it
// tells the informer that it cannot stream lists.
type fakeClient struct{ cs *fake.Clientset }

func (f fakeClient) List(ctx context.Context, ns string, o metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	return f.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, o)
}

func (f fakeClient) Watch(ctx context.Context, ns string, o metav1.ListOptions) (watch.Interface, error) {
	return f.cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, o)
}

func (fakeClient) IsWatchListSemanticsUnSupported() bool { return true }

func fakeDiscovery(cs *fake.Clientset) SliceClient { return fakeClient{cs} }

func runKube(t *testing.T, client SliceClient, spec model.KubernetesDiscovery) *results {
	t.Helper()
	src := NewKubernetesSource(spec, "", func(string) (SliceClient, error) { return client, nil })
	res := newResults()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx, res.report) }()
	t.Cleanup(func() { cancel(); <-done })
	return res
}

func TestKubernetesSourceFollowsSlices(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(
		slice("prod", "api", "api-a", httpPort, ep{ip: "10.0.0.1"}, ep{ip: "10.0.0.2"}),
		slice("prod", "web", "web-a", httpPort, ep{ip: "10.9.9.9"}),
	)
	api := cs.DiscoveryV1().EndpointSlices("prod")
	res := runKube(t, fakeDiscovery(cs), model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortName: "http"})
	res.waitFor(t, "the initial list", hasEndpoints(eps("10.0.0.1:8080", "10.0.0.2:8080")...))

	// Scale up: a second slice appears, and the first one grows.
	if _, err := api.Create(ctx, slice("prod", "api", "api-b", httpPort, ep{ip: "10.0.0.3"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Update(ctx, slice("prod", "api", "api-a", httpPort, ep{ip: "10.0.0.1"}, ep{ip: "10.0.0.2"}, ep{ip: "10.0.0.4"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res.waitFor(t, "the scale-up", hasEndpoints(eps("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080")...))

	// A pod rollout: a new pod starts not ready (left out) beside one that is ready,
	// then the old pod terminates (drained) and goes away.
	if _, err := api.Update(ctx, slice("prod", "api", "api-b", httpPort, ep{ip: "10.0.0.3"}, ep{ip: "10.0.0.5", ready: no, serving: no}, ep{ip: "10.0.0.6"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res.waitFor(t, "the not-ready pod left out", hasEndpoints(eps("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.6:8080")...))
	if _, err := api.Update(ctx, slice("prod", "api", "api-b", httpPort, ep{ip: "10.0.0.3", ready: no, serving: yes, terminating: yes}, ep{ip: "10.0.0.5", ready: yes}, ep{ip: "10.0.0.6"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res.waitFor(t, "the old pod draining, the new one in", hasEndpoints(
		model.Endpoint{Address: "10.0.0.1:8080", Weight: 1}, model.Endpoint{Address: "10.0.0.2:8080", Weight: 1},
		model.Endpoint{Address: "10.0.0.3:8080", Weight: 1, Draining: true}, model.Endpoint{Address: "10.0.0.4:8080", Weight: 1},
		model.Endpoint{Address: "10.0.0.5:8080", Weight: 1}, model.Endpoint{Address: "10.0.0.6:8080", Weight: 1}))
	if err := api.Delete(ctx, "api-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Update(ctx, slice("prod", "api", "api-b", httpPort, ep{ip: "10.0.0.5", ready: yes}, ep{ip: "10.0.0.6"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res.waitFor(t, "the rollout done", hasEndpoints(eps("10.0.0.5:8080", "10.0.0.6:8080")...))

	// Another service's slices never show up, even though the fake watch does not
	// filter by label.
	if _, err := cs.DiscoveryV1().EndpointSlices("prod").Create(ctx, slice("prod", "web", "web-b", httpPort, ep{ip: "10.9.9.8"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := api.Delete(ctx, "api-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	res.waitFor(t, "every slice deleted: an empty answer", func(r Result) bool { return r.Err == nil && len(r.Endpoints) == 0 })
}

func TestKubernetesSourceListsWithTheServiceLabelOnly(t *testing.T) {
	cs := fake.NewClientset()
	var mu sync.Mutex
	var selectors []string
	cs.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		selectors = append(selectors, a.(k8stesting.ListAction).GetListRestrictions().Labels.String()+" in "+a.GetNamespace())
		return false, nil, nil
	})
	res := runKube(t, fakeDiscovery(cs), model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortNumber: 8080})
	res.waitFor(t, "the first (empty) answer", func(r Result) bool { return r.Err == nil })
	mu.Lock()
	defer mu.Unlock()
	if len(selectors) == 0 || selectors[0] != "kubernetes.io/service-name=api in prod" {
		t.Errorf("lists %v, want the label selector kubernetes.io/service-name=api in namespace prod", selectors)
	}
}

func TestKubernetesSourceReportsAPIErrors(t *testing.T) {
	cs := fake.NewClientset(slice("prod", "api", "api-a", httpPort, ep{ip: "10.0.0.1"}))
	var mu sync.Mutex
	forbid := true
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if forbid {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", nil)
		}
		return false, nil, nil
	})
	res := runKube(t, fakeDiscovery(cs), model.KubernetesDiscovery{Service: "api", Namespace: "prod", PortName: "http"})
	r := res.waitFor(t, "the RBAC error", func(r Result) bool { return r.Err != nil })
	if got := r.Err.Error(); !strings.Contains(got, "forbidden: grant get, list and watch on discovery.k8s.io endpointslices in namespace prod") {
		t.Errorf("error %q does not say what to grant", got)
	}
	mu.Lock()
	forbid = false
	mu.Unlock()
	res.waitFor(t, "recovery after the informer's retry", hasEndpoints(eps("10.0.0.1:8080")...))
}

func TestKubernetesSourceRetriesTheClient(t *testing.T) {
	cs := fake.NewClientset(slice("prod", "api", "api-a", httpPort, ep{ip: "10.0.0.1"}))
	calls := 0
	src := NewKubernetesSource(model.KubernetesDiscovery{Service: "api", Namespace: "prod", Kubeconfig: "/mine"}, "/global", func(kc string) (SliceClient, error) {
		calls++
		if kc != "/mine" {
			t.Errorf("kubeconfig %q, want the cluster's own /mine", kc)
		}
		if calls == 1 {
			return nil, context.DeadlineExceeded
		}
		return fakeDiscovery(cs), nil
	})
	src.retry = 10 * time.Millisecond
	res := newResults()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx, res.report) }()
	defer func() { cancel(); <-done }()
	res.waitFor(t, "the client error", func(r Result) bool { return r.Err != nil })
	res.waitFor(t, "the list once the client builds", hasEndpoints(eps("10.0.0.1:8080")...))
}
