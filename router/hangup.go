package router

import (
	"sync"
	"time"
)

// hangupCheckEvery: how often, after slowRequest, a request still waiting for its
// upstream's answer checks whether its client is still there.
const hangupCheckEvery = 100 * time.Millisecond

// hangupWatch notices a client that hangs up while its request waits for the upstream's
// answer, as nginx does by default (proxy_ignore_client_abort off): the wait is cut
// short, the upstream connection is closed instead of held until the upstream answers or
// times out, and the request is recorded as 499. It looks after slowRequest and then
// every hangupCheckEvery, without reading (pipelined bytes stay where they are), so an
// answer that comes quickly costs one timer reset. One per client connection.
type hangupWatch struct {
	mu   sync.Mutex
	t    *time.Timer
	fc   *fastConn
	uc   *upConn // the connection the answer is awaited on; nil when disarmed
	gone bool
}

// arm starts watching fc's client while the answer is awaited on uc.
func (w *hangupWatch) arm(fc *fastConn, uc *upConn) {
	w.mu.Lock()
	w.fc, w.uc, w.gone = fc, uc, false
	if w.t == nil {
		w.t = time.AfterFunc(slowRequest, w.check)
	} else {
		w.t.Reset(slowRequest)
	}
	w.mu.Unlock()
}

func (w *hangupWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.uc == nil {
		return
	}
	if w.fc.clientGone() {
		w.gone = true
		w.uc.c.SetReadDeadline(time.Unix(1, 0)) // wakes the read waiting for the answer
		return
	}
	w.t.Reset(hangupCheckEvery)
}

// disarm stops watching and reports whether the client hung up meanwhile (the upstream
// connection's read deadline was then moved to the past: it must not be reused).
func (w *hangupWatch) disarm() bool {
	if w.t == nil {
		return false
	}
	w.t.Stop()
	w.mu.Lock()
	gone := w.gone
	w.uc, w.fc = nil, nil
	w.mu.Unlock()
	return gone
}
