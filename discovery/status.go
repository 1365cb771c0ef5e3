package discovery

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Status is what one source of a cluster has found, for `sluice status`, the web view
// and the admin API.
type Status struct {
	Cluster string `json:"cluster"`
	// Source is "DNS" or "Kubernetes"; Target what it watches.
	Source string `json:"source"`
	Target string `json:"target"`
	// Endpoints is the last good set, served now (sorted by address).
	Endpoints []model.Endpoint `json:"endpoints"`
	// LastSuccess is when the last good answer came (zero: none yet).
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastChange is when the served set last changed.
	LastChange time.Time `json:"lastChange,omitzero"`
	// Error is the current failure in short ("SERVFAIL", "timeout", "NXDOMAIN",
	// "empty answer", "no ready endpoint", …), "" when the last answer was good;
	// ErrorDetail the whole message; ErrorSince when this failure began.
	Error       string    `json:"error,omitempty"`
	ErrorDetail string    `json:"errorDetail,omitempty"`
	ErrorSince  time.Time `json:"errorSince,omitzero"`
	// ConsecutiveEmpty counts empty answers in a row (no records, NXDOMAIN, no ready
	// endpoint); each keeps the last good set.
	ConsecutiveEmpty int `json:"consecutiveEmpty,omitempty"`
	// Answers counts every answer, good or not.
	Answers int `json:"answers"`
	// TTL of the last good DNS answer, and the delay before the next query.
	TTL     time.Duration `json:"ttl,omitempty"`
	Refresh time.Duration `json:"refresh,omitempty"`
}

// Healthy reports whether the last answer was good.
func (s Status) Healthy() bool { return s.Answers > 0 && s.Error == "" }

// String is one line for humans:
//
//	DNS: 3 endpoints, resolved 12:01:05 (TTL 30s, next in 30s)
//	DNS: SERVFAIL since 12:03:10, serving 3 endpoints from 12:01:05
//	Kubernetes: forbidden: … since 12:03:10, serving nothing yet
func (s Status) String() string {
	var b strings.Builder
	b.WriteString(s.Source)
	b.WriteString(": ")
	n := serving(s.Endpoints)
	switch {
	case s.Answers == 0:
		b.WriteString("waiting for the first answer")
	case s.Error == "":
		fmt.Fprintf(&b, "%s, %s %s", count(n, "endpoint"), verb(s.Source), clock(s.LastSuccess))
		if d := len(s.Endpoints) - n; d > 0 {
			fmt.Fprintf(&b, ", %d draining", d)
		}
		if s.Source == "DNS" {
			fmt.Fprintf(&b, " (TTL %s, next in %s)", s.TTL, s.Refresh)
		}
	default:
		fmt.Fprintf(&b, "%s since %s", s.Error, clock(s.ErrorSince))
		if s.ConsecutiveEmpty > 1 {
			fmt.Fprintf(&b, " (%d empty answers in a row)", s.ConsecutiveEmpty)
		}
		if s.LastSuccess.IsZero() {
			b.WriteString(", serving nothing discovered yet")
		} else {
			fmt.Fprintf(&b, ", serving %s from %s", count(n, "endpoint"), clock(s.LastSuccess))
		}
	}
	return b.String()
}

func verb(source string) string {
	if source == "DNS" {
		return "resolved"
	}
	return "listed"
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func clock(t time.Time) string { return t.Format("15:04:05") }
