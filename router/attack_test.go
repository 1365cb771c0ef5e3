package router

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/model"
)

// attack is one hostile request (or pipeline) sent on one raw connection.
type attack struct {
	name string
	send string
	// statuses are the status lines the client must get, in order; after them the
	// router must close the connection unless open is set.
	statuses []string
	open     bool
	// bodies, when set, are the response bodies, in order.
	bodies []string
	// forwarded are the exact bytes the backend must have received for the attack, per
	// upstream connection in the order they were opened; nil: nothing at all.
	forwarded []string
	// reason is the client-error reason counted (once), "" for none.
	reason string
	// served is how many requests the analysis series count for the attack.
	served int
	// spoofed is how many stripped internal markers are counted.
	spoofed int
}

// fwd is the request head the fast path forwards: the request line and fields as given,
// then its X-Forwarded-* fields.
func fwd(reqLine string, fields ...string) string {
	host := "x"
	for _, f := range fields {
		if v, ok := strings.CutPrefix(f, "Host: "); ok {
			host = v
		}
	}
	s := reqLine + "\r\n"
	for _, f := range fields {
		s += f + "\r\n"
	}
	return s + "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: " + host + "\r\nX-Forwarded-Proto: http\r\n\r\n"
}

const (
	ok200  = "HTTP/1.1 200 OK"
	bad400 = "HTTP/1.1 400 Bad Request"
)

var smuggled = "0\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"

// attackCorpus is every hostile request of issue 16, and their neighbours, with what the
// router must do on the fast path. FuzzParseVsNetHTTP starts from these bytes too.
var attackCorpus = []attack{
	// Smuggling through field names the fast path used to miss.
	{name: "te space before colon", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\nTransfer-Encoding : chunked\r\n\r\n" + smuggled,
		statuses: []string{bad400}, reason: reasonBadField},
	{name: "te tab before colon", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\nTransfer-Encoding\t: chunked\r\n\r\n" + smuggled,
		statuses: []string{bad400}, reason: reasonBadField},
	{name: "cl space before colon", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadField},
	{name: "connection space before colon", send: "GET / HTTP/1.1\r\nHost: x\r\nConnection : x-internal-test\r\nX-Internal-Test: true\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "marker space before colon", send: "GET / HTTP/1.1\r\nHost: x\r\nX-Internal-Test : true\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "cl and te", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled,
		statuses: []string{bad400}, reason: reasonConflict},
	{name: "te and cl", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + smuggled,
		statuses: []string{bad400}, reason: reasonConflict},
	// Invalid framing.
	{name: "cl plus", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl minus zero", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl hex", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl list", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl twice same", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl twice different", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl empty", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "cl overflow", send: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", statuses: []string{bad400}, reason: reasonBadLength},
	{name: "te gzip", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", statuses: []string{"HTTP/1.1 501 Not Implemented"}, reason: reasonTransferEncoding},
	{name: "te identity", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", statuses: []string{"HTTP/1.1 501 Not Implemented"}, reason: reasonTransferEncoding},
	{name: "te list", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", statuses: []string{"HTTP/1.1 501 Not Implemented"}, reason: reasonTransferEncoding},
	{name: "te twice", send: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", statuses: []string{"HTTP/1.1 501 Not Implemented"}, reason: reasonTransferEncoding},
	{name: "te in http/1.0", send: "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled, statuses: []string{bad400}, reason: reasonConflict},
	// Bytes nobody may forward.
	{name: "bare cr in value", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "nul in value", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "space in name", send: "GET / HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "control byte in name", send: "GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: z\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "empty name", send: "GET / HTTP/1.1\r\nHost: x\r\n: z\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "line without colon", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "obs-fold", send: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadField},
	{name: "control byte in method", send: "G\x01ET / HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "control byte in target", send: "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "space in target", send: "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "fragment in target", send: "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "bad percent in path", send: "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "two spaces", send: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "tab separator", send: "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "lower-case version", send: "GET / http/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "http/1.2", send: "GET / HTTP/1.2\r\nHost: x\r\n\r\n", statuses: []string{"HTTP/1.1 505 HTTP Version Not Supported"}, reason: reasonBadVersion},
	{name: "http/2.0 request line", send: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", statuses: []string{"HTTP/1.1 505 HTTP Version Not Supported"}, reason: reasonBadVersion},
	{name: "http/0.9", send: "GET /\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "asterisk for GET", send: "GET * HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "absolute form with userinfo", send: "GET http://u:p@x/ HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "absolute form other scheme", send: "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadRequestLine},
	{name: "connect", send: "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", statuses: []string{"HTTP/1.1 405 Method Not Allowed"}, reason: reasonMethod},
	{name: "expect other", send: "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\nhello", statuses: []string{"HTTP/1.1 417 Expectation Failed"}, reason: reasonExpect},
	// Host.
	{name: "host with space", send: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "two hosts", send: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "no host", send: "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "host with userinfo", send: "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "host with path", send: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "host bad port", send: "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", statuses: []string{bad400}, reason: reasonBadHost},
	{name: "head too large", send: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n",
		statuses: []string{"HTTP/1.1 431 Request Header Fields Too Large"}, reason: reasonHeadTooLarge},
	// Served, with what must not be forwarded taken out.
	{name: "connection names content-length", send: "POST /c HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Host, X-Drop\r\nX-Drop: 1\r\nContent-Length: 5\r\n\r\nhello",
		statuses: []string{ok200}, open: true, bodies: []string{"stable POST /c"}, served: 1,
		forwarded: []string{fwd("POST /c HTTP/1.1", "Host: x", "Content-Length: 5") + "hello"}},
	{name: "h2c upgrade served as http/1.1", send: "GET /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" +
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		statuses: []string{ok200, "HTTP/1.1 505 HTTP Version Not Supported"}, bodies: []string{"stable GET /h2", errVersion.msg + "\n"},
		reason: reasonBadVersion, served: 1, forwarded: []string{fwd("GET /h2 HTTP/1.1", "Host: x")}},
	{name: "upgrade to anything else", send: "GET /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo/1\r\n\r\n",
		statuses: []string{ok200}, open: true, bodies: []string{"stable GET /u"}, served: 1, forwarded: []string{fwd("GET /u HTTP/1.1", "Host: x")}},
	{name: "marker upper-case value", send: "GET /m HTTP/1.1\r\nHost: x\r\nX-Internal-Test: TRUE\r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, spoofed: 1, forwarded: []string{fwd("GET /m HTTP/1.1", "Host: x")}},
	{name: "marker two values", send: "GET /m HTTP/1.1\r\nHost: x\r\nX-Internal-Test: true, true\r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, spoofed: 1, forwarded: []string{fwd("GET /m HTTP/1.1", "Host: x")}},
	{name: "marker underscore", send: "GET /m HTTP/1.1\r\nHost: x\r\nX_Internal_Test: true\r\nx-internal_TEST: true\r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, spoofed: 1, forwarded: []string{fwd("GET /m HTTP/1.1", "Host: x")}},
	{name: "marker exact from outside", send: "GET /m HTTP/1.1\r\nHost: x\r\nx-internal-test: true\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, spoofed: 1, forwarded: []string{fwd("GET /m HTTP/1.1", "Host: x")[:len(fwd("GET /m HTTP/1.1", "Host: x"))-len("127.0.0.1\r\nX-Forwarded-Host: x\r\nX-Forwarded-Proto: http\r\n\r\n")] + "10.1.2.3, 127.0.0.1\r\nX-Forwarded-Host: x\r\nX-Forwarded-Proto: http\r\n\r\n"}},
	{name: "hop-by-hop fields", send: "GET /h HTTP/1.1\r\nHost: x\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Keep:  kept \r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, forwarded: []string{fwd("GET /h HTTP/1.1", "Host: x", "X-Keep: kept")}},
	{name: "bare lf served", send: "GET /lf HTTP/1.1\nHost: x\nX-A: b\n\n",
		statuses: []string{ok200}, open: true, served: 1, forwarded: []string{fwd("GET /lf HTTP/1.1", "Host: x", "X-A: b")}},
	{name: "leading empty lines", send: "\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n",
		statuses: []string{ok200}, open: true, served: 1, forwarded: []string{fwd("GET /e HTTP/1.1", "Host: x")}},
	// Pipelines: every response owed is written, in order, before net/http takes over.
	{name: "get then chunked post", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		statuses: []string{ok200, ok200}, bodies: []string{"stable GET /a", "stable POST /b"}, served: 2,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x"), netHTTPForm("POST /b HTTP/1.1", "Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n")}},
	{name: "get then expect", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
		statuses: []string{ok200, "HTTP/1.1 100 Continue", ok200}, bodies: []string{"stable GET /a", "", "stable POST /b"}, served: 2,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x"), netHTTPForm("POST /b HTTP/1.1", "Content-Length: 5\r\nExpect: 100-continue", "hello")}},
	{name: "get then http/1.0", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\nHost: x\r\n\r\n",
		statuses: []string{ok200, "HTTP/1.0 200 OK"}, bodies: []string{"stable GET /a", "stable GET /b"}, served: 2,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x"), netHTTPForm("GET /b HTTP/1.1", "", "")}},
	{name: "get then absolute form", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET http://y/b HTTP/1.1\r\nHost: x\r\n\r\n",
		statuses: []string{ok200, ok200}, bodies: []string{"stable GET /a", "stable GET /b"}, served: 2,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x"), strings.Replace(netHTTPForm("GET /b HTTP/1.1", "", ""), "Host: x", "Host: y", 2)}},
	{name: "get then bare lf", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\nHost: x\n\n",
		statuses: []string{ok200, ok200}, open: true, bodies: []string{"stable GET /a", "stable GET /b"}, served: 2,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x") + fwd("GET /b HTTP/1.1", "Host: x")}},
	{name: "get then oversized head", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n",
		statuses: []string{ok200, "HTTP/1.1 431 Request Header Fields Too Large"}, bodies: []string{"stable GET /a"}, served: 1, reason: reasonHeadTooLarge,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x")}},
	{name: "get then smuggling attempt", send: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\nTransfer-Encoding : chunked\r\n\r\n" + smuggled,
		statuses: []string{ok200, bad400}, bodies: []string{"stable GET /a"}, served: 1, reason: reasonBadField,
		forwarded: []string{fwd("GET /a HTTP/1.1", "Host: x")}},
}

// netHTTPForm is a request as net/http's Transport writes it for the net/http path
// (fields sorted, the router's X-Forwarded-* among them).
func netHTTPForm(reqLine, framing, body string) string {
	s := reqLine + "\r\nHost: x\r\n"
	if framing != "" {
		s += framing + "\r\n"
	}
	return s + "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Host: x\r\nX-Forwarded-Proto: http\r\n\r\n" + body
}

// attackRouter starts a router whose one route sends everything to a raw-logging
// backend that ejects on the first failure, with an internal marker trusted only from
// 10.0.0.0/8 and 4 KiB heads at most.
func attackRouter(t *testing.T, opts Options) (addr string, be *rawBackend, reg *prometheus.Registry) {
	be = newRawBackend(t, "stable")
	addr = freeAddr(t)
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{{Name: "stable", Endpoints: []model.Endpoint{{Address: be.addr, Weight: 1}},
			Outlier: model.OutlierDetection{ConsecutiveFailures: 1, BaseEjectionTime: time.Hour}}},
		Listeners: []model.Listener{{Name: "l", Address: addr, Limits: model.Limits{MaxHeaderBytes: 4096},
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, Cluster: "stable"}}}},
	}
	_, reg = startRouter(t, s, opts)
	return addr, be, reg
}

// exchangeRaw writes send on a new connection and reads n responses. Then, with
// wantClosed, it waits for the router to close the connection (and reports whether it
// did); without, it reports whether the connection was closed within 200 ms.
func exchangeRaw(t *testing.T, addr, send string, n int, wantClosed bool) (statuses, bodies []string, closed bool) {
	t.Helper()
	c, br := rawConn(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v (got %q so far)", i+1, err, statuses)
		}
		statuses = append(statuses, resp.Proto+" "+resp.Status)
		b, _ := io.ReadAll(resp.Body)
		bodies = append(bodies, string(b))
	}
	if !wantClosed {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	}
	_, err := br.ReadByte()
	var ne net.Error
	closed = err != nil && !(errorsAs(err, &ne) && ne.Timeout())
	return statuses, bodies, closed
}

// TestAttackCorpus sends every hostile request to a fresh router and lenient raw
// backend and checks: the exact status lines the client got and whether the connection
// was closed, the exact bytes the backend received (nothing when refused), that a
// following client gets its own answer (nothing smuggled), the analysis series and the
// client-error series, and that nothing was ejected.
func TestAttackCorpus(t *testing.T) {
	for _, a := range attackCorpus {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			addr, be, reg := attackRouter(t, Options{})
			statuses, bodies, closed := exchangeRaw(t, addr, a.send, len(a.statuses), !a.open)
			if strings.Join(statuses, "|") != strings.Join(a.statuses, "|") {
				t.Fatalf("client got %q, want %q", statuses, a.statuses)
			}
			for i, b := range a.bodies {
				if b != "" && bodies[i] != b {
					t.Fatalf("response %d body %q, want %q", i+1, bodies[i], b)
				}
			}
			if closed == a.open {
				t.Fatalf("connection closed: %v, want %v", closed, !a.open)
			}
			// A following client on its own connection gets its own answer.
			_, vb, _ := exchangeRaw(t, addr, "GET /victim HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, true)
			if vb[0] != "stable GET /victim" {
				t.Fatalf("the next client got %q", vb[0])
			}
			victim := fwd("GET /victim HTTP/1.1", "Host: x") // Connection: close is hop-by-hop
			got := be.received()
			want := append([]string(nil), a.forwarded...)
			if len(want) == 0 {
				want = []string{victim}
			} else {
				want[0] += victim // the fast path's pooled connection is used again
			}
			if strings.Join(got, "\n----\n") != strings.Join(want, "\n----\n") {
				t.Fatalf("backend received, per connection:\n%q\nwant:\n%q", got, want)
			}
			checkCounters(t, reg, a.served+1, a.reason, a.spoofed)
		})
	}
}

func checkCounters(t *testing.T, reg *prometheus.Registry, served int, reason string, spoofed int) {
	t.Helper()
	if got := metricSum(t, reg, "http_requests_total", nil); got != float64(served) {
		t.Errorf("http_requests_total %v, want %d", got, served)
	}
	if got := metricSum(t, reg, "http_errors_total", nil); got != 0 {
		t.Errorf("http_errors_total %v, want 0", got)
	}
	if got := metricSum(t, reg, "sluice_router_endpoint_ejections_total", nil); got != 0 {
		t.Errorf("an endpoint was ejected")
	}
	wantClient := 0.0
	if reason != "" {
		wantClient = 1
		if got := metricSum(t, reg, "sluice_router_client_errors_total", map[string]string{"listener": "l", "reason": reason}); got != 1 {
			t.Errorf("client errors {reason=%s} %v, want 1", reason, got)
		}
	}
	if got := metricSum(t, reg, "sluice_router_client_errors_total", nil); got != wantClient {
		t.Errorf("client errors %v, want %v", got, wantClient)
	}
	if got := metricSum(t, reg, "sluice_router_spoofed_marker_total", nil); got != float64(spoofed) {
		t.Errorf("spoofed markers %v, want %d", got, spoofed)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// netHTTPLenient lists the corpus cases net/http's front end serves where the fast path
// refuses, and why that is safe there (see also parse_fuzz_test.go).
var netHTTPLenient = map[string]string{
	"cl and te":      "served as chunked only (Content-Length dropped) and the connection closed after it, as RFC 9112 §6.3 allows",
	"te and cl":      "served as chunked only (Content-Length dropped) and the connection closed after it, as RFC 9112 §6.3 allows",
	"cl twice same":  "identical Content-Length values are merged (RFC 9110 §8.6 allows it)",
	"obs-fold":       "the folded line is joined with a space (RFC 9112 §5.2 allows it)",
	"te in http/1.0": "Transfer-Encoding is ignored on HTTP/1.0, and the connection closes after the response",
}

// TestAttackCorpusNetHTTP sends each single-request attack after a harmless request on
// the same connection to a router with the fast path off, so that net/http's front end
// reads it, and checks the same safety: nothing smuggled to the backend or the next
// client, no upstream blamed, and a refusal wherever the fast path refuses except for the
// differences in netHTTPLenient.
func TestAttackCorpusNetHTTP(t *testing.T) {
	for _, a := range attackCorpus {
		if len(a.statuses) != 1 || strings.HasPrefix(a.name, "head too large") {
			continue // pipelines are the fast path's business; 4 KiB heads are net/http's 1 MiB there
		}
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			addr, be, reg := attackRouter(t, Options{DisableFastPath: true})
			c, br := rawConn(t, addr)
			io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"+a.send)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("first request: %v %v", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("attack: no response: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			why, lenient := netHTTPLenient[a.name]
			refused := resp.StatusCode >= 400 && resp.StatusCode != 404
			switch {
			case a.forwarded == nil && !lenient && !refused:
				t.Fatalf("net/http path answered %s where the fast path refuses", resp.Status)
			case a.forwarded == nil && lenient && refused:
				t.Fatalf("refused (%s), but listed as served by net/http: %s", resp.Status, why)
			case a.forwarded != nil && refused:
				t.Logf("net/http is the stricter one: %s where the fast path answers %s", resp.Status, a.statuses[0])
			case a.forwarded != nil && resp.StatusCode != a.statusCode():
				t.Fatalf("net/http path answered %s, fast path %s", resp.Status, a.statuses[0])
			}
			if strings.Contains(a.name, "cl and te") || strings.Contains(a.name, "te and cl") {
				if !resp.Close {
					t.Fatal("chunked request with a Content-Length: connection not closed after it")
				}
			}
			_, vb, _ := exchangeRaw(t, addr, "GET /victim HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, true)
			if vb[0] != "stable GET /victim" {
				t.Fatalf("the next client got %q", vb[0])
			}
			if all := be.all(); strings.Contains(all, "SMUGGLED") {
				t.Fatalf("smuggled request reached the backend: %q", all)
			} else if a.spoofed > 0 && strings.Contains(strings.ToLower(all), "internal") {
				t.Fatalf("spoofed marker reached the backend: %q", all)
			}
			if got := metricSum(t, reg, "http_errors_total", map[string]string{"status_code": "502"}); got != 0 {
				t.Fatalf("upstream blamed: %v 502s", got)
			}
			if got := metricSum(t, reg, "sluice_router_endpoint_ejections_total", nil); got != 0 {
				t.Fatal("endpoint ejected")
			}
		})
	}
}

func (a *attack) statusCode() int {
	var code int
	fmt.Sscanf(a.statuses[0], "HTTP/1.1 %d", &code)
	return code
}
