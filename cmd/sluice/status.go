package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
)

func init() {
	c := &command{
		name:    "status",
		usage:   "[NAME] [--watch] [--admin ADDR] [--token-file FILE]",
		summary: "Show rollouts: phase, step, weights and each analysis metric (--watch follows changes)",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		fs := newFlagSet(c, stderr)
		var cf clientFlags
		cf.register(fs)
		watch := fs.Bool("watch", false, "keep running and redraw whenever the status changes (Ctrl-C stops)")
		interval := fs.Duration("interval", time.Second, "with --watch, how often to ask the admin API")
		pos, code, ok := parseInterspersed(fs, args, stdout)
		if !ok {
			return code
		}
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "sluice status: want at most one rollout name, got %d arguments\n", len(pos))
			fs.Usage()
			return exitUsage
		}
		if *interval <= 0 {
			fmt.Fprintln(stderr, "sluice status: --interval must be positive")
			return exitUsage
		}
		ac, err := cf.client()
		if err != nil {
			fmt.Fprintf(stderr, "sluice status: %v\n", err)
			return exitUsage
		}
		name := ""
		if len(pos) == 1 {
			name = pos[0]
		}
		if !*watch {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			text, err := fetchStatus(ctx, ac, name, time.Now())
			if err != nil {
				fmt.Fprintf(stderr, "sluice status: %v\n", err)
				return exitInvalid
			}
			_, _ = io.WriteString(stdout, text)
			return exitOK
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := watchStatus(ctx, ac, name, *interval, stdout, isTerminal(stdout)); err != nil {
			fmt.Fprintf(stderr, "sluice status: %v\n", err)
			return exitInvalid
		}
		return exitOK
	}
	register(c)
}

// fetchStatus renders one rollout (name != "") or all of them.
func fetchStatus(ctx context.Context, ac *adminClient, name string, now time.Time) (string, error) {
	var list []analyzer.RolloutStatus
	if name != "" {
		st, err := ac.get(ctx, name)
		if err != nil {
			return "", err
		}
		list = []analyzer.RolloutStatus{st}
	} else {
		var err error
		if list, err = ac.list(ctx); err != nil {
			return "", err
		}
	}
	var b bytes.Buffer
	if len(list) == 0 {
		b.WriteString("No rollouts configured.\n")
	}
	for i, st := range list {
		if i > 0 {
			b.WriteByte('\n')
		}
		renderStatus(&b, st, now)
	}
	// Replicas on store.etcd: who leads, what each serves (status_replicas.go).
	if v, err := ac.replicas(ctx); err != nil || v != nil {
		b.WriteByte('\n')
		if err != nil {
			fmt.Fprintf(&b, "replicas: cannot read: %v\n", err)
		} else {
			renderReplicas(&b, v, now)
		}
	}
	return b.String(), nil
}

// watchStatus redraws the status whenever it changes until ctx ends. On a terminal it
// clears the screen first; otherwise it separates the frames with a blank line. A lost
// connection is shown and retried rather than ending the watch.
func watchStatus(ctx context.Context, ac *adminClient, name string, every time.Duration, w io.Writer, tty bool) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last string
	for {
		qctx, cancel := context.WithTimeout(ctx, every+5*time.Second)
		text, err := fetchStatus(qctx, ac, name, time.Now())
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if ae, ok := err.(*apiError); ok && last == "" {
				return ae // a wrong name or token will not fix itself
			}
			text = "waiting: " + err.Error() + "\n"
		}
		if text != last {
			if tty {
				fmt.Fprint(w, "\x1b[H\x1b[2J")
			} else if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s  (sluice status --watch, Ctrl-C to stop)\n\n%s", time.Now().Format("15:04:05"), text)
			last = text
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// weightBar draws the canary's share: '█' applied, '▒' set but not yet applied, '░' stable.
func weightBar(set, actual, width int) string {
	clamp := func(v int) int { return max(0, min(100, v)) }
	a := clamp(actual) * width / 100
	s := clamp(set) * width / 100
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < width; i++ {
		switch {
		case i < a && i < s:
			b.WriteString("█")
		case i < a || i < s:
			b.WriteString("▒")
		default:
			b.WriteString("░")
		}
	}
	b.WriteByte(']')
	return b.String()
}

// phaseMark is a one-character summary of a measurement phase.
func phaseMark(p analyzer.MeasurementPhase) string {
	switch p {
	case analyzer.MeasurementSuccessful:
		return "✔"
	case analyzer.MeasurementFailed:
		return "✘"
	case analyzer.MeasurementError:
		return "!"
	case analyzer.MeasurementInconclusive:
		return "?"
	case analyzer.MeasurementRunning:
		return "…"
	case analyzer.MeasurementLowTraffic: // too few requests in the window: not counted, measured again
		return "~"
	case analyzer.MeasurementTerminated: // its run ended before it completed; it decided nothing
		return "■"
	}
	return "·"
}

// recentValues is the last n measurement values of a metric, oldest first.
func recentValues(m analyzer.MetricStatus, n int) string {
	ms := m.Measurements
	if len(ms) > n {
		ms = ms[len(ms)-n:]
	}
	parts := make([]string, 0, len(ms))
	for _, x := range ms {
		v := x.Value
		if v == "" {
			v = "-"
		}
		parts = append(parts, phaseMark(x.Phase)+v)
	}
	return strings.Join(parts, " ")
}

// renderStatus writes a human-readable status of one rollout.
func renderStatus(w io.Writer, st analyzer.RolloutStatus, now time.Time) {
	head := fmt.Sprintf("%s  %s  step %d/%d", st.Name, st.Phase, st.Step, st.Steps)
	if st.Aborted {
		head += "  (aborted)"
	}
	if st.Strategy != "" {
		head += "  " + st.Strategy
	}
	if st.Revision != "" {
		head += "  revision " + st.Revision
	}
	fmt.Fprintln(w, head)
	fmt.Fprintf(w, "  canary weight %s %3d%% set, %3d%% applied", weightBar(st.SetWeight, st.ActualWeight, 30), st.SetWeight, st.ActualWeight)
	if st.StableService != "" || st.CanaryService != "" {
		fmt.Fprintf(w, "   %s → %s", st.StableService, st.CanaryService)
	}
	fmt.Fprintln(w)
	if st.PauseEndsAt != nil {
		left := st.PauseEndsAt.Sub(now).Round(time.Second)
		fmt.Fprintf(w, "  paused until %s (%s left)\n", st.PauseEndsAt.Local().Format("15:04:05"), max(left, 0))
	}
	// The analyzer's pause message repeats the deadline shown above in UTC.
	if st.Message != "" && (st.PauseEndsAt == nil || !strings.HasPrefix(st.Message, "paused until")) {
		fmt.Fprintf(w, "  %s\n", st.Message)
	}
	if st.AbortLatencySeconds != nil {
		switch st.AbortCause {
		case analyzer.AbortByOperator:
			fmt.Fprintf(w, "  abort applied %.3f s after the operator's command\n", *st.AbortLatencySeconds)
		case analyzer.AbortByDataPlane:
			fmt.Fprintf(w, "  abort applied %.3f s after the data plane refused the change\n", *st.AbortLatencySeconds)
		default:
			fmt.Fprintf(w, "  abort applied %.3f s after the failing measurement\n", *st.AbortLatencySeconds)
		}
	}
	if st.PersistError != "" {
		fmt.Fprintf(w, "  STATE NOT SAVED (only aborts take effect until it is): %s\n", st.PersistError)
	}
	for _, run := range st.AnalysisRuns {
		fmt.Fprintf(w, "  analysis %s (%s, step %d): %s", run.Name, run.Kind, run.Step, run.Phase)
		if run.Message != "" {
			fmt.Fprintf(w, " — %s", run.Message)
		}
		fmt.Fprintln(w)
		for _, m := range run.Metrics {
			dry := ""
			if m.DryRun {
				dry = " (dry run)"
			}
			latest := "-"
			why := m.Message
			if n := len(m.Measurements); n > 0 {
				if v := m.Measurements[n-1].Value; v != "" {
					latest = v
				}
				if msg := m.Measurements[n-1].Message; msg != "" {
					why = msg
				}
			}
			fmt.Fprintf(w, "    %s %s%s  %s  latest %s  (%d ok, %d failed, %d inconclusive, %d error)\n",
				phaseMark(m.Phase), m.Name, dry, m.Phase, latest, m.Successful, m.Failed, m.Inconclusive, m.Error)
			if m.SuccessCondition != "" {
				fmt.Fprintf(w, "        success when %s\n", m.SuccessCondition)
			}
			if m.FailureCondition != "" {
				fmt.Fprintf(w, "        failure when %s\n", m.FailureCondition)
			}
			if len(m.Measurements) > 0 {
				fmt.Fprintf(w, "        recent: %s\n", recentValues(m, 6))
			}
			if why != "" {
				fmt.Fprintf(w, "        why: %s\n", why)
			}
		}
	}
}
