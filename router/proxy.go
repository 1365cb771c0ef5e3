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

// listenerHandler is the net/http front end of one bound address: it serves the
// requests the fast path hands over, HTTP/2 clients, and listeners the fast path does not
// serve, with the same policy (policy.go) and net/http's Transport as the transport.
// net/http refuses malformed heads itself (400, 431, 501, 505); on top of it this
// handler strips Upgrade unless it is a WebSocket upgrade (h2c is served as plain
// HTTP/1.1), refuses CONNECT, closes the connection after a chunked request (net/http
// lets Transfer-Encoding win over a Content-Length, which RFC 9112 §6.3 allows only if the
// connection is closed after) and after a request the fast path handed over, and applies
// the body and send timeouts.
type listenerHandler struct {
	r     *Router
	addr  string
	proxy *httputil.ReverseProxy
}

// reqState travels with the outbound request through the proxy and the transport.
type reqState struct {
	up     *upstream
	ep     *endpoint
	client context.Context // the inbound request's context, to tell 499 from 504
	body   *clientBody     // nil: no request body
	o      outcome         // the policy's outcome
	done   bool            // the transport produced o
}

type stateKey struct{}

var errNoEndpoint = errors.New("cluster has no endpoints")

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r := h.r
	lt := r.table.Load().listeners[h.addr]
	if lt == nil {
		http.Error(w, "listener is being removed", http.StatusServiceUnavailable)
		return
	}
	lim := &lt.limits
	ctl := http.NewResponseController(w)
	tw := &timedWriter{ResponseWriter: w, ctl: ctl, timeout: lim.send}
	tw.touch()
	if e := checkRequest(req); e != nil {
		r.metrics.clientError(lt.name, e.reason)
		if req.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		http.Error(tw, e.msg, e.status)
		return
	}
	if !isWebSocket(req) {
		req.Header.Del("Upgrade")
		req.Header.Del("HTTP2-Settings")
		if len(req.TransferEncoding) > 0 || req.Context().Value(oneShotKey{}) != nil {
			w.Header().Set("Connection", "close")
		}
	}
	in := routeInput{host: hostOnly(req.Host), path: requestPath(req), header: req.Header}
	if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
		in.peer = ap.Addr()
	}
	if lt.markerKey != nil {
		for k := range req.Header {
			if isMarkerName(lt.markerKey, k) {
				in.marker = true
			}
		}
	}
	d := lt.decide(&in)
	if d.spoofed {
		r.metrics.spoofed.WithLabelValues(lt.name).Inc()
		for k := range req.Header {
			if isMarkerName(lt.markerKey, k) {
				delete(req.Header, k)
			}
		}
	}
	if d.route == nil {
		r.metrics.unmatched.WithLabelValues(lt.name).Inc()
		http.Error(tw, "no route", http.StatusNotFound)
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
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		st.body = &clientBody{rc: req.Body, ctl: ctl, timeout: lim.body}
		out.Body = st.body
	}
	defer func() {
		p := recover()
		o := st.o
		switch {
		case p != nil && (st.client.Err() != nil || tw.err != nil), !st.done && st.client.Err() != nil:
			o = outcome{status: statusClientClosed, blame: blameClientGone}
		case p != nil:
			o = outcome{status: http.StatusBadGateway, blame: blameUpstream} // the upstream broke off mid-response
		}
		r.finish(lt, &d, st.ep, methodIndex(req.Method), &o, start)
		if p != nil {
			panic(p)
		}
	}()
	h.proxy.ServeHTTP(tw, out)
}

// checkRequest applies to a request net/http parsed the rules of the strict parser that
// net/http does not (those it cannot see, such as obs-fold or a repeated Content-Length,
// are listed in parse_fuzz_test.go).
func checkRequest(req *http.Request) *headError {
	switch {
	case req.Method == http.MethodConnect:
		return errConnect
	case req.ProtoMajor == 1 && req.ProtoMinor > 1:
		return errVersion
	case !validHost([]byte(req.Host)):
		return errHost
	case strings.IndexByte(req.RequestURI, '#') >= 0,
		req.RequestURI == "*" && req.Method != http.MethodOptions,
		req.URL.User != nil,
		req.URL.Scheme != "" && !strings.EqualFold(req.URL.Scheme, "http") && !strings.EqualFold(req.URL.Scheme, "https"):
		return errTarget
	}
	return nil
}

// isWebSocket reports a WebSocket upgrade request: HTTP/1.1, Connection: upgrade and
// exactly one Upgrade field, "websocket". Every other Upgrade is stripped.
func isWebSocket(req *http.Request) bool {
	up := req.Header["Upgrade"]
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") {
		return false
	}
	for _, v := range req.Header["Connection"] {
		if forEachToken([]byte(v), func([]byte) {}) && hasToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// hasToken reports whether a comma-separated list holds tok (any case).
func hasToken(v, tok string) bool {
	for len(v) > 0 {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// requestPath returns the path of the request target as sent (not decoded).
func requestPath(req *http.Request) string {
	if u := req.RequestURI; strings.HasPrefix(u, "/") {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			return u[:i]
		}
		return u
	}
	return req.URL.EscapedPath()
}

// timedWriter applies the send timeout: each write to the client must go through within
// it (the deadline moves at most every slack(timeout)).
type timedWriter struct {
	http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration
	wdl     lazyDeadline
	err     error // the first failed write: the client left or stopped reading
}

func (w *timedWriter) touch() {
	if t, move := w.wdl.due(time.Now(), w.timeout); move {
		w.ctl.SetWriteDeadline(t)
	}
}

// WriteHeader sends the status (and 1xx responses).
func (w *timedWriter) WriteHeader(code int) { w.touch(); w.ResponseWriter.WriteHeader(code) }

// Write writes body bytes.
func (w *timedWriter) Write(p []byte) (int, error) {
	w.touch()
	n, err := w.ResponseWriter.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// FlushError flushes (http.ResponseController uses it).
func (w *timedWriter) FlushError() error {
	w.touch()
	err := w.ctl.Flush()
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

// Unwrap gives http.ResponseController the underlying writer (for Hijack).
func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clientBody is the inbound request body as the transport reads it: under the body
// timeout, remembering whether it was read (a connect retry needs it unread) and the
// error reading it failed with (then the client is to blame). Close is ignored: the
// server closes the real body.
type clientBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration
	rdl     lazyDeadline
	read    bool
	err     error
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.read = true
	if t, move := b.rdl.due(time.Now(), b.timeout); move {
		b.ctl.SetReadDeadline(t)
	}
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *clientBody) Close() error { return nil }

// newProxy returns the reverse proxy shared by a listener: it keeps the Host header,
// sets X-Forwarded-For/-Proto/-Host, removes hop-by-hop fields, passes a WebSocket
// upgrade through, streams bodies and flushes streaming responses at once.
func (r *Router) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			for _, name := range hopByHop {
				switch name {
				case "Connection", "Upgrade": // ReverseProxy sets them back for a WebSocket only
				case "TE": // ReverseProxy passes "TE: trailers" on (gRPC needs it)
				default:
					pr.Out.Header.Del(name)
				}
			}
			if xff, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "upstream" // replaced by the endpoint the transport picks
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusSwitchingProtocols {
				for _, name := range hopByHop {
					resp.Header.Del(name)
				}
			}
			return nil
		},
		Transport:    &upstreamTransport{r: r},
		BufferPool:   bufferPool{},
		ErrorHandler: r.proxyError,
		ErrorLog:     zap.NewStdLog(r.log.Named("proxy")),
	}
}

// proxyError answers what the policy decided when the proxy failed.
func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		return
	}
	if !st.done || st.o.blame == blameNone {
		// The proxy failed outside the transport (e.g. a protocol switch nobody asked for).
		st.done, st.o = true, outcome{status: http.StatusBadGateway, blame: blameUpstream}
	}
	o := &st.o
	if o.blame == blameClientGone {
		return
	}
	r.log.Debug("upstream error", zap.Int("status", o.status), zap.Error(err))
	msg := http.StatusText(o.status)
	if o.clientErr != nil {
		msg = o.clientErr.msg
		if req.ProtoMajor == 1 { // on HTTP/2 it would end every stream of the connection
			w.Header().Set("Connection", "close")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(o.status)
	io.WriteString(w, msg+"\n")
}

// upstreamTransport carries the proxy's requests with the policy's send; net/http's
// Transport is the transport (it retries a stale reused connection itself when the
// request can be replayed).
type upstreamTransport struct{ r *Router }

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := req.Context().Value(stateKey{}).(*reqState)
	var resp *http.Response
	var lastErr error
	ep, o := st.up.send(t.r.now().UnixNano(), false, func(ep *endpoint, _ bool) outcome {
		out := *req
		u := *req.URL
		u.Host = ep.addr
		out.URL = &u
		st.ep = ep
		res, err := st.up.transport.RoundTrip(&out)
		if err != nil {
			lastErr = err
			return st.blame(err)
		}
		resp = res
		return outcome{status: res.StatusCode, answered: true}
	})
	st.ep, st.o, st.done = ep, o, true
	if o.blame == blameNone {
		return resp, nil
	}
	if lastErr == nil {
		lastErr = errNoEndpoint
	}
	return nil, lastErr
}

// blame classifies an error of net/http's Transport.
func (st *reqState) blame(err error) outcome {
	var op *net.OpError
	var ne net.Error
	switch {
	case st.body != nil && st.body.err != nil:
		e := errBodyMalformed
		switch {
		case isTimeout(st.body.err):
			e = errBodyTimedOut
		case errors.Is(st.body.err, io.ErrUnexpectedEOF):
			e = errBodyShort
		}
		return outcome{blame: blameClient, clientErr: e}
	case st.client.Err() != nil:
		return outcome{blame: blameClientGone}
	case errors.As(err, &op) && op.Op == "dial" && (st.body == nil || !st.body.read):
		return outcome{blame: blameConnect}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return outcome{blame: blameTimeout}
	}
	return outcome{blame: blameUpstream}
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
