package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

var promParser = parser.NewParser(parser.Options{})

// routerSeries are the series Sluice's router produces, which a Prometheus provider
// with no address queries in-process.
var routerSeries = []string{
	"http_requests_total", "http_errors_total",
	"http_request_duration_seconds_bucket", "http_request_duration_seconds_sum", "http_request_duration_seconds_count",
}

func isRouterSeries(name string) bool {
	for _, s := range routerSeries {
		if s == name {
			return true
		}
	}
	return strings.HasPrefix(name, "sluice_")
}

// checkQuery parses a Prometheus query. With no address (embedded), a query that does
// not parse is an error, and one that reads series the router does not produce is a
// warning: it would only ever return no data. With an address, a parse error is a
// warning (that server may know newer syntax).
func (d *dec) checkQuery(n *yaml.Node, path, query string, embedded bool) {
	var expr parser.Expr
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		expr, err = promParser.ParseExpr(query)
	}()
	if err != nil {
		msg := strings.SplitN(strings.TrimSpace(err.Error()), "\n", 2)[0]
		if embedded {
			d.errf(n, CodeValue, "%s: not a PromQL query: %s", path, msg)
		} else {
			d.warnf(n, CodeSuspicious, "%s: does not parse as PromQL here (%s); the server at the address may still accept it", path, msg)
		}
		return
	}
	if !embedded {
		return
	}
	unknown := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name != "" && !isRouterSeries(name) {
			unknown[name] = true
		}
		return nil
	})
	if len(unknown) == 0 {
		return
	}
	var names []string
	for k := range unknown {
		names = append(names, k)
	}
	sort.Strings(names)
	d.warnf(n, CodeSuspicious, "%s: with no address the query runs over Sluice's own router series (%s), and %s is not one of them, so it would return no data; set address to your Prometheus, or query the router's series",
		path, strings.Join(routerSeries, ", "), strings.Join(names, ", "))
}
