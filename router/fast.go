package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fast path serves plain HTTP/1.1 keep-alive requests without net/http: it parses
// the request head itself, routes with the same decision as the net/http path, forwards
// the head and a Content-Length body to a pooled upstream connection, and streams the
// response back (Content-Length, chunked, or until close). Anything else — HTTP/1.0,
// chunked or Expect: 100-continue uploads, Upgrade/WebSocket, CONNECT, absolute-form
// targets, HTTP/2 (h2c) clients, malformed or oversized heads — and every listener whose
// routes mirror or use an h2c cluster, is handed, bytes intact, to the net/http path on
// the same connection, which then owns it.

// fastListener accepts connections and serves them on the fast path, handing
// connections that need net/http to handoff.
type fastListener struct {
	r       *Router
	addr    string // configured address (table key)
	ln      net.Listener
	handoff *chanListener

	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

// chanListener is the net.Listener the net/http server serves: connections the fast
// path hands over.
type chanListener struct {
	ch     chan net.Conn
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{ch: make(chan net.Conn), addr: addr, closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

func (l *chanListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

// replayConn replays bytes the fast path already read before reading the connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (fl *fastListener) serve() {
	for {
		c, err := fl.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		fc := &fastConn{fl: fl, c: c}
		fl.mu.Lock()
		if fl.closing.Load() {
			fl.mu.Unlock()
			c.Close()
			return
		}
		fl.conns[fc] = struct{}{}
		fl.wg.Add(1)
		fl.mu.Unlock()
		go fc.serve()
	}
}

// shutdown stops accepting, wakes idle connections so they close, and waits for
// in-flight requests until done is closed (then closes what is left).
func (fl *fastListener) shutdown(done <-chan struct{}) {
	fl.ln.Close()
	fl.mu.Lock()
	fl.closing.Store(true)
	for fc := range fl.conns {
		if !fc.active.Load() {
			fc.c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	fl.mu.Unlock()
	finished := make(chan struct{})
	go func() { fl.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
		fl.mu.Lock()
		for fc := range fl.conns {
			fc.c.Close()
		}
		fl.mu.Unlock()
		<-finished
	}
}

// fastConn is one client connection on the fast path.
type fastConn struct {
	fl     *fastListener
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	active atomic.Bool

	head  []byte // raw request head
	lines [][2]int
	rhead []byte // response head being built
	req   http.Request
	url   url.URL
	peer  string
	ip    []byte

	deadlineAt time.Time // when the idle read deadline was last set
	lastEp     *endpoint // endpoint that served the current request
	rheadEmpty bool      // nothing of the response head was read yet
}

var (
	crlf          = []byte("\r\n")
	errHandoff    = errors.New("handoff")
	errHeadTooBig = errors.New("head too big")
)

func (fc *fastConn) serve() {
	fl := fc.fl
	handedOff := false
	defer func() {
		if !handedOff {
			fc.c.Close()
		}
		fl.mu.Lock()
		delete(fl.conns, fc)
		fl.mu.Unlock()
		fl.wg.Done()
	}()
	fc.br = bufio.NewReaderSize(fc.c, 8<<10)
	fc.bw = bufio.NewWriterSize(fc.c, 8<<10)
	fc.peer = fc.c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(fc.peer); err == nil {
		fc.ip = []byte(host)
	}
	fc.req.Header = make(http.Header, 8)
	fc.req.URL = &fc.url
	fc.req.RemoteAddr = fc.peer
	first := true
	for {
		if fl.closing.Load() {
			return
		}
		idle := 120 * time.Second
		if lt := fl.r.table.Load().listeners[fl.addr]; lt != nil && lt.limits.IdleTimeout > 0 {
			idle = lt.limits.IdleTimeout
		}
		// Refresh the idle deadline at most once a second (or an eighth of the idle
		// timeout): moving a timer per request costs more than a slightly short timeout.
		if now := time.Now(); now.Sub(fc.deadlineAt) > min(time.Second, idle/8) {
			fc.c.SetReadDeadline(now.Add(idle))
			fc.deadlineAt = now
			if fl.closing.Load() { // shutdown's wake-up deadline may just have been overwritten
				return
			}
		}
		if first {
			// HTTP/2 prior knowledge (gRPC) goes to net/http.
			if p, err := fc.br.Peek(3); err == nil && string(p) == "PRI" {
				fc.handoff()
				handedOff = true
				return
			} else if err != nil {
				return
			}
			first = false
		}
		if _, err := fc.br.Peek(1); err != nil {
			return // closed, idle timeout or shutdown
		}
		fc.active.Store(true)
		t := fl.r.table.Load() // the table current when the request arrives
		lt := t.listeners[fl.addr]
		maxHead := 1 << 20
		if lt != nil && lt.limits.MaxHeaderBytes > 0 {
			maxHead = lt.limits.MaxHeaderBytes
		}
		keep, err := fc.one(t, lt, maxHead)
		fc.active.Store(false)
		if err == errHandoff {
			fc.handoff()
			handedOff = true
			return
		}
		if err != nil || !keep {
			fc.bw.Flush()
			return
		}
		if fc.br.Buffered() == 0 {
			if err := fc.bw.Flush(); err != nil {
				return
			}
		}
	}
}

// handoff gives the connection, with the bytes read so far, to the net/http server.
func (fc *fastConn) handoff() {
	fc.c.SetReadDeadline(time.Time{})
	head := append([]byte(nil), fc.head...)
	var rest []byte
	if n := fc.br.Buffered(); n > 0 {
		rest, _ = fc.br.Peek(n)
		rest = append([]byte(nil), rest...)
	}
	rc := &replayConn{Conn: fc.c, r: io.MultiReader(bytes.NewReader(head), bytes.NewReader(rest), fc.c)}
	fc.fl.handoff.give(rc)
}

// readHead reads the request head (up to and including the blank line) into fc.head.
func (fc *fastConn) readHead(max int) error {
	fc.head = fc.head[:0]
	fc.lines = fc.lines[:0]
	for {
		start := len(fc.head)
		for {
			b, err := fc.br.ReadSlice('\n')
			fc.head = append(fc.head, b...)
			if len(fc.head) > max {
				return errHeadTooBig
			}
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				return err
			}
		}
		line := fc.head[start:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return errHandoff // bare LF: let net/http judge it
		}
		if len(line) == 2 {
			return nil
		}
		fc.lines = append(fc.lines, [2]int{start, len(fc.head) - 2})
	}
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 {
			return false
		}
		if c != d && (c|0x20 < 'a' || c|0x20 > 'z') {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if equalFold(trimOWS(t), tok) {
			return true
		}
	}
	return false
}

// request facts parsed from the head.
type fastReq struct {
	method     []byte
	uri        []byte
	host       []byte
	length     int64
	close      bool
	connTokens bool // Connection lists header names other than close/keep-alive
	midx       int
}

// one serves a single request. It returns whether the connection stays open, or
// errHandoff before anything was answered.
func (fc *fastConn) one(t *table, lt *listenerTable, maxHead int) (bool, error) {
	if err := fc.readHead(maxHead); err != nil {
		if err == errHandoff || err == errHeadTooBig {
			return false, errHandoff
		}
		return false, err
	}
	start := time.Now()
	if lt == nil || !lt.fast || len(fc.lines) == 0 {
		return false, errHandoff
	}
	var q fastReq
	q.length = 0
	// Request line.
	rl := fc.head[:fc.lines[0][1]]
	sp1 := bytes.IndexByte(rl, ' ')
	if sp1 <= 0 {
		return false, errHandoff
	}
	rest := rl[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return false, errHandoff
	}
	q.method, q.uri = rl[:sp1], rest[:sp2]
	if q.uri[0] != '/' || string(q.method) == "CONNECT" {
		return false, errHandoff
	}
	q.midx = methodIndexB(q.method)
	h := fc.req.Header
	clear(h)
	hostSeen, lenSeen := false, false
	for _, ln := range fc.lines[1:] {
		line := fc.head[ln[0]:ln[1]]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return false, errHandoff
		}
		name, val := line[:colon], trimOWS(line[colon+1:])
		switch {
		case equalFold(name, "Host"):
			if hostSeen {
				return false, errHandoff
			}
			hostSeen = true
			q.host = val
		case equalFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 || lenSeen {
				return false, errHandoff
			}
			lenSeen = true
			q.length = n
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Expect"), equalFold(name, "Upgrade"):
			return false, errHandoff
		case equalFold(name, "Connection"):
			if hasToken(val, "close") {
				q.close = true
			}
			if hasToken(val, "upgrade") {
				return false, errHandoff
			}
			for _, tok := range bytes.Split(val, []byte(",")) {
				tok = trimOWS(tok)
				if len(tok) > 0 && !equalFold(tok, "close") && !equalFold(tok, "keep-alive") {
					q.connTokens = true
				}
			}
		}
		for _, k := range lt.interesting {
			if equalFold(name, k) {
				h[k] = append(h[k], string(val))
			}
		}
	}
	if !hostSeen || q.connTokens {
		return false, errHandoff
	}
	path := q.uri
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	// Keep-alive clients mostly repeat host and path: reuse the strings when equal.
	if string(path) != fc.url.Path {
		fc.url.Path = string(path)
	}
	if string(q.host) != fc.req.Host {
		fc.req.Host = string(q.host)
	}
	if q.length > 0 {
		// A body may take longer than the idle timeout to arrive.
		fc.c.SetReadDeadline(time.Time{})
		fc.deadlineAt = time.Time{}
	}
	if q.midx < len(methods)-1 {
		fc.req.Method = methods[q.midx]
	} else {
		fc.req.Method = string(q.method)
	}
	r := fc.fl.r
	d := lt.decide(&fc.req)
	if d.spoofed {
		r.metrics.spoofed.WithLabelValues(lt.name).Inc()
	}
	keep := !q.close
	if d.route == nil {
		r.metrics.unmatched.WithLabelValues(lt.name).Inc()
		if !fc.discardBody(q.length) {
			keep = false
		}
		fc.writeSimple(http.StatusNotFound, "no route\n", keep)
		return keep, nil
	}
	status, keepUp, err := fc.forward(lt, &q, &d)
	reason := reasonNone
	if d.internal {
		reason = reasonInternal
	} else if fc.lastEp != nil && fc.lastEp.warming(d.up.warmup, r.now().UnixNano()) {
		reason = reasonWarmup
	}
	d.route.metrics[d.up].observeIdx(q.midx, status, reason, time.Since(start).Seconds())
	if err != nil || !keepUp {
		return false, nil
	}
	return keep, nil
}

func methodIndexB(b []byte) int {
	switch string(b) {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return 9
}

func (fc *fastConn) discardBody(n int64) bool {
	if n == 0 {
		return true
	}
	_, err := io.CopyN(io.Discard, fc.br, n)
	return err == nil
}

func (fc *fastConn) writeSimple(code int, body string, keep bool) {
	bw := fc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	if !keep {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
}

// isHopByHop reports request/response headers a proxy must not forward.
func isHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "TE")
	case 7:
		return equalFold(name, "Trailer") || equalFold(name, "Upgrade")
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	case 19:
		return equalFold(name, "Proxy-Authenticate") || equalFold(name, "Proxy-Authorization")
	}
	return false
}

// upConn is a pooled upstream connection.
type upConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time
}

// connPool holds an endpoint's idle upstream connections (most recently used first).
type connPool struct {
	mu   sync.Mutex
	idle []*upConn
}

func (p *connPool) get() *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if time.Since(uc.used) < 60*time.Second {
			return uc
		}
		uc.c.Close()
	}
	return nil
}

func (p *connPool) put(uc *upConn, max int) {
	uc.used = time.Now()
	p.mu.Lock()
	if len(p.idle) < max {
		p.idle = append(p.idle, uc)
		uc = nil
	}
	p.mu.Unlock()
	if uc != nil {
		uc.c.Close()
	}
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

func (r *Router) dial(u *upstream, ep *endpoint) (*upConn, error) {
	ct := u.cfg.ConnectTimeout
	if ct <= 0 {
		ct = 5 * time.Second
	}
	c, err := net.DialTimeout("tcp", ep.addr, ct)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(30 * time.Second)
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 8<<10)}, nil
}

var errStale = errors.New("stale pooled connection")

// forward sends the request to an endpoint of d.up and streams the answer back. It
// returns the status recorded and whether the client connection can be kept.
func (fc *fastConn) forward(lt *listenerTable, q *fastReq, d *decision) (int, bool, error) {
	r := fc.fl.r
	up := d.up
	fc.lastEp = nil
	var skip *endpoint
	now := r.now().UnixNano()
	var uc *upConn
	var ep *endpoint
	for attempt := 0; ; attempt++ {
		ep = up.pick(skip, now)
		if ep == nil {
			if !fc.discardBody(q.length) {
				return http.StatusServiceUnavailable, false, nil
			}
			code := http.StatusServiceUnavailable
			if skip != nil {
				code = http.StatusBadGateway
			}
			fc.writeSimple(code, http.StatusText(code)+"\n", !q.close)
			return code, true, nil
		}
		fc.lastEp = ep
		uc = ep.pool.get()
		fresh := uc == nil
		if fresh {
			var err error
			uc, err = r.dial(up, ep)
			if err != nil {
				ep.failure()
				if attempt == 0 {
					skip = ep
					continue
				}
				if !fc.discardBody(q.length) {
					return http.StatusBadGateway, false, nil
				}
				fc.writeSimple(http.StatusBadGateway, "Bad Gateway\n", !q.close)
				return http.StatusBadGateway, true, nil
			}
		}
		if up.timeout > 0 {
			uc.c.SetDeadline(time.Now().Add(up.timeout))
		}
		status, keepUp, keepClient, err := fc.exchange(lt, q, d, uc, fresh)
		if err == errStale && attempt == 0 {
			uc.c.Close()
			continue // the pooled connection had been closed by the upstream: once more, fresh
		}
		if err != nil {
			uc.c.Close()
			return fc.failStatus(ep, err, status)
		}
		if status >= 500 {
			ep.failure()
		} else {
			ep.success()
		}
		if keepUp {
			if up.timeout > 0 {
				uc.c.SetDeadline(time.Time{})
			}
			ep.pool.put(uc, r.opts.MaxIdleConnsPerHost)
		} else {
			uc.c.Close()
		}
		return status, keepClient, nil
	}
}

// exchange errors, saying which side failed and whether the client saw anything.
type clientErr struct{ error }
type upstreamErr struct {
	error
	answered bool // response bytes already went to the client
}

func (e clientErr) Unwrap() error   { return e.error }
func (e upstreamErr) Unwrap() error { return e.error }

func (fc *fastConn) failStatus(ep *endpoint, err error, status int) (int, bool, error) {
	var ce clientErr
	if errors.As(err, &ce) {
		return statusClientClosed, false, err
	}
	var ue upstreamErr
	errors.As(err, &ue)
	code := http.StatusBadGateway
	if errors.Is(err, os.ErrDeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	ep.failure()
	if ue.answered {
		return code, false, err // the client got a truncated answer; drop its connection
	}
	fc.writeSimple(code, http.StatusText(code)+"\n", false)
	return code, false, nil
}

// exchange writes the request to uc and copies the response to the client.
func (fc *fastConn) exchange(lt *listenerTable, q *fastReq, d *decision, uc *upConn, fresh bool) (status int, keepUp, keepClient bool, err error) {
	start := time.Now()
	reused := !fresh
	bw := uc.bw
	// Request line and headers.
	bw.Write(fc.head[:fc.lines[0][1]])
	bw.Write(crlf)
	var xff []byte
	for _, ln := range fc.lines[1:] {
		line := fc.head[ln[0]:ln[1]]
		colon := bytes.IndexByte(line, ':')
		name := line[:colon]
		if isHopByHop(name) {
			continue
		}
		switch {
		case equalFold(name, "X-Forwarded-For"):
			v := trimOWS(line[colon+1:])
			if len(xff) > 0 {
				xff = append(xff, ", "...)
			}
			xff = append(xff, v...)
			continue
		case equalFold(name, "X-Forwarded-Host"), equalFold(name, "X-Forwarded-Proto"), equalFold(name, "Forwarded"):
			continue
		}
		if d.spoofed && isMarker(lt, name) {
			continue
		}
		bw.Write(line)
		bw.Write(crlf)
	}
	bw.WriteString("X-Forwarded-For: ")
	if len(xff) > 0 {
		bw.Write(xff)
		bw.WriteString(", ")
	}
	bw.Write(fc.ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.Write(q.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	bodySent := false
	if q.length > 0 {
		if err := bw.Flush(); err != nil {
			if reused {
				return 0, false, false, errStale
			}
			return 0, false, false, upstreamErr{error: err}
		}
		bodySent = true
		if _, err := io.CopyN(bw, fc.br, q.length); err != nil {
			// A failed read is the client's; a failed write the upstream's.
			if fc.br.Buffered() == 0 {
				return 0, false, false, clientErr{err}
			}
			return 0, false, false, upstreamErr{error: err}
		}
	}
	if err := bw.Flush(); err != nil {
		if reused && !bodySent {
			return 0, false, false, errStale
		}
		return 0, false, false, upstreamErr{error: err}
	}
	// Response head.
	head := q.method
	isHead := string(head) == "HEAD"
	for {
		status, keepUp, length, chunked, err := fc.readResponseHead(uc.br, d)
		if err != nil {
			if reused && !bodySent && fc.rheadEmpty && !errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, false, false, errStale
			}
			return 0, false, false, upstreamErr{error: err}
		}
		if status >= 100 && status < 200 {
			// Informational (103 Early Hints): forward and read the final answer.
			if _, err := fc.bw.Write(fc.rhead); err != nil {
				return status, false, false, clientErr{err}
			}
			continue
		}
		keepClient = !q.close
		if time.Since(start) > slowRequest && fc.clientGone() {
			return statusClientClosed, false, false, clientErr{errClientGone}
		}
		noBody := isHead || status == 204 || status == 304
		untilClose := !noBody && !chunked && length < 0
		if untilClose {
			keepUp, keepClient = false, false
		}
		if !keepClient {
			fc.rhead = append(fc.rhead[:len(fc.rhead)-2], "Connection: close\r\n\r\n"...)
		}
		if _, err := fc.bw.Write(fc.rhead); err != nil {
			return status, false, false, clientErr{err}
		}
		switch {
		case noBody:
		case chunked:
			if err := fc.copyChunked(uc.br); err != nil {
				return status, false, false, err
			}
		case length >= 0:
			if err := fc.copyN(uc.br, length); err != nil {
				return status, false, false, err
			}
		default:
			if err := fc.copyUntilEOF(uc.br); err != nil {
				return status, false, false, err
			}
		}
		return status, keepUp, keepClient, nil
	}
}

// slowRequest: after waiting this long for an upstream, check whether the client hung
// up before answering (a write to a closed socket often succeeds, so the hang-up would
// otherwise go unnoticed and be recorded as the upstream's status rather than 499).
const slowRequest = 20 * time.Millisecond

var errClientGone = errors.New("client closed the connection")

// clientGone reports whether the client closed its side: a non-blocking MSG_PEEK read
// sees EOF or an error (pipelined bytes or nothing yet mean it is still there).
func (fc *fastConn) clientGone() bool {
	if fc.br.Buffered() > 0 {
		return false
	}
	sc, ok := fc.c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err != nil && err != syscall.EAGAIN && err != syscall.EINTR
		return true
	})
	return gone
}

func isMarker(lt *listenerTable, name []byte) bool {
	for _, k := range lt.markerKey {
		if equalFold(name, k) {
			return true
		}
	}
	return false
}

// readResponseHead reads and filters the upstream's response head into fc.rhead.
func (fc *fastConn) readResponseHead(br *bufio.Reader, d *decision) (status int, keepUp bool, length int64, chunked bool, err error) {
	fc.rhead = fc.rhead[:0]
	fc.rheadEmpty = true
	keepUp = true
	length = -1
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errors.New("response header line too long")
			}
			return 0, false, 0, false, err
		}
		fc.rheadEmpty = false
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return 0, false, 0, false, errors.New("malformed response head")
		}
		body := line[:len(line)-2]
		if first {
			first = false
			if len(body) < 12 || string(body[:9]) != "HTTP/1.1 " && string(body[:9]) != "HTTP/1.0 " {
				return 0, false, 0, false, errors.New("malformed status line")
			}
			status, err = strconv.Atoi(string(body[9:12]))
			if err != nil {
				return 0, false, 0, false, errors.New("malformed status code")
			}
			if body[7] == '0' {
				keepUp = false
			}
			fc.rhead = append(fc.rhead, "HTTP/1.1"...)
			fc.rhead = append(fc.rhead, body[8:]...)
			fc.rhead = append(fc.rhead, crlf...)
			continue
		}
		if len(body) == 0 {
			break
		}
		colon := bytes.IndexByte(body, ':')
		if colon <= 0 {
			return 0, false, 0, false, errors.New("malformed response header")
		}
		name, val := body[:colon], trimOWS(body[colon+1:])
		switch {
		case equalFold(name, "Connection"):
			if hasToken(val, "close") {
				keepUp = false
			} else if hasToken(val, "keep-alive") && status != 0 {
				keepUp = true
			}
			continue
		case equalFold(name, "Transfer-Encoding"):
			if !equalFold(val, "chunked") {
				return 0, false, 0, false, errors.New("unsupported transfer-encoding")
			}
			chunked = true
			fc.rhead = append(fc.rhead, "Transfer-Encoding: chunked\r\n"...)
			continue
		case equalFold(name, "Content-Length"):
			n, perr := strconv.ParseInt(string(val), 10, 64)
			if perr != nil || n < 0 {
				return 0, false, 0, false, errors.New("bad content-length")
			}
			length = n
		case isHopByHop(name):
			continue
		}
		fc.rhead = append(fc.rhead, line...)
	}
	if status >= 200 && d.cookie != "" {
		fc.rhead = append(fc.rhead, "Set-Cookie: "...)
		fc.rhead = append(fc.rhead, d.cookie...)
		fc.rhead = append(fc.rhead, crlf...)
	}
	fc.rhead = append(fc.rhead, crlf...)
	if chunked {
		length = -1
	}
	return status, keepUp, length, chunked, nil
}

func (fc *fastConn) copyN(src *bufio.Reader, n int64) error {
	for n > 0 {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				return upstreamErr{error: err, answered: true}
			}
		}
		b, _ := src.Peek(int(min(n, int64(src.Buffered()))))
		if _, werr := fc.bw.Write(b); werr != nil {
			return clientErr{werr}
		}
		src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// copyChunked forwards a chunked body as is, flushing after each chunk.
func (fc *fastConn) copyChunked(src *bufio.Reader) error {
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return upstreamErr{error: err, answered: true}
		}
		size := line
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, perr := strconv.ParseInt(string(trimOWS(bytes.TrimRight(size, "\r\n"))), 16, 64)
		if perr != nil || n < 0 {
			return upstreamErr{error: errors.New("bad chunk size"), answered: true}
		}
		if _, err := fc.bw.Write(line); err != nil {
			return clientErr{err}
		}
		if n == 0 {
			// Trailers until the blank line.
			for {
				t, err := src.ReadSlice('\n')
				if err != nil {
					return upstreamErr{error: err, answered: true}
				}
				if _, err := fc.bw.Write(t); err != nil {
					return clientErr{err}
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if err := fc.copyN(src, n+2); err != nil {
			return err
		}
		if src.Buffered() == 0 {
			if err := fc.bw.Flush(); err != nil {
				return clientErr{err}
			}
		}
	}
}

func (fc *fastConn) copyUntilEOF(src *bufio.Reader) error {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			if _, werr := fc.bw.Write((*buf)[:n]); werr != nil {
				return clientErr{werr}
			}
			if err := fc.bw.Flush(); err != nil {
				return clientErr{err}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return upstreamErr{error: err, answered: true}
		}
	}
}
