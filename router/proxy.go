package router

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// listenerHandler serves one bound address with whatever the current table says.
type listenerHandler struct {
	r     *Router
	addr  string
	proxy *httputil.ReverseProxy
}

// reqState travels with the outbound request through the proxy and the transport.
type reqState struct {
	up        *upstream
	ep        *endpoint
	client    context.Context // the inbound request's context, to tell 499 from 504
	status    int             // upstream status, or the status the error handler wrote
	noBackend bool
}

type stateKey struct{}

var errNoEndpoint = errors.New("cluster has no endpoints")

// decision is the routing outcome for one request.
type decision struct {
	route    *route
	up       *upstream
	internal bool   // honoured internal-traffic marker
	spoofed  bool   // marker present from an untrusted source (stripped)
	cookie   string // Set-Cookie value to add, if any
}

// decide picks the route and cluster for req under listener lt. It strips a spoofed
// internal marker from req.Header. It is the routing decision benchmarked in bench_test.go.
func (lt *listenerTable) decide(req *http.Request) decision {
	var d decision
	if lt.marker != nil && anyMatch(lt.marker, req.Header) {
		if lt.trustedSource(req) {
			d.internal = true
		} else {
			d.spoofed = true
			for _, k := range lt.markerKey {
				delete(req.Header, k)
			}
		}
	}
	host := requestHost(req)
	for _, ro := range lt.routes {
		if ro.prefix != "" && !strings.HasPrefix(req.URL.Path, ro.prefix) {
			continue
		}
		if len(ro.hosts) > 0 {
			ok := false
			for _, h := range ro.hosts {
				if hostMatch(h, host) {
					ok = true
					break
				}
			}
			if !ok {
				continue
			}
		}
		d.route = ro
		break
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
		if allMatch(ro.headerRoutes[i].match, req.Header) {
			d.up = ro.headerRoutes[i].up
			return d
		}
	}
	if lt.sticky != nil {
		if c, err := req.Cookie(lt.sticky.Cookie); err == nil {
			for u, w := range ro.weights {
				if u.name == c.Value && w > 0 {
					d.up = u
					return d
				}
			}
		}
		d.up = ro.split.pick()
		d.cookie = lt.cookieFor(d.up.name)
		return d
	}
	d.up = ro.split.pick()
	return d
}

func (lt *listenerTable) cookieFor(cluster string) string {
	c := http.Cookie{Name: lt.sticky.Cookie, Value: cluster, Path: "/", HttpOnly: true, MaxAge: lt.cookieAge, SameSite: http.SameSiteLaxMode}
	return c.String()
}

func anyMatch(ms []headerMatcher, h http.Header) bool {
	for i := range ms {
		if ms[i].match(h) {
			return true
		}
	}
	return false
}

// trustedSource: the direct peer must be trusted; when it forwarded the request
// (X-Forwarded-For), the client it forwarded for must be trusted too.
func (lt *listenerTable) trustedSource(req *http.Request) bool {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil || !inPrefixes(lt.trusted, ap.Addr().Unmap()) {
		return false
	}
	xff := req.Header["X-Forwarded-For"]
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

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r := h.r
	t := r.table.Load()
	lt := t.listeners[h.addr]
	if lt == nil {
		http.Error(w, "listener is being removed", http.StatusServiceUnavailable)
		return
	}
	d := lt.decide(req)
	if d.spoofed {
		r.metrics.spoofed.WithLabelValues(lt.name).Inc()
	}
	if d.route == nil {
		r.metrics.unmatched.WithLabelValues(lt.name).Inc()
		http.Error(w, "no route", http.StatusNotFound)
		return
	}
	if d.cookie != "" {
		w.Header().Add("Set-Cookie", d.cookie)
	}
	if len(d.route.mirrors) > 0 {
		r.mirror(d.route, req)
	}
	st := &reqState{up: d.up, client: req.Context()}
	ctx := context.WithValue(req.Context(), stateKey{}, st)
	if d.up.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.up.timeout)
		defer cancel()
	}
	defer func() {
		p := recover()
		status := st.status
		if st.client.Err() != nil && (p != nil || status == 0) {
			status = statusClientClosed
		} else if p != nil {
			status = http.StatusBadGateway // upstream broke off mid-response
		}
		reason := reasonNone
		if d.internal {
			reason = reasonInternal
		} else if st.ep != nil && st.ep.warming(d.up.warmup, r.now().UnixNano()) {
			reason = reasonWarmup
		}
		d.route.metrics[d.up].observe(req.Method, status, reason, time.Since(start).Seconds())
		if p != nil {
			panic(p)
		}
	}()
	h.proxy.ServeHTTP(w, req.WithContext(ctx))
}

// newProxy returns the reverse proxy shared by a listener: it keeps the Host header,
// sets X-Forwarded-For/-Proto/-Host, removes hop-by-hop headers, passes Upgrade
// (WebSocket) through, streams bodies and flushes streaming responses at once.
func (r *Router) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			if xff, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "upstream" // replaced by the endpoint the transport picks
			pr.Out.Host = pr.In.Host
		},
		Transport:    &upstreamTransport{r: r},
		BufferPool:   bufferPool{},
		ErrorHandler: r.proxyError,
		ErrorLog:     zap.NewStdLog(r.log.Named("proxy")),
	}
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	code := http.StatusBadGateway
	switch {
	case st != nil && st.client.Err() != nil:
		code = statusClientClosed
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(req.Context().Err(), context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, errNoEndpoint):
		code = http.StatusServiceUnavailable
	}
	if st != nil {
		st.status = code
	}
	if code != statusClientClosed {
		r.log.Debug("upstream error", zap.Int("status", code), zap.Error(err))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code)+"\n")
	}
}

// upstreamTransport picks an endpoint of the request's cluster, records passive health,
// and retries a failed connect once on another endpoint.
type upstreamTransport struct{ r *Router }

// replayBody lets a request whose body was never read be sent again after a connect
// failure; the transport's Close is ignored (the server closes the real body).
type replayBody struct {
	rc   io.ReadCloser
	read bool
}

func (b *replayBody) Read(p []byte) (int, error) { b.read = true; return b.rc.Read(p) }
func (b *replayBody) Close() error               { return nil }

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(stateKey{}).(*reqState)
	up := st.up
	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayBody{rc: req.Body}
	}
	var skip *endpoint
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		ep := up.pick(skip, t.r.now().UnixNano())
		if ep == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, errNoEndpoint
		}
		out := *req
		u := *req.URL
		u.Host = ep.addr
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		st.ep = ep
		resp, err := up.transport.RoundTrip(&out)
		if err != nil {
			if st.client.Err() == nil {
				ep.failure()
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" && (body == nil || !body.read) && req.Context().Err() == nil {
				skip, lastErr = ep, err
				continue
			}
			return nil, err
		}
		st.status = resp.StatusCode
		if resp.StatusCode >= 500 {
			ep.failure()
		} else {
			ep.success()
		}
		return resp, nil
	}
	return nil, lastErr
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// mirror sends a fire-and-forget copy of req to each matching mirror's cluster. Bodies up
// to MaxMirrorBody are buffered once (the original then reads the buffer); larger ones
// are not mirrored. Mirrors run detached from the client, bounded in number.
func (r *Router) mirror(ro *route, req *http.Request) {
	var body []byte
	var bodyOK, bodyRead bool
	for _, m := range ro.mirrors {
		if len(m.matches) > 0 {
			ok := false
			for i := range m.matches {
				if m.matches[i].match(req) {
					ok = true
					break
				}
			}
			if !ok {
				continue
			}
		}
		if !m.take() {
			continue
		}
		if !bodyRead {
			bodyRead = true
			body, bodyOK = r.bufferBody(req)
		}
		if !bodyOK {
			r.metrics.mirrorDrop.Inc()
			continue
		}
		select {
		case r.mirrorSem <- struct{}{}:
		default:
			r.metrics.mirrorDrop.Inc()
			continue
		}
		out := req.Clone(context.Background())
		out.RequestURI = ""
		out.Header.Del("Connection")
		out.Header.Del("Upgrade")
		out.Header.Set("X-Sluice-Mirror", "1")
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		} else {
			out.Body = nil
			out.ContentLength = 0
		}
		out.TransferEncoding = nil
		rc := ro.metrics[m.up]
		up := m.up
		r.bg.Add(1)
		go func() {
			defer func() { <-r.mirrorSem; r.bg.Done() }()
			r.sendMirror(up, rc, out)
		}()
	}
}

func (r *Router) bufferBody(req *http.Request) ([]byte, bool) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, true
	}
	if req.ContentLength < 0 || req.ContentLength > r.opts.MaxMirrorBody {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
	req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
	if err != nil {
		return nil, false
	}
	return b, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

func (r *Router) sendMirror(up *upstream, rc *rcMetrics, out *http.Request) {
	start := time.Now()
	timeout := up.timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out = out.WithContext(ctx)
	ep := up.pick(nil, r.now().UnixNano())
	status := http.StatusServiceUnavailable
	if ep != nil {
		out.URL.Scheme = "http"
		out.URL.Host = ep.addr
		resp, err := up.transport.RoundTrip(out)
		switch {
		case err == nil:
			status = resp.StatusCode
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		case errors.Is(err, context.DeadlineExceeded):
			status = http.StatusGatewayTimeout
		default:
			status = http.StatusBadGateway
		}
	}
	rc.observe(out.Method, status, reasonMirror, time.Since(start).Seconds())
}
