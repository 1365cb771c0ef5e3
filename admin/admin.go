// Package admin serves Sluice's operator surface on ControlPlane.Admin.Address: the JSON
// API over the rollouts (list, get, start, promote, abort, retry), the xDS fleet's node
// status, /metrics, /healthz, /readyz, server-sent events, and an embedded web view.
//
// Mutating calls are guarded by a bearer token when one is configured; New refuses an
// address off loopback without a token. Against cross-site requests from a browser
// (CSRF) and DNS rebinding, which a token-less loopback API would otherwise be open to:
// mutating calls must send Content-Type: application/json and, when they carry Origin or
// Sec-Fetch-Site, come from the same origin; on a loopback address every request's Host
// must be a loopback name or address; no page may frame the web view. Event streams are
// capped (Options.MaxEventStreams). Errors are JSON {"error": "..."}.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/analyzer"
)

// Rollouts is what the admin API needs from the rollout controller
// (*analyzer.Controller satisfies it).
type Rollouts interface {
	List() []analyzer.RolloutStatus
	Get(name string) (analyzer.RolloutStatus, bool)
	Start(name string) error
	Promote(name string, full bool) error
	Abort(name string) error
	Retry(name string) error
}

// StatusCoder is implemented by errors that know their HTTP status; an action error
// that does not implement it answers 409 Conflict (not allowed now).
type StatusCoder interface {
	HTTPStatus() int
}

// ReadyFunc reports nil when one part of Sluice is ready to serve, else why not.
type ReadyFunc func() error

// Options configures a Server.
type Options struct {
	// Address is host:port to listen on ("127.0.0.1:0" picks a free port).
	Address string
	// Token guards every mutating call when non-empty (see LoadToken).
	Token string
	// Rollouts is the controller; nil answers 503 on the rollout endpoints.
	Rollouts Rollouts
	// Nodes serves GET /api/v1/xds/nodes (xds.Server.NodesHandler: {"nodes": [...]});
	// nil answers {"nodes": []}.
	Nodes http.Handler
	// Gatherer is exposed on /metrics; nil: /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Registerer receives the admin server's own metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Ready are checked by /readyz in addition to the listener being bound.
	Ready []ReadyFunc
	// EventInterval is how often /api/v1/events checks for changes (default 1s).
	EventInterval time.Duration
	// MaxEventStreams caps concurrent /api/v1/events clients (default 32); more are
	// answered 503.
	MaxEventStreams int
	Logger          *zap.Logger
}

// Server is the admin HTTP server.
type Server struct {
	opts      Options
	log       *zap.Logger
	mux       *http.ServeMux
	handler   http.Handler // mux behind the host check and security headers
	refused   prometheus.Counter
	forbidden *prometheus.CounterVec
	loopback  bool         // bound to loopback: Host must be a loopback name or address
	streams   atomic.Int32 // open event streams

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	done     chan struct{}
	rollouts Rollouts
	ready    []ReadyFunc
	stop     chan struct{} // closed by Shutdown: ends event streams
	stopOnce sync.Once
	replicas replicaRoutes // replicas.go
}

// LoadToken reads a bearer token file: its content with surrounding white space trimmed.
// An empty file is an error.
func LoadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("admin token: %s is empty", file)
	}
	return t, nil
}

// IsLoopback reports whether the host of a host:port address only accepts local
// connections ("localhost", 127.0.0.0/8, ::1). An empty host (all interfaces) is not.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// New validates opts and builds a Server; it does not listen yet (see Start). It refuses
// an address off loopback when no token is configured.
func New(opts Options) (*Server, error) {
	if opts.Address == "" {
		return nil, errors.New("admin: no address")
	}
	if opts.Token == "" && !IsLoopback(opts.Address) {
		return nil, fmt.Errorf("admin: refusing to serve on %s (not loopback) without a token: set controlPlane.admin.tokenFile", opts.Address)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.EventInterval <= 0 {
		opts.EventInterval = time.Second
	}
	if opts.MaxEventStreams <= 0 {
		opts.MaxEventStreams = 32
	}
	s := &Server{opts: opts, log: opts.Logger, rollouts: opts.Rollouts, ready: opts.Ready, stop: make(chan struct{}),
		loopback: IsLoopback(opts.Address)}
	s.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_admin_refused_total",
		Help: "Mutating admin API calls refused for a missing or wrong bearer token.",
	})
	s.forbidden = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_admin_forbidden_total",
		Help: "Admin requests refused as cross-site or DNS rebinding (reason host, origin, content_type) or over the event-stream cap (event_streams).",
	}, []string{"reason"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.refused, s.forbidden} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("admin: register metrics: %w", err)
			}
		}
	}
	s.mux = http.NewServeMux()
	s.routes()
	s.handler = s.guard(s.mux)
	return s, nil
}

// SetRollouts replaces the rollout controller (nil: the rollout endpoints answer 503).
func (s *Server) SetRollouts(r Rollouts) {
	s.mu.Lock()
	s.rollouts = r
	s.mu.Unlock()
}

// SetToken replaces the bearer token (a rotated token file). An empty token is refused
// when the address is not loopback.
func (s *Server) SetToken(token string) error {
	if token == "" && !IsLoopback(s.opts.Address) {
		return fmt.Errorf("admin: refusing to drop the token on %s (not loopback)", s.opts.Address)
	}
	s.mu.Lock()
	s.opts.Token = token
	s.mu.Unlock()
	return nil
}

func (s *Server) token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.Token
}

// AddReady adds a readiness check to /readyz.
func (s *Server) AddReady(f ReadyFunc) {
	s.mu.Lock()
	s.ready = append(s.ready, f)
	s.mu.Unlock()
}

func (s *Server) controller() Rollouts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rollouts
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// guard sets the security headers of every response and, on a loopback address, refuses
// a Host that is not a loopback name or address: a page on another site whose name was
// re-pointed at 127.0.0.1 (DNS rebinding) still sends its own name.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		if s.loopback && !loopbackHost(r.Host) {
			s.forbid(w, r, "host", fmt.Sprintf("Host %q is not a loopback name or address: this admin API listens on loopback and answers only to localhost, 127.0.0.1 or [::1]", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host value names this machine's loopback: "localhost",
// a name under .localhost (RFC 6761), or a loopback address; with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// sameOrigin checks a mutating call: a JSON body (a cross-site HTML form cannot send
// one without a CORS preflight, which this server never grants), and, when the browser
// says where the request comes from (Origin, Sec-Fetch-Site), the same origin. A
// request with neither header (curl, the CLI) passes. It answers and returns false when
// the call is refused.
func (s *Server) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		s.forbid(w, r, "origin", "cross-site request refused (Sec-Fetch-Site: "+site+")")
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || o == "null" || !strings.EqualFold(u.Host, r.Host) || u.Scheme != "http" && u.Scheme != "https" {
			s.forbid(w, r, "origin", "cross-origin request refused (Origin: "+o+")")
			return false
		}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.forbidden.WithLabelValues("content_type").Inc()
		writeError(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json (and a JSON body, {} for none)")
		return false
	}
	return true
}

func (s *Server) forbid(w http.ResponseWriter, r *http.Request, reason, msg string) {
	s.forbidden.WithLabelValues(reason).Inc()
	s.log.Warn("admin request refused", zap.String("reason", reason), zap.String("method", r.Method),
		zap.String("path", r.URL.Path), zap.String("host", r.Host), zap.String("remote", r.RemoteAddr))
	writeError(w, http.StatusForbidden, msg)
}

// Start binds the address and serves in the background until Shutdown.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.opts.Address, err)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 64 << 10}
	done := make(chan struct{})
	s.mu.Lock()
	s.ln, s.srv, s.done = ln, srv, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", zap.Error(err))
		}
	}()
	s.log.Info("admin API listening", zap.String("address", ln.Addr().String()), zap.Bool("token", s.token() != ""))
	return nil
}

// Addr returns the bound address, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for open requests (event streams are
// closed at once) until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-done
	return err
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	m.HandleFunc("GET /readyz", s.handleReady)
	if s.opts.Gatherer != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	m.HandleFunc("GET /api/v1/rollouts", s.handleList)
	m.HandleFunc("GET /api/v1/rollouts/{name}", s.handleGet)
	m.HandleFunc("POST /api/v1/rollouts/{name}/{action}", s.handleAction)
	m.HandleFunc("GET /api/v1/xds/nodes", s.handleNodes)
	m.HandleFunc("GET /api/v1/events", s.handleEvents)
	s.replicaRoutes(m)
	web := webHandler()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		web.ServeHTTP(w, r)
	})
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	checks := append([]ReadyFunc(nil), s.ready...)
	bound := s.ln != nil
	s.mu.Unlock()
	var problems []string
	if !bound {
		problems = append(problems, "admin listener not bound")
	}
	for _, f := range checks {
		if err := f(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + strings.Join(problems, "; ") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) handleList(w http.ResponseWriter, _ *http.Request) {
	c := s.controller()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "rollout controller not running")
		return
	}
	list := c.List()
	if list == nil {
		list = []analyzer.RolloutStatus{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	c := s.controller()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "rollout controller not running")
		return
	}
	name := r.PathValue("name")
	st, ok := c.Get(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no rollout named %q", name))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// maxBody bounds a POST body.
const maxBody = 1 << 16

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	switch action {
	case "start", "promote", "abort", "retry":
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q: want start, promote, abort or retry", action))
		return
	}
	if !s.sameOrigin(w, r) {
		return
	}
	if !s.authorized(r) {
		s.refused.Inc()
		s.log.Warn("admin call refused: missing or wrong bearer token",
			zap.String("action", action), zap.String("rollout", name), zap.String("remote", r.RemoteAddr))
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (sluice --token-file FILE, or the token in the web view)")
		return
	}
	c := s.controller()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "rollout controller not running")
		return
	}
	var body struct {
		Full bool `json:"full"`
	}
	if r.Body != nil {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
			return
		}
	}
	if _, ok := c.Get(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no rollout named %q", name))
		return
	}
	var err error
	switch action {
	case "start":
		err = c.Start(name)
	case "promote":
		err = c.Promote(name, body.Full)
	case "abort":
		err = c.Abort(name)
	case "retry":
		err = c.Retry(name)
	}
	if err != nil {
		code := http.StatusConflict
		var sc StatusCoder
		if errors.As(err, &sc) && sc.HTTPStatus() >= 400 {
			code = sc.HTTPStatus()
		}
		s.log.Info("admin action not applied", zap.String("action", action), zap.String("rollout", name), zap.Error(err))
		writeError(w, code, err.Error())
		return
	}
	s.log.Info("admin action", zap.String("action", action), zap.String("rollout", name), zap.Bool("full", body.Full), zap.String("remote", r.RemoteAddr))
	st, _ := c.Get(name)
	writeJSON(w, http.StatusOK, st)
}

// authorized reports whether r carries the configured bearer token (always true when no
// token is configured). The comparison takes constant time.
func (s *Server) authorized(r *http.Request) bool {
	token := s.token()
	if token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	got := strings.TrimSpace(h[len(prefix):])
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	if s.opts.Nodes == nil {
		writeJSON(w, http.StatusOK, map[string][]struct{}{"nodes": {}})
		return
	}
	s.opts.Nodes.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
