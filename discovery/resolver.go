package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-mesh/sluice/model"
)

// DefaultResolvConf is the system resolver configuration read when
// ControlPlane.spec.dns.servers is empty.
const DefaultResolvConf = "/etc/resolv.conf"

// defaultQueryTimeout bounds one DNS query to one server.
const defaultQueryTimeout = 2 * time.Second

// resolver asks DNS servers directly (net.Resolver hides record TTLs).
type resolver struct {
	servers []string // host:port, asked in order until one answers
	search  []string // suffixes tried for relative names (system configuration only)
	ndots   int
	timeout time.Duration
}

// newResolver asks servers, or when there are none, the servers, search domains and
// ndots of the resolv.conf file at path.
func newResolver(servers []string, path string, timeout time.Duration) (*resolver, error) {
	if timeout <= 0 {
		timeout = defaultQueryTimeout
	}
	if len(servers) > 0 {
		return &resolver{servers: servers, ndots: 1, timeout: timeout}, nil
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, errorf(ResultError, "reading the system resolver configuration: %v", err)
	}
	r := &resolver{search: cc.Search, ndots: cc.Ndots, timeout: timeout}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
	}
	if len(r.servers) == 0 {
		return nil, errorf(ResultError, "%s lists no nameserver", path)
	}
	return r, nil
}

// answer is a successful lookup: endpoints and the smallest TTL of the records used.
type answer struct {
	endpoints []model.Endpoint
	ttl       time.Duration
}

// names returns the fully qualified names to try for name, in order (resolv.conf's
// search and ndots rules).
func (r *resolver) names(name string) []string {
	if dns.IsFqdn(name) || len(r.search) == 0 {
		return []string{dns.Fqdn(name)}
	}
	cc := dns.ClientConfig{Search: r.search, Ndots: r.ndots}
	return cc.NameList(name)
}

// exchange asks each server in turn for qname/qtype and returns the first answer that
// is NOERROR or NXDOMAIN. Truncated UDP answers are asked again over TCP.
func (r *resolver) exchange(ctx context.Context, qname string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(qname, qtype)
	q.SetEdns0(1232, false)
	var last error
	for _, server := range r.servers {
		resp, err := r.ask(ctx, q, server, "udp")
		if err == nil && resp.Truncated {
			resp, err = r.ask(ctx, q, server, "tcp")
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			kind := ResultError
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				kind = ResultTimeout
			case errors.Is(err, syscall.ECONNREFUSED):
				kind = ResultUnreachable
			}
			last = errorf(kind, "%s %s from %s: %v", qname, dns.TypeToString[qtype], server, err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp, nil
		case dns.RcodeServerFailure:
			last = errorf(ResultServFail, "SERVFAIL from %s for %s %s", server, qname, dns.TypeToString[qtype])
		case dns.RcodeRefused:
			last = errorf(ResultRefused, "REFUSED from %s for %s %s", server, qname, dns.TypeToString[qtype])
		default:
			last = errorf(ResultError, "%s from %s for %s %s", dns.RcodeToString[resp.Rcode], server, qname, dns.TypeToString[qtype])
		}
	}
	return nil, last
}

func (r *resolver) ask(ctx context.Context, q *dns.Msg, server, network string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	return resp, err
}

// lookup is the outcome of asking for one name: its addresses, or that it has none.
type lookup struct {
	addrs    []netip.Addr
	ttl      time.Duration
	nxdomain bool // the name does not exist (else: it exists with no such records)
}

// addresses asks for the A and AAAA records of the fully qualified name. Both must
// answer: a failure of either is the lookup's failure, so that a set is never cut in
// half by one failed query.
func (r *resolver) addresses(ctx context.Context, fqdn string) (lookup, error) {
	var out lookup
	out.ttl = -1
	nx := 0
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.exchange(ctx, fqdn, qtype)
		if err != nil {
			return lookup{}, err
		}
		if resp.Rcode == dns.RcodeNameError {
			nx++
		}
		addrs, ttl := addrsIn(resp.Answer, qtype)
		out.addrs = append(out.addrs, addrs...)
		if len(addrs) > 0 {
			out.ttl = minTTL(out.ttl, ttl)
		}
	}
	out.nxdomain = nx == 2
	return out, nil
}

// addrsIn returns the addresses of the answer's records of qtype (after any CNAMEs)
// and the smallest TTL among all the answer's records.
func addrsIn(rrs []dns.RR, qtype uint16) ([]netip.Addr, time.Duration) {
	var addrs []netip.Addr
	ttl := time.Duration(-1)
	for _, rr := range rrs {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = v.A
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = v.AAAA
			}
		case *dns.CNAME:
		default:
			continue
		}
		ttl = minTTL(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	return addrs, ttl
}

func minTTL(a, b time.Duration) time.Duration {
	if a < 0 || b < a {
		return b
	}
	return a
}

// host resolves name's A and AAAA records into endpoints on port.
func (r *resolver) host(ctx context.Context, name string, port int) (answer, error) {
	nx := true
	for _, fqdn := range r.names(name) {
		l, err := r.addresses(ctx, fqdn)
		if err != nil {
			return answer{}, err
		}
		if len(l.addrs) == 0 {
			nx = nx && l.nxdomain
			continue
		}
		ans := answer{ttl: l.ttl}
		for _, a := range l.addrs {
			ans.endpoints = append(ans.endpoints, model.Endpoint{Address: net.JoinHostPort(a.String(), strconv.Itoa(port)), Weight: 1})
		}
		ans.endpoints = merge(ans.endpoints)
		return ans, nil
	}
	if nx {
		return answer{}, errorf(ResultNXDomain, "%s does not exist (NXDOMAIN)", name)
	}
	return answer{}, errorf(ResultEmpty, "%s has no A or AAAA records", name)
}

// srv resolves an SRV name into endpoints: the records of the lowest priority value
// (the others are backups), each target's addresses on the record's port with the
// record's weight (at least 1). Addresses come from the answer's additional section
// when the server sent them, else from A/AAAA queries.
func (r *resolver) srv(ctx context.Context, name string) (answer, error) {
	nx := true
	for _, fqdn := range r.names(name) {
		resp, err := r.exchange(ctx, fqdn, dns.TypeSRV)
		if err != nil {
			return answer{}, err
		}
		var recs []*dns.SRV
		ttl := time.Duration(-1)
		for _, rr := range resp.Answer {
			if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
				recs = append(recs, s)
				ttl = minTTL(ttl, time.Duration(s.Hdr.Ttl)*time.Second)
			}
		}
		if len(recs) == 0 {
			nx = nx && resp.Rcode == dns.RcodeNameError
			continue
		}
		best := slices.MinFunc(recs, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) }).Priority
		var eps []model.Endpoint
		for _, s := range recs {
			if s.Priority != best {
				continue
			}
			addrs, attl := additional(resp.Extra, s.Target)
			if len(addrs) == 0 {
				l, err := r.addresses(ctx, dns.Fqdn(s.Target))
				if err != nil {
					return answer{}, err
				}
				addrs, attl = l.addrs, l.ttl
			}
			if len(addrs) > 0 {
				ttl = minTTL(ttl, attl)
			}
			for _, a := range addrs {
				eps = append(eps, model.Endpoint{Address: net.JoinHostPort(a.String(), strconv.Itoa(int(s.Port))), Weight: max(int(s.Weight), 1)})
			}
		}
		if len(eps) == 0 {
			return answer{}, errorf(ResultEmpty, "the SRV targets of %s have no addresses", name)
		}
		return answer{endpoints: merge(eps), ttl: ttl}, nil
	}
	if nx {
		return answer{}, errorf(ResultNXDomain, "%s does not exist (NXDOMAIN)", name)
	}
	return answer{}, errorf(ResultEmpty, "%s has no SRV records", name)
}

// additional returns the A and AAAA addresses the additional section gives for target.
func additional(extra []dns.RR, target string) ([]netip.Addr, time.Duration) {
	var addrs []netip.Addr
	ttl := time.Duration(-1)
	for _, rr := range extra {
		if !dns.IsFqdn(rr.Header().Name) || !equalNames(rr.Header().Name, target) {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
			ttl = minTTL(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	}
	return addrs, ttl
}

func equalNames(a, b string) bool { return dns.CanonicalName(a) == dns.CanonicalName(b) }
