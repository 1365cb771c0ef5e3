package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The fast path's transport: HTTP/1.1 over pooled keep-alive connections per endpoint.
// It writes the checked request head and body, reads the response head strictly (a
// malformed one is the upstream's failure, 502), and relays the body by its framing. A
// connection returns to the pool only after a complete exchange with nothing extra
// buffered; pooled connections idle longer than Options.UpstreamIdleTimeout are closed by
// a sweeper. Before a request that cannot be replayed (not idempotent, or a body that is
// not buffered whole) goes on a reused connection, the connection is checked for a close
// from the upstream, so a stale connection does not cost such a request.

// upConn is a pooled upstream connection.
type upConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // returned to the pool
	rdl  lazyDeadline
	keep bool // may go back to the pool after this exchange
}

// readBy makes the read deadline now+d, give or take slack(d).
func (uc *upConn) readBy(now time.Time, d time.Duration) {
	if t, move := uc.rdl.due(now, d); move {
		uc.c.SetReadDeadline(t)
	}
}

// readDeadline sets the read deadline to t exactly (zero: none).
func (uc *upConn) readDeadline(t time.Time) {
	if !uc.rdl.at.Equal(t) {
		uc.c.SetReadDeadline(t)
		uc.rdl.at = t
	}
}

// closedByPeer reports whether the upstream closed the connection (or sent something
// unasked) while it sat in the pool.
func (uc *upConn) closedByPeer() bool {
	if uc.br.Buffered() > 0 {
		return true
	}
	data, closed := peek(uc.c)
	return data || closed
}

// peek looks at a connection without reading it or waiting (a non-blocking MSG_PEEK):
// whether bytes wait to be read, and whether the peer closed it (EOF or an error).
func peek(c net.Conn) (data, closed bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		data = n > 0
		closed = n == 0 && err == nil || err != nil && err != syscall.EAGAIN && err != syscall.EINTR
		return true
	})
	return data, closed
}

// connPool holds an endpoint's idle upstream connections (most recently used last).
type connPool struct {
	mu   sync.Mutex
	idle []*upConn
	// closed: the endpoint left the routing table. Requests already on it finish; their
	// connections are then closed instead of kept.
	closed bool
}

// get returns the most recently used connection idle for less than maxIdle at now, or nil.
func (p *connPool) get(maxIdle time.Duration, now time.Time) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(uc.used) < maxIdle {
			return uc
		}
		uc.c.Close()
	}
	return nil
}

// put returns a connection after a complete exchange, at now; it is closed instead when
// the pool is full or the upstream sent more than it was asked for.
func (p *connPool) put(uc *upConn, max int, now time.Time) {
	if uc.br.Buffered() > 0 {
		uc.c.Close()
		return
	}
	uc.used = now
	p.mu.Lock()
	if !p.closed && len(p.idle) < max {
		p.idle = append(p.idle, uc)
		uc = nil
	}
	p.mu.Unlock()
	if uc != nil {
		uc.c.Close()
	}
}

// sweep closes the connections idle for maxIdle or longer.
func (p *connPool) sweep(now time.Time, maxIdle time.Duration) {
	p.mu.Lock()
	var old []*upConn
	keep := p.idle[:0]
	for _, uc := range p.idle {
		if now.Sub(uc.used) >= maxIdle {
			old = append(old, uc)
		} else {
			keep = append(keep, uc)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	for _, uc := range old {
		uc.c.Close()
	}
}

// size returns the number of idle connections.
func (p *connPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// closeAll closes the idle connections and every connection put back later.
func (p *connPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// sweep closes idle pooled connections once their idle time runs out, until Shutdown.
func (r *Router) sweep() {
	defer close(r.sweepDone)
	every := min(max(r.opts.UpstreamIdleTimeout/4, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.sweepStop:
			return
		case now := <-t.C:
			if tb := r.table.Load(); tb != nil {
				for _, e := range tb.endpoints {
					e.pool.sweep(now, r.opts.UpstreamIdleTimeout)
				}
			}
		}
	}
}

func (r *Router) stopSweeper() {
	r.sweepOnce.Do(func() { close(r.sweepStop) })
	<-r.sweepDone
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

// attempt makes one attempt at carrying the current request, which arrived at start, to
// ep (fresh: on a new connection), for the policy's send.
func (fc *fastConn) attempt(lt *listenerTable, d *decision, ep *endpoint, fresh, replayable bool, start time.Time) outcome {
	r := fc.fl.r
	var uc *upConn
	if !fresh {
		uc = ep.pool.get(r.opts.UpstreamIdleTimeout, start)
		for uc != nil && !replayable && uc.closedByPeer() {
			uc.c.Close()
			uc = ep.pool.get(r.opts.UpstreamIdleTimeout, start)
		}
	}
	reused := uc != nil
	if uc == nil {
		var err error
		if uc, err = r.dial(d.up, ep); err != nil {
			return outcome{blame: blameConnect}
		}
	}
	o := fc.exchange(lt, d, uc, reused, start)
	if o.blame == blameNone && uc.keep {
		if d.up.timeout > 0 {
			uc.c.SetDeadline(time.Time{})
			uc.rdl.at = time.Time{}
		}
		ep.pool.put(uc, r.opts.MaxIdleConnsPerHost, fc.now)
	} else {
		uc.c.Close()
	}
	return o
}

// exchange writes the request, which arrived at start, to uc and relays the response to
// the client.
func (fc *fastConn) exchange(lt *listenerTable, d *decision, uc *upConn, reused bool, start time.Time) outcome {
	h := &fc.h
	lim := &lt.limits
	up := d.up
	isHead := string(h.method) == "HEAD" // h's slices may be gone once a streamed body refilled fc.br
	if up.timeout > 0 {
		uc.c.SetDeadline(start.Add(up.timeout))
		uc.rdl.at = start.Add(up.timeout)
	}
	fc.writeRequestHead(uc.bw, lt, d)
	streamed := false
	if fc.body != nil {
		uc.bw.Write(fc.body)
	} else if fc.bodyLeft > 0 {
		// Send the head first: a dead reused connection shows before the body is consumed.
		if err := uc.bw.Flush(); err != nil {
			return upstreamFailure(err, reused)
		}
		streamed = true
		if o, failed := fc.streamBody(uc, lim); failed {
			return o
		}
	}
	if err := uc.bw.Flush(); err != nil {
		return upstreamFailure(err, reused && !streamed)
	}
	headerDeadline := up.headerTimeout > 0 && (up.timeout == 0 || up.headerTimeout < up.timeout)
	if headerDeadline {
		sent := start
		if streamed {
			sent = time.Now()
		}
		uc.readBy(sent, up.headerTimeout)
	}
	for {
		fc.hangup.arm(fc, uc)
		rs, err := fc.readResponseHead(uc, d, isHead)
		if fc.hangup.disarm() {
			return outcome{blame: blameClientGone}
		}
		if err != nil {
			return upstreamFailure(err, reused && !streamed && !rs.started)
		}
		if rs.status < 200 {
			// Informational (100 Continue, 103 Early Hints): forward, read the final answer.
			fc.writeBy(time.Now(), lim.send)
			if _, err := fc.bw.Write(fc.rhead); err != nil || fc.bw.Flush() != nil {
				return outcome{blame: blameClientGone, answered: true}
			}
			continue
		}
		now := time.Now()
		fc.now = now
		if now.Sub(start) > slowRequest && fc.clientGone() {
			return outcome{blame: blameClientGone}
		}
		keepClient := !h.close
		noBody := isHead || rs.status == 204 || rs.status == 304
		if !noBody && !rs.chunked && rs.length < 0 {
			uc.keep, keepClient = false, false // delimited by the upstream closing
		} else {
			uc.keep = rs.keepUp
		}
		if !keepClient {
			fc.rhead = append(fc.rhead[:len(fc.rhead)-2], "Connection: close\r\n\r\n"...)
		}
		fc.writeBy(now, lim.send)
		if _, err := fc.bw.Write(fc.rhead); err != nil {
			return outcome{status: rs.status, blame: blameClientGone, answered: true}
		}
		if !noBody {
			if headerDeadline && (rs.chunked || rs.length < 0 || int64(uc.br.Buffered()) < rs.length) {
				// The response-header timeout does not bound the body; requestTimeout does.
				var until time.Time // none
				if up.timeout > 0 {
					until = start.Add(up.timeout)
				}
				uc.readDeadline(until)
			}
			var err error
			switch {
			case rs.chunked:
				err = fc.copyChunked(uc.br, lim)
			case rs.length >= 0:
				err = fc.copyN(uc.br, rs.length, lim)
			default:
				err = fc.copyUntilEOF(uc.br, lim)
			}
			if err != nil {
				o := outcome{status: rs.status, answered: true}
				var ce clientWriteError
				switch {
				case errors.As(err, &ce):
					o.blame = blameClientGone
				case isTimeout(err):
					o.blame = blameTimeout
				default:
					o.blame = blameUpstream
				}
				return o
			}
		}
		return outcome{status: rs.status, answered: true, keepClient: keepClient}
	}
}

// upstreamFailure classifies a failed write to or read from the upstream before anything
// was answered: a timeout, a stale reused connection (the request can go again), or a
// failure after the request was sent.
func upstreamFailure(err error, stale bool) outcome {
	switch {
	case isTimeout(err):
		return outcome{blame: blameTimeout}
	case stale:
		return outcome{blame: blameStale}
	}
	return outcome{blame: blameUpstream}
}

// streamBody copies the rest of the request body from the client to uc under the body
// timeout. A failed read is the client's (408 on a timeout, else 400: incomplete); a
// failed write the upstream's.
func (fc *fastConn) streamBody(uc *upConn, lim *limits) (outcome, bool) {
	for fc.bodyLeft > 0 {
		if fc.br.Buffered() == 0 {
			fc.readBy(time.Now(), lim.body)
			if _, err := fc.br.Peek(1); err != nil {
				e := errBodyShort
				if isTimeout(err) {
					e = errBodyTimedOut
				}
				return outcome{blame: blameClient, clientErr: e}, true
			}
		}
		b, _ := fc.br.Peek(int(min(int64(fc.br.Buffered()), fc.bodyLeft)))
		_, err := uc.bw.Write(b)
		fc.br.Discard(len(b))
		fc.bodyLeft -= int64(len(b))
		if err != nil {
			return upstreamFailure(err, false), true
		}
	}
	return outcome{}, false
}

// slowRequest: after waiting this long for an upstream, check whether the client hung
// up before answering (a write to a closed socket often succeeds, so the hang-up would
// otherwise go unnoticed and be recorded as the upstream's status rather than 499).
const slowRequest = 20 * time.Millisecond

// clientGone reports whether the client closed its side (pipelined bytes or nothing yet
// mean it is still there).
func (fc *fastConn) clientGone() bool {
	if fc.br.Buffered() > 0 {
		return false
	}
	_, closed := peek(fc.c)
	return closed
}

// respHead is what the relay needs of an upstream response head.
type respHead struct {
	status  int
	length  int64 // -1: none
	chunked bool
	keepUp  bool
	started bool // a byte of it arrived
}

// maxResponseHead bounds an upstream's response head.
const maxResponseHead = 64 << 10

var (
	errRespStatus  = errors.New("malformed upstream status line")
	errRespField   = errors.New("malformed upstream header field")
	errRespLength  = errors.New("invalid upstream Content-Length")
	errRespTE      = errors.New("unsupported upstream Transfer-Encoding")
	errRespUpgrade = errors.New("upstream switched protocols unasked")
)

// readResponseHead reads and checks an upstream response head and builds in fc.rhead the
// head the client gets: HTTP/1.1, without hop-by-hop fields and the fields the upstream's
// Connection field names, with Transfer-Encoding: chunked when the body is chunked and
// the sticky cookie when there is one to set.
func (fc *fastConn) readResponseHead(uc *upConn, d *decision, isHead bool) (respHead, error) {
	rs := respHead{length: -1}
	if _, err := uc.br.Peek(1); err != nil {
		return rs, err
	}
	rs.started = true
	head, inBuf := bufferedHead(uc.br, maxResponseHead) // as usual: parsed in place
	if !inBuf {
		var err error
		if head, err = readHead(uc.br, fc.uhead, maxResponseHead); err != nil {
			return rs, err
		}
		fc.uhead = head
	}
	if inBuf {
		defer uc.br.Discard(len(head)) // after fc.rhead is built from it
	}
	line, rest := nextLine(head)
	// HTTP/1.x SP 3DIGIT [SP reason-phrase]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] != '0' && line[7] != '1' || line[8] != ' ' ||
		!isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) || len(line) > 12 && line[12] != ' ' ||
		!validFieldValue(line[12:]) {
		return rs, errRespStatus
	}
	rs.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if rs.status < 100 {
		return rs, errRespStatus
	}
	if rs.status == http.StatusSwitchingProtocols {
		return rs, errRespUpgrade
	}
	rs.keepUp = line[7] == '1'
	fields := fc.rf[:0]
	var drop [][]byte
	te := false
	for {
		var l []byte
		l, rest = nextLine(rest)
		if len(l) == 0 {
			break
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !isToken(l[:colon]) {
			return rs, errRespField
		}
		name, value := l[:colon], trimOWS(l[colon+1:])
		if !validFieldValue(value) {
			return rs, errRespField
		}
		switch {
		case equalFold(name, "Connection"):
			forEachToken(value, func(tok []byte) {
				switch {
				case equalFold(tok, "close"):
					rs.keepUp = false
				case equalFold(tok, "keep-alive"):
					rs.keepUp = true
				default:
					drop = append(drop, tok)
				}
			})
		case equalFold(name, "Transfer-Encoding"):
			if te || !equalFold(value, "chunked") {
				return rs, errRespTE
			}
			te = true
		case equalFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || rs.length >= 0 && rs.length != n {
				return rs, errRespLength
			}
			rs.length = n
		}
		fields = append(fields, headerField{name: name, value: value})
	}
	fc.rf = fields
	if te {
		if rs.length >= 0 {
			rs.keepUp = false // both framings: chunked wins (RFC 9112 §6.3), and the connection goes
		}
		rs.chunked, rs.length = true, -1
	}
	if isHead || rs.status == 204 || rs.status == 304 || rs.status < 200 {
		rs.chunked, rs.length = false, 0
	}
	b := append(fc.rhead[:0], "HTTP/1.1"...)
	b = append(b, line[8:]...)
	b = append(b, "\r\n"...)
	clSeen := false
	for _, f := range fields {
		switch {
		case isHopByHop(f.name), listedIn(drop, f.name):
			continue
		case equalFold(f.name, "Content-Length"):
			if te || clSeen {
				continue
			}
			clSeen = true
		}
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	if te {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if rs.status >= 200 && d.cookie != "" {
		b = append(b, "Set-Cookie: "...)
		b = append(b, d.cookie...)
		b = append(b, "\r\n"...)
	}
	fc.rhead = append(b, "\r\n"...)
	return rs, nil
}

// listedIn reports whether a Connection field listed name (never Content-Length).
func listedIn(list [][]byte, name []byte) bool {
	for _, n := range list {
		if equalFold(name, string(n)) {
			return !equalFold(name, "Content-Length")
		}
	}
	return false
}

// clientWriteError is a failed write to the client.
type clientWriteError struct{ error }

func (e clientWriteError) Unwrap() error { return e.error }

// write writes to the client (under the send timeout set by fill, or by exchange before
// the response head).
func (fc *fastConn) write(b []byte) error {
	if _, err := fc.bw.Write(b); err != nil {
		return clientWriteError{err}
	}
	return nil
}

func (fc *fastConn) flush() error {
	if err := fc.bw.Flush(); err != nil {
		return clientWriteError{err}
	}
	return nil
}

// fill makes sure src has bytes buffered, reading the upstream when it has none; after
// such a read, which may have waited, it moves the client's send deadline.
func (fc *fastConn) fill(src *bufio.Reader, lim *limits) error {
	if src.Buffered() > 0 {
		return nil
	}
	if _, err := src.Peek(1); err != nil {
		return err
	}
	fc.writeBy(time.Now(), lim.send)
	return nil
}

// copyN relays n body bytes.
func (fc *fastConn) copyN(src *bufio.Reader, n int64, lim *limits) error {
	for n > 0 {
		if err := fc.fill(src, lim); err != nil {
			return err
		}
		b, _ := src.Peek(int(min(n, int64(src.Buffered()))))
		if err := fc.write(b); err != nil {
			return err
		}
		src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

var errChunk = errors.New("malformed upstream chunked body")

// copyChunked relays a chunked body, checking its framing, flushing after each chunk
// that ends what the upstream sent so far.
func (fc *fastConn) copyChunked(src *bufio.Reader, lim *limits) error {
	for {
		if err := fc.fill(src, lim); err != nil {
			return err
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errChunk
			}
			return err
		}
		size := bytes.TrimRight(line, "\r\n")
		if len(line)-len(size) > 2 {
			return errChunk
		}
		ext := -1
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			ext, size = i, trimOWS(size[:i])
		}
		if len(size) == 0 || len(size) > 15 {
			return errChunk
		}
		n, perr := strconv.ParseInt(string(size), 16, 64)
		if perr != nil || size[0] == '+' || size[0] == '-' || (ext >= 0 && !validFieldValue(line[ext:len(line)-1])) {
			return errChunk
		}
		if err := fc.write(line); err != nil {
			return err
		}
		if n == 0 {
			for { // trailer fields, then the empty line
				t, err := src.ReadSlice('\n')
				if err != nil {
					if err == bufio.ErrBufferFull {
						err = errChunk
					}
					return err
				}
				tl := bytes.TrimRight(t, "\r\n")
				if len(tl) > 0 {
					colon := bytes.IndexByte(tl, ':')
					if colon <= 0 || !isToken(tl[:colon]) || !validFieldValue(tl[colon+1:]) {
						return errChunk
					}
				}
				if err := fc.write(t); err != nil {
					return err
				}
				if len(tl) == 0 {
					return nil
				}
			}
		}
		if err := fc.copyN(src, n, lim); err != nil {
			return err
		}
		end, err := src.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(end, "\r\n")) != 0 || len(end) > 2 {
			return errChunk
		}
		if err := fc.write(end); err != nil {
			return err
		}
		if src.Buffered() == 0 {
			if err := fc.flush(); err != nil {
				return err
			}
		}
	}
}

// copyUntilEOF relays a body delimited by the upstream closing, flushing as it goes.
func (fc *fastConn) copyUntilEOF(src *bufio.Reader, lim *limits) error {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			fc.writeBy(time.Now(), lim.send)
			if err := fc.write((*buf)[:n]); err != nil {
				return err
			}
			if err := fc.flush(); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
