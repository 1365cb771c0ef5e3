package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardPath = "deploy/grafana/sluice-dashboard.json"

// exportedMetrics are the metric families Sluice exports (router, analyzer, xDS, admin),
// with their type. The dashboard may query nothing else.
var exportedMetrics = map[string]string{
	// router: analysis traffic, labels method, route, status_code, cluster
	"http_requests_total":           "counter",
	"http_errors_total":             "counter",
	"http_request_duration_seconds": "histogram",
	// router internals
	"sluice_router_excluded_requests_total":  "counter",
	"sluice_router_spoofed_marker_total":     "counter",
	"sluice_router_endpoint_healthy":         "gauge",
	"sluice_router_endpoint_ejections_total": "counter",
	"sluice_router_unmatched_requests_total": "counter",
	"sluice_router_mirror_dropped_total":     "counter",
	"sluice_router_table_version":            "gauge",
	"sluice_router_apply_errors_total":       "counter",
	// analyzer
	"sluice_rollout_phase":                 "gauge",
	"sluice_rollout_weight":                "gauge",
	"sluice_analysis_measurements_total":   "counter",
	"sluice_rollout_events_total":          "counter",
	"sluice_rollout_abort_latency_seconds": "histogram",
	// xDS
	"sluice_xds_connected_proxies":       "gauge",
	"sluice_xds_snapshot_version":        "gauge",
	"sluice_xds_acks_total":              "counter",
	"sluice_xds_nacks_total":             "counter",
	"sluice_xds_responses_total":         "counter",
	"sluice_xds_push_to_ack_seconds":     "histogram",
	"sluice_xds_invalid_snapshots_total": "counter",
	// admin
	"sluice_admin_refused_total": "counter",
}

// mustShow are the metrics the dashboard has to chart.
var mustShow = []string{
	"http_requests_total", "http_errors_total", "http_request_duration_seconds",
	"sluice_rollout_phase", "sluice_rollout_weight", "sluice_analysis_measurements_total",
	"sluice_xds_connected_proxies", "sluice_xds_acks_total", "sluice_xds_nacks_total", "sluice_xds_push_to_ack_seconds",
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *dsRef                   `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// promql parses PromQL as Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

// grafanaVars replaces the dashboard's template variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$job", ".*")

// metricNames returns the metric names a PromQL expression selects, histogram series
// suffixes mapped to their family.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				names = append(names, family(m.Value))
			}
		}
		return nil
	})
	return names, nil
}

func family(series string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suf); ok && exportedMetrics[base] == "histogram" {
			return base
		}
	}
	return series
}

func TestMetricNamesParser(t *testing.T) {
	got, err := metricNames(`histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval]))) / on() group_left sum(up)`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "http_request_duration_seconds,up" {
		t.Errorf("got %v", got)
	}
	if _, err := metricNames("sum(rate(x[5m])"); err == nil {
		t.Error("accepted broken PromQL")
	}
}

func TestGrafanaDashboard(t *testing.T) {
	raw := readFile(t, dashboardPath)
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, raw, "", "  "); err != nil || !bytes.Equal(pretty.Bytes(), raw) {
		t.Errorf("%s is not indented with 2 spaces (json.Indent differs; keep diffs reviewable)", dashboardPath)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q uid %q schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s query: %v", v.Name, err)
			}
			sel, ok := strings.CutPrefix(q.Query, "label_values(")
			if sel, _, ok2 := strings.Cut(sel, ","); !ok || !ok2 {
				t.Errorf("variable %s: unexpected query %q", v.Name, q.Query)
			} else if _, err := promql.ParseMetricSelector(sel); err != nil {
				t.Errorf("variable %s selector %q: %v", v.Name, sel, err)
			}
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard must not hard-code a data source")
	}

	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	shown := map[string]bool{}
	for _, p := range all {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or reused", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q missing or reused", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			names, err := metricNames(tg.Expr)
			if err != nil {
				t.Errorf("panel %q: query %q: %v", p.Title, tg.Expr, err)
				continue
			}
			if !strings.Contains(tg.Expr, `job=~"$job"`) {
				t.Errorf("panel %q: query %q ignores the job variable", p.Title, tg.Expr)
			}
			for _, n := range names {
				if exportedMetrics[n] == "" {
					t.Errorf("panel %q queries %s, which Sluice does not export", p.Title, n)
				}
				shown[n] = true
			}
		}
	}
	for i, a := range d.Panels {
		for _, b := range d.Panels[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q and %q overlap: %+v %+v", a.Title, b.Title, ga, gb)
			}
		}
	}
	for _, m := range mustShow {
		if !shown[m] {
			t.Errorf("the dashboard does not chart %s", m)
		}
	}
}

// TestExportedMetricsExist checks the list above against the code: each name must be
// defined in a non-test Go file of the packages that export it, so a rename there fails here.
func TestExportedMetricsExist(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{"router", "analyzer", "xds", "admin"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			src.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name := range exportedMetrics {
		if !strings.Contains(src.String(), strconv.Quote(name)) {
			t.Errorf("%s is listed as exported, but no router/analyzer/xds/admin source defines it", name)
		}
	}
}
