package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
)

// heartbeatEvery keeps idle event streams (and proxies in between) alive.
const heartbeatEvery = 15 * time.Second

// handleEvents streams server-sent events: a "rollouts" event carrying the JSON list of
// every rollout's status, sent at once and then whenever it changes. At most
// Options.MaxEventStreams run at once; more are answered 503.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	if n := s.streams.Add(1); int(n) > s.opts.MaxEventStreams {
		s.streams.Add(-1)
		s.forbidden.WithLabelValues("event_streams").Inc()
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many event streams open (%d): close one, or poll /api/v1/rollouts", s.opts.MaxEventStreams))
		return
	}
	defer s.streams.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	tick := time.NewTicker(s.opts.EventInterval)
	defer tick.Stop()
	var last []byte
	lastWrite := time.Now()
	for {
		var data []byte
		if c := s.controller(); c != nil {
			list := c.List()
			if list == nil {
				list = []analyzer.RolloutStatus{}
			}
			data, _ = json.Marshal(list)
		} else {
			data = []byte("[]")
		}
		if !bytes.Equal(data, last) {
			if _, err := fmt.Fprintf(w, "event: rollouts\ndata: %s\n\n", data); err != nil {
				return
			}
			fl.Flush()
			last, lastWrite = data, time.Now()
		} else if time.Since(lastWrite) >= heartbeatEvery {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
			lastWrite = time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}
