package xdstest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-mesh/sluice/internal/re2"

	// The typed_config types Sluice may send, registered the way Envoy links its
	// extensions: anything else is an unknown extension, which Envoy refuses.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// MaxProgramSize is Envoy's default re2.max_program_size.error_level: a safe_regex whose
// RE2 program is larger is refused.
const MaxProgramSize = re2.EnvoyDefaultLimit

// validator is what every generated Envoy message implements (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// decode unmarshals every resource of a response into its type and checks it the way
// Envoy does before accepting a response: the right type URL, protoc-gen-validate rules
// (required fields, ranges) on the resource and on every typed_config inside it, known
// extension types only, RE2 regexes within the default program size, and the semantic
// rules Envoy enforces on top (unique names and domains, the router filter last, weights
// that add up to more than 0). The first problem is returned, worded like Envoy's.
func decode(resp responseView) ([]proto.Message, error) {
	var out []proto.Message
	seen := map[string]bool{}
	for _, a := range resp.resources {
		if a.GetTypeUrl() != resp.typeURL {
			return nil, fmt.Errorf("type URL %s does not match the response's %s", a.GetTypeUrl(), resp.typeURL)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("unable to unmarshal %s: %v", a.GetTypeUrl(), err)
		}
		name := resourceName(m)
		if seen[name] {
			return nil, fmt.Errorf("duplicate resource %q found", name)
		}
		seen[name] = true
		if err := check(m); err != nil {
			return nil, fmt.Errorf("%s %q: %w", shortType(resp.typeURL), name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

type responseView struct {
	typeURL   string
	resources []*anypb.Any
}

func shortType(url string) string {
	return url[strings.LastIndexByte(url, '.')+1:]
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	}
	return ""
}

// check validates one message and everything inside it.
func check(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	if err := walk(m.ProtoReflect()); err != nil {
		return err
	}
	switch r := m.(type) {
	case *listenerv3.Listener:
		return checkListener(r)
	case *routev3.RouteConfiguration:
		return checkRouteConfig(r)
	case *clusterv3.Cluster:
		if r.GetType() == clusterv3.Cluster_EDS && r.GetEdsClusterConfig().GetEdsConfig() == nil {
			return errors.New("EDS cluster without eds_config")
		}
	}
	return nil
}

// walk visits every message field: each Any must hold a known type, which is itself
// checked; each RegexMatcher must compile within RE2's default program size.
func walk(m protoreflect.Message) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("didn't find a registered implementation for type %s", a.GetTypeUrl())
		}
		return check(inner)
	}
	if r, ok := m.Interface().(*matcherv3.RegexMatcher); ok {
		if err := checkRegex(r.GetRegex()); err != nil {
			return err
		}
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walk(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walk(mv.Message())
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = walk(v.Message())
		}
		return err == nil
	})
	return err
}

// checkRegex compiles a safe_regex as Envoy does: RE2 syntax, and a program no larger
// than MaxProgramSize (Envoy: "regex '…' RE2 program size of N > max program size of 100
// set for the error level threshold").
func checkRegex(expr string) error {
	if _, err := regexp.Compile(expr); err != nil {
		return fmt.Errorf("invalid regex '%s': %v", expr, err)
	}
	n, err := re2.ProgramSize(expr)
	if err != nil {
		return fmt.Errorf("invalid regex '%s': %v", expr, err)
	}
	if n > MaxProgramSize {
		return fmt.Errorf("regex '%s' RE2 program size of %d > max program size of %d set for the error level threshold", expr, n, MaxProgramSize)
	}
	return nil
}

// hcms returns a listener's HttpConnectionManagers.
func hcms(l *listenerv3.Listener) ([]*hcmv3.HttpConnectionManager, error) {
	var out []*hcmv3.HttpConnectionManager
	add := func(a *anypb.Any) error {
		hcm := &hcmv3.HttpConnectionManager{}
		if !a.MessageIs(hcm) {
			return nil
		}
		if err := a.UnmarshalTo(hcm); err != nil {
			return err
		}
		out = append(out, hcm)
		return nil
	}
	if api := l.GetApiListener().GetApiListener(); api != nil {
		return out, add(api)
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if err := add(f.GetTypedConfig()); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func checkListener(l *listenerv3.Listener) error {
	if l.GetApiListener() == nil && l.GetAddress() == nil {
		return errors.New("listener has no address")
	}
	hs, err := hcms(l)
	if err != nil {
		return err
	}
	for _, hcm := range hs {
		fs := hcm.GetHttpFilters()
		if len(fs) == 0 || fs[len(fs)-1].GetName() != "envoy.filters.http.router" {
			return errors.New("non-terminal filter is the last filter in a http filter chain (the router must be last)")
		}
		for _, f := range fs[:len(fs)-1] {
			if f.GetName() == "envoy.filters.http.router" {
				return errors.New("terminal filter envoy.filters.http.router must be the last filter in a http filter chain")
			}
		}
		if rds := hcm.GetRds(); rds != nil && rds.GetConfigSource().GetAds() == nil {
			return errors.New("RDS config source is not ADS")
		}
	}
	return nil
}

func checkRouteConfig(rc *routev3.RouteConfiguration) error {
	domains := map[string]bool{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			ld := strings.ToLower(d)
			if domains[ld] {
				return fmt.Errorf("only unique values for domains are permitted. Duplicate entry of domain %s", ld)
			}
			domains[ld] = true
			if strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) {
				return fmt.Errorf("wildcard in domain %q must be a prefix or a suffix", d)
			}
		}
		for _, r := range vh.GetRoutes() {
			wc := r.GetRoute().GetWeightedClusters()
			if wc == nil {
				continue
			}
			total := uint64(0)
			for _, c := range wc.GetClusters() {
				total += uint64(c.GetWeight().GetValue())
			}
			if total == 0 {
				return fmt.Errorf("route %q: sum of weights in the weighted_cluster must be greater than 0", r.GetName())
			}
		}
	}
	return nil
}
