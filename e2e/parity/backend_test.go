package parity

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Backend headers: every answer names its backend; a request asks for a delay with
// x-sleep; every request carries the case that sent it.
const (
	backendHeader = "x-backend"
	sleepHeader   = "x-sleep"
	caseHeader    = "x-parity-case"
	mirrorHeader  = "x-sluice-mirror" // set on mirror copies, by the router and by Envoy
)

// backend is one cluster's only endpoint: a real server on 127.0.0.1 that speaks HTTP/1.1
// to the router and gRPC (h2c) to proxyless clients on the same port, answers every
// request and RPC with its name (the x-backend header), sleeps when asked, and records
// the mirror copies it receives by case.
type backend struct {
	name string
	addr string

	mu     sync.Mutex
	copies map[string]int // case → mirror copies received
}

// startBackend serves a backend named name until the test ends.
func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name, copies: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	// Any method of any service: the path decides the route, not the service.
	gs := grpc.NewServer(grpc.UnknownServiceHandler(b.rpc))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		b.serveHTTP(w, r)
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		gs.Stop()
	})
	return b
}

func (b *backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(mirrorHeader) == "1" {
		b.mu.Lock()
		b.copies[r.Header.Get(caseHeader)]++
		b.mu.Unlock()
	}
	if !sleep(r.Context(), r.Header.Get(sleepHeader)) {
		return // the router gave up (its timeout): nobody reads an answer
	}
	w.Header().Set(backendHeader, b.name)
	w.Write([]byte(b.name + "\n"))
}

// rpc answers any unary RPC with an empty message and the backend's name in the
// response header metadata.
func (b *backend) rpc(_ any, st grpc.ServerStream) error {
	var in emptypb.Empty
	if err := st.RecvMsg(&in); err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(st.Context())
	if v := md.Get(sleepHeader); len(v) > 0 && !sleep(st.Context(), v[0]) {
		// The deadline the client sent (grpc-timeout) passed: answer as a gRPC server does,
		// never with the name, which would race the client's own deadline.
		return status.FromContextError(st.Context().Err()).Err()
	}
	if err := st.SetHeader(metadata.Pairs(backendHeader, b.name)); err != nil {
		return err
	}
	return st.SendMsg(&emptypb.Empty{})
}

// mirrored returns how many mirror copies of case c the backend received.
func (b *backend) mirrored(c string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.copies[c]
}

// sleep waits for the duration d ("" for none) and reports true, or reports false when
// ctx ends first.
func sleep(ctx context.Context, d string) bool {
	dur, err := time.ParseDuration(d)
	if d == "" || err != nil {
		return true
	}
	tm := time.NewTimer(dur)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
