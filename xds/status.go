package xds

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// NodeStatus is one xDS node (all streams sharing a node id and shape), as
// GET /api/v1/xds/nodes shows it.
type NodeStatus struct {
	// Key is "<shape>/<node id>", the cache key the node is served under.
	Key       string `json:"key"`
	ID        string `json:"id"`
	Cluster   string `json:"cluster,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
	Shape     Shape  `json:"shape"`
	Connected bool   `json:"connected"`
	Streams   int    `json:"streams"`
	// AppliedVersion is the snapshot version of the routes the node has ACKed (0: none).
	AppliedVersion uint64 `json:"appliedVersion"`
	// Reverted is true while the node is held on what it last ACKed after a NACK.
	Reverted bool `json:"reverted"`
	// Responses counts discovery responses sent to the node; NACKs the NACKs received.
	Responses uint64 `json:"responses"`
	NACKs     uint64 `json:"nacks"`
	// LastNACK describes the most recent NACK, if any.
	LastNACK *NACK       `json:"lastNack,omitempty"`
	Types    []TypeState `json:"types"`
}

// NACK is a rejected push.
type NACK struct {
	Type    string `json:"type"`
	Version uint64 `json:"snapshotVersion"`
	Message string `json:"message"`
}

// TypeState is one node's state for one resource type (LDS, RDS, CDS or EDS).
type TypeState struct {
	Type        string     `json:"type"`
	Sent        string     `json:"sent"`
	ACKed       string     `json:"acked"`
	NACKed      string     `json:"nacked,omitempty"`
	NACKMessage string     `json:"nackMessage,omitempty"`
	NACKedAt    *time.Time `json:"nackedAt,omitempty"`
}

// Nodes returns every node seen since start, sorted by key.
func (s *Server) Nodes() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ns := NodeStatus{
			Key: n.key, ID: n.id, Cluster: n.cluster, UserAgent: n.userAgent, Shape: n.shape,
			Connected: n.streams > 0, Streams: n.streams, Reverted: n.reverted,
			Responses: n.responses, NACKs: n.nacks, Types: []TypeState{},
		}
		if n.nacks > 0 {
			ns.LastNACK = &NACK{Type: n.nackType, Version: n.nackVersion, Message: n.nackMessage}
		}
		for url, ts := range n.types {
			st := TypeState{Type: typeNames[url], Sent: ts.sent, ACKed: ts.acked, NACKed: ts.nacked, NACKMessage: ts.nackMessage}
			if !ts.nackAt.IsZero() {
				t := ts.nackAt.UTC()
				st.NACKedAt = &t
			}
			if st.Type == "RDS" {
				ns.AppliedVersion = s.modelVersion(ts.acked)
			}
			ns.Types = append(ns.Types, st)
		}
		sort.Slice(ns.Types, func(i, j int) bool { return ns.Types[i].Type < ns.Types[j].Type })
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// NodesHandler serves Nodes as JSON ({"nodes": [...]}) for GET /api/v1/xds/nodes.
func (s *Server) NodesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Nodes []NodeStatus `json:"nodes"`
		}{s.Nodes()})
	})
}
