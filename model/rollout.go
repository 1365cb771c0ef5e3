package model

import "time"

// StrategyKind is a rollout's strategy.
type StrategyKind string

// Rollout strategies.
const (
	StrategyCanary    StrategyKind = "canary"
	StrategyBlueGreen StrategyKind = "blueGreen"
)

// Rollout is an Argo Rollouts argoproj.io/v1alpha1 Rollout, as Sluice runs it.
type Rollout struct {
	Name string
	// Revision identifies the release the manifest describes: the annotation
	// sluice.dev/revision when set, else a hash of spec.template. A new revision in a
	// reloaded config starts a new rollout, as a new pod template does in Argo.
	Revision  string
	Strategy  StrategyKind
	Canary    *CanaryStrategy    // set when Strategy is canary
	BlueGreen *BlueGreenStrategy // set when Strategy is blueGreen
	// ProgressDeadline (Argo's progressDeadlineSeconds) bounds how long a step that
	// raises the canary's weight (blue/green: the switch) waits for a healthy canary
	// endpoint before the rollout aborts; 0: the analyzer's default (10 minutes).
	ProgressDeadline time.Duration
	Pos              Pos
}

// CanaryStrategy is spec.strategy.canary.
type CanaryStrategy struct {
	StableService string // cluster name
	CanaryService string // cluster name
	// StableIngress names the listener whose routes to StableService the rollout owns;
	// empty: every listener route whose cluster is StableService.
	StableIngress string
	Steps         []Step
	Analysis      *BackgroundAnalysis // nil: no background analysis
	ManagedRoutes []string            // trafficRouting.managedRoutes names, in order
}

// BlueGreenStrategy is spec.strategy.blueGreen.
type BlueGreenStrategy struct {
	ActiveService         string // cluster name that gets 100%
	PreviewService        string // cluster name reachable by header route before the switch
	AutoPromotionEnabled  bool   // default true
	AutoPromotionSeconds  int    // 0: promote as soon as pre-promotion analysis passes
	PrePromotionAnalysis  *AnalysisRef
	PostPromotionAnalysis *AnalysisRef
	ScaleDownDelaySeconds int // default 30: how long an abort can still switch back
	// PreviewHeader routes matching requests to the preview cluster before the switch.
	PreviewHeader []HeaderMatch
	// ActiveIngress names the listener whose routes to ActiveService the rollout owns;
	// empty: every listener route whose cluster is ActiveService.
	ActiveIngress string
}

// Step is one canary step; exactly one field is set.
type Step struct {
	SetWeight      *int
	Pause          *Pause
	Analysis       *AnalysisRef
	SetHeaderRoute *SetHeaderRoute
	SetMirrorRoute *SetMirrorRoute
	// Ignored is true for Kubernetes-only steps (setCanaryScale, experiment) that Sluice
	// reports and skips.
	Ignored bool
	Pos     Pos
}

// Pause waits for Duration, or, when Duration is nil, until promoted.
type Pause struct {
	Duration *time.Duration
}

// SetHeaderRoute adds (or, with no matches, removes) a managed header route to the canary.
type SetHeaderRoute struct {
	Name  string
	Match []HeaderMatch
}

// SetMirrorRoute adds (or, with no matches, removes) a managed mirror route to the canary.
type SetMirrorRoute struct {
	Name       string
	Match      []RequestMatch
	Percentage int // default 100
}

// AnalysisRef runs one or more templates with arguments, as an AnalysisRun.
type AnalysisRef struct {
	Templates []TemplateRef
	Args      []Arg
	// Metrics are the templates' metrics with args substituted, filled by config.
	Metrics []Metric
	Pos     Pos
}

// TemplateRef names an AnalysisTemplate or ClusterAnalysisTemplate.
type TemplateRef struct {
	Name         string
	ClusterScope bool
}

// Arg is a template argument.
type Arg struct {
	Name  string
	Value *string // nil: no value (a template default, or it must come from the rollout)
}

// BackgroundAnalysis is spec.strategy.canary.analysis: runs alongside the steps.
type BackgroundAnalysis struct {
	AnalysisRef
	StartingStep int // index of the step at which it starts (0: at once)
}

// AnalysisTemplate is an AnalysisTemplate or ClusterAnalysisTemplate.
type AnalysisTemplate struct {
	Name         string
	ClusterScope bool
	Args         []Arg
	Metrics      []Metric // with {{args.X}} still unsubstituted
	// DryRun lists metric names (or ".*" style regexes, as in Argo) measured but never deciding.
	DryRun []string
	// Templates are the templates this one includes (Argo v1.7 spec.templates): their
	// metrics run with this one's.
	Templates []TemplateRef
	Pos       Pos
}

// Metric is one AnalysisTemplate metric, with Argo's meaning and defaults.
type Metric struct {
	Name string
	// Interval between measurements; 0 with Count <= 1 means one measurement.
	// Interval with Count 0 means measure until the analysis is stopped.
	Interval              time.Duration
	Count                 int // 0: unset
	InitialDelay          time.Duration
	SuccessCondition      string // expr over result; "" unset
	FailureCondition      string
	FailureLimit          int // default 0; -1 disables
	InconclusiveLimit     int // default 0
	ConsecutiveErrorLimit int // default 4
	// ConsecutiveSuccessLimit (Argo v1.8): successes in a row that make the metric
	// Successful; 0 disables it.
	ConsecutiveSuccessLimit int
	DryRun                  bool
	// MinRequests is the minimum number of requests per compared cluster in the
	// measurement's window before a measurement counts; 0 inherits ControlPlane.MinRequests.
	MinRequests int
	Provider    Provider
	Pos         Pos
}

// Provider is where a metric's value comes from; exactly one field is set.
type Provider struct {
	Prometheus *PrometheusProvider
	Web        *WebProvider
	Judge      *JudgeProvider
}

// PrometheusProvider queries Prometheus; with no Address, Sluice's own in-process series.
type PrometheusProvider struct {
	Address string
	Query   string
	Timeout time.Duration
	// Headers are sent with every query (Argo's headers: [{key, value}]).
	Headers map[string]string
	// Auth, when set, is read from a file or the environment at query time, never logged.
	BasicAuthUser         string
	BasicAuthPasswordFile string
	BasicAuthPasswordEnv  string
	BearerTokenFile       string
	BearerTokenEnv        string
}

// WebProvider fetches a JSON document and picks a value with a JSONPath.
type WebProvider struct {
	URL      string
	Method   string // GET (default) or POST
	Body     string
	Headers  map[string]string
	JSONPath string
	Timeout  time.Duration
}

// JudgeProvider is Sluice's sequential canary-vs-stable test (plugin sluice/judge).
type JudgeProvider struct {
	// Signal is "errors" or "latency".
	Signal string
	// Baseline names the cluster compared against (default: the rollout's stable).
	Baseline string
	// Canary names the cluster judged (default: the rollout's canary).
	Canary string
	// Source: "" reads Sluice's router in-process; an address reads Envoy stats from
	// that Prometheus server (envoy_cluster_upstream_rq* by cluster name).
	PrometheusAddress string
	Alpha             float64       // default 0.01
	RelativeTolerance float64       // default 1.2 (canary may be 1.2× stable)
	AbsoluteTolerance float64       // errors: default 0.001 (0.1 points); latency: seconds
	Quantile          float64       // latency quantile compared, default 0.95
	MinSamples        int           // per cluster before deciding, default 100
	MaxDuration       time.Duration // after this with no decision: Inconclusive
	// BurnIn ignores the traffic of the session's first BurnIn (cold starts); nil: the
	// default (0 in-process, where the router already excludes warm-up; 30 s for Envoy
	// stats from Prometheus, which include it).
	BurnIn *time.Duration
	// Wander tolerates each cluster's rate drifting on its own: the log standard
	// deviation of that drift (0.5: by a factor e^±0.5 for up to a minute at a time);
	// default 0.
	Wander float64
}
