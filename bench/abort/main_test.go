package main

import (
	"testing"
	"time"
)

func TestSummarizeNearestRank(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var twenty []time.Duration
	for i := 20; i >= 1; i-- { // unsorted on purpose
		twenty = append(twenty, ms(i))
	}
	for _, c := range []struct {
		name string
		in   []time.Duration
		want stats
	}{
		{"one", []time.Duration{ms(7)}, stats{ms(7), ms(7), ms(7)}},
		{"twenty", twenty, stats{median: ms(10), p95: ms(19), max: ms(20)}},
		{"negative times stay negative", []time.Duration{ms(-3), ms(2), ms(-1)}, stats{ms(-1), ms(2), ms(2)}},
	} {
		if got := summarize(c.in); got != c.want {
			t.Errorf("%s: summarize = %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestBoundAddrs reads addresses from lines shaped as `sluice serve --log-format json`
// writes them, ignoring other lines and text that is not JSON.
func TestBoundAddrs(t *testing.T) {
	log := `{"level":"info","ts":1.7,"msg":"admin API listening","address":"127.0.0.1:40001","token":false}
not json: listener bound
{"level":"info","ts":1.8,"logger":"router","msg":"listener bound","address":"127.0.0.1:40002"}
{"level":"info","ts":1.9,"msg":"health check","address":"127.0.0.1:9"}
`
	if a, l := boundAddrs(log); a != "127.0.0.1:40001" || l != "127.0.0.1:40002" {
		t.Fatalf("boundAddrs = %q, %q", a, l)
	}
	if a, l := boundAddrs(`{"msg":"admin API listening","address":"127.0.0.1:1"}`); a != "127.0.0.1:1" || l != "" {
		t.Fatalf("before the listener is bound: %q, %q", a, l)
	}
}
