// Package discovery finds the endpoints of Clusters that name a DNS name (A/AAAA or
// SRV records) or a Kubernetes Service (discovery.k8s.io/v1 EndpointSlices), and
// tells the data planes whenever a cluster's set changes.
//
// A Source watches one target and reports every answer it gets. The Manager runs the
// sources the configuration asks for, keeps each one's last good set, and publishes a
// cluster's full current set (its fixed endpoints plus everything discovered) through
// Options.OnChange, debounced, from one goroutine. A failure never empties a cluster:
// a resolver or API error, and an empty answer, keep the last good set serving; the
// failure is logged once per change, counted, and shown in Status ("DNS: SERVFAIL
// since 12:03:10, serving 3 endpoints from 12:01:05").
//
// Overlay puts the discovered sets into the snapshots the analyzer publishes, so the
// router and the xDS server receive ordinary snapshots in which only endpoints change.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Source discovers the endpoints of one target (a DNS name, a Kubernetes Service).
type Source interface {
	// Run reports each answer until ctx ends. Reports come from one goroutine, in order.
	Run(ctx context.Context, report func(Result))
	// Kind names the mechanism for status lines: "DNS" or "Kubernetes".
	Kind() string
	// Target describes what is watched, e.g. "_http._tcp.api.example (SRV)".
	Target() string
}

// Result is one answer of a Source: a set of endpoints, or an error.
type Result struct {
	// Endpoints is the whole set the source sees now, sorted by address. Empty with a
	// nil Err is an empty answer: it keeps the last good set, as an error does.
	Endpoints []model.Endpoint
	// Err is why there is no answer; an *Error tells its kind.
	Err error
	// TTL is the smallest record TTL of a DNS answer (0 otherwise).
	TTL time.Duration
	// Refresh is when the source asks again (DNS; 0: when something changes).
	Refresh time.Duration
}

// Failure kinds, used as the result label of sluice_discovery_resolutions_total.
const (
	ResultSuccess     = "success"
	ResultEmpty       = "empty"    // no records, or no ready endpoint
	ResultNXDomain    = "nxdomain" // the name does not exist
	ResultServFail    = "servfail"
	ResultRefused     = "refused"
	ResultTimeout     = "timeout"
	ResultUnreachable = "unreachable" // connection refused: nothing listens there
	ResultError       = "error"       // anything else: network, API server, malformed answer
)

// Error is a failed discovery answer.
type Error struct {
	// Kind is one of the Result* failure constants.
	Kind string
	// Detail says what failed and where, e.g. "SERVFAIL from 10.0.0.10:53 for api.example A".
	Detail string
}

// Error returns the detail.
func (e *Error) Error() string { return e.Detail }

// Short is what a status line shows: "SERVFAIL", "NXDOMAIN", "timeout", "empty answer".
func (e *Error) Short() string {
	switch e.Kind {
	case ResultServFail, ResultNXDomain, ResultRefused:
		return map[string]string{ResultServFail: "SERVFAIL", ResultNXDomain: "NXDOMAIN", ResultRefused: "REFUSED"}[e.Kind]
	case ResultEmpty:
		return "empty answer"
	case ResultTimeout, ResultUnreachable:
		return e.Kind
	}
	return e.Detail
}

func errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// kindOf returns the result label of err (nil: success).
func kindOf(err error) string {
	if err == nil {
		return ResultSuccess
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ResultError
}

// shortOf is err's status text.
func shortOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Short()
	}
	return err.Error()
}
