package discovery

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/sluice-mesh/sluice/model"
)

// testServer is a real DNS server on 127.0.0.1 (UDP and TCP on one port) whose
// answers the test writes: each question is answered by the handler.
type testServer struct {
	addr string
	mu   sync.Mutex
	// answer returns the reply for a question; nil drops the query (a timeout).
	answer  func(q dns.Question, tcp bool) *dns.Msg
	queries []string // "NAME TYPE" asked, in order
}

func startServer(t *testing.T, answer func(q dns.Question, tcp bool) *dns.Msg) *testServer {
	t.Helper()
	ts := &testServer{answer: answer}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		ts.mu.Lock()
		ts.queries = append(ts.queries, q.Name+" "+dns.TypeToString[q.Qtype])
		f := ts.answer
		ts.mu.Unlock()
		resp := f(q, tcp)
		if resp == nil {
			return
		}
		code := resp.Rcode
		resp.SetReply(req) // resets the code
		resp.Rcode = code
		_ = w.WriteMsg(resp)
	})
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	ts.addr = pc.LocalAddr().String()
	return ts
}

func (ts *testServer) set(answer func(q dns.Question, tcp bool) *dns.Msg) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.answer = answer
}

func (ts *testServer) asked() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.queries...)
}

// records answers from a zone written as RR strings; a name with no record of the
// asked type answers NOERROR empty when the zone has the name, else NXDOMAIN.
func records(rrs ...string) func(q dns.Question, tcp bool) *dns.Msg {
	var zone []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		zone = append(zone, rr)
	}
	return func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		known := false
		name := q.Name
		for hop := 0; hop < 8; hop++ {
			next := ""
			for _, rr := range zone {
				if !strings.EqualFold(rr.Header().Name, name) {
					continue
				}
				known = true
				switch {
				case rr.Header().Rrtype == q.Qtype:
					m.Answer = append(m.Answer, rr)
				case rr.Header().Rrtype == dns.TypeCNAME:
					m.Answer = append(m.Answer, rr)
					next = rr.(*dns.CNAME).Target
				}
			}
			if next == "" {
				break
			}
			name = next
		}
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		return m
	}
}

func rcode(code int) func(dns.Question, bool) *dns.Msg {
	return func(dns.Question, bool) *dns.Msg { m := new(dns.Msg); m.Rcode = code; return m }
}

func eps(addrs ...string) []model.Endpoint {
	var out []model.Endpoint
	for _, a := range addrs {
		out = append(out, model.Endpoint{Address: a, Weight: 1})
	}
	return out
}

func testResolver(t *testing.T, servers ...string) *resolver {
	t.Helper()
	r, err := newResolver(servers, "", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveHostAAndAAAA(t *testing.T) {
	ts := startServer(t, records(
		"api.test. 30 IN A 10.0.0.2",
		"api.test. 20 IN A 10.0.0.1",
		"api.test. 60 IN AAAA fd00::1",
		"alias.test. 5 IN CNAME api.test.",
		"v4only.test. 40 IN A 10.0.0.9",
		"empty.test. 40 IN TXT \"nothing here\"",
	))
	r := testResolver(t, ts.addr)
	ctx := context.Background()

	ans, err := r.host(ctx, "api.test", 8080)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(eps("10.0.0.1:8080", "10.0.0.2:8080", "[fd00::1]:8080"), ans.endpoints); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
	if ans.ttl != 20*time.Second {
		t.Errorf("ttl %s, want the smallest record TTL 20s", ans.ttl)
	}

	ans, err = r.host(ctx, "alias.test.", 80)
	if err != nil || len(ans.endpoints) != 3 || ans.ttl != 5*time.Second {
		t.Errorf("through a CNAME: %+v %v, want 3 endpoints and the CNAME's TTL 5s", ans, err)
	}
	ans, err = r.host(ctx, "v4only.test", 80)
	if err != nil || len(ans.endpoints) != 1 || ans.ttl != 40*time.Second {
		t.Errorf("A only (AAAA empty is normal): %+v %v", ans, err)
	}

	_, err = r.host(ctx, "missing.test", 80)
	if kindOf(err) != ResultNXDomain {
		t.Errorf("missing name: %v (%s), want nxdomain", err, kindOf(err))
	}
	_, err = r.host(ctx, "empty.test", 80)
	if kindOf(err) != ResultEmpty {
		t.Errorf("name without addresses: %v (%s), want empty", err, kindOf(err))
	}
}

func TestResolveFailuresAreClassified(t *testing.T) {
	ts := startServer(t, rcode(dns.RcodeServerFailure))
	r := testResolver(t, ts.addr)
	ctx := context.Background()
	for _, tc := range []struct {
		answer func(dns.Question, bool) *dns.Msg
		want   string
	}{
		{rcode(dns.RcodeServerFailure), ResultServFail},
		{rcode(dns.RcodeRefused), ResultRefused},
		{rcode(dns.RcodeNotImplemented), ResultError},
		{func(dns.Question, bool) *dns.Msg { return nil }, ResultTimeout},
	} {
		ts.set(tc.answer)
		_, err := r.host(ctx, "api.test", 80)
		if kindOf(err) != tc.want {
			t.Errorf("got %v (%s), want %s", err, kindOf(err), tc.want)
		}
		_, err = r.srv(ctx, "_http._tcp.api.test")
		if kindOf(err) != tc.want {
			t.Errorf("SRV: got %v (%s), want %s", err, kindOf(err), tc.want)
		}
	}
	var e *Error
	ts.set(rcode(dns.RcodeServerFailure))
	if _, err := r.host(ctx, "api.test", 80); !errors.As(err, &e) || e.Short() != "SERVFAIL" || !strings.Contains(e.Detail, ts.addr) {
		t.Errorf("SERVFAIL error %v: want Short SERVFAIL and the server in the detail", err)
	}

	// One family failing fails the lookup: half a set is never served as the whole.
	ts.set(func(q dns.Question, tcp bool) *dns.Msg {
		if q.Qtype == dns.TypeAAAA {
			return rcode(dns.RcodeServerFailure)(q, tcp)
		}
		return records("api.test. 30 IN A 10.0.0.1")(q, tcp)
	})
	if _, err := r.host(ctx, "api.test", 80); kindOf(err) != ResultServFail {
		t.Errorf("AAAA failing: %v, want servfail", err)
	}
}

func TestResolveUnreachableServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: the kernel answers "port unreachable"
	_, err = testResolver(t, closed).host(context.Background(), "api.test", 80)
	if k := kindOf(err); k != ResultUnreachable && k != ResultTimeout {
		t.Errorf("closed port: %v (%s), want unreachable", err, k)
	}
}

func TestResolveAsksTheNextServer(t *testing.T) {
	bad := startServer(t, rcode(dns.RcodeServerFailure))
	silent := startServer(t, func(dns.Question, bool) *dns.Msg { return nil })
	good := startServer(t, records("api.test. 30 IN A 10.0.0.1"))
	r := testResolver(t, bad.addr, silent.addr, good.addr)
	ans, err := r.host(context.Background(), "api.test", 80)
	if err != nil || len(ans.endpoints) != 1 {
		t.Fatalf("%+v %v", ans, err)
	}
	if len(bad.asked()) == 0 || len(silent.asked()) == 0 {
		t.Errorf("servers asked out of order: bad %v silent %v", bad.asked(), silent.asked())
	}
}

func TestResolveTruncatedAnswerRetriesOverTCP(t *testing.T) {
	var many []string
	for i := 1; i <= 120; i++ {
		many = append(many, "big.test. 30 IN A 10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1))
	}
	full := records(many...)
	ts := startServer(t, func(q dns.Question, tcp bool) *dns.Msg {
		if !tcp && q.Qtype == dns.TypeA {
			m := new(dns.Msg)
			m.Truncated = true
			return m
		}
		return full(q, tcp)
	})
	ans, err := testResolver(t, ts.addr).host(context.Background(), "big.test", 80)
	if err != nil || len(ans.endpoints) != 120 {
		t.Fatalf("got %d endpoints, %v; want 120 over TCP", len(ans.endpoints), err)
	}
}

func TestResolveSRV(t *testing.T) {
	zone := records(
		"_http._tcp.api.test. 60 IN SRV 10 5 8080 a.api.test.",
		"_http._tcp.api.test. 50 IN SRV 10 0 8081 b.api.test.",
		"_http._tcp.api.test. 60 IN SRV 20 5 9090 backup.api.test.",
		"a.api.test. 15 IN A 10.0.0.1",
		"a.api.test. 15 IN AAAA fd00::1",
		"b.api.test. 30 IN A 10.0.0.2",
		"backup.api.test. 30 IN A 10.0.0.3",
		"_gone._tcp.api.test. 30 IN SRV 0 0 0 .",
	)
	ts := startServer(t, zone)
	r := testResolver(t, ts.addr)
	ans, err := r.srv(context.Background(), "_http._tcp.api.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Endpoint{{Address: "10.0.0.1:8080", Weight: 5}, {Address: "10.0.0.2:8081", Weight: 1}, {Address: "[fd00::1]:8080", Weight: 5}}
	if d := cmp.Diff(want, ans.endpoints); d != "" {
		t.Errorf("lowest priority only, weights ≥ 1 (-want +got):\n%s", d)
	}
	if ans.ttl != 15*time.Second {
		t.Errorf("ttl %s, want the smallest of SRV and address records, 15s", ans.ttl)
	}
	if _, err := r.srv(context.Background(), "_gone._tcp.api.test"); kindOf(err) != ResultEmpty {
		t.Errorf("target \".\" (service not offered): %v, want empty", err)
	}
	if _, err := r.srv(context.Background(), "_none._tcp.api.test"); kindOf(err) != ResultNXDomain {
		t.Errorf("missing SRV name: %v, want nxdomain", err)
	}

	// With the addresses in the additional section (Consul does this), no A/AAAA query.
	ts.set(func(q dns.Question, tcp bool) *dns.Msg {
		m := zone(q, tcp)
		if q.Qtype == dns.TypeSRV {
			a, _ := dns.NewRR("c.api.test. 7 IN A 10.0.0.7")
			srv, _ := dns.NewRR("_http._tcp.api.test. 60 IN SRV 1 3 7000 c.api.test.")
			m.Answer, m.Extra = []dns.RR{srv}, []dns.RR{a}
		}
		return m
	})
	before := len(ts.asked())
	ans, err = r.srv(context.Background(), "_http._tcp.api.test")
	if err != nil || !cmp.Equal(ans.endpoints, []model.Endpoint{{Address: "10.0.0.7:7000", Weight: 3}}) || ans.ttl != 7*time.Second {
		t.Errorf("additional section: %+v %v", ans, err)
	}
	if q := ts.asked()[before:]; len(q) != 1 {
		t.Errorf("asked %v, want the SRV question only", q)
	}
}

func TestResolvConfSearchList(t *testing.T) {
	ts := startServer(t, records("api.prod.svc.cluster.test. 30 IN A 10.0.0.1"))
	host, port, _ := net.SplitHostPort(ts.addr)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+host+"\nsearch prod.svc.cluster.test svc.cluster.test\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newResolver(nil, conf, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.servers { // resolv.conf has no port syntax: point at the test port
		r.servers[i] = net.JoinHostPort(host, port)
	}
	ans, err := r.host(context.Background(), "api", 80)
	if err != nil || len(ans.endpoints) != 1 {
		t.Fatalf("short name through the search list: %+v %v (asked %v)", ans, err, ts.asked())
	}
	if _, err := newResolver(nil, filepath.Join(t.TempDir(), "none"), 0); kindOf(err) != ResultError {
		t.Errorf("missing resolv.conf: %v", err)
	}
}

func TestRefreshBounds(t *testing.T) {
	s, m := time.Second, time.Minute
	for _, tc := range []struct{ ttl, lo, hi, want time.Duration }{
		{0, s, 30 * s, s},
		{5 * s, s, 30 * s, 5 * s},
		{3600 * s, s, 30 * s, 30 * s},
		{500 * time.Millisecond, s, m, s},
	} {
		if got := refreshAfter(tc.ttl, tc.lo, tc.hi); got != tc.want {
			t.Errorf("refreshAfter(%s, %s, %s) = %s, want %s", tc.ttl, tc.lo, tc.hi, got, tc.want)
		}
	}
	for n, want := range []time.Duration{1: s, 2: 2 * s, 3: 4 * s, 5: 16 * s, 6: 30 * s, 40: 30 * s} {
		if want == 0 {
			continue
		}
		if got := retryAfter(n, s, 30*s); got != want {
			t.Errorf("retryAfter(%d) = %s, want %s", n, got, want)
		}
	}
}
