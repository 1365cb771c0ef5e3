package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sluice-mesh/sluice/discovery"
	"github.com/sluice-mesh/sluice/model"
)

// discoveryMessages produces what status says of a discovered cluster in trouble, by
// running discovery.Manager against an in-process DNS server that answers SERVFAIL (after
// a good answer), NXDOMAIN and empty answers, a DNS server address where nothing listens,
// and a Kubernetes API that forbids the list, lists only terminating endpoints, or a
// Service with several ports.
func discoveryMessages(t *testing.T) []string {
	t.Helper()
	var broken atomic.Bool
	dnsAddr := fakeDNS(t, func(m *dns.Msg) {
		name := m.Question[0].Name
		switch {
		case name == "flaky.test." && broken.Load():
			m.Rcode = dns.RcodeServerFailure
		case name == "flaky.test." && m.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR("flaky.test. 0 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case name == "gone.test.":
			m.Rcode = dns.RcodeNameError
		}
	})
	closed := closedAddr(t)

	kube := fakeSlices{}
	dnsBlock := func(name string) *model.DNSDiscovery {
		return &model.DNSDiscovery{Name: name, Port: 80, MinRefresh: 20 * time.Millisecond, MaxRefresh: 100 * time.Millisecond}
	}
	kubeBlock := func(ns, svc string) *model.KubernetesDiscovery {
		return &model.KubernetesDiscovery{Namespace: ns, Service: svc}
	}
	run := func(servers []string, clusters ...model.Cluster) *discovery.Manager {
		m := discovery.NewManager(discovery.Options{KubeClient: func(string) (discovery.SliceClient, error) { return kube, nil },
			DNSTimeout: 200 * time.Millisecond})
		t.Cleanup(m.Close)
		m.Update(&model.Config{ControlPlane: model.ControlPlane{DNS: model.DNSResolver{Servers: servers}}, Clusters: clusters})
		return m
	}
	status := func(m *discovery.Manager, cluster string) discovery.Status {
		for _, s := range m.Status() {
			if s.Cluster == cluster {
				return s
			}
		}
		return discovery.Status{}
	}
	wait := func(m *discovery.Manager, cluster string, ok func(discovery.Status) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s := status(m, cluster)
			if ok(s) {
				return s.String()
			}
			if time.Now().After(deadline) {
				t.Fatalf("discovery of %s never got there: %s", cluster, s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	failing := func(s discovery.Status) bool { return s.Error != "" }

	local := run([]string{dnsAddr},
		model.Cluster{Name: "flaky", DNS: dnsBlock("flaky.test")},
		model.Cluster{Name: "gone", DNS: dnsBlock("gone.test")},
		model.Cluster{Name: "empty", DNS: dnsBlock("empty.test")},
		model.Cluster{Name: "forbidden", Kubernetes: kubeBlock("locked", "api")},
		model.Cluster{Name: "terminating", Kubernetes: kubeBlock("prod", "terminating")},
		model.Cluster{Name: "ports", Kubernetes: kubeBlock("prod", "two-ports")})
	down := run([]string{closed}, model.Cluster{Name: "down", DNS: dnsBlock("flaky.test")})

	wait(local, "flaky", discovery.Status.Healthy)
	broken.Store(true)
	msgs := []string{wait(local, "flaky", failing)}
	for _, c := range []string{"gone", "empty", "forbidden", "terminating", "ports"} {
		msgs = append(msgs, wait(local, c, failing))
	}
	msgs = append(msgs, wait(down, "down", failing))
	t.Logf("discovery status lines:\n  %s", strings.Join(msgs, "\n  "))
	return msgs
}

// fakeDNS serves DNS on a free 127.0.0.1 UDP port until the test ends and returns its
// address; answer fills in each reply (an empty NOERROR reply unless it adds records or
// sets the rcode).
func fakeDNS(t *testing.T, answer func(reply *dns.Msg)) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		answer(m)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// fakeSlices is a Kubernetes API holding two Services in namespace prod — one whose
// only endpoint is terminating, one with two ports — and forbidding every other
// namespace.
type fakeSlices struct{}

func (fakeSlices) List(_ context.Context, ns string, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	if ns != "prod" {
		return nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
			errors.New(`User "system:serviceaccount:sluice:sluice" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "`+ns+`"`))
	}
	svc := strings.TrimPrefix(opts.LabelSelector, discoveryv1.LabelServiceName+"=")
	port := func(name string, n int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &n}
	}
	yes, no := true, false
	s := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-x1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{port("http", 8080)},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
	}
	switch svc {
	case "terminating":
		s.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: &no, Terminating: &yes}
	case "two-ports":
		s.Ports = append(s.Ports, port("metrics", 9090))
	default:
		return &discoveryv1.EndpointSliceList{}, nil
	}
	return &discoveryv1.EndpointSliceList{Items: []discoveryv1.EndpointSlice{s}}, nil
}

func (fakeSlices) Watch(context.Context, string, metav1.ListOptions) (watch.Interface, error) {
	return watch.NewFake(), nil
}

// IsWatchListSemanticsUnSupported: list, then watch (as client-go's fake clientsets).
func (fakeSlices) IsWatchListSemanticsUnSupported() bool { return true }
