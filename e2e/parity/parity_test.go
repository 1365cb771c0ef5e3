// Package parity is issue 12's "one routing table, two data planes, same answers": one
// model snapshot is served at once by Sluice's router, by Sluice's xDS server to a strict
// fake Envoy (xds/xdstest, over a real ADS stream, so warming and ACK rules apply), and by
// the same xDS server to real proxyless grpc-go clients (grpc-go's own xDS resolver), and
// a table of requests is decided by all three. The router is a black box: real HTTP
// requests from a trusted (127.0.0.1) or untrusted (127.0.0.2) client address, answered by
// real backends that name themselves and record the mirror copies they get. The gRPC
// clients call the same backends (each speaks HTTP/1.1 and gRPC on one port).
//
// Every case has a documented decision (the README's "Which route", "Sticky sessions" and
// "What Envoy does with Sluice's routes"). The test asserts that the router makes it, that
// Envoy and gRPC make the router's decision — or, where the README documents that a plane
// answers otherwise by design, that plane's documented answer — and prints the table.
package parity

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/xds"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// parityCase is one request (sent n times) and its documented decision.
type parityCase struct {
	name string
	req  request
	want want
	// split: the decision is a distribution; more requests are sent.
	split bool
	// concurrent: the requests are sent at once (slow ones).
	concurrent bool
	// noGRPC says why the case does not apply to proxyless gRPC ("": it does).
	noGRPC string
	// differs holds the documented answer of a plane ("envoy", "grpc") that answers
	// otherwise by design, and why says where the README documents it.
	differs map[string]want
	why     string
}

// Requests per case and plane: the router's 70/30 split is exact over any 10 consecutive
// requests, and its sticky buckets over any 100 new clients; Envoy's random draw is
// enumerated (0..99); gRPC's is random, so a split is judged over 400 RPCs (±0.09 around
// 0.3) and a single decision over 20 (a split that should not happen shows within them).
const (
	routerN, routerSplitN = 10, 100
	grpcN, grpcSplitN     = 20, 400
	grpcSlowN             = 100 // slow RPCs, sent at once
)

const (
	noCookies = "proxyless clients carry no cookies"
	noMirrors = "proxyless clients do not mirror"
	notAName  = "not a name a proxyless client dials (lower-case DNS names only)"
	noTarget  = "a gRPC method path has a service and a method"
	samePeer  = "a proxyless client is its own peer: there is no forwarding peer or Envoy to strip x-envoy-internal"
)

// cases returns the table; webPort is listener web's port, cookie a sticky cookie the
// router signed for the canary.
func cases(webPort, cookie string) []parityCase {
	const api = "api.example.com"
	apiSplit := split("api-stable", 70, "api-canary")
	slow := func(r request) request { r.header = r.header.Clone(); r.header.Set(sleepHeader, sleepy); return r }
	// Envoy answers otherwise by design, as the README documents.
	xffDiffers := map[string]want{"envoy": to("api-stable")}
	const xffWhy = "README: x-envoy-internal caveats (Envoy marks internal only without X-Forwarded-For)"
	noRolloutDiffers := map[string]want{"envoy": to("static")}
	const noRolloutWhy = "README: internal traffic on routes no rollout owns is counted apart by the router only"
	stickyDiffers := map[string]want{"envoy": apiSplit}
	const stickyWhy = "README: sticky sessions are honoured by Sluice's router only"
	return []parityCase{
		// Hosts: the most specific pattern decides, port and case ignored.
		{name: "exact host", req: get(api, "/static/app.js"), want: to("static")},
		{name: "exact host with the listener's port", req: get(api+":"+webPort, "/static/app.js"), want: to("static")},
		{name: "host in upper case, another port", req: get("API.Example.COM:8080", "/static/app.js"), want: to("static"), noGRPC: notAName},
		{name: "*.example.com", req: get("a.example.com", "/x/y"), want: to("wild")},
		{name: "longest suffix: *.eu.example.com", req: get("a.eu.example.com", "/eu/y"), want: to("eu")},
		{name: "longest suffix has no route for the path: 404, no fallback", req: get("a.eu.example.com", "/x/y"), want: to("404")},
		{name: "suffix wildcard before prefix wildcard", req: get("www.example.com", "/x/y"), want: to("wild")},
		{name: "prefix wildcard www.*", req: get("www.example.org", "/x/y"), want: to("www")},
		{name: "*.example.com needs a character for *", req: get("example.com", "/x/y"), want: to("fallback")},
		{name: "the listener's name", req: get("web", "/x/y"), want: to("fallback")},
		{name: "host with a trailing dot", req: get(api+".", "/static/app.js"), want: to("fallback"), noGRPC: notAName},
		{name: "IPv6 literal host", req: get("[::1]:8080", "/x/y"), want: to("fallback"), noGRPC: notAName},
		{name: "cluster without endpoints: 503", req: get("down.example.com", "/x/y"), want: to("503")},
		{name: "a host the listener does not have: 404", req: get("web.example.com", "/x/y").on("shop"), want: to("404")},

		// Paths: prefixes compared with the path as sent, case-sensitive, without the query.
		{name: "/static without its slash is the api route", req: get(api, "/static").pinned(), want: to("api-stable"), noGRPC: noTarget},
		{name: "paths are case-sensitive", req: get(api, "/STATIC/app.js").pinned(), want: to("api-stable")},
		{name: "query string", req: get(api, "/static/app.js?v=1"), want: to("static"), noGRPC: noTarget},
		{name: "percent-encoded path is not decoded", req: get(api, "/%73tatic/app.js").pinned(), want: to("api-stable")},

		// The split.
		{name: "split 70/30", req: get(api, "/api/x"), want: apiSplit, split: true},

		{name: "weight 0: nothing to the canary", req: get("aborted.example.com", "/x/y"), want: to("api-stable"), split: true},
		{name: "weight 0: its header route still does", req: get("aborted.example.com", "/x/y", "x-beta", "1"), want: to("api-canary")},

		// Header routes: exact, prefix, regex (full match); a repeated field is matched
		// as its values joined with ",".
		{name: "header route, exact", req: get(api, "/api/x", "x-beta", "1"), want: to("api-canary")},
		{name: "header names in any case", req: get(api, "/api/x", "X-BETA", "1"), want: to("api-canary"), noGRPC: "metadata keys are lower case"},
		{name: "header route, other value", req: get(api, "/api/x", "x-beta", "2").pinned(), want: to("api-stable")},
		{name: "header sent twice is matched as \"1,1\"", req: get(api, "/api/x", "x-beta", "1", "x-beta", "1").pinned(), want: to("api-stable")},
		{name: "header route, prefix", req: get(api, "/api/x", "x-user", "tester-7"), want: to("api-canary")},
		{name: "header prefix is case-sensitive", req: get(api, "/api/x", "x-user", "Tester-7").pinned(), want: to("api-stable")},
		{name: "header route, regex", req: get(api, "/api/x", "x-version", "v2.13"), want: to("api-canary")},
		{name: "header regex matches the whole value", req: get(api, "/api/x", "x-version", "v2.13-rc").pinned(), want: to("api-stable")},

		// The internal-traffic marker.
		{name: "marker from a trusted peer", req: get(api, "/api/x", "x-internal-test", "true").from(trustedPeer), want: to("api-canary").asInternal()},
		{name: "second marker, by prefix", req: get(api, "/api/x", "x-qa", "team-blue").from(trustedPeer), want: to("api-canary").asInternal()},
		{name: "marker name in upper case", req: get(api, "/api/x", "X-INTERNAL-TEST", "true").from(trustedPeer), want: to("api-canary").asInternal(),
			noGRPC: "metadata keys are lower case"},
		{name: "marker with another value", req: get(api, "/api/x", "x-internal-test", "false").from(trustedPeer).pinned(), want: to("api-stable")},
		{name: "marker from an untrusted peer", req: get(api, "/api/x", "x-internal-test", "true").pinned(), want: to("api-stable")},
		{name: "marker and x-envoy-internal from an untrusted peer", req: get(api, "/api/x", "x-internal-test", "true", "x-envoy-internal", "true").pinned(),
			want: to("api-stable"), noGRPC: samePeer},
		{name: "marker sent twice is \"true,true\"", req: get(api, "/api/x", "x-internal-test", "true", "x-internal-test", "true").from(trustedPeer).pinned(),
			want: to("api-stable")},
		{name: "marker wins over a header route", req: get(api, "/api/x", "x-internal-test", "true", "x-beta", "1").from(trustedPeer),
			want: to("api-canary").asInternal()},
		{name: "marker through a trusted forwarder", req: get(api, "/api/x", "x-internal-test", "true", "X-Forwarded-For", trustedPeer).from(trustedPeer).pinned(),
			want: to("api-canary").asInternal(), noGRPC: samePeer, differs: xffDiffers, why: xffWhy},
		{name: "marker on a route no rollout owns", req: get(api, "/static/app.js", "x-internal-test", "true").from(trustedPeer),
			want: to("static").asInternal(), differs: noRolloutDiffers, why: noRolloutWhy},

		// Mirrors: a request gets every mirror whose match it satisfies, on its route only.
		{name: "mirror: POST /api/orders", req: get(api, "/api/orders/1").post().pinned(), want: to("api-stable").mirror("api-canary"), noGRPC: noMirrors},
		{name: "mirror: GET is not", req: get(api, "/api/orders/1").pinned(), want: to("api-stable"), noGRPC: noMirrors},
		{name: "mirror: path compared as sent", req: get(api, "/api/%6Frders/1").post().pinned(), want: to("api-stable"), noGRPC: noMirrors},
		{name: "mirror: on a header route", req: get(api, "/api/orders", "x-beta", "1").post(), want: to("api-canary").mirror("api-canary"), noGRPC: noMirrors},
		{name: "mirror: by header", req: get(api, "/api/x", "x-debug", "mirror").pinned(), want: to("api-stable").mirror("api-shadow"), noGRPC: noMirrors},
		{name: "mirror: both", req: get(api, "/api/orders", "x-debug", "mirror").post().pinned(), want: to("api-stable").mirror("api-canary", "api-shadow"), noGRPC: noMirrors},
		{name: "mirror: internal traffic too", req: get(api, "/api/orders", "x-internal-test", "true").post().from(trustedPeer),
			want: to("api-canary").asInternal().mirror("api-canary"), noGRPC: noMirrors},
		{name: "mirror: not on another route", req: get(api, "/static/orders", "x-debug", "mirror").post(), want: to("static"), noGRPC: noMirrors},

		// Timeouts: each request gets the timeout of the cluster it is sent to.
		{name: "slow request on the canary's header route: its timeout", req: slow(get(api, "/api/x", "x-beta", "1")), want: to("504"), concurrent: true},
		{name: "slow requests on the split: each leg's timeout", req: slow(get(api, "/api/x")), want: split("api-stable", 70, "504"), split: true, concurrent: true},

		// Sticky sessions (listener shop): the router's signed buckets; Envoy and gRPC
		// split every request.
		{name: "sticky: no cookie", req: get("shop.example.com", "/x/y").on("shop"), want: apiSplit, split: true},
		{name: "sticky: forged cookie naming the canary", req: get("shop.example.com", "/x/y", "Cookie", "sluice-shop=api-canary").on("shop"),
			want: apiSplit, split: true, noGRPC: noCookies},
		{name: "sticky: forged bucket", req: get("shop.example.com", "/x/y", "Cookie", "sluice-shop=0.AAAAAAAAAAAAAAAA").on("shop"),
			want: apiSplit, split: true, noGRPC: noCookies},
		{name: "sticky: the router's cookie for the canary", req: get("shop.example.com", "/x/y", "Cookie", cookie).on("shop"),
			want: to("api-canary"), noGRPC: noCookies, differs: stickyDiffers, why: stickyWhy},
	}
}

// TestRouterEnvoyAndGRPCDecideAlike: one snapshot, three data planes, one table.
func TestRouterEnvoyAndGRPCDecideAlike(t *testing.T) {
	// Backends, one per cluster with endpoints.
	addr := map[string]string{}
	backends := map[string]*backend{}
	for _, name := range clusterNames {
		if name != "down" {
			backends[name] = startBackend(t, name)
			addr[name] = backends[name].addr
		}
	}
	web, shop := testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, webPort, _ := net.SplitHostPort(web)
	snap := paritySnapshot(web, shop, addr)

	// The router.
	rp := newRouterPlane(t, map[string]string{"web": web, "shop": shop})
	if err := rp.rt.Apply(snap); err != nil {
		t.Fatal(err)
	}
	routerDown := false
	shutdown := func() {
		if routerDown {
			return
		}
		routerDown = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rp.rt.Shutdown(ctx)
	}
	t.Cleanup(shutdown)

	// The xDS server, a fake Envoy and proxyless gRPC clients.
	xs, err := xds.New(xds.Options{Logger: zap.NewNop(), Address: "127.0.0.1:0", AckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := xs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(xs.Stop)
	if err := xs.Apply(snap); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(xs.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	envoy, err := xdstest.Start(context.Background(), cc, xdstest.Options{Node: envoyNode("parity-envoy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(envoy.Stop)
	waitEnvoy(t, xs, envoy, "parity-envoy", snap.Version)
	ep := &envoyPlane{c: envoy}
	gp := newGRPCPlane(t, xs.Addr().String())

	cookie := rp.signedCookie(t, "shop", "shop.example.com", "api-canary")
	table := cases(webPort, cookie)
	type row struct {
		c                   parityCase
		router, envoy, grpc decision
	}
	rows := make([]row, len(table))
	// The gRPC clients call the backends directly: they run beside the router's requests.
	grpcDone := make(chan struct{})
	go func() {
		defer close(grpcDone)
		for i, c := range table {
			n := grpcN
			switch {
			case c.concurrent && c.split:
				n = grpcSlowN
			case c.split:
				n = grpcSplitN
			}
			if c.noGRPC == "" {
				rows[i].grpc = gp.decide(c, asGRPC(c.req), n)
			}
		}
	}()
	defer func() { <-grpcDone }() // also when a router case ends the test
	for i, c := range table {
		n := routerN
		if c.split && !c.concurrent {
			n = routerSplitN
		}
		rows[i].c, rows[i].router, rows[i].envoy = c, rp.decide(t, c, n), ep.decide(c)
	}
	<-grpcDone
	// Shutting the router down waits for its mirror copies: then every copy has arrived.
	shutdown()
	for i := range rows {
		rows[i].router.mirrors = []string{}
		for _, name := range clusterNames {
			if b := backends[name]; b != nil && b.mirrored(rows[i].c.name) > 0 {
				rows[i].router.mirrors = append(rows[i].router.mirrors, name)
			}
		}
	}

	// Verdicts: the router makes the documented decision; Envoy and gRPC make the
	// router's, or their own documented one.
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\twant\trouter\tenvoy\tgrpc\tverdict")
	failed := 0
	for _, r := range rows {
		var bad []string
		if ok, why := r.router.matches(r.c.want, exact); !ok {
			bad = append(bad, "router: "+why)
		}
		check := func(plane string, d decision, s sampling) {
			if w, documented := r.c.differs[plane]; documented {
				if ok, why := d.matches(w, s); !ok {
					bad = append(bad, plane+" (documented "+w.String()+"): "+why)
				}
				return
			}
			if ok, why := d.matches(r.router.asWant(), s); !ok {
				bad = append(bad, plane+" ≠ router: "+why)
			}
		}
		check("envoy", r.envoy, exact)
		grpcCell := "n/a: " + r.c.noGRPC
		if r.c.noGRPC == "" {
			check("grpc", r.grpc, random)
			grpcCell = r.grpc.String()
		}
		verdict := "agree"
		switch {
		case len(bad) > 0:
			verdict = "DISAGREE: " + strings.Join(bad, "; ")
			failed++
			t.Errorf("%s: %s", r.c.name, strings.Join(bad, "; "))
		case r.c.differs != nil:
			verdict = "differs as documented (" + r.c.why + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.c.name, r.c.want, r.router, r.envoy, grpcCell, verdict)
	}
	tw.Flush()
	t.Logf("%d cases, %d disagree\n%s", len(rows), failed, out.String())

	if st := envoy.Stats(); len(st.Violations) > 0 || st.NACKs > 0 || st.Served503 > 0 {
		t.Errorf("fake Envoy: violations %q, %d NACKs (%s), %d 503s for clusters it did not hold", st.Violations, st.NACKs, st.LastNACK, st.Served503)
	}
}
