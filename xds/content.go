package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// kind indexes the four served resource types, in the order a push sends them: clusters
// and their endpoints before the listeners and routes that use them.
type kind int

const (
	kindCDS kind = iota
	kindEDS
	kindLDS
	kindRDS
	numKinds
)

var kindURLs = [numKinds]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
var kindNames = [numKinds]string{"CDS", "EDS", "LDS", "RDS"}

func kindOf(typeURL string) (kind, bool) {
	for k, u := range kindURLs {
		if u == typeURL {
			return kind(k), true
		}
	}
	return 0, false
}

func (k kind) String() string { return kindNames[k] }

// resource is one xDS resource ready to send: marshalled once, shared by every response
// that carries it.
type resource struct {
	name string
	any  *anypb.Any
	// hash identifies the content. For endpoints it also covers the definition of their
	// cluster, so that a changed cluster gets its endpoints again (Envoy re-creates a
	// changed cluster, which waits for EDS: go-control-plane#245, envoy#13009).
	hash [32]byte
	// refs are the names this resource makes a client subscribe to: the route
	// configurations of a listener (RDS).
	refs []string
}

func newResource(name string, m proto.Message, typeURL string, salt []byte) (*resource, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("xds: marshal %s %q: %w", typeURL, name, err)
	}
	h := sha256.New()
	h.Write(b)
	h.Write(salt)
	r := &resource{name: name, any: &anypb.Any{TypeUrl: typeURL, Value: b}}
	copy(r.hash[:], h.Sum(nil))
	return r, nil
}

// content is every resource of one kind in one generation. It is immutable once built;
// two generations whose resources of a kind are equal share one content, so pointer
// equality is content equality within a fleet.
type content struct {
	kind   kind
	byName map[string]*resource
	names  []string // sorted
	hash   [32]byte

	mu   sync.Mutex
	cuts map[string]*cut // by subscription key
	// unions caches union(old, this) by old (see union).
	unions map[*content]*content
	// endpoints caches endpointsFor by its arguments.
	endpoints map[[2]*content]*content
}

func newContent(k kind, rs []*resource) *content {
	c := &content{kind: k, byName: make(map[string]*resource, len(rs))}
	for _, r := range rs {
		c.byName[r.name] = r
		c.names = append(c.names, r.name)
	}
	slices.Sort(c.names)
	h := sha256.New()
	for _, n := range c.names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		r := c.byName[n]
		h.Write(r.hash[:])
	}
	copy(c.hash[:], h.Sum(nil))
	return c
}

// cut is the response to one subscription of a content: every subscribed resource that
// exists (all of them for a wildcard subscription). Streams with the same subscription
// share one cut, so a push to a fleet marshals each resource once.
type cut struct {
	content   *content
	version   string
	names     []string // returned, sorted
	resources []*anypb.Any
	// refs are the names of the dependent kind a client holding this cut subscribes to:
	// the endpoints of these clusters (CDS), the routes of these listeners (LDS).
	refs []string
}

// response returns a DiscoveryResponse for one stream: its own struct (the nonce
// differs), sharing the marshalled resources.
func (c *cut) response(nonce string) *discoverygrpc.DiscoveryResponse {
	return &discoverygrpc.DiscoveryResponse{
		VersionInfo: c.version,
		Resources:   c.resources,
		TypeUrl:     kindURLs[c.content.kind],
		Nonce:       nonce,
	}
}

// has reports whether the cut returned name.
func (c *cut) has(name string) bool {
	_, ok := slices.BinarySearch(c.names, name)
	return ok
}

// cutFor returns the (shared) cut of c for a subscription: wildcard, or the names in key
// (sorted, NUL-separated) with names holding the same set.
func (c *content) cutFor(wildcard bool, key string, names map[string]bool) *cut {
	if wildcard {
		key = "*"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.cuts[key]; ok {
		return ct
	}
	ct := &cut{content: c}
	h := sha256.New()
	h.Write([]byte(kindNames[c.kind]))
	for _, n := range c.names {
		if !wildcard && !names[n] {
			continue
		}
		r := c.byName[n]
		ct.names = append(ct.names, n)
		ct.resources = append(ct.resources, r.any)
		switch c.kind {
		case kindCDS:
			ct.refs = append(ct.refs, n)
		case kindLDS:
			ct.refs = append(ct.refs, r.refs...)
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(r.hash[:])
	}
	ct.version = hex.EncodeToString(h.Sum(nil)[:8])
	if c.cuts == nil {
		c.cuts = map[string]*cut{}
	}
	// Subscriptions rarely vary; keep the map from growing without bound anyway.
	if len(c.cuts) > 256 {
		c.cuts = map[string]*cut{}
	}
	c.cuts[key] = ct
	return ct
}

// union returns the resources of c plus those of old that c lacks: the clusters a node
// must hold while its routes may still name the old ones. It returns c itself when old
// adds nothing.
func (c *content) union(old *content) *content {
	if old == nil || old == c {
		return c
	}
	c.mu.Lock()
	u, ok := c.unions[old]
	c.mu.Unlock()
	if ok {
		return u
	}
	var extra []*resource
	for _, n := range old.names {
		if _, ok := c.byName[n]; !ok {
			extra = append(extra, old.byName[n])
		}
	}
	u = c
	if len(extra) > 0 {
		rs := make([]*resource, 0, len(c.names)+len(extra))
		for _, n := range c.names {
			rs = append(rs, c.byName[n])
		}
		u = newContent(c.kind, append(rs, extra...))
	}
	c.mu.Lock()
	if c.unions == nil || len(c.unions) > 64 {
		c.unions = map[*content]*content{}
	}
	c.unions[old] = u
	c.mu.Unlock()
	return u
}

// subKey is the subscription key of a set of names: sorted, NUL-separated.
func subKey(names map[string]bool) string {
	s := make([]string, 0, len(names))
	for n := range names {
		s = append(s, n)
	}
	slices.Sort(s)
	return strings.Join(s, "\x00")
}

// gen is one generation of a fleet's resources: what a snapshot translates to for one
// client shape.
type gen struct {
	version uint64 // the model snapshot's version
	c       [numKinds]*content
}

// newGen builds the generation of res, reusing prev's content of a kind when it is
// unchanged (so a weight change leaves clusters, endpoints and listeners identical, and
// only routes are sent).
func newGen(version uint64, res *Resources, prev *gen) (*gen, error) {
	g := &gen{version: version}
	clusterHash := map[string][32]byte{}
	var rs [numKinds][]*resource
	for _, c := range res.Clusters {
		r, err := newResource(c.Name, c, resourcev3.ClusterType, nil)
		if err != nil {
			return nil, err
		}
		clusterHash[c.Name] = r.hash
		rs[kindCDS] = append(rs[kindCDS], r)
	}
	for _, e := range res.Endpoints {
		h := clusterHash[e.ClusterName]
		r, err := newResource(e.ClusterName, e, resourcev3.EndpointType, h[:])
		if err != nil {
			return nil, err
		}
		rs[kindEDS] = append(rs[kindEDS], r)
	}
	for _, l := range res.Listeners {
		r, err := newResource(l.Name, l, resourcev3.ListenerType, nil)
		if err != nil {
			return nil, err
		}
		r.refs = routeConfigNames(l)
		rs[kindLDS] = append(rs[kindLDS], r)
	}
	for _, rc := range res.Routes {
		r, err := newResource(rc.Name, rc, resourcev3.RouteType, nil)
		if err != nil {
			return nil, err
		}
		rs[kindRDS] = append(rs[kindRDS], r)
	}
	for k := range numKinds {
		c := newContent(k, rs[k])
		if prev != nil && prev.c[k].hash == c.hash {
			c = prev.c[k]
		}
		g.c[k] = c
	}
	return g, nil
}

// endpointsFor returns the endpoints of the clusters in c (a CDS content): the target's,
// and for the clusters only old holds, the ones old held. The result is cached.
func (c *content) endpointsFor(target, old *content) *content {
	key := [2]*content{target, old}
	c.mu.Lock()
	e, ok := c.endpoints[key]
	c.mu.Unlock()
	if ok {
		return e
	}
	rs := make([]*resource, 0, len(c.names))
	for _, n := range c.names {
		if r, ok := target.byName[n]; ok {
			rs = append(rs, r)
		} else if old != nil {
			if r, ok := old.byName[n]; ok {
				rs = append(rs, r)
			}
		}
	}
	e = newContent(kindEDS, rs)
	c.mu.Lock()
	if c.endpoints == nil || len(c.endpoints) > 64 {
		c.endpoints = map[[2]*content]*content{}
	}
	c.endpoints[key] = e
	c.mu.Unlock()
	return e
}
