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
	// Key is "<shape>/<node id>".
	Key       string `json:"key"`
	ID        string `json:"id"`
	Cluster   string `json:"cluster,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
	Shape     Shape  `json:"shape"`
	Connected bool   `json:"connected"`
	Streams   int    `json:"streams"`
	// AppliedVersion is the newest snapshot version the node holds in full, ACKed
	// (the oldest across its streams; 0: none).
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

// Nodes returns every node seen in the last 10 minutes, sorted by key.
func (s *Server) Nodes() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ns := NodeStatus{
			Key: n.key, ID: n.id, Cluster: n.cluster, UserAgent: n.userAgent, Shape: n.shape,
			Connected: len(n.streams) > 0, Streams: len(n.streams), Responses: n.responses.Load(), Types: []TypeState{},
		}
		streams := make([]*adsStream, 0, len(n.streams)+1)
		for st := range n.streams {
			streams = append(streams, st)
		}
		if len(streams) == 0 && n.last != nil {
			streams = append(streams, n.last)
		}
		sort.Slice(streams, func(i, j int) bool { return streams[i].id < streams[j].id })
		for i, st := range streams {
			st.mu.Lock()
			if i == 0 || st.applied < ns.AppliedVersion {
				ns.AppliedVersion = st.applied
			}
			if st.held != nil && st.held == s.target(st.shape) {
				ns.Reverted = true
			}
			ns.NACKs += st.nacks
			if st.nacks > 0 {
				ns.LastNACK = &NACK{Type: st.nackType.String(), Version: st.nackVersion, Message: st.nackMessage}
			}
			if i == len(streams)-1 { // the newest stream's per-type state
				for k, sb := range st.subs {
					if sb == nil {
						continue
					}
					ts := TypeState{Type: kindNames[k], NACKMessage: sb.nackMsg}
					if sb.sent != nil {
						ts.Sent = sb.sent.version
					}
					if sb.acked != nil {
						ts.ACKed = sb.acked.version
					}
					if sb.nacked != nil {
						ts.NACKed = sb.nacked.version
						t := sb.nackAt.UTC()
						ts.NACKedAt = &t
					}
					ns.Types = append(ns.Types, ts)
				}
			}
			st.mu.Unlock()
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
