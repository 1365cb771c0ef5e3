// Package analyzer runs rollouts: it walks each Rollout's steps, measures the canary,
// and promotes or aborts. It is the only writer of weights: every decision becomes a new
// model.Snapshot that the data planes (router, xDS) apply.
//
// # Structure
//
// Step is a pure function over (rollout spec, State, now, Inputs) returning the next
// State and Actions (measurements to take, events to emit); it never does I/O, so tests
// drive it tick by tick with an injected clock. The Controller is the I/O around it: it
// persists every changed State (Store; FileStore writes a temp file, fsyncs, renames and
// fsyncs the directory) BEFORE the decision takes effect, builds the Snapshot
// (BuildSnapshot), applies it to every DataPlane and feeds WaitApplied's outcome back as
// Applied. A step's weight counts as reached only when every data plane applied it; an
// error (xDS NACK, ACK timeout) aborts the rollout with the data plane's message.
//
// # Lifecycle of a release (no Kubernetes)
//
// A rollout's two clusters (canary: stableService/canaryService; blue/green:
// activeService/previewService) play two roles per release, kept in State.Stable and
// State.Canary. The rollout owns every listener route whose configured cluster is either
// of them (on stableIngress/activeIngress when set) and splits it
// {Stable: 100-w, Canary: w}.
//
//   - First start: a rollout with no stored state starts a release at once: Stable is the
//     spec's stable (active) service, Canary its canary (preview) service, weight 0.
//   - New release: a reloaded config whose Rollout.Revision (annotation
//     sluice.dev/revision, else a hash of spec.template) differs from the stored one, or
//     Controller.Start on a completed or aborted rollout. If the previous release
//     completed, the roles swap: the cluster that now serves 100% (the old canary) becomes
//     Stable and the idle one (the old stable, where the operator deploys the next
//     version) becomes Canary, starting at weight 0, so no request moves when the next
//     release starts. Swapping the two names in the config instead works the same way,
//     because a route is owned through either name. After an aborted release the roles
//     stay: the stable kept serving.
//   - Full promotion (all steps done, or promote --full): the Canary serves 100% and the
//     rollout is Healthy (Completed) until the next release.
//   - Abort (failed/errored analysis, operator, data-plane error): weight 0, header and
//     mirror routes and the internal-traffic target removed in the same snapshot; the
//     rollout stays Degraded (also across restarts) until Retry (same release, from
//     step 0) or Start (a new release).
//
// # Analysis
//
// Argo's semantics: each metric measures after initialDelay, then every interval; count
// (no interval and no count: one measurement; interval without count: until the run
// stops). Successful, Failed and Inconclusive measurements count; Error measurements do
// not count toward count, are retried after ErrorRetryInterval (10 s) and end the metric
// as Error after more than consecutiveErrorLimit in a row. More Failed than failureLimit
// (-1: never) fails the metric; more Inconclusive than inconclusiveLimit makes it
// Inconclusive. A run stops at its first Failed, Error or Inconclusive non-dry-run metric;
// dry-run metrics are measured and shown but never decide. Failed or Error aborts the
// rollout; Inconclusive pauses it until promote (continue) or abort.
//
// No data is never a pass: an empty vector, NaN or null is Inconclusive unless the
// condition handles it itself (internal/condition). Before a prometheus measurement
// counts, each compared cluster must have served MinRequests requests (metric's
// minRequests, else ControlPlane.MinRequests) in the metric's window
// (RequestsQuery); otherwise the measurement is LowTraffic: shown, not counted, and the
// metric tries again after its interval. The count reads the router's
// http_requests_total{cluster=...}, else Envoy's envoy_cluster_upstream_rq_total; a
// Prometheus holding neither for a cluster (only a service's own metrics) cannot gate,
// and each measurement then says "minRequests not enforced". Blue/green checks only the cluster serving
// traffic (none before the switch, the new active after it). A provider may also answer
// Running (the judge, until it decides): shown, not counted.
//
// Providers (ProviderMeasurer): prometheus without an address is evaluated by
// Options.Embedded (the in-process store), with an address through the server's HTTP API
// (provider.Remote: per-query timeout, headers, basic/bearer auth read from file or env
// at query time and never logged); web fetches JSON and picks a value with jsonPath; the
// judge runs analyzer/judge sessions (Options.Judge, e.g. NewJudgeFactory(routerRegistry);
// nil: judge metrics are Error). Vector results are []float64, scalars float64. Any
// provider failure (unreachable, timeout, HTTP error) is Error, never Successful.
//
// Observability: events (started, stepCompleted, paused, resumed, aborted, promoted,
// analysisFailed) are logged, counted in sluice_rollout_events_total and POSTed as JSON
// to webhooks (own goroutine per hook, timeout, retries; a full queue drops and logs).
// Gauges sluice_rollout_phase{rollout,phase} and sluice_rollout_weight{rollout,kind=set|actual},
// counter sluice_analysis_measurements_total{rollout,metric,phase}, histogram
// sluice_rollout_abort_latency_seconds (failing measurement → zero weight applied).
//
// Blue/green: the active cluster serves 100% and the preview is reachable by the
// PreviewHeader route; prePromotionAnalysis gates the switch; with autoPromotionEnabled
// the switch happens autoPromotionSeconds after the gate passed, else on promote. The
// switch is one 0→100 change; postPromotionAnalysis can still abort back to the old
// active, and the rollout completes once it passed and scaleDownDelaySeconds elapsed.
package analyzer
