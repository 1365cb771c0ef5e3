package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/internal/demobackend"
)

func init() {
	c := &command{
		name:    "demo-load",
		usage:   "[--url URL] [--rps N] [--duration D] [--header 'Name: value'...] [--concurrency N]",
		summary: "Send steady GET traffic (e.g. through Sluice's router) and count the answers by version",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runDemoLoad(ctx, c, args, stdout, stderr)
	}
	register(c)
}

// headerList is a repeatable --header 'Name: value' flag.
type headerList http.Header

func (h headerList) String() string { return "" }

func (h headerList) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("want 'Name: value', got %q", v)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

// runDemoLoad runs `sluice demo-load` until --duration has passed or ctx is done, printing
// a progress line every --every and a summary at the end. It never sends faster than
// --rps, and never more than --concurrency requests at once: when the target is slower
// than that, ticks are skipped (and counted) rather than queued.
func runDemoLoad(ctx context.Context, c *command, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(c, stderr)
	l := &loadGen{header: http.Header{}}
	var duration, every time.Duration
	fs.StringVar(&l.url, "url", "http://127.0.0.1:8080/", "where to send GET requests (the router's listener)")
	fs.IntVar(&l.rps, "rps", 20, "requests per second (1..10000)")
	fs.DurationVar(&duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.DurationVar(&every, "every", 5*time.Second, "print a progress line this often (0: only the summary)")
	fs.IntVar(&l.workers, "concurrency", 8, "requests in flight at most (1..1000)")
	fs.Var(headerList(l.header), "header", "add this header to every request, e.g. 'x-internal-test: true' (repeatable)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "sluice demo-load: unexpected arguments %q\n", fs.Args())
		return exitUsage
	case l.rps < 1 || l.rps > 10000:
		fmt.Fprintf(stderr, "sluice demo-load: --rps %d: want 1..10000\n", l.rps)
		return exitUsage
	case l.workers < 1 || l.workers > 1000:
		fmt.Fprintf(stderr, "sluice demo-load: --concurrency %d: want 1..1000\n", l.workers)
		return exitUsage
	case duration < 0 || every < 0:
		fmt.Fprintln(stderr, "sluice demo-load: --duration and --every must not be negative")
		return exitUsage
	}
	if u, err := url.Parse(l.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "sluice demo-load: --url %q: want http://HOST:PORT/PATH\n", l.url)
		return exitUsage
	}
	// At the end of --duration no new request starts and those in flight finish (so the
	// summary counts every request sent); Ctrl-C cuts them short.
	sending := ctx
	if duration > 0 {
		var cancel context.CancelFunc
		sending, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	fmt.Fprintf(stdout, "demo-load: GET %s at %d requests/s", l.url, l.rps)
	if duration > 0 {
		fmt.Fprintf(stdout, " for %s", duration)
	}
	fmt.Fprintln(stdout, " (Ctrl-C stops)")
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); l.run(sending, ctx) }()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			fmt.Fprintf(stdout, "%6.0fs  %s\n", time.Since(start).Seconds(), l.summary())
		case <-done:
			fmt.Fprintf(stdout, "demo-load: done after %s: %s\n", time.Since(start).Round(100*time.Millisecond), l.summary())
			return exitOK
		}
	}
}

// loadGen sends steady GET traffic and counts the answers by the version that served
// them (the demo backend's X-Sluice-Backend header).
type loadGen struct {
	url     string
	rps     int
	workers int
	header  http.Header

	mu        sync.Mutex
	byBackend map[string]int64

	sent, errs, failed, skipped atomic.Int64
}

// answered returns how many answers came from the backend named name.
func (l *loadGen) answered(name string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byBackend[name]
}

// summary is one line: requests sent, answers by version, errors.
func (l *loadGen) summary() string {
	l.mu.Lock()
	names := make([]string, 0, len(l.byBackend))
	for n := range l.byBackend {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		label := n
		if label == "" {
			label = "unnamed"
		}
		parts = append(parts, fmt.Sprintf("%d %s", l.byBackend[n], label))
	}
	l.mu.Unlock()
	s := fmt.Sprintf("%d sent; answered by: %s; %d errors (5xx), %d without an answer", l.sent.Load(),
		strings.Join(parts, ", "), l.errs.Load(), l.failed.Load())
	if n := l.skipped.Load(); n > 0 {
		s += fmt.Sprintf("; %d not sent (all %d workers busy)", n, l.workers)
	}
	return s
}

// run sends requests until sending is done, then waits for those in flight; ctx (the
// requests' context) cuts them short.
func (l *loadGen) run(sending, ctx context.Context) {
	tr := &http.Transport{MaxIdleConns: l.workers, MaxIdleConnsPerHost: l.workers, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	jobs := make(chan struct{}) // unbuffered: a tick is taken only by an idle worker
	var wg sync.WaitGroup
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				l.one(ctx, hc)
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(l.rps))
	defer tick.Stop()
	defer wg.Wait()
	defer close(jobs)
	for {
		select {
		case <-sending.Done():
			return
		case <-tick.C:
			select {
			case jobs <- struct{}{}:
			default: // all workers busy: skip rather than pile up
				l.skipped.Add(1)
			}
		}
	}
}

func (l *loadGen) one(ctx context.Context, hc *http.Client) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return
	}
	for k, v := range l.header {
		req.Header[k] = v
	}
	if h := l.header.Get("Host"); h != "" {
		req.Host = h // net/http sends req.Host, not a Host header
	}
	l.sent.Add(1)
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			l.failed.Add(1)
		} else {
			l.sent.Add(-1) // cut short by the end of the run: not counted
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.mu.Lock()
	if l.byBackend == nil {
		l.byBackend = map[string]int64{}
	}
	l.byBackend[resp.Header.Get(demobackend.HeaderBackend)]++
	l.mu.Unlock()
	if resp.StatusCode >= 500 {
		l.errs.Add(1)
	}
}
