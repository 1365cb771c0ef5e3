package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-mesh/sluice/model"
)

// SliceClient lists and watches EndpointSlices in a namespace: the two calls
// Kubernetes discovery makes.
type SliceClient interface {
	List(ctx context.Context, namespace string, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error)
	Watch(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
}

// KubeClientFunc returns the EndpointSlice client for a kubeconfig file ("": the
// in-cluster configuration). Tests wrap a fake clientset; a client that cannot stream
// lists says so with IsWatchListSemanticsUnSupported() bool, as fake clientsets do.
type KubeClientFunc func(kubeconfig string) (SliceClient, error)

// DefaultKubeClient builds a client from the kubeconfig file, or the in-cluster
// configuration (the pod's ServiceAccount) when kubeconfig is "". It knows the
// discovery.k8s.io/v1 types only: client-go's typed clientset would link every
// Kubernetes API group into the binary (+34 MB) to read one of them.
func DefaultKubeClient(kubeconfig string) (SliceClient, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "sluice"
	cfg.APIPath = "/apis"
	cfg.GroupVersion = &discoveryv1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &restSlices{rc: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// restSlices is SliceClient over a REST client.
type restSlices struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
}

func (c *restSlices) List(ctx context.Context, ns string, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	out := &discoveryv1.EndpointSliceList{}
	err := c.rc.Get().Namespace(ns).Resource("endpointslices").VersionedParams(&opts, c.params).Do(ctx).Into(out)
	return out, err
}

func (c *restSlices) Watch(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Namespace(ns).Resource("endpointslices").VersionedParams(&opts, c.params).Watch(ctx)
}

// KubernetesSource watches the EndpointSlices of one Service with a client-go
// informer, listing and watching only the slices labelled with the Service's name in
// its namespace (so RBAC needs get, list and watch on endpointslices there, nothing
// more).
type KubernetesSource struct {
	spec       model.KubernetesDiscovery
	kubeconfig string
	client     KubeClientFunc
	// retry is how long to wait before building the client again after it failed.
	retry time.Duration
}

// NewKubernetesSource watches spec's Service, reaching the API server through
// client(kubeconfig); spec.Kubeconfig, when set, replaces kubeconfig. A nil client is
// DefaultKubeClient.
func NewKubernetesSource(spec model.KubernetesDiscovery, kubeconfig string, client KubeClientFunc) *KubernetesSource {
	if spec.Kubeconfig != "" {
		kubeconfig = spec.Kubeconfig
	}
	if client == nil {
		client = DefaultKubeClient
	}
	return &KubernetesSource{spec: spec, kubeconfig: kubeconfig, client: client, retry: 5 * time.Second}
}

// Kind returns "Kubernetes".
func (s *KubernetesSource) Kind() string { return "Kubernetes" }

// Target returns "NAMESPACE/SERVICE port P".
func (s *KubernetesSource) Target() string {
	t := s.spec.Namespace + "/" + s.spec.Service
	switch {
	case s.spec.PortName != "":
		t += " port " + s.spec.PortName
	case s.spec.PortNumber != 0:
		t += " port " + strconv.Itoa(s.spec.PortNumber)
	}
	return t
}

// Run watches until ctx ends. Every change of the Service's slices reports the whole
// set again; an API error (list or watch failing, forbidden, unreachable) is reported
// as it happens, and the informer keeps retrying with back-off.
func (s *KubernetesSource) Run(ctx context.Context, report func(Result)) {
	client, err := s.client(s.kubeconfig)
	for err != nil {
		report(Result{Err: errorf(ResultError, "Kubernetes client: %v", err), Refresh: s.retry})
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.retry):
		}
		client, err = s.client(s.kubeconfig)
	}
	ns, selector := s.spec.Namespace, discoveryv1.LabelServiceName+"="+s.spec.Service
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return client.List(ctx, ns, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return client.Watch(ctx, ns, o)
		},
	}
	// The client says whether it can stream the initial list (a watch-list); fake
	// clientsets cannot.
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	kick := make(chan struct{}, 1)
	notify := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	apiErrs := make(chan error, 1)
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return // a watch closing or expiring is routine: the informer lists again
		}
		select { // keep only the newest error
		case <-apiErrs:
		default:
		}
		apiErrs <- err
	})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		report(Result{Err: errorf(ResultError, "informer: %v", err)})
		return
	}
	go inf.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			notify()
		}
	}()
	// After an error nothing may change in the store when the informer recovers (the
	// Service has no slices at all): a new list, seen as a new resource version,
	// clears the error.
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	failedAt := ""
	failing := false
	answer := func() {
		failing = false
		eps, err := fromSlices(s.spec, inf.GetStore().List())
		report(Result{Endpoints: eps, Err: err})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-apiErrs:
			failing, failedAt = true, inf.LastSyncResourceVersion()
			report(Result{Err: apiError(s.spec, err)})
		case <-kick:
			if inf.HasSynced() {
				answer()
			}
		case <-recheck.C:
			if failing && inf.HasSynced() && inf.LastSyncResourceVersion() != failedAt {
				answer()
			}
		}
	}
}

// apiError describes an API error, with the fix when it is RBAC.
func apiError(spec model.KubernetesDiscovery, err error) error {
	if apierrors.IsForbidden(err) {
		return errorf(ResultError, "forbidden: grant get, list and watch on discovery.k8s.io endpointslices in namespace %s: %v", spec.Namespace, err)
	}
	return errorf(ResultError, "Kubernetes API: %v", err)
}

// fromSlices turns the Service's EndpointSlices into endpoints:
//   - only slices labelled kubernetes.io/service-name=SERVICE, of address type IPv4 or
//     IPv6 (FQDN slices are deprecated and Envoy cannot use them);
//   - the port named spec.PortName, or numbered spec.PortNumber (the endpoints' port),
//     or the slice's only port when neither is set;
//   - an endpoint's first address (the API defines no meaning for the others);
//   - conditions as the EndpointSlice API defines them: ready (nil means true) takes
//     traffic; terminating (nil means false) is reported Draining, whatever ready and
//     serving say, so the data planes finish its requests and send no new ones; not
//     ready and not terminating (starting, failing its readiness probe) is left out.
//
// An address in several slices (a slice being replaced) is listed once, serving
// before draining. No slice with the port, or a Service with several ports and none
// chosen, is an error naming the ports there are. Slices with no endpoint give an
// empty answer (nil error, no endpoints).
func fromSlices(spec model.KubernetesDiscovery, objs []any) ([]model.Endpoint, error) {
	var eps []model.Endpoint
	portsSeen := map[string]bool{}
	matched := false
	for _, o := range objs {
		sl, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || sl.Labels[discoveryv1.LabelServiceName] != spec.Service || sl.Namespace != spec.Namespace {
			continue
		}
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(spec, sl.Ports, portsSeen)
		if !ok {
			continue
		}
		matched = true
		for _, e := range sl.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil {
				continue
			}
			c := e.Conditions
			ready := c.Ready == nil || *c.Ready
			terminating := c.Terminating != nil && *c.Terminating
			if !ready && !terminating {
				continue
			}
			eps = append(eps, model.Endpoint{Address: net.JoinHostPort(a.Unmap().String(), strconv.Itoa(int(port))), Weight: 1, Draining: terminating})
		}
	}
	if !matched && len(portsSeen) > 0 {
		names := make([]string, 0, len(portsSeen))
		for n := range portsSeen {
			names = append(names, n)
		}
		sort.Strings(names)
		want := "one port"
		switch {
		case spec.PortName != "":
			want = "a port named " + strconv.Quote(spec.PortName)
		case spec.PortNumber != 0:
			want = "port " + strconv.Itoa(spec.PortNumber)
		default:
			return nil, errorf(ResultError, "Service %s/%s has several ports (%s): set kubernetes.port to one of them", spec.Namespace, spec.Service, strings.Join(names, ", "))
		}
		return nil, errorf(ResultError, "the EndpointSlices of %s/%s have no %s (they have %s)", spec.Namespace, spec.Service, want, strings.Join(names, ", "))
	}
	return merge(eps), nil
}

// slicePort finds the chosen port among a slice's ports, recording the ones seen.
func slicePort(spec model.KubernetesDiscovery, ports []discoveryv1.EndpointPort, seen map[string]bool) (int32, bool) {
	var found []int32
	for _, p := range ports {
		if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue // "all ports" (a Service without ports: nothing to dial), or not TCP
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		seen[portLabel(name, *p.Port)] = true
		switch {
		case spec.PortName != "" && name == spec.PortName,
			spec.PortNumber != 0 && int(*p.Port) == spec.PortNumber,
			spec.PortName == "" && spec.PortNumber == 0:
			found = append(found, *p.Port)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return 0, false
}

func portLabel(name string, port int32) string {
	if name == "" {
		return fmt.Sprint(port)
	}
	return fmt.Sprintf("%s (%d)", name, port)
}
