package router

import (
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// The proxy policy: what happens to a request whichever front end read it (the fast path,
// fast.go, or net/http, proxy.go) and whichever transport carries it (pooled HTTP/1.1
// connections, upstream.go, or net/http's Transport). Both call the same functions here:
//
//   - decide: the route and cluster (host, path, internal marker, header routes, sticky
//     bucket, weighted split);
//   - send: the endpoint and the retries (a failed connect once more on another
//     endpoint; a reused connection that failed before anything was answered once more on
//     a fresh one, when the request can be replayed), and passive health;
//   - blame: who failed and what the client is told (the client's framing: 4xx, kept out
//     of analysis; the upstream after the request was sent: 502, or 504 on a timeout; the
//     client leaving: 499);
//   - finish: what is recorded, and where (analysis series, excluded series, or the
//     client-error series);
//   - hopByHop: the fields never forwarded.

// hopByHop lists the fields a proxy never forwards, in either direction, besides those
// the message's Connection field names (RFC 9110 §7.6.1). Upgrade is forwarded only for
// a WebSocket tunnel, by net/http.
var hopByHop = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "TE", "Transfer-Encoding", "Upgrade", "HTTP2-Settings"}

// isHopByHop reports whether a field name is in hopByHop (any case).
func isHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if len(h) == len(name) && equalFold(name, h) {
			return true
		}
	}
	return false
}

// forwardedFields are replaced by the router's own X-Forwarded-* fields.
var forwardedFields = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

// decision is the routing outcome for one request.
type decision struct {
	route    *route
	up       *upstream
	internal bool   // honoured internal-traffic marker
	spoofed  bool   // a marker-named field from an untrusted source (stripped)
	cookie   string // Set-Cookie value to add, if any
}

// routeInput is what decide reads of a request.
type routeInput struct {
	host   string      // lower case, without port
	path   string      // the target's path as sent (not decoded)
	header http.Header // canonical keys; at least the listener's interesting ones
	peer   netip.Addr  // the direct peer
	// marker: a field named like an internal-traffic marker is present, in any case and
	// with "_" for "-" (the values that count are in header under the canonical name).
	marker bool
	// sticky, when not nil, remembers the connection's last valid sticky cookie.
	sticky *stickyMemo
}

// decide picks the route and cluster for a request under listener lt.
func (lt *listenerTable) decide(in *routeInput) decision {
	var d decision
	if in.marker {
		if lt.trustedSource(in) {
			d.internal = anyMatch(lt.marker, in.header)
		} else {
			d.spoofed = true
		}
	}
	for _, ro := range lt.vhosts.routes(in.host) {
		if strings.HasPrefix(in.path, ro.prefix) {
			d.route = ro
			break
		}
	}
	ro := d.route
	if ro == nil {
		return d
	}
	if d.internal && ro.internal != nil {
		d.up = ro.internal
		return d
	}
	for i := range ro.headerRoutes {
		if allMatch(ro.headerRoutes[i].match, in.header) {
			d.up = ro.headerRoutes[i].up
			return d
		}
	}
	if lt.sticky != nil {
		b, cookie := lt.sticky.bucket(in.header["Cookie"], in.sticky)
		d.up, d.cookie = ro.buckets[b], cookie
		return d
	}
	d.up = ro.split.pick()
	return d
}

// isMarkerName reports whether a field name spells one of the internal-traffic markers
// keys: equal to one ignoring case, with "_" and "-" the same.
func isMarkerName[B ~string | ~[]byte](keys []string, name B) bool {
	for _, k := range keys {
		if equalFoldName(name, k) {
			return true
		}
	}
	return false
}

// trustedSource: the direct peer must be trusted; when it forwarded the request
// (X-Forwarded-For), the client it forwarded for must be trusted too.
func (lt *listenerTable) trustedSource(in *routeInput) bool {
	if !in.peer.IsValid() || !inPrefixes(lt.trusted, in.peer.Unmap()) {
		return false
	}
	xff := in.header["X-Forwarded-For"]
	if len(xff) == 0 {
		return true
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(last))
	return err == nil && inPrefixes(lt.trusted, a.Unmap())
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func anyMatch(ms []headerMatcher, h http.Header) bool {
	for i := range ms {
		if ms[i].match(h) {
			return true
		}
	}
	return false
}

// blame says who made an attempt fail.
type blame uint8

const (
	blameNone       blame = iota // no failure: the upstream answered
	blameNoEndpoint              // the cluster has no endpoint
	blameConnect                 // connecting failed: nothing was sent
	blameStale                   // a reused connection failed before anything was answered
	blameUpstream                // the upstream failed after the request was (partly) sent
	blameTimeout                 // the upstream did not answer in time
	blameClientGone              // the client left (or stopped reading)
	blameClient                  // the client's request: malformed, short or too slow body
)

// outcome is the result of carrying one request to an upstream.
type outcome struct {
	status     int   // the upstream's status, or the one the router answers or records
	blame      blame //
	answered   bool  // response bytes already reached the client
	keepClient bool  // the client connection may serve another request
	clientErr  *headError
}

// idempotent reports whether a request may be sent twice (RFC 9110 §9.2.2; like
// net/http's Transport: GET, HEAD, OPTIONS and TRACE).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// send carries a request to an endpoint of u with try, which makes one attempt (fresh:
// on a new connection). It tries again once after a failed connect, on another endpoint,
// and once after a reused connection failed before anything was answered, on a fresh
// connection, when replayable says the request may be sent again. Connect, upstream and
// timeout failures and 5xx answers count against the endpoint (passive health); a
// client's failure never does. It returns the endpoint of the last attempt (nil when
// there was none) and the outcome, whose status is what the client is told.
func (u *upstream) send(nowNanos int64, replayable bool, try func(ep *endpoint, fresh bool) outcome) (*endpoint, outcome) {
	var skip *endpoint
	fresh := false
	for attempt := 0; ; attempt++ {
		ep := u.pick(skip, nowNanos)
		if ep == nil {
			if skip != nil {
				return nil, outcome{status: http.StatusBadGateway, blame: blameConnect}
			}
			return nil, outcome{status: http.StatusServiceUnavailable, blame: blameNoEndpoint}
		}
		o := try(ep, fresh)
		switch o.blame {
		case blameNone:
			if o.status >= 500 {
				ep.failure()
			} else {
				ep.success()
			}
		case blameConnect:
			ep.failure()
			if attempt == 0 {
				skip = ep
				continue
			}
			o.status = http.StatusBadGateway
		case blameStale:
			if attempt == 0 && replayable && !o.answered {
				fresh = true
				continue
			}
			ep.failure()
			o.blame, o.status = blameUpstream, http.StatusBadGateway
		case blameUpstream:
			ep.failure()
			o.status = http.StatusBadGateway
		case blameTimeout:
			ep.failure()
			o.status = http.StatusGatewayTimeout
		case blameClientGone:
			o.status = statusClientClosed
		case blameClient:
			o.status = o.clientErr.status
		}
		return ep, o
	}
}

// finish records a request that reached the routing decision. A client's failure goes to
// sluice_router_client_errors_total only; everything else to the analysis series of the
// route and cluster, or to the excluded series for internal and warm-up traffic. It
// returns the time it read.
func (r *Router) finish(lt *listenerTable, d *decision, ep *endpoint, method int, o *outcome, start time.Time) time.Time {
	end := time.Now()
	if o.blame == blameClient {
		r.metrics.clientError(lt.name, o.clientErr.reason)
		return end
	}
	reason := reasonNone
	if d.internal {
		reason = reasonInternal
	} else if ep != nil && d.up.warmup > 0 && ep.warming(d.up.warmup, r.nanos(end)) {
		reason = reasonWarmup
	}
	d.route.metrics[d.up].observeIdx(method, o.status, reason, end.Sub(start).Seconds())
	return end
}

// nanos returns the router's clock at t, read from the wall clock: t itself unless a
// test injected a clock (Options.Now).
func (r *Router) nanos(t time.Time) int64 {
	if r.opts.Now == nil {
		return t.UnixNano()
	}
	return r.now().UnixNano()
}
