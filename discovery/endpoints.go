package discovery

import (
	"slices"
	"strings"

	"github.com/sluice-mesh/sluice/model"
)

// merge returns the union of the sets, one endpoint per address, sorted by address.
// When an address appears more than once, a serving endpoint wins over a draining one
// (a pod both listed as a fixed endpoint and terminating keeps serving), then the
// larger weight.
func merge(sets ...[]model.Endpoint) []model.Endpoint {
	byAddr := map[string]model.Endpoint{}
	for _, set := range sets {
		for _, ep := range set {
			prev, seen := byAddr[ep.Address]
			if !seen || better(ep, prev) {
				byAddr[ep.Address] = ep
			}
		}
	}
	out := make([]model.Endpoint, 0, len(byAddr))
	for _, ep := range byAddr {
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b model.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// better reports whether a should replace b for the same address.
func better(a, b model.Endpoint) bool {
	if a.Draining != b.Draining {
		return !a.Draining
	}
	return a.Weight > b.Weight
}

// serving counts the endpoints that take new requests (not draining).
func serving(eps []model.Endpoint) int {
	n := 0
	for _, ep := range eps {
		if !ep.Draining {
			n++
		}
	}
	return n
}

// equal reports whether two sorted sets are the same.
func equal(a, b []model.Endpoint) bool { return slices.Equal(a, b) }
