package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// replicas reads GET /api/v1/replicas; nil (and no error) when the server runs alone.
func (c *adminClient) replicas(ctx context.Context) (*replicasView, error) {
	var v replicasView
	err := c.do(ctx, http.MethodGet, "/api/v1/replicas", nil, &v)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// renderReplicas writes the replicated control plane as the asked replica sees it: who
// leads, each replica's applied weight per rollout, its config digest, and what is wrong.
func renderReplicas(w io.Writer, v *replicasView, now time.Time) {
	leader := v.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(w, "replicas: %d live, leader %s (asked %s)\n", len(v.Replicas), leader, v.Self)
	switch {
	case v.Error != "":
		fmt.Fprintf(w, "  ETCD UNREACHABLE from this replica (%s): it serves the last weights it has; nothing is decided until a replica reaches etcd\n", v.Error)
	case !v.EtcdReachable:
		fmt.Fprintln(w, "  this replica holds no lease in etcd right now (keepalives failing): it serves the last weights and does not decide")
	case v.Leader == "":
		fmt.Fprintln(w, "  no replica leads: nothing is decided until one is elected")
	}
	if v.ConfigMismatch {
		fmt.Fprintf(w, "  CONFIG MISMATCH: this replica's config digest %s differs from the leader's %s: it does not lead; give every replica the same files\n",
			v.ConfigDigest, v.LeaderConfigDigest)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, in := range v.Replicas {
		role := "follower"
		if in.Leader {
			role = "leader"
		}
		names := make([]string, 0, len(in.AppliedWeights))
		for n := range in.AppliedWeights {
			names = append(names, n)
		}
		sort.Strings(names)
		applied := make([]string, 0, len(names))
		for _, n := range names {
			a := fmt.Sprintf("%s %d%%", n, in.AppliedWeights[n])
			if f, ok := in.Refused[n]; ok {
				a += " (refused a newer state: " + f.Error + ")"
			}
			applied = append(applied, a)
		}
		if len(applied) == 0 {
			applied = append(applied, "nothing applied yet")
		}
		config := "config " + in.ConfigDigest
		if v.LeaderConfigDigest != "" && in.ConfigDigest != v.LeaderConfigDigest {
			config += " DIFFERS FROM THE LEADER'S"
		}
		seen := "seen " + max(now.Sub(in.LastSeen), 0).Round(time.Second).String() + " ago"
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", in.ID, role, strings.Join(applied, ", "), config, seen)
	}
	_ = tw.Flush()
}
