package instrument

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// knownMethods bounds the method label; anything else is counted as "OTHER".
var knownMethods = map[string]string{
	http.MethodGet: http.MethodGet, http.MethodHead: http.MethodHead, http.MethodPost: http.MethodPost,
	http.MethodPut: http.MethodPut, http.MethodPatch: http.MethodPatch, http.MethodDelete: http.MethodDelete,
	http.MethodConnect: http.MethodConnect, http.MethodOptions: http.MethodOptions, http.MethodTrace: http.MethodTrace,
}

// MethodLabel returns the method label for an HTTP method: the method itself when it is
// one of the standard ones, else "OTHER".
func MethodLabel(method string) string {
	if m, ok := knownMethods[method]; ok {
		return m
	}
	return "OTHER"
}

// RouteOther is the route label of a request no mux pattern matched.
const RouteOther = "other"

// PatternRoute returns the route label from r.Pattern, which http.ServeMux sets on the
// request it routes: the pattern without its method ("GET /items/{id}" → "/items/{id}"),
// or RouteOther when no pattern was set.
func PatternRoute(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return RouteOther
	}
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t")
	}
	return p
}

// Middleware wraps next so that every request it serves is counted. next is typically an
// *http.ServeMux: it sets the request's pattern, which becomes the route label (see
// PatternRoute and Options.Route). A handler that panics is counted as a 500 and the
// panic goes on.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	route := m.route
	if route == nil {
		route = PatternRoute
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			code := rec.status
			if code == 0 {
				code = http.StatusOK
			}
			if p := recover(); p != nil {
				if !rec.wroteHeader() {
					code = http.StatusInternalServerError
				}
				m.Observe(MethodLabel(r.Method), route(r), code, time.Since(start))
				panic(p)
			}
			m.Observe(MethodLabel(r.Method), route(r), code, time.Since(start))
		}()
		next.ServeHTTP(rec, r)
	})
}

// RouteHandler is Middleware for a handler that serves one fixed route: every request
// next serves is labelled route.
func (m *Metrics) RouteHandler(route string, next http.Handler) http.Handler {
	fixed := &Metrics{requests: m.requests, errors: m.errors, duration: m.duration,
		route: func(*http.Request) string { return route }}
	return fixed.Middleware(next)
}

// statusRecorder remembers the status code written through it. It forwards Flush and
// Hijack, and Unwrap lets http.ResponseController reach the writer beneath.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) wroteHeader() bool { return s.status != 0 }

// WriteHeader records the first final status code and forwards it.
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and forwards.
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush forwards to the underlying writer when it can flush.
func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Hijack forwards to the underlying writer when it can hijack (WebSocket upgrades).
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		if s.status == 0 {
			s.status = http.StatusSwitchingProtocols
		}
		return h.Hijack()
	}
	return nil, nil, errors.New("instrument: underlying ResponseWriter cannot hijack")
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
