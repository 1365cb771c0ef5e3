// Package model holds Sluice's configuration and traffic model as plain structs.
//
// The config package produces a Config from YAML; the analyzer turns a Config plus the
// state of every rollout into a Snapshot; the router and the xDS server serve Snapshots.
// Nothing here knows about protobuf, net/http or YAML. Every slice that the config
// package fills is sorted by name so that output derived from the model is deterministic.
package model

import (
	"net/netip"
	"time"
)

// Pos is where a value came from in the user's files, for error messages.
type Pos struct {
	File string
	Line int
}

// String formats the position as FILE:LINE.
func (p Pos) String() string {
	if p.File == "" {
		return "<unknown>"
	}
	return p.File + ":" + itoa(p.Line)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Config is a whole, validated configuration: what one set of files declares.
type Config struct {
	ControlPlane ControlPlane
	Clusters     []Cluster          // sorted by Name
	Listeners    []Listener         // sorted by Name
	Rollouts     []Rollout          // sorted by Name
	Templates    []AnalysisTemplate // sorted by Name; AnalysisTemplate and ClusterAnalysisTemplate
}

// Cluster returns the cluster with the given name, or nil.
func (c *Config) Cluster(name string) *Cluster {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	return nil
}

// Listener returns the listener with the given name, or nil.
func (c *Config) Listener(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}

// Rollout returns the rollout with the given name, or nil.
func (c *Config) Rollout(name string) *Rollout {
	for i := range c.Rollouts {
		if c.Rollouts[i].Name == name {
			return &c.Rollouts[i]
		}
	}
	return nil
}

// ControlPlane is the sluice.dev/v1alpha1 ControlPlane kind: how Sluice itself runs.
type ControlPlane struct {
	Name     string
	Admin    Admin
	XDS      *XDS // nil: no xDS server
	StateDir string
	// MinRequests is the default minimum number of requests per cluster in a
	// measurement's window before the measurement counts (see Metric.MinRequests).
	MinRequests int
	Webhooks    []Webhook
	// Etcd is spec.store.etcd: several replicas share rollout state, leader election and
	// a replica registry in etcd. nil: one process, state in StateDir.
	Etcd *EtcdStore
	// DNS configures the resolver of DNS discovery (Cluster.DNS).
	DNS DNSResolver
	// Kubernetes configures the API client of Kubernetes discovery (Cluster.Kubernetes).
	Kubernetes KubernetesClient
	Pos        Pos
}

// EtcdStore is where replicas keep what they share: an etcd cluster and a key prefix.
type EtcdStore struct {
	// Endpoints are etcd client URLs as etcd's own clients take them: http://HOST:PORT,
	// https://HOST:PORT, or HOST:PORT (plain).
	Endpoints []string
	// Prefix starts every key Sluice writes; it begins and ends with "/".
	Prefix string
	// LeaseTTL is how long a replica's lease (its leadership and registration) outlives
	// its last keepalive: whole seconds, at least 1s.
	LeaseTTL time.Duration
	// TLS, when set, is used for https:// endpoints (nil: the system roots, no client
	// certificate).
	TLS *EtcdTLS
	Pos Pos
}

// EtcdTLS names the files for TLS to etcd.
type EtcdTLS struct {
	CA   string // CA bundle that signed etcd's certificates ("" : the system roots)
	Cert string // client certificate for mTLS ("" : none); needs Key
	Key  string
}

// DNSResolver says which DNS servers discovery asks.
type DNSResolver struct {
	// Servers are "ADDR:PORT" addresses asked in order; empty: the system's resolver
	// configuration (/etc/resolv.conf: servers, search domains, ndots).
	Servers []string
}

// KubernetesClient says how discovery reaches the Kubernetes API server.
type KubernetesClient struct {
	// Kubeconfig is a kubeconfig file; "": the in-cluster configuration (the pod's
	// service account). A Cluster's own kubeconfig overrides it.
	Kubeconfig string
}

// Admin configures the admin HTTP server (API, /metrics, /healthz, web view).
type Admin struct {
	Address   string
	TokenFile string // bearer token guarding mutating calls; required off loopback
}

// XDS configures the xDS gRPC server.
type XDS struct {
	Address string
	TLS     *TLS
	// Keepalive is the gRPC server keepalive time (0: gRPC default).
	Keepalive time.Duration
	// AckTimeout is how long a weight change may wait for every connected proxy's ACK
	// before the step fails.
	AckTimeout time.Duration
}

// TLS names certificate files; reloaded when they change.
type TLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string // non-empty: mTLS, clients must present a certificate signed by it
}

// Webhook receives rollout events as JSON POSTs.
type Webhook struct {
	URL     string
	Timeout time.Duration
	Retries int
	Headers map[string]string
}

// Protocol is how the router and Envoy talk to a cluster's endpoints.
type Protocol string

// Upstream protocols.
const (
	ProtocolHTTP1 Protocol = "http1"
	ProtocolH2C   Protocol = "h2c" // cleartext HTTP/2, for gRPC backends
)

// Cluster is the sluice.dev/v1alpha1 Cluster kind: a named set of endpoints, standing
// in for a Kubernetes Service.
type Cluster struct {
	Name string
	// Endpoints are the fixed endpoints, in the order given. With DNS or Kubernetes
	// discovery the data planes serve these plus the discovered ones (package discovery).
	Endpoints []Endpoint
	// DNS discovers endpoints from A/AAAA or SRV records (nil: none).
	DNS *DNSDiscovery
	// Kubernetes discovers endpoints from a Service's EndpointSlices (nil: none).
	Kubernetes  *KubernetesDiscovery
	Protocol    Protocol
	HealthCheck *HealthCheck // nil: no active health checks
	// Warmup: requests served by an endpoint younger than this (since added or turned
	// healthy) are kept out of analysis.
	Warmup time.Duration
	// ConnectTimeout bounds dialling an endpoint.
	ConnectTimeout time.Duration
	// RequestTimeout bounds a whole upstream request (0: none); exceeding it answers 504.
	RequestTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response head once the
	// request is sent (0: none); exceeding it answers 504.
	ResponseHeaderTimeout time.Duration
	// Outlier configures passive ejection.
	Outlier OutlierDetection
	Pos     Pos
}

// Endpoint is one address of a cluster.
type Endpoint struct {
	Address string // host:port
	Weight  int    // >= 1
	// Draining: the endpoint is going away (a terminating pod). It gets no new
	// requests; those in flight finish. Only discovery sets it.
	Draining bool
}

// DNSDiscovery resolves a cluster's endpoints from DNS: either Name (A and AAAA
// records) with Port, or SRV (ports and weights from the records).
type DNSDiscovery struct {
	Name string // host name for A/AAAA; "" when SRV is set
	Port int    // 1..65535, with Name
	SRV  string // _service._proto.domain; "" when Name is set
	// The records are resolved again after their TTL, bounded by these.
	MinRefresh time.Duration
	MaxRefresh time.Duration
}

// KubernetesDiscovery watches the discovery.k8s.io/v1 EndpointSlices of a Service.
type KubernetesDiscovery struct {
	Service   string
	Namespace string
	// PortName or PortNumber picks the EndpointSlice port: a name matches the Service
	// port's name, a number the endpoints' port (the Service's target port). Neither:
	// the Service must have exactly one port.
	PortName   string
	PortNumber int
	// Kubeconfig overrides ControlPlane.Kubernetes.Kubeconfig for this cluster.
	Kubeconfig string
}

// HealthCheck configures active HTTP health checks.
type HealthCheck struct {
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
}

// OutlierDetection configures passive ejection after consecutive failures.
type OutlierDetection struct {
	ConsecutiveFailures int           // connect errors or 5xx in a row; 0 disables
	BaseEjectionTime    time.Duration // first ejection; doubles on each repeat, capped
}

// Listener is the sluice.dev/v1alpha1 Listener kind: an address served by the router,
// or by Envoy through xDS, standing in for an Ingress.
type Listener struct {
	Name    string
	Address string // host:port the router binds, and the Envoy listener's socket address
	Routes  []Route
	// InternalTraffic: marked requests go to the canary and are kept out of analysis.
	InternalTraffic *InternalTraffic
	StickySessions  *StickySessions
	Limits          Limits
	Pos             Pos
}

// Limits bounds what a client may send and hold.
type Limits struct {
	MaxHeaderBytes int
	IdleTimeout    time.Duration
	ReadTimeout    time.Duration // for a whole request head, from its first byte
	// BodyTimeout bounds the wait between two reads of a request body.
	BodyTimeout time.Duration
	// SendTimeout bounds the wait between two writes of a response to a client that does
	// not read.
	SendTimeout time.Duration
}

// InternalTraffic marks test traffic by header.
type InternalTraffic struct {
	Headers []HeaderMatch // any one matching marks the request
	// TrustedSources: the marker is honoured only from these networks (direct peer, or
	// X-Forwarded-For when the peer itself is trusted); from elsewhere it is stripped.
	TrustedSources []netip.Prefix
}

// StickySessions pins a client to the cluster it was first sent to, by cookie.
type StickySessions struct {
	Cookie string
	MaxAge time.Duration
}

// Route sends matching requests to a cluster, or, once a rollout owns it, splits them.
type Route struct {
	Name       string   // unique within the listener; "<listener>-<index>" when not given
	Hosts      []string // "*" matches every host
	PathPrefix string
	Cluster    string // the configured (stable) cluster

	// The fields below are set by the analyzer in a Snapshot; in a Config they are zero.

	// Rollout names the rollout that owns this route's split, if any.
	Rollout string
	// Split is the weighted split; nil means 100% to Cluster. Weights sum to 100.
	Split []WeightedCluster
	// HeaderRoutes are matched, in order, before the split.
	HeaderRoutes []HeaderRoute
	// Mirrors copy matching requests to another cluster, fire-and-forget.
	Mirrors []Mirror
	// InternalCluster receives requests marked as internal traffic ("" → route normally).
	InternalCluster string
}

// WeightedCluster is one leg of a split.
type WeightedCluster struct {
	Cluster string
	Weight  int // 0..100
}

// WeightOf returns the weight of cluster in the route's split (100 when Split is nil
// and cluster is the route's cluster).
func (r *Route) WeightOf(cluster string) int {
	if r.Split == nil {
		if cluster == r.Cluster {
			return 100
		}
		return 0
	}
	for _, w := range r.Split {
		if w.Cluster == cluster {
			return w.Weight
		}
	}
	return 0
}

// StringMatch matches a string exactly, by prefix, or by RE2 regex; exactly one is set.
type StringMatch struct {
	Exact  string
	Prefix string
	Regex  string
}

// HeaderMatch matches one request header.
type HeaderMatch struct {
	Name  string // canonical lower case
	Value StringMatch
}

// HeaderRoute sends requests whose headers all match to Cluster.
type HeaderRoute struct {
	Name    string
	Headers []HeaderMatch
	Cluster string
}

// RequestMatch matches method, path and headers; empty parts match anything.
type RequestMatch struct {
	Method  *StringMatch
	Path    *StringMatch
	Headers []HeaderMatch
}

// Mirror copies Percentage% of the requests that match any of Matches (all requests
// when Matches is empty) to Cluster.
type Mirror struct {
	Name       string
	Matches    []RequestMatch
	Percentage int // 0..100
	Cluster    string
}

// Snapshot is one immutable view of what the data planes serve: the configured clusters
// and listeners with each owned route's split, header routes and mirrors filled in.
// Version increases with every change.
type Snapshot struct {
	Version   uint64
	Clusters  []Cluster
	Listeners []Listener
}

// Cluster returns the cluster with the given name, or nil.
func (s *Snapshot) Cluster(name string) *Cluster {
	for i := range s.Clusters {
		if s.Clusters[i].Name == name {
			return &s.Clusters[i]
		}
	}
	return nil
}
