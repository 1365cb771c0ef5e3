package router

import (
	"fmt"
	"net/http"
	"regexp"
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

// hostMatch matches a request host (port stripped, lower case) against a route host:
// "*" or "" matches all, "*.example.com" matches subdomains, else exact.
func hostMatch(pattern, host string) bool {
	if pattern == "*" || pattern == "" {
		return true
	}
	if strings.HasPrefix(pattern, "*.") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return host == pattern
}

func requestHost(r *http.Request) string {
	h := r.Host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
