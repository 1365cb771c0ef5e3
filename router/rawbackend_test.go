package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawBackend is a deliberately lenient HTTP/1.1 server that records, per connection, the
// exact bytes it received. It reads what a careless backend would: header names are
// trimmed and compared case-insensitively (so "Transfer-Encoding : chunked" counts),
// Transfer-Encoding containing "chunked" wins over Content-Length, and Content-Length is
// parsed with strconv.Atoi ("+5" is 5). Each request is answered
// "200 OK" with the body "NAME METHOD TARGET", so a response that reaches the wrong
// client shows which request it belonged to. A request with "Connection: upgrade" and an
// Upgrade header is answered 101, after which the connection only records.
// rawMode is how a rawBackend treats requests.
type rawMode int

const (
	rawAnswer    rawMode = iota // answer, keep the connection
	rawCloseIdle                // answer, then close the connection without saying so (an expired keep-alive)
	rawHangUp                   // read the request, close without answering (a crashing upstream)
)

type rawBackend struct {
	name string
	addr string
	ln   net.Listener

	mu    sync.Mutex
	conns []*bytes.Buffer // bytes received, per accepted connection
	reqs  int             // requests answered
	open  int             // connections open now
	// maxOpen is the most connections open at once.
	maxOpen int
	// mode is how requests are answered (rawAnswer by default).
	mode    rawMode
	changed chan struct{} // closed and replaced on every change
}

func newRawBackend(t *testing.T, name string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{name: name, addr: ln.Addr().String(), ln: ln, changed: make(chan struct{})}
	var wg sync.WaitGroup
	var cmu sync.Mutex
	var live []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			live = append(live, c)
			cmu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range live {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *rawBackend) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// recorder appends what the connection reads to its log.
type recorder struct {
	c   net.Conn
	b   *rawBackend
	log *bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 {
		r.b.mu.Lock()
		r.log.Write(p[:n])
		r.b.notify()
		r.b.mu.Unlock()
	}
	return n, err
}

func (b *rawBackend) serve(c net.Conn) {
	log := &bytes.Buffer{}
	b.mu.Lock()
	b.conns = append(b.conns, log)
	b.open++
	b.maxOpen = max(b.maxOpen, b.open)
	b.notify()
	b.mu.Unlock()
	defer func() {
		c.Close()
		b.mu.Lock()
		b.open--
		b.notify()
		b.mu.Unlock()
	}()
	br := bufio.NewReader(&recorder{c: c, b: b, log: log})
	for {
		method, target, hdr, err := lenientHead(br)
		if err != nil {
			return
		}
		if hdr["connection"] != "" && strings.Contains(strings.ToLower(hdr["connection"]), "upgrade") && hdr["upgrade"] != "" {
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", hdr["upgrade"])
			io.Copy(io.Discard, br)
			return
		}
		if strings.Contains(strings.ToLower(hdr["transfer-encoding"]), "chunked") {
			if err := lenientChunked(br); err != nil {
				return
			}
		} else if n, err := strconv.Atoi(hdr["content-length"]); err == nil && n > 0 {
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return
			}
		}
		b.mu.Lock()
		mode := b.mode
		b.mu.Unlock()
		if mode == rawHangUp {
			return
		}
		body := b.name + " " + method + " " + target
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Backend: %s\r\n\r\n%s", len(body), b.name, body)
		b.mu.Lock()
		b.reqs++
		b.notify()
		b.mu.Unlock()
		if mode == rawCloseIdle {
			return
		}
	}
}

// lenientHead reads a request head the way a careless server does.
func lenientHead(br *bufio.Reader) (method, target string, hdr map[string]string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", "", nil, err
	}
	f := strings.Fields(line)
	if len(f) >= 2 {
		method, target = f[0], f[1]
	}
	hdr = map[string]string{}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", "", nil, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			return method, target, hdr, nil
		}
		k, v, _ := strings.Cut(l, ":")
		hdr[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
}

func lenientChunked(br *bufio.Reader) error {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(strings.TrimSpace(l), ";")
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil {
			return err
		}
		if n == 0 {
			for {
				t, err := br.ReadString('\n')
				if err != nil || strings.TrimSpace(t) == "" {
					return err
				}
			}
		}
		if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
			return err
		}
	}
}

// setMode changes how the next requests are treated.
func (b *rawBackend) setMode(m rawMode) {
	b.mu.Lock()
	b.mode = m
	b.mu.Unlock()
}

// received returns a copy of the bytes each connection received so far.
func (b *rawBackend) received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.conns))
	for i, c := range b.conns {
		out[i] = c.String()
	}
	return out
}

// all returns everything received, connections concatenated in accept order.
func (b *rawBackend) all() string { return strings.Join(b.received(), "") }

// reset forgets what was received (connections stay open).
func (b *rawBackend) reset() {
	b.mu.Lock()
	for _, c := range b.conns {
		c.Reset()
	}
	b.reqs = 0
	b.mu.Unlock()
}

// waitFor waits until cond holds over the backend's state (event-driven, generous deadline).
func (b *rawBackend) waitFor(t *testing.T, what string, cond func(b *rawBackend) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		ok := cond(b)
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("raw backend %s: timed out waiting for %s; received %q", b.name, what, b.received())
		}
	}
}

// openConns returns how many connections are open now.
func (b *rawBackend) openConns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}
