// Package analyzer runs rollouts: it walks each Rollout's steps, measures the canary,
// and promotes or aborts. It is the only writer of weights: every decision becomes a new
// model.Snapshot that the data planes (router, xDS) apply.
//
// # Structure
//
// Step is a pure function over (rollout spec, State, now, Inputs) returning the next
// State and Actions (measurements to take, runs to terminate, events to emit); it never
// does I/O, so tests drive it tick by tick with an injected clock. It is split as Argo
// splits its controller: machine.go (inputs, actions, the shared outcome helpers: a
// failed run → event + abort, an inconclusive run → pause written once), canary.go,
// bluegreen.go, analysis.go (Argo's analysis/analysis.go: scheduling, recording,
// assessing) and commands.go.
//
// The Controller is the I/O around it. Its decisions (ticks, results, commands,
// reloads) are made on one goroutine (Run): each persists the changed State (Store;
// FileStore writes a temp file, fsyncs, renames and fsyncs the directory) BEFORE the
// decision takes effect, then hands the Snapshot (BuildSnapshot) to the publisher, which
// applies it to every DataPlane on its own goroutine and feeds WaitApplied's outcome
// back as Applied. Reads (List, Get, Snapshot) load an atomically published view and
// never wait for the disk, a data plane or a decision. A step's weight counts as reached
// only when every data plane applied it; a refusal (xDS NACK, ACK timeout, a listener
// that cannot bind) aborts the rollout with the data plane's message, and the publisher
// retries the refused routing with exponential backoff, logging each distinct error once.
//
// With Options.Replication the Controller is one replica of several on etcd (leader.go):
// it decides only while it holds a term of leadership, saves through the term's fenced
// write (a decision etcd refuses never takes effect), and otherwise serves the states
// the leader commits; a step completes when every replica's data planes applied it.
//
// When a State cannot be saved, only decisions that are safe unsaved take effect (an
// abort — weight 0, header and mirror routes removed — or measuring without moving on);
// nothing is promoted, the save is retried with backoff (logged once per distinct error,
// counted in sluice_rollout_state_save_errors_total, shown as persistError in the
// status) and operator commands return a *PersistError (HTTP 503).
//
// State carries a schema version (SchemaVersion); older files load (MigrateState).
// Floats NaN and ±Inf are written as the strings "NaN", "+Inf", "-Inf" in State, status
// JSON and the web view, so no value a provider returns can stop a save.
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
//   - Abort (failed/errored analysis, operator, data-plane error, progress deadline): weight 0, header and
//     mirror routes and the internal-traffic target removed in the same snapshot; the
//     rollout stays Degraded (also across restarts) until Retry (same release, from
//     step 0) or Start (a new release).
//
// # Analysis
//
// Argo's semantics (analysis.go): each metric measures after initialDelay, then every
// interval; count (no interval and no count: one measurement; interval without count:
// until the run stops). Successful, Failed and Inconclusive measurements count; Error
// measurements do not count toward count, are retried after ErrorRetryInterval (10 s)
// and end the metric as Error after more than consecutiveErrorLimit in a row. More
// Failed than failureLimit (-1: never) fails the metric; more Inconclusive than
// inconclusiveLimit makes it Inconclusive; consecutiveSuccessLimit successes in a row
// pass it. A run is assessed once every measurement it asked for is back (siblings of
// the deciding measurement are recorded); it ends at its first Failed, Error or
// Inconclusive metric that is not dry-run (the worst wins), and Successful once every
// metric, dry-run ones included, completed. Metrics still measuring when their run ends
// are Terminated, and their providers are told (TerminateAction). Failed or Error
// aborts the rollout; Inconclusive pauses it until promote (continue) or abort.
//
// Conditions are evaluated as Argo's expr does (NaN < 0.5 is false; indexing an empty
// result is an Error). No data is never a pass: a measurement of no data (an empty
// vector, NaN, null) that the conditions would pass without handling it themselves is
// Inconclusive (internal/condition). Before a prometheus measurement
// counts, each compared cluster must have served MinRequests requests (metric's
// minRequests, else ControlPlane.MinRequests) in the metric's traffic window
// (TrafficWindow: the longest range its query reads, else its interval, else 1m; at
// least 10 s), counted with RequestsQuery; otherwise the measurement is LowTraffic:
// shown, not counted, and the metric tries again after its interval. In the built-in
// store (no address) the count reads the router's http_requests_total{cluster=...},
// and a cluster without a series there has served 0 requests. Another Prometheus is
// read for the router's counter, else Envoy's envoy_cluster_upstream_rq_total; one
// holding neither for a cluster (only a service's own metrics) cannot gate, and each
// measurement then says "minRequests not enforced". Blue/green checks only the cluster
// serving traffic (none before the switch, the new active after it). A provider may also
// answer Running (the judge, until it decides): shown, not counted.
//
// # Health
//
// A step that raises the canary's weight (a higher setWeight, the final 100%, promote
// --full, blue/green's switch) waits until the canary cluster has a healthy endpoint in
// every data plane that carries it (health.go). The controller asks each data plane
// (Options.Health: the router's health checks and ejections, the endpoints the xDS
// server serves) on every tick and hands the answers to Step as Inputs.Health, so Step
// stays pure. While it waits the phase is Progressing, the message "waiting for healthy
// canary endpoints: 0/1 (router)"; after the rollout's ProgressDeadline (Argo's
// progressDeadlineSeconds, default 600 s), counted from when the wait began and kept
// across restarts, the rollout aborts. A data plane also reports ejected endpoints
// (passive outlier detection): shown, never waited on. A change of a cluster's healthy,
// ejected or total endpoints is a healthChanged event of each rollout using it, and the
// gauges sluice_cluster_{healthy,ejected}_endpoints and sluice_cluster_endpoints
// {cluster,plane} follow the data planes' views.
//
// # Status
//
// StatusOf renders the state: the step list with the current step, what the step waits
// for (Waiting, WaitDeadline), the operator commands valid now (Actions, from
// CheckCommand), the current release's weight history and the earlier releases
// (State.Releases: the last 10, each with its outcome, reason, weight history and
// analysis runs). The controller adds each cluster's endpoints per data plane, the
// rollout's latest events and the last refused reload (SetReloadError).
//
// Providers (ProviderMeasurer): prometheus without an address is evaluated by
// Options.Embedded (the in-process store), with an address through the server's HTTP API
// (provider.Remote: per-query timeout, headers, basic/bearer auth read from file or env
// at query time and never logged); web fetches the URL and evaluates the value at
// jsonPath (several matches: the first), or the body as a string when it is not JSON,
// as Argo's web provider does; the judge runs analyzer/judge sessions (Options.Judge,
// e.g. NewJudgeFactory(routerRegistry); nil: judge metrics are Error), whose state is
// kept per metric of a run in State (MetricRun.ProviderState) and which end with their
// run (Terminator). Vector results are []float64, scalars float64. Any provider failure
// (unreachable, timeout, HTTP error) is Error, never Successful.
//
// Observability: events (started, stepCompleted, paused, resumed, aborted, promoted,
// analysisFailed, waitingForHealth, healthChanged) are logged, counted in sluice_rollout_events_total and POSTed as JSON
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
