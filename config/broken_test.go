package config

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// brokenCase is the example config with one edit, and every diagnostic it must give,
// exactly.
type brokenCase struct {
	name     string
	old, new string // replace the first old with new in examples/sluice.yaml
	want     []string
}

var brokenCases = []brokenCase{
	{name: "unknown field", old: "  warmup: 10s\n", new: "  warmup: 10s\n  warmpu: 5s\n", want: []string{
		"sluice.yaml:25: spec: unknown field \"warmpu\"; did you mean \"warmup\"?",
	}},
	{name: "typo with suggestion", old: "stableIngress:", new: "stableIngres:", want: []string{
		"sluice.yaml:71: spec.strategy.canary.trafficRouting.nginx: unknown field \"stableIngres\"; did you mean \"stableIngress\"?",
	}},
	{name: "wrong type", old: "count: 2", new: "count: two", want: []string{
		"sluice.yaml:101: spec.metrics[0].count: want an integer, got the string \"two\"",
	}},
	{name: "weight above 100", old: "setWeight: 50", new: "setWeight: 150", want: []string{
		"sluice.yaml:85: spec.strategy.canary.steps[5].setWeight: 150 is outside 0-100; use a percentage of traffic from 0 to 100",
	}},
	{name: "weight decreases", old: "setWeight: 50", new: "setWeight: 5", want: []string{
		"sluice.yaml:85: warning: spec.strategy.canary.steps[5].setWeight: 5 is lower than the 25 set at line 75; the canary loses traffic here — is that intended?",
	}},
	{name: "negative duration", old: "pause: {duration: 60s}", new: "pause: {duration: -60s}", want: []string{
		"sluice.yaml:74: spec.strategy.canary.steps[1].pause.duration: duration -60s is negative; use 0 or more",
	}},
	{name: "unparsable duration", old: "interval: 30s", new: "interval: 30 seconds", want: []string{
		"sluice.yaml:100: spec.metrics[0].interval: the string \"30 seconds\" is not a duration; write seconds (30) or a number with a unit (30s, 5m, 1h)",
	}},
	{name: "no endpoints", old: "    - address: 127.0.0.1:9001\n", new: "", want: []string{
		"sluice.yaml:18: spec.endpoints is required: list the addresses, e.g. endpoints: [{address: 127.0.0.1:9001}], or discover them with dns or kubernetes",
	}},
	{name: "bad address", old: "address: 127.0.0.1:9001", new: "address: 127.0.0.1", want: []string{
		"sluice.yaml:20: spec.endpoints[0].address: \"127.0.0.1\" is not host:port; write e.g. 127.0.0.1:8080",
	}},
	{name: "duplicate name", old: "name: backend-api-canary\nspec:\n  endpoints:", new: "name: backend-api-stable\nspec:\n  endpoints:", want: []string{
		"sluice.yaml:29: Cluster \"backend-api-stable\" is already defined at sluice.yaml:17; rename one of them",
		"sluice.yaml:68: spec.strategy.canary.canaryService: \"backend-api-canary\" names no Cluster; define a sluice.dev/v1alpha1 Cluster \"backend-api-canary\" with its endpoints, or fix the name",
	}},
	{name: "stableService names no cluster", old: "stableService: backend-api-stable", new: "stableService: backend-api-stabel", want: []string{
		"sluice.yaml:67: spec.strategy.canary.stableService: \"backend-api-stabel\" names no Cluster; define a sluice.dev/v1alpha1 Cluster \"backend-api-stabel\" with its endpoints, or fix the name",
	}},
	{name: "stableIngress names no listener", old: "stableIngress: backend-api-ingress", new: "stableIngress: api-ingress", want: []string{
		"sluice.yaml:71: spec.strategy.canary.trafficRouting.nginx.stableIngress: \"api-ingress\" names no Listener; define a sluice.dev/v1alpha1 Listener \"api-ingress\", or fix the name",
	}},
	{name: "canary equals stable", old: "canaryService: backend-api-canary", new: "canaryService: backend-api-stable", want: []string{
		"sluice.yaml:68: spec.strategy.canary: canaryService and stableService are both \"backend-api-stable\"; name two different Clusters",
	}},
	{name: "analysis names no template", old: "templateName: backend-api-health", new: "templateName: backend-api-healht", want: []string{
		"sluice.yaml:79: spec.strategy.canary.steps[4].analysis.templates[0].templateName: \"backend-api-healht\" names no AnalysisTemplate; define it, or fix the name",
	}},
	{name: "missing arg value", old: "              - name: canary-cluster\n                value: backend-api-canary\n", new: "", want: []string{
		"sluice.yaml:77: spec.strategy.canary.steps[4].analysis: argument \"canary-cluster\" of AnalysisTemplate \"backend-api-health\" has no value; pass it: args: [{name: canary-cluster, value: ...}]",
	}},
	{name: "setHeaderRoute not managed", old: "        - setWeight: 10\n", new: "        - setWeight: 10\n        - setHeaderRoute: {name: beta, match: [{headerName: x-beta, headerValue: {exact: \"yes\"}}]}\n", want: []string{
		"sluice.yaml:74: spec.strategy.canary.steps[1].setHeaderRoute.name: \"beta\" is not in trafficRouting.managedRoutes; add - name: beta there",
	}},
	{name: "condition does not compile", old: "result[0] <= 0.01", new: "result[0] <=", want: []string{
		"sluice.yaml:103: spec.metrics[0].successCondition: \"result[0] <=\" does not compile: unexpected token EOF",
	}},
	{name: "interval without count waits forever", old: "      interval: 30s\n      count: 2\n", new: "      interval: 30s\n", want: []string{
		"sluice.yaml:77: spec.strategy.canary.steps[4].analysis: AnalysisTemplate backend-api-health has metric error-rate which runs indefinitely. Invalid value for count: <nil> (Argo's InvalidSpec: an interval (30s) without count measures until the analysis is stopped, so this step would never complete); set count",
	}},
	{name: "count above 1 without interval", old: "      interval: 30s\n      count: 2\n", new: "      count: 2\n", want: []string{
		"sluice.yaml:100: spec.metrics[0]: count is 2 but interval is not set; set interval (e.g. 30s), as Argo requires when count > 1",
	}},
	{name: "failureLimit above count", old: "      count: 2\n      failureLimit: 0\n", new: "      count: 2\n      failureLimit: 3\n", want: []string{
		"sluice.yaml:102: spec.metrics[0]: count (2) must be >= failureLimit (3), as in Argo; raise count or lower failureLimit",
	}},
	{name: "kubernetes-only field", old: "spec:\n  strategy:", new: "spec:\n  replicas: 3\n  strategy:", want: []string{
		"sluice.yaml:65: warning: spec.replicas is ignored: Kubernetes-only: Sluice shifts traffic between Clusters and runs no pods",
	}},
	{name: "provider Sluice does not run", old: "        prometheus:\n          address: \"{{args.prometheus-address}}\"\n          query: |\n            histogram_quantile", new: "        datadog:\n          query: |\n            histogram_quantile", want: []string{
		`sluice.yaml:77: spec.strategy.canary.steps[4].analysis: metric "p95-latency" of template "backend-api-health" uses provider datadog, which Sluice does not run, so this analysis could never measure it; query the same data with provider.prometheus, or Datadog's HTTP API with provider.web, or make it informational with dryRun: [{metricName: p95-latency}]`,
		`sluice.yaml:117: warning: spec.metrics: Sluice does not run provider datadog (query the same data with provider.prometheus, or Datadog's HTTP API with provider.web); a Rollout that uses metric "p95-latency" is refused unless the metric is dry-run`,
	}},
	{name: "failureLimit -1 alone", old: "      failureLimit: 0\n", new: "      failureLimit: -1\n", want: []string{
		"sluice.yaml:102: spec.metrics[0]: failureLimit and consecutiveSuccessLimit cannot both be disabled (Argo refuses this spec): with failureLimit -1 a metric failing every time would pass; set consecutiveSuccessLimit (successes in a row that pass the metric), or a failureLimit of 0 or more",
	}},
	{name: "failureLimit -1 with consecutiveSuccessLimit", old: "      failureLimit: 0\n", new: "      failureLimit: -1\n      consecutiveSuccessLimit: 2\n"},
	{name: "consecutiveSuccessLimit above count", old: "      failureLimit: 0\n", new: "      failureLimit: 1\n      consecutiveSuccessLimit: 2\n", want: []string{
		"sluice.yaml:101: spec.metrics[0]: count (2) must be >= failureLimit + consecutiveSuccessLimit (1 + 2) if both >= 0, as in Argo; raise count",
	}},

	// Valid: the blog-post placement of the services; want no diagnostics.
	{name: "services under trafficRouting.nginx", old: "      stableService: backend-api-stable\n      canaryService: backend-api-canary\n      trafficRouting:\n        nginx:\n", new: "      trafficRouting:\n        nginx:\n          stableService: backend-api-stable\n          canaryService: backend-api-canary\n"},
	{name: "route to unknown cluster", old: "      cluster: backend-api-stable", new: "      cluster: backend-api", want: []string{
		"sluice.yaml:48: spec.routes[0].cluster: \"backend-api\" names no Cluster; define a sluice.dev/v1alpha1 Cluster \"backend-api\" or fix the name",
		"sluice.yaml:71: spec.strategy.canary.trafficRouting.nginx.stableIngress: Listener \"backend-api-ingress\" has no route to Cluster \"backend-api-stable\", so the rollout would move no traffic; add a route with cluster: backend-api-stable",
	}},
	{name: "admin off loopback without token", old: "address: 127.0.0.1:9900", new: "address: 0.0.0.0:9900", want: []string{
		"sluice.yaml:10: spec.admin.address: 0.0.0.0:9900 is not a loopback address, so the admin API needs a token: set spec.admin.tokenFile",
	}},
	{name: "unknown sluice kind", old: "kind: Listener", new: "kind: Listner", want: []string{
		"sluice.yaml:39: kind \"Listner\" is not a Sluice kind; did you mean \"Listener\"?",
		"sluice.yaml:71: spec.strategy.canary.trafficRouting.nginx.stableIngress: \"backend-api-ingress\" names no Listener; define a sluice.dev/v1alpha1 Listener \"backend-api-ingress\", or fix the name",
	}},
	{name: "kubernetes kinds", old: "---\napiVersion: sluice.dev/v1alpha1\nkind: Listener", new: "---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n---\napiVersion: sluice.dev/v1alpha1\nkind: Listener", want: []string{
		"sluice.yaml:39: warning: kind Service (v1) is ignored: declare a sluice.dev/v1alpha1 Cluster with its endpoints for each Service a Rollout names",
	}},
	{name: "malformed YAML", old: "  routes:\n", new: "  routes: [\n", want: []string{
		"sluice.yaml:45: invalid YAML: did not find expected node content",
	}},
	{name: "tab indentation", old: "  stateDir: .sluice", new: "\tstateDir: .sluice", want: []string{
		"sluice.yaml:11: invalid YAML: found character that cannot start any token (a tab indents this line: YAML indents with spaces only)",
	}},
	{name: "several problems in one run", old: "setWeight: 25", new: "setWeight: -1\n          bogus: 1", want: []string{
		"sluice.yaml:75: spec.strategy.canary.steps[2].setWeight: -1 is outside 0-100; use a percentage of traffic from 0 to 100",
		"sluice.yaml:76: spec.strategy.canary.steps[2]: unknown field \"bogus\"; known fields: analysis, experiment, pause, plugin, setCanaryScale, setHeaderRoute, setMirrorRoute, setWeight",
	}},
	{name: "embedded query reads a series the router lacks", old: "sum(rate(http_requests_total{", new: "sum(rate(istio_requests_total{", want: []string{
		`sluice.yaml:107: warning: spec.metrics[0].provider.prometheus.query: with no address the query runs over Sluice's own router series (http_requests_total, http_errors_total, http_request_duration_seconds_bucket, http_request_duration_seconds_sum, http_request_duration_seconds_count), and istio_requests_total is not one of them, so it would return no data; set address to your Prometheus, or query the router's series (with the args of Rollout "backend-api" at sluice.yaml:77)`,
	}},
	{name: "embedded query is not PromQL", old: "by (le))", new: "by (le)", want: []string{
		`sluice.yaml:119: spec.metrics[1].provider.prometheus.query: not a PromQL query: 3:1: parse error: unclosed left parenthesis (with the args of Rollout "backend-api" at sluice.yaml:77)`,
	}},
	{name: "undeclared arg in template", old: "{{args.canary-cluster}}\"}[1m])) by (le))", new: "{{args.canary}}\"}[1m])) by (le))", want: []string{
		"sluice.yaml:119: {{args.canary}} names no argument of AnalysisTemplate \"backend-api-health\"; declare it in spec.args",
	}},
}

func TestBrokenVariants(t *testing.T) {
	base, err := os.ReadFile("../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range brokenCases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("the example has no %q", tc.old)
			}
			src := strings.Replace(string(base), tc.old, tc.new, 1)
			cfg, ds := LoadBytes("sluice.yaml", []byte(src))
			var got []string
			for _, d := range ds {
				got = append(got, d.String())
			}
			if os.Getenv("PRINT_BROKEN") != "" {
				t.Logf("\n%s", strings.Join(got, "\n"))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("diagnostics (-want +got):\n%s", d)
			}
			if ds.HasErrors() != (cfg == nil) {
				t.Errorf("HasErrors %v but config %v", ds.HasErrors(), cfg != nil)
			}
		})
	}
}
