package parity

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// request is one HTTP request as a client sends it, to the router or to Envoy.
type request struct {
	listener string // "web" or "shop"
	peer     string // the client's address: trustedPeer or untrustedPeer
	method   string
	host     string // the Host field, as sent
	path     string // the request target, as sent (query included)
	header   http.Header
}

// get is a GET of path on host through listener web, from an untrusted (ordinary)
// client, with the given header fields (name, value pairs; a name may repeat).
func get(host, path string, fields ...string) request {
	h := http.Header{}
	for i := 0; i+1 < len(fields); i += 2 {
		h[fields[i]] = append(h[fields[i]], fields[i+1]) // the name as written, as sent
	}
	return request{listener: "web", peer: untrustedPeer, method: http.MethodGet, host: host, path: path, header: h}
}

func (r request) from(peer string) request { r.peer = peer; return r }
func (r request) post() request            { r.method = http.MethodPost; return r }
func (r request) on(listener string) request {
	r.listener = listener
	return r
}

// pinned adds the header route to the stable cluster (x-pin: stable), so that a request
// that no earlier header route or marker takes gets a single answer instead of the split.
func (r request) pinned() request {
	r.header = r.header.Clone()
	r.header["X-Pin"] = []string{"stable"}
	return r
}

// outcome is what one request got: the cluster whose backend answered, or "404", "503"
// or "504" when the data plane answered itself.
type outcome = string

// want is a documented decision: the share of requests per outcome, whether they are
// internal traffic (kept out of analysis), and the clusters that receive a mirror copy.
type want struct {
	shares   map[outcome]float64
	internal bool
	mirrors  []string
}

// to: every request goes to one outcome.
func to(o outcome) want { return want{shares: map[outcome]float64{o: 1}} }

// split: outcome a gets pa percent of the requests, b the rest.
func split(a outcome, pa int, b outcome) want {
	return want{shares: map[outcome]float64{a: float64(pa) / 100, b: float64(100-pa) / 100}}
}

func (w want) asInternal() want { w.internal = true; return w }
func (w want) mirror(clusters ...string) want {
	w.mirrors = append([]string(nil), clusters...)
	sort.Strings(w.mirrors)
	return w
}

// decision is what one data plane did with a case's n requests.
type decision struct {
	n      int
	shares map[outcome]float64
	// internal is the share of requests counted as internal traffic; negative when the
	// plane does not show it (a proxyless client cannot tell which cluster it used).
	internal float64
	// mirrors are the clusters that received a copy, sorted; nil where there are no
	// mirrors (proxyless gRPC).
	mirrors []string
	// detail says what went wrong when a request failed unexpectedly.
	detail string
}

func tally(outcomes []outcome) map[outcome]float64 {
	m := map[outcome]float64{}
	for _, o := range outcomes {
		m[o] += 1 / float64(len(outcomes))
	}
	return m
}

// String renders a decision for the table: "api-stable 70% api-canary 30%",
// "api-canary internal", "api-stable +mirror api-canary".
func (d decision) String() string {
	keys := make([]string, 0, len(d.shares))
	for k := range d.shares {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if d.shares[keys[i]] != d.shares[keys[j]] {
			return d.shares[keys[i]] > d.shares[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(k)
		if len(keys) > 1 {
			fmt.Fprintf(&b, " %.0f%%", 100*d.shares[k])
		}
	}
	switch {
	case d.internal == 1:
		b.WriteString(" internal")
	case d.internal > 0:
		fmt.Fprintf(&b, " internal %.0f%%", 100*d.internal)
	}
	if len(d.mirrors) > 0 {
		b.WriteString(" +mirror " + strings.Join(d.mirrors, ","))
	}
	if d.detail != "" {
		b.WriteString(" (" + d.detail + ")")
	}
	return b.String()
}

// String renders a want like a decision.
func (w want) String() string {
	d := decision{shares: w.shares, mirrors: w.mirrors}
	if w.internal {
		d.internal = 1
	}
	return d.String()
}

// sampling says how a plane's shares vary: exact (the router's smooth weighted round
// robin over consecutive requests, the fake Envoy's enumeration of its random value), or
// random draws (grpc-go), judged within four binomial standard deviations.
type sampling int

const (
	exact sampling = iota
	random
)

// sameShares reports whether got's shares match ref's: exactly, or for random draws
// within 4 binomial standard deviations of ref's share over got's n requests.
func sameShares(ref, got map[outcome]float64, n int, s sampling) (bool, string) {
	keys := map[outcome]bool{}
	for k := range ref {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	for k := range keys {
		p, q := ref[k], got[k]
		tol := 1e-9
		if s == random {
			tol = 4*math.Sqrt(p*(1-p)/float64(n)) + 1e-9
		}
		if math.Abs(p-q) > tol {
			return false, fmt.Sprintf("%s: %.3f, want %.3f ± %.3f", k, q, p, tol)
		}
	}
	return true, ""
}

// matches reports whether decision d, made by a plane with sampling s, is the decision w
// (a documented one, or another plane's decision, see asWant). What d does not show (a
// proxyless client's internal share, its mirrors) is not compared.
func (d decision) matches(w want, s sampling) (bool, string) {
	if ok, why := sameShares(w.shares, d.shares, d.n, s); !ok {
		return false, why
	}
	if d.internal >= 0 {
		wi := 0.0
		if w.internal {
			wi = 1
		}
		if d.internal != wi {
			return false, "internal share " + strconv.FormatFloat(d.internal, 'f', 2, 64)
		}
	}
	if d.mirrors != nil && strings.Join(d.mirrors, ",") != strings.Join(w.mirrors, ",") {
		return false, fmt.Sprintf("mirrors %v, want %v", d.mirrors, w.mirrors)
	}
	return true, ""
}

// asWant turns a decision into the want it shows (for comparing two planes).
func (d decision) asWant() want {
	return want{shares: d.shares, internal: d.internal > 0.5, mirrors: d.mirrors}
}
