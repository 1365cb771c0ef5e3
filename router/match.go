package router

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/sluice-mesh/sluice/model"
)

// splitter hands out clusters in a fixed smooth-weighted-round-robin sequence: every
// window of len(seq) requests (at most 100) matches the weights exactly, and an atomic
// counter makes a pick lock-free.
type splitter struct {
	seq  []*upstream
	next atomic.Uint64
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newSplitter(ups []*upstream, weights []int) *splitter {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	cur := make([]int, len(weights))
	s := &splitter{seq: make([]*upstream, 0, total)}
	for range total {
		best := -1
		for i, w := range weights {
			cur[i] += w
			if w > 0 && (best < 0 || cur[i] > cur[best]) {
				best = i
			}
		}
		cur[best] -= total
		s.seq = append(s.seq, ups[best])
	}
	return s
}

func (s *splitter) pick() *upstream {
	if len(s.seq) == 1 {
		return s.seq[0]
	}
	return s.seq[(s.next.Add(1)-1)%uint64(len(s.seq))]
}

// stringMatcher is a compiled model.StringMatch.
type stringMatcher struct {
	exact, prefix string
	kind          int // 0 exact, 1 prefix, 2 regex
	re            *regexp.Regexp
}

func compileString(m model.StringMatch) (stringMatcher, error) {
	n := 0
	var s stringMatcher
	if m.Exact != "" {
		n++
		s = stringMatcher{exact: m.Exact, kind: 0}
	}
	if m.Prefix != "" {
		n++
		s = stringMatcher{prefix: m.Prefix, kind: 1}
	}
	if m.Regex != "" {
		n++
		re, err := regexp.Compile("^(?:" + m.Regex + ")$")
		if err != nil {
			return s, fmt.Errorf("bad regex %q: %v", m.Regex, err)
		}
		s = stringMatcher{re: re, kind: 2}
	}
	if n > 1 {
		return s, fmt.Errorf("exactly one of exact, prefix and regex may be set")
	}
	return s, nil // n == 0: exact "" (matches an empty value)
}

func (s *stringMatcher) match(v string) bool {
	switch s.kind {
	case 0:
		return v == s.exact
	case 1:
		return strings.HasPrefix(v, s.prefix)
	default:
		return s.re.MatchString(v)
	}
}

// headerMatcher is a compiled model.HeaderMatch.
type headerMatcher struct {
	key string // canonical MIME header key
	val stringMatcher
}

func compileHeaders(hs []model.HeaderMatch) ([]headerMatcher, error) {
	out := make([]headerMatcher, 0, len(hs))
	for _, h := range hs {
		if h.Name == "" {
			return nil, fmt.Errorf("header match without a name")
		}
		v, err := compileString(h.Value)
		if err != nil {
			return nil, fmt.Errorf("header %s: %v", h.Name, err)
		}
		out = append(out, headerMatcher{key: http.CanonicalHeaderKey(h.Name), val: v})
	}
	return out, nil
}

// match reports whether any value of the header matches.
func (h *headerMatcher) match(hdr http.Header) bool {
	for _, v := range hdr[h.key] {
		if h.val.match(v) {
			return true
		}
	}
	return false
}

// allMatch reports whether every matcher matches (true for none).
func allMatch(ms []headerMatcher, hdr http.Header) bool {
	for i := range ms {
		if !ms[i].match(hdr) {
			return false
		}
	}
	return true
}

// requestMatcher is a compiled model.RequestMatch.
type requestMatcher struct {
	method  *stringMatcher
	path    *stringMatcher
	headers []headerMatcher
}

func compileRequest(m model.RequestMatch) (requestMatcher, error) {
	var r requestMatcher
	if m.Method != nil {
		s, err := compileString(*m.Method)
		if err != nil {
			return r, fmt.Errorf("method: %v", err)
		}
		r.method = &s
	}
	if m.Path != nil {
		s, err := compileString(*m.Path)
		if err != nil {
			return r, fmt.Errorf("path: %v", err)
		}
		r.path = &s
	}
	hs, err := compileHeaders(m.Headers)
	if err != nil {
		return r, err
	}
	r.headers = hs
	return r, nil
}

func (m *requestMatcher) match(r *http.Request) bool {
	if m.method != nil && !m.method.match(r.Method) {
		return false
	}
	if m.path != nil && !m.path.match(r.URL.Path) {
		return false
	}
	return allMatch(m.headers, r.Header)
}

// Hosts are chosen as Envoy chooses virtual hosts: the most specific pattern that
// matches the request's host wins — an exact host, then the longest suffix wildcard
// ("*.example.com", "*-api.example.com"; the "*" stands for at least one character), then
// the longest prefix wildcard ("api.*"), then "*" — and only that host's routes are
// tried, in listener order, by path prefix. Hosts are compared in lower case, without
// the port.

// vhosts are a listener's routes grouped by host pattern.
type vhosts struct {
	exact  map[string][]*route
	suffix []wildcard // longest pattern first
	prefix []wildcard // longest pattern first
	any    []*route
}

// wildcard is the fixed part of a wildcard host pattern and its routes.
type wildcard struct {
	fixed  string
	routes []*route
}

// newVhosts groups routes by host; a route without hosts is under "*".
func newVhosts(routes []*route) *vhosts {
	v := &vhosts{exact: map[string][]*route{}}
	add := func(ws []wildcard, fixed string, ro *route) []wildcard {
		for i := range ws {
			if ws[i].fixed == fixed {
				ws[i].routes = append(ws[i].routes, ro)
				return ws
			}
		}
		return append(ws, wildcard{fixed: fixed, routes: []*route{ro}})
	}
	for _, ro := range routes {
		hosts := ro.hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			if seen[h] {
				continue
			}
			seen[h] = true
			switch {
			case h == "*" || h == "":
				v.any = append(v.any, ro)
			case strings.HasPrefix(h, "*"):
				v.suffix = add(v.suffix, h[1:], ro)
			case strings.HasSuffix(h, "*"):
				v.prefix = add(v.prefix, h[:len(h)-1], ro)
			default:
				v.exact[h] = append(v.exact[h], ro)
			}
		}
	}
	longestFirst := func(ws []wildcard) {
		sort.SliceStable(ws, func(i, j int) bool { return len(ws[i].fixed) > len(ws[j].fixed) })
	}
	longestFirst(v.suffix)
	longestFirst(v.prefix)
	return v
}

// routes returns the routes of the most specific host pattern matching host (lower
// case, no port), or nil.
func (v *vhosts) routes(host string) []*route {
	if rs, ok := v.exact[host]; ok {
		return rs
	}
	for i := range v.suffix {
		if f := v.suffix[i].fixed; len(host) > len(f) && strings.HasSuffix(host, f) {
			return v.suffix[i].routes
		}
	}
	for i := range v.prefix {
		if f := v.prefix[i].fixed; len(host) > len(f) && strings.HasPrefix(host, f) {
			return v.prefix[i].routes
		}
	}
	return v.any
}

// hostOnly returns a Host value without its port, lower case: "Example.COM:8080" is
// "example.com", "[::1]:80" is "[::1]".
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			h = h[:i+1]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
