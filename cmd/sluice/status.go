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
			fmt.Fprintf(w, "%s  (sluice status --watch, Ctrl-C to stop)\n\n%s", time.Now().Format("15:04:05 MST"), text)
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

// localTime formats t in now's time zone (callers pass time.Now(): local time) with the
// zone's name: the time of day when t is on now's day, else the date too.
func localTime(t, now time.Time) string {
	t = t.In(now.Location())
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05 MST")
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

// discoveryLine is what a discovery source found, in the operator's time zone:
// "DNS: 3 endpoints, resolved 12:01:05 CEST" or "DNS: SERVFAIL since 12:03:10 CEST,
// serving 3 endpoints from 12:01:05 CEST" (the API's summary, in local time).
func discoveryLine(d analyzer.DiscoveryStatus, now time.Time) string {
	n := func(k int) string {
		if k == 1 {
			return "1 endpoint"
		}
		return fmt.Sprintf("%d endpoints", k)
	}
	at := func(t *time.Time) string {
		if t == nil {
			return "?"
		}
		return localTime(*t, now)
	}
	switch {
	case d.Error != "" && d.LastSuccess == nil:
		return fmt.Sprintf("%s: %s since %s, serving nothing discovered yet", d.Source, d.Error, at(d.ErrorSince))
	case d.Error != "":
		return fmt.Sprintf("%s: %s since %s, serving %s from %s", d.Source, d.Error, at(d.ErrorSince), n(d.Endpoints), at(d.LastSuccess))
	case d.LastSuccess == nil:
		return d.Source + ": waiting for the first answer"
	}
	verb := "listed"
	if d.Source == "DNS" {
		verb = "resolved"
	}
	line := fmt.Sprintf("%s: %s, %s %s", d.Source, n(d.Endpoints), verb, at(d.LastSuccess))
	if d.Draining > 0 {
		line += fmt.Sprintf(", %d draining", d.Draining)
	}
	return line
}

// inOrAgo says how far t is from now: "in 4m12s" or "3s ago".
func inOrAgo(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d >= 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}

// stepMark is a one-character summary of a step's state.
func stepMark(state string) string {
	switch state {
	case "done":
		return "✔"
	case "current":
		return "▶"
	case "aborted":
		return "✘"
	}
	return "·"
}

// renderStatus writes a human-readable status of one rollout. Times are in now's zone
// (local time), with the zone's name.
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
	if !st.StartedAt.IsZero() {
		head += "  started " + localTime(st.StartedAt, now)
	}
	fmt.Fprintln(w, head)
	if re := st.ReloadError; re != nil {
		fmt.Fprintf(w, "  LAST RELOAD REFUSED at %s: %s\n", localTime(re.At, now), re.Message)
		for _, d := range re.Diagnostics {
			fmt.Fprintf(w, "      %s\n", d)
		}
	}
	fmt.Fprintf(w, "  canary weight %s %3d%% set, %3d%% applied", weightBar(st.SetWeight, st.ActualWeight, 30), st.SetWeight, st.ActualWeight)
	if st.StableService != "" || st.CanaryService != "" {
		fmt.Fprintf(w, "   %s → %s", st.StableService, st.CanaryService)
	}
	fmt.Fprintln(w)
	if len(st.StepList) > 0 {
		parts := make([]string, 0, len(st.StepList))
		for _, s := range st.StepList {
			parts = append(parts, fmt.Sprintf("%s %d %s", stepMark(s.State), s.Index, s.Text))
		}
		fmt.Fprintf(w, "  steps: %s\n", strings.Join(parts, " │ "))
	}
	if len(st.Clusters) > 0 {
		parts := make([]string, 0, len(st.Clusters))
		for _, c := range st.Clusters {
			part := fmt.Sprintf("%s (%s)", c.Name, c.Role)
			if len(c.Planes) == 0 {
				part += " no data plane reports it"
			}
			for _, p := range c.Planes {
				part += fmt.Sprintf(" %d/%d %s", p.Healthy, p.Total, p.Plane)
				if p.Ejected > 0 {
					part += fmt.Sprintf(" (%d ejected)", p.Ejected)
				}
			}
			parts = append(parts, part)
		}
		fmt.Fprintf(w, "  healthy endpoints: %s\n", strings.Join(parts, " · "))
		for _, c := range st.Clusters {
			for _, d := range c.Discovery {
				fmt.Fprintf(w, "  endpoints of %s from %s\n", c.Name, discoveryLine(d, now))
			}
		}
	}
	if st.Message != "" && !strings.HasPrefix(st.Waiting, st.Message) {
		fmt.Fprintf(w, "  %s\n", st.Message)
	}
	if st.Waiting != "" {
		fmt.Fprintf(w, "  waiting for: %s", st.Waiting)
		if st.WaitDeadline != nil {
			fmt.Fprintf(w, " (deadline %s, %s)", localTime(*st.WaitDeadline, now), inOrAgo(*st.WaitDeadline, now))
		}
		fmt.Fprintln(w)
	}
	if st.AbortLatencySeconds != nil {
		switch st.AbortCause {
		case analyzer.AbortByOperator:
			fmt.Fprintf(w, "  abort applied %.3f s after the operator's command\n", *st.AbortLatencySeconds)
		case analyzer.AbortByDataPlane:
			fmt.Fprintf(w, "  abort applied %.3f s after the data plane refused the change\n", *st.AbortLatencySeconds)
		case analyzer.AbortByProgressDeadline:
			fmt.Fprintf(w, "  abort applied %.3f s after the progress deadline passed\n", *st.AbortLatencySeconds)
		default:
			fmt.Fprintf(w, "  abort applied %.3f s after the failing measurement\n", *st.AbortLatencySeconds)
		}
	}
	if st.PersistError != "" {
		fmt.Fprintf(w, "  STATE NOT SAVED (only aborts take effect until it is): %s\n", st.PersistError)
	}
	if len(st.Actions) > 0 {
		names := make([]string, 0, len(st.Actions))
		for _, a := range st.Actions {
			names = append(names, actionName(a))
		}
		fmt.Fprintf(w, "  you can: %s\n", strings.Join(names, ", "))
	}
	renderRuns(w, st.AnalysisRuns, "  ")
	if len(st.Events) > 0 {
		fmt.Fprintln(w, "  recent events:")
		evs := st.Events
		if len(evs) > 6 {
			evs = evs[len(evs)-6:]
		}
		for _, e := range evs {
			fmt.Fprintf(w, "    %s  %s  %s\n", localTime(e.Time, now), e.Type, e.Message)
		}
	}
	if len(st.Releases) > 0 {
		fmt.Fprintln(w, "  earlier releases (newest first):")
		for i := len(st.Releases) - 1; i >= 0; i-- {
			rel := st.Releases[i]
			fmt.Fprintf(w, "    %s  %s  %s → %s  %s → %s, step %d, weight %d%%\n", rel.Revision, strings.ToUpper(rel.Outcome),
				localTime(rel.StartedAt, now), localTime(rel.EndedAt, now), rel.StableService, rel.CanaryService, rel.Step, rel.Weight)
			if rel.Reason != "" {
				fmt.Fprintf(w, "      %s\n", rel.Reason)
			}
			for _, run := range rel.AnalysisRuns {
				for _, m := range run.Metrics {
					if len(m.Measurements) > 0 {
						fmt.Fprintf(w, "      %s %s/%s: %s  %s\n", phaseMark(m.Phase), run.Name, m.Name, m.Phase, recentValues(m, 6))
					}
				}
			}
		}
	}
}

// actionName is the CLI command for an action status lists as valid.
func actionName(a analyzer.CommandKind) string {
	if a == analyzer.CmdPromoteFull {
		return "promote --full"
	}
	return string(a)
}

// renderRuns writes analysis runs with each metric's recent values and why.
func renderRuns(w io.Writer, runs []analyzer.AnalysisRunStatus, indent string) {
	for _, run := range runs {
		fmt.Fprintf(w, "%sanalysis %s (%s, step %d): %s", indent, run.Name, run.Kind, run.Step, run.Phase)
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
			fmt.Fprintf(w, "%s  %s %s%s  %s  latest %s  (%d ok, %d failed, %d inconclusive, %d error)\n",
				indent, phaseMark(m.Phase), m.Name, dry, m.Phase, latest, m.Successful, m.Failed, m.Inconclusive, m.Error)
			if m.SuccessCondition != "" {
				fmt.Fprintf(w, "%s      success when %s\n", indent, m.SuccessCondition)
			}
			if m.FailureCondition != "" {
				fmt.Fprintf(w, "%s      failure when %s\n", indent, m.FailureCondition)
			}
			if len(m.Measurements) > 0 {
				fmt.Fprintf(w, "%s      recent: %s\n", indent, recentValues(m, 6))
			}
			if why != "" {
				fmt.Fprintf(w, "%s      why: %s\n", indent, why)
			}
		}
	}
}
