package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluice-mesh/sluice/model"
)

func ptr[T any](v T) *T { return &v }

func TestFeatures(t *testing.T) {
	cfg, ds := Load("testdata/features.yaml")
	if len(ds) != 1 || cfg == nil || ds[0].String() != "testdata/features.yaml:65: warning: spec.template is ignored: Sluice runs no pods; only its hash is used, as the rollout's revision" {
		t.Fatalf("diagnostics:\n%s", ds)
	}
	ignorePos := cmpopts.IgnoreTypes(model.Pos{})
	wantCP := model.ControlPlane{
		Name:  "main",
		Admin: model.Admin{Address: "0.0.0.0:9901", TokenFile: "/etc/sluice/token"},
		XDS: &model.XDS{Address: "127.0.0.1:18000", TLS: &model.TLS{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"},
			Keepalive: 30 * time.Second, AckTimeout: 5 * time.Second},
		StateDir: "/var/lib/sluice", MinRequests: 20,
		Webhooks: []model.Webhook{{URL: "https://hooks.example/sluice", Timeout: 2 * time.Second, Retries: 1, Headers: map[string]string{"X-Token": "abc"}}},
	}
	if d := cmp.Diff(wantCP, cfg.ControlPlane, ignorePos); d != "" {
		t.Errorf("control plane (-want +got):\n%s", d)
	}
	wantBlue := model.Cluster{
		Name: "blue", Endpoints: []model.Endpoint{{Address: "127.0.0.1:7001", Weight: 3}, {Address: "[::1]:7002", Weight: 1}},
		Protocol: model.ProtocolH2C, Warmup: DefaultWarmup, ConnectTimeout: 250 * time.Millisecond, RequestTimeout: 5 * time.Second,
		ResponseHeaderTimeout: 3 * time.Second,
		Outlier:               model.OutlierDetection{ConsecutiveFailures: 0, BaseEjectionTime: 30 * time.Second},
	}
	if d := cmp.Diff(wantBlue, *cfg.Cluster("blue"), ignorePos); d != "" {
		t.Errorf("cluster blue (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&model.HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}, cfg.Cluster("green").HealthCheck); d != "" {
		t.Errorf("default health check (-want +got):\n%s", d)
	}
	wantEdge := model.Listener{
		Name: "edge", Address: "127.0.0.1:8081",
		Routes: []model.Route{
			{Name: "edge-0", Hosts: []string{"api.example.com"}, PathPrefix: "/", Cluster: "blue"},
			{Name: "web", Hosts: []string{"*"}, PathPrefix: "/web", Cluster: "web-stable"},
		},
		InternalTraffic: &model.InternalTraffic{
			Headers:        []model.HeaderMatch{{Name: "x-test", Value: model.StringMatch{Prefix: "yes"}}},
			TrustedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		},
		StickySessions: &model.StickySessions{Cookie: "sluice-edge", MaxAge: 24 * time.Hour},
		Limits: model.Limits{MaxHeaderBytes: 8192, IdleTimeout: 30 * time.Second, ReadTimeout: 2 * time.Second,
			BodyTimeout: 5 * time.Second, SendTimeout: 7 * time.Second},
	}
	if d := cmp.Diff(wantEdge, *cfg.Listener("edge"), ignorePos, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("listener (-want +got):\n%s", d)
	}

	bg := cfg.Rollout("bg")
	if bg.Strategy != model.StrategyBlueGreen || len(bg.Revision) != 10 {
		t.Fatalf("bg: %+v", bg)
	}
	b := bg.BlueGreen
	if b.ActiveService != "blue" || b.PreviewService != "green" || b.AutoPromotionEnabled || b.ScaleDownDelaySeconds != 10 ||
		b.AutoPromotionSeconds != 0 {
		t.Errorf("blueGreen: %+v", b)
	}
	if d := cmp.Diff([]model.HeaderMatch{{Name: "x-sluice-preview", Value: model.StringMatch{Exact: "true"}}}, b.PreviewHeader); d != "" {
		t.Errorf("default preview header (-want +got):\n%s", d)
	}
	judge := b.PrePromotionAnalysis.Metrics
	wantJudge := []model.Metric{
		{Name: "errors", ConsecutiveErrorLimit: 4, Provider: model.Provider{Judge: &model.JudgeProvider{
			Signal: "errors", Baseline: "blue", Canary: "green", Alpha: 0.05, RelativeTolerance: 1.2, AbsoluteTolerance: 0.001,
			Quantile: 0.95, MinSamples: 200, MaxDuration: 10 * time.Minute, BurnIn: ptr(15 * time.Second)}}},
		{Name: "latency", ConsecutiveErrorLimit: 4, MinRequests: 500, Provider: model.Provider{Judge: &model.JudgeProvider{
			Signal: "latency", Baseline: "blue", Canary: "green", Alpha: 0.01, RelativeTolerance: 1.2, AbsoluteTolerance: 0.01,
			Quantile: 0.99, MinSamples: 100}}},
		{Name: "remote", ConsecutiveErrorLimit: 4, SuccessCondition: "len(result) == 0 || result[0] < 1", Provider: model.Provider{
			Prometheus: &model.PrometheusProvider{Address: "http://prom:9090", Query: "up", Timeout: 15 * time.Second,
				Headers: map[string]string{"X-Scope": "team"}, BearerTokenEnv: "PROM_TOKEN"}}},
	}
	if d := cmp.Diff(wantJudge, judge, ignorePos); d != "" {
		t.Errorf("judge analysis (-want +got):\n%s", d)
	}
	post := b.PostPromotionAnalysis
	if len(post.Metrics) != 1 || post.Metrics[0].Provider.Web.URL != "http://127.0.0.1:7003/status" || post.Metrics[0].Count != 2 {
		t.Errorf("post-promotion: template default count and rollout url: %+v", post.Metrics)
	}

	web := cfg.Rollout("web")
	c := web.Canary
	if d := cmp.Diff([]string{"beta", "shadow"}, c.ManagedRoutes); d != "" {
		t.Errorf("managed routes: %s", d)
	}
	wantSteps := []model.Step{
		{SetHeaderRoute: &model.SetHeaderRoute{Name: "beta", Match: []model.HeaderMatch{{Name: "x-beta", Value: model.StringMatch{Regex: "^(1|yes)$"}}}}},
		{SetMirrorRoute: &model.SetMirrorRoute{Name: "shadow", Percentage: 5, Match: []model.RequestMatch{{
			Method: &model.StringMatch{Exact: "POST"}, Path: &model.StringMatch{Prefix: "/web/api"},
			Headers: []model.HeaderMatch{{Name: "x-shadow", Value: model.StringMatch{Exact: "1"}}}}}}},
		{SetWeight: ptr(20)},
		{Pause: &model.Pause{Duration: ptr(30 * time.Second)}},
		{Pause: &model.Pause{}},
		{SetHeaderRoute: &model.SetHeaderRoute{Name: "beta"}},
	}
	if d := cmp.Diff(wantSteps, c.Steps, ignorePos); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if c.Analysis == nil || c.Analysis.StartingStep != 2 {
		t.Fatalf("background analysis: %+v", c.Analysis)
	}
	wantWeb := []model.Metric{{
		Name: "web-status", Interval: 10 * time.Second, Count: 3, InitialDelay: 5 * time.Second,
		SuccessCondition: "result == 'ok'", FailureCondition: "result == 'down'",
		FailureLimit: -1, ConsecutiveSuccessLimit: 2, InconclusiveLimit: 1, ConsecutiveErrorLimit: 2, DryRun: true,
		Provider: model.Provider{Web: &model.WebProvider{URL: "http://127.0.0.1:7005/status", Method: "POST",
			Body: `{"check":"deep","n":1}`, Headers: map[string]string{"Authorization": "Bearer t"}, JSONPath: "{$.status}", Timeout: 3 * time.Second}},
	}}
	if d := cmp.Diff(wantWeb, c.Analysis.Metrics, ignorePos); d != "" {
		t.Errorf("background metrics: rollout args override template defaults, dryRun (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]model.Arg{{Name: "url", Value: ptr("http://127.0.0.1:7005/status")}, {Name: "count", Value: ptr("3")}}, c.Analysis.Args); d != "" {
		t.Errorf("resolved args (-want +got):\n%s", d)
	}
	if tpl := cfg.Templates; len(tpl) != 2 || tpl[0].Name != "judge" || !tpl[0].ClusterScope || tpl[1].Name != "web-check" ||
		tpl[1].Metrics[0].Count != 0 || tpl[1].Metrics[0].Provider.Web.URL != "{{args.url}}" {
		t.Errorf("templates keep placeholders: %+v", tpl)
	}
}

func TestRevision(t *testing.T) {
	doc := func(extra string) string {
		return "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: r\n" + extra +
			"spec:\n  template:\n    # a comment\n    spec: {containers: [{name: app, image: app:v1}]}\n" +
			"  strategy: {canary: {stableService: a, canaryService: b, steps: [{setWeight: 10}]}}\n"
	}
	rev := func(src string) string {
		l := newLoader()
		l.file("r.yaml", []byte(src))
		l.resolveAll()
		if len(l.cfg.Rollouts) != 1 {
			t.Fatalf("no rollout from:\n%s", src)
		}
		return l.cfg.Rollouts[0].Revision
	}
	v1 := rev(doc(""))
	if len(v1) != 10 {
		t.Errorf("revision %q is not a short hash", v1)
	}
	if again := rev(doc("")); again != v1 {
		t.Errorf("revision not stable: %s then %s", v1, again)
	}
	reformatted := strings.Replace(doc(""), "spec: {containers: [{name: app, image: app:v1}]}", "spec:\n      containers:\n        - name: app\n          image: app:v1", 1)
	reformatted = strings.Replace(reformatted, "    # a comment\n", "", 1)
	if r := rev(reformatted); r != v1 {
		t.Errorf("layout and comments changed the revision: %s vs %s", r, v1)
	}
	if v2 := rev(strings.Replace(doc(""), "app:v1", "app:v2", 1)); v2 == v1 {
		t.Error("a new image kept the revision")
	}
	if r := rev(doc("  annotations: {sluice.dev/revision: release-7}\n")); r != "release-7" {
		t.Errorf("annotation revision = %q", r)
	}
	noTemplate := "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec: {strategy: {canary: {stableService: a, canaryService: b}}}\n"
	other := strings.Replace(noTemplate, "canaryService: b", "canaryService: c", 1)
	if a, b := rev(noTemplate), rev(other); a == b || len(a) != 10 {
		t.Errorf("service-name revisions %q %q", a, b)
	}
}
