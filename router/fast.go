package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path is the router's HTTP/1.1 front end. It reads every request head of a
// connection with the strict parser (parse.go) and refuses what that parser refuses,
// answering the status and closing. Plain requests — origin-form, HTTP/1.1, no body or a
// Content-Length body — it serves itself: it routes them with the shared policy
// (policy.go) and carries them over pooled upstream connections (upstream.go).
//
// A request it accepted but does not serve itself (HTTP/1.0, a chunked body, Expect:
// 100-continue with a body, a WebSocket upgrade, an absolute-form target) is handed, with
// its head and the bytes after it, to net/http on the same connection, after every
// response the client is owed has been written, in order. net/http then serves that one
// request and closes the connection (unless it tunnels a WebSocket), so no head on a fast
// listener is ever read by a parser other than the strict one. Listeners that need
// net/http for every request (a mirror route, an h2c cluster, Options.DisableFastPath)
// are handed to it after their first head passed the strict parser, and HTTP/2 clients
// (prior knowledge) before anything is read.
//
// Timeouts, like nginx's: idle between requests (limits.idleTimeout), a whole head from
// its first byte (limits.readTimeout, 408), between two reads of a body
// (limits.bodyTimeout, 408) and between two writes to a client that does not read
// (limits.sendTimeout). Deadlines are moved at most once a second (or an eighth of the
// timeout), so a timeout may fire up to that much early.

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

// Accept returns the next connection handed over.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (l *chanListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// Addr is the address of the listener the connections came from.
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
	// oneShot: net/http serves the one request the fast path checked, then closes.
	oneShot bool
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type oneShotKey struct{}

// handedOffContext is the net/http server's ConnContext: it marks the requests of a
// one-shot connection.
func handedOffContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok && rc.oneShot {
		return context.WithValue(ctx, oneShotKey{}, true)
	}
	return ctx
}

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

	tbl *table         // the table lt was taken from
	lt  *listenerTable // this connection's listener in tbl

	// head is the raw request head: in fc.br's buffer, still unread, when headInBuf (it
	// stays valid until fc.br reads again), else a copy.
	head      []byte
	headInBuf bool
	headBuf   []byte // where heads that were not buffered whole are read
	h         reqHead
	in        routeInput
	peer      netip.Addr
	ip        []byte // peer address, for X-Forwarded-For

	rawHost, rawPath string // last Host and path seen (their strings are reused)

	rdl, wdl lazyDeadline // client read and write deadlines
	now      time.Time    // the latest clock reading (a request's start or end)

	// The request body: body holds it when it was already buffered whole (it can then
	// be sent again); bodyLeft counts the bytes not yet read from the client.
	body     []byte
	bodyLeft int64

	xff   []byte
	uhead []byte        // upstream response head as read
	rhead []byte        // response head for the client
	rf    []headerField // upstream response fields

	hangup hangupWatch // a client leaving while its answer is awaited
}

// handoffKind says whether and how a connection goes to net/http.
type handoffKind uint8

const (
	handNone    handoffKind = iota
	handOneShot             // net/http serves the checked request, then closes
	handKeep                // net/http serves the connection from now on
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
	if ap, err := netip.ParseAddrPort(fc.c.RemoteAddr().String()); err == nil {
		fc.peer = ap.Addr()
		fc.ip = []byte(ap.Addr().Unmap().String())
	}
	fc.in.header = make(http.Header, 8)
	fc.in.sticky = &stickyMemo{}
	for first := true; ; first = false {
		if fl.closing.Load() {
			return
		}
		lt := fc.listener()
		if lt == nil {
			return // the listener is being removed
		}
		if fc.br.Buffered() == 0 {
			if fc.now.IsZero() {
				fc.now = time.Now()
			}
			fc.readBy(fc.now, lt.limits.idle)
			if fl.closing.Load() { // shutdown's wake-up deadline may just have been overwritten
				return
			}
		}
		if first {
			// HTTP/2 prior knowledge (gRPC) goes to net/http.
			if p, err := fc.br.Peek(3); err == nil && string(p) == "PRI" {
				fc.handoff(handKeep)
				handedOff = true
				return
			} else if err != nil {
				return
			}
		} else if _, err := fc.br.Peek(1); err != nil {
			return // closed, idle timeout or shutdown
		}
		if lt = fc.listener(); lt == nil { // the table current when the request arrived
			return
		}
		fc.active.Store(true)
		keep, hand := fc.one(lt)
		fc.active.Store(false)
		if hand != handNone {
			fc.writeBy(time.Now(), lt.limits.send)
			if fc.bw.Flush() != nil {
				return
			}
			fc.handoff(hand)
			handedOff = true
			return
		}
		if !keep {
			if fc.bw.Flush() == nil {
				fc.lingerClose()
			}
			return
		}
		if fc.br.Buffered() == 0 {
			if err := fc.bw.Flush(); err != nil {
				return
			}
		}
	}
}

// lingerTime bounds how long lingerClose reads what a client still sends after the last
// response (nginx: lingering_close, lingering_time).
const lingerTime = 2 * time.Second

// lingerClose ends a connection whose last response was written while the client may
// still be sending (a refused head, a body not read): closing at once would answer the
// client's next bytes with a reset: a client still writing (a large head or body) then
// fails on its write and never reads the response. So it sends FIN first, then reads and
// discards until the client closes or lingerTime passes, as nginx's lingering close
// does; the caller closes.
func (fc *fastConn) lingerClose() {
	cw, ok := fc.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	fc.c.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, fc.c)
}

// listener returns the current table's listener of this connection (nil: removed).
func (fc *fastConn) listener() *listenerTable {
	if t := fc.fl.r.table.Load(); t != fc.tbl {
		fc.tbl, fc.lt = t, t.listeners[fc.fl.addr]
	}
	return fc.lt
}

// handoff gives the connection, with the bytes read so far, to the net/http server.
func (fc *fastConn) handoff(kind handoffKind) {
	fc.c.SetDeadline(time.Time{})
	var head []byte
	if !fc.headInBuf { // else the head is still unread in fc.br
		head = append(head, fc.head...)
	}
	var rest []byte
	if n := fc.br.Buffered(); n > 0 {
		rest, _ = fc.br.Peek(n)
		rest = append([]byte(nil), rest...)
	}
	rc := &replayConn{Conn: fc.c, r: io.MultiReader(bytes.NewReader(head), bytes.NewReader(rest), fc.c), oneShot: kind == handOneShot}
	fc.fl.handoff.give(rc)
}

// slack is how early a deadline of d may fire: moving a runtime timer on every request
// costs more than that.
func slack(d time.Duration) time.Duration { return min(time.Second, d/8) }

// lazyDeadline is the deadline last set on a connection. It moves only when it would be
// off by more than slack.
type lazyDeadline struct{ at time.Time }

// due returns now+d and true when the deadline must move there, false when the one set is
// within slack(d) before it.
func (l *lazyDeadline) due(now time.Time, d time.Duration) (time.Time, bool) {
	want := now.Add(d)
	if !l.at.After(want) && want.Sub(l.at) <= slack(d) {
		return want, false
	}
	l.at = want
	return want, true
}

// readBy makes the client read deadline now+d, give or take slack(d).
func (fc *fastConn) readBy(now time.Time, d time.Duration) {
	if t, move := fc.rdl.due(now, d); move {
		fc.c.SetReadDeadline(t)
	}
}

// writeBy makes the client write deadline now+d, give or take slack(d).
func (fc *fastConn) writeBy(now time.Time, d time.Duration) {
	if t, move := fc.wdl.due(now, d); move {
		fc.c.SetWriteDeadline(t)
	}
}

// nextHead returns the next request head. When it is buffered whole (as usual) it is
// returned in place, still unread (fc.headInBuf); otherwise it is read into a copy under
// the header timeout.
func (fc *fastConn) nextHead(lim *limits, start time.Time) ([]byte, error) {
	fc.headInBuf = false
	if head, ok := bufferedHead(fc.br, lim.maxHead); ok {
		fc.head, fc.headInBuf = head, true
		return head, nil
	}
	fc.readBy(start, lim.header)
	head, err := readHead(fc.br, fc.headBuf, lim.maxHead)
	fc.head, fc.headBuf = head, head
	return head, err
}

// bufferedHead returns the head at the start of br's buffer, unread, when it is there
// whole (up to its empty line, at most max bytes) and does not start with an empty line;
// readHead reads the same bytes.
func bufferedHead(br *bufio.Reader, max int) ([]byte, bool) {
	b, _ := br.Peek(br.Buffered())
	if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
		return nil, false
	}
	for i := 0; i < len(b) && i < max; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			i++
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			i += 2
		default:
			continue
		}
		if i > max {
			break
		}
		return b[:i], true
	}
	return nil, false
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// one serves a single request. It returns whether the connection stays open, or how it
// is to be handed to net/http (then nothing of this request was answered yet).
func (fc *fastConn) one(lt *listenerTable) (keep bool, hand handoffKind) {
	start := time.Now()
	fc.now = start
	lim := &lt.limits
	head, err := fc.nextHead(lim, start)
	if err != nil {
		switch {
		case err == errHeadTooLarge:
			fc.refuse(lt, errHeadTooLarge)
		case len(head) > 0 && isTimeout(err):
			fc.refuse(lt, errHeadTimedOut)
		}
		return false, handNone
	}
	h := &fc.h
	if herr := parseHead(head, h); herr != nil {
		fc.refuse(lt, herr)
		return false, handNone
	}
	switch {
	case !lt.fast:
		return false, handKeep
	case h.minor == '0', h.chunked, h.expect && h.length > 0, h.websocket, h.absolute:
		return false, handOneShot
	}
	if fc.headInBuf {
		fc.br.Discard(len(head)) // h's slices stay valid until fc.br reads again
	}
	r := fc.fl.r
	d := lt.decide(fc.routeInput(lt))
	if d.spoofed {
		r.metrics.spoofed.WithLabelValues(lt.name).Inc()
	}
	keep = !h.close
	if d.route == nil {
		r.metrics.unmatched.WithLabelValues(lt.name).Inc()
		fc.bodyLeft = max(h.length, 0)
		if !fc.skipBody(lim) {
			keep = false
		}
		fc.writeSimple(lim, http.StatusNotFound, "no route\n", keep)
		return keep, handNone
	}
	return fc.proxy(lt, &d, start), handNone
}

// routeInput fills what decide reads from the parsed head.
func (fc *fastConn) routeInput(lt *listenerTable) *routeInput {
	h, in := &fc.h, &fc.in
	// Keep-alive clients mostly repeat host and path: reuse the strings when equal.
	if string(h.host) != fc.rawHost {
		fc.rawHost = string(h.host)
		in.host = hostOnly(fc.rawHost)
	}
	path := h.target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if string(path) != fc.rawPath {
		fc.rawPath = string(path)
	}
	in.path = fc.rawPath
	in.peer = fc.peer
	in.marker = false
	hdr := in.header
	clear(hdr)
	for _, f := range h.fields {
		if lt.markerKey != nil && isMarkerName(lt.markerKey, f.name) {
			in.marker = true
		}
		for _, k := range lt.interesting {
			if equalFold(f.name, k) {
				hdr[k] = append(hdr[k], string(f.value))
			}
		}
	}
	return in
}

// refuse answers a request the router will not serve because of the client, counts it,
// and closes the connection after.
func (fc *fastConn) refuse(lt *listenerTable, e *headError) {
	fc.fl.r.metrics.clientError(lt.name, e.reason)
	fc.writeSimple(&lt.limits, e.status, e.msg+"\n", false)
}

// proxy carries the request to the decided cluster with the shared policy and records
// it. It returns whether the client connection stays open.
func (fc *fastConn) proxy(lt *listenerTable, d *decision, start time.Time) bool {
	h := &fc.h
	r := fc.fl.r
	fc.body, fc.bodyLeft = nil, max(h.length, 0)
	if h.length > 0 && int64(fc.br.Buffered()) >= h.length {
		fc.body, _ = fc.br.Peek(int(h.length))
	}
	midx := methodIndexB(h.method)
	method := methods[midx]
	replayable := midx < len(methods)-1 && idempotent(method) && (h.length <= 0 || fc.body != nil)
	ep, o := d.up.send(r.nanos(start), replayable, func(ep *endpoint, fresh bool) outcome {
		return fc.attempt(lt, d, ep, fresh, replayable, start)
	})
	if fc.body != nil {
		fc.br.Discard(len(fc.body))
		fc.body, fc.bodyLeft = nil, 0
	}
	if !o.answered && o.blame != blameNone && o.blame != blameClientGone {
		o.keepClient = o.blame != blameClient && !h.close && fc.bodyLeft == 0
		msg := http.StatusText(o.status)
		if o.clientErr != nil {
			msg = o.clientErr.msg
		}
		fc.writeSimple(&lt.limits, o.status, msg+"\n", o.keepClient)
	}
	if fc.bodyLeft > 0 {
		o.keepClient = false // the rest of the body was never read: nothing after it can be
	}
	fc.now = r.finish(lt, d, ep, midx, &o, start)
	return o.keepClient
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

// skipBody reads and drops the rest of the request body (bodyLeft bytes) under the body
// timeout; it reports whether all of it arrived.
func (fc *fastConn) skipBody(lim *limits) bool {
	for fc.bodyLeft > 0 {
		if fc.br.Buffered() == 0 {
			fc.readBy(time.Now(), lim.body)
			if _, err := fc.br.Peek(1); err != nil {
				return false
			}
		}
		n, _ := fc.br.Discard(int(min(int64(fc.br.Buffered()), fc.bodyLeft)))
		fc.bodyLeft -= int64(n)
	}
	return true
}

// writeSimple writes a short plain-text response.
func (fc *fastConn) writeSimple(lim *limits, code int, body string, keep bool) {
	fc.writeBy(time.Now(), lim.send)
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

// listed reports whether the request's Connection field names a field (never Host or
// Content-Length, whose removal would change what the request means).
func (h *reqHead) listed(name []byte) bool {
	for _, n := range h.dropNames {
		if equalFold(name, string(n)) {
			return !equalFold(name, "Host") && !equalFold(name, "Content-Length")
		}
	}
	return false
}

// writeRequestHead writes the request head for the upstream: the request line and
// fields as received, minus hop-by-hop fields, the fields the Connection field names,
// incoming X-Forwarded-* and Forwarded, and a spoofed internal marker; plus the router's
// X-Forwarded-For, -Host and -Proto.
func (fc *fastConn) writeRequestHead(bw *bufio.Writer, lt *listenerTable, d *decision) {
	h := &fc.h
	bw.Write(h.method)
	bw.WriteByte(' ')
	bw.Write(h.target)
	bw.WriteString(" HTTP/1.1\r\n")
	xff := fc.xff[:0]
fields:
	for _, f := range h.fields {
		name := f.name
		if isHopByHop(name) || len(h.dropNames) > 0 && h.listed(name) || d.spoofed && isMarkerName(lt.markerKey, name) {
			continue
		}
		for i, x := range forwardedFields {
			if len(name) == len(x) && equalFold(name, x) {
				if i == 0 {
					if len(xff) > 0 {
						xff = append(xff, ", "...)
					}
					xff = append(xff, f.value...)
				}
				continue fields
			}
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(f.value)
		bw.WriteString("\r\n")
	}
	fc.xff = xff
	bw.WriteString("X-Forwarded-For: ")
	if len(xff) > 0 {
		bw.Write(xff)
		bw.WriteString(", ")
	}
	bw.Write(fc.ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.Write(h.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
}
