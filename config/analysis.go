package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/internal/condition"
	"github.com/sluice-mesh/sluice/model"
)

// Metric defaults (Argo's).
const (
	DefaultConsecutiveErrorLimit = 4
	DefaultFailureLimit          = 0
	DefaultInconclusiveLimit     = 0
)

// Judge (plugin sluice/judge) defaults.
const (
	DefaultJudgeAlpha             = 0.01
	DefaultJudgeRelativeTolerance = 1.2
	DefaultJudgeErrorsAbsTol      = 0.001 // 0.1 percentage points
	DefaultJudgeLatencyAbsTol     = 0.010 // seconds
	DefaultJudgeQuantile          = 0.95
	DefaultJudgeMinSamples        = 100
	// JudgePlugin is the plugin name under provider.plugin.
	JudgePlugin = "sluice/judge"
)

// otherProviders are Argo's providers that Sluice does not run, with what to use instead.
var otherProviders = []struct{ name, instead string }{
	{"job", "it runs a Kubernetes Job, and Sluice runs no pods: serve the check's result over HTTP and use provider.web"},
	{"datadog", "query the same data with provider.prometheus, or Datadog's HTTP API with provider.web"},
	{"newRelic", "query the same data with provider.prometheus, or New Relic's HTTP API with provider.web"},
	{"wavefront", "query the same data with provider.prometheus, or Wavefront's HTTP API with provider.web"},
	{"kayenta", "compare canary with stable with plugin sluice/judge, or query with provider.prometheus"},
	{"cloudWatch", "query the same data with provider.prometheus (e.g. through an exporter), or provider.web"},
	{"graphite", "query Graphite's HTTP API with provider.web, or the same data with provider.prometheus"},
	{"influxdb", "query InfluxDB's HTTP API with provider.web, or the same data with provider.prometheus"},
	{"skywalking", "query SkyWalking's HTTP API with provider.web, or the same data with provider.prometheus"},
}

// unsupportedAdvice says what to use instead of provider kind.
func unsupportedAdvice(kind string) string {
	for _, p := range otherProviders {
		if p.name == kind {
			return p.instead
		}
	}
	return "use provider.web (an HTTP endpoint returning the result) or provider.prometheus"
}

// parsedMetric is a decoded metric; unsupported names its provider when Sluice does not
// run it (at: the provider's key), and then m has no provider.
type parsedMetric struct {
	m           model.Metric
	unsupported string
	at          *yaml.Node
	// indefinite: interval without count (Argo's EffectiveCount is nil).
	indefinite bool
}

// dryRunRule is a dryRun entry: Argo matches metricName as an unanchored regular
// expression (regexp.MatchString).
type dryRunRule struct {
	pat string
	re  *regexp.Regexp
	at  *yaml.Node
	d   *dec // the file the rule is in
}

// nestedRef is an entry of an AnalysisTemplate's spec.templates.
type nestedRef struct {
	ref model.TemplateRef
	at  *yaml.Node
}

var argRef = regexp.MustCompile(`\{\{\s*args\.([^}\s]+)\s*\}\}`)

type argDef struct {
	name  string
	value *string
	at    *yaml.Node
}

type templateDoc struct {
	d           *dec
	t           model.AnalysisTemplate
	metricsNode *yaml.Node
	args        []argDef
	dryRun      []dryRunRule
	nested      []nestedRef
	nestedErrs  map[string]bool // spec.templates problems already reported
	// bad: the template has errors of its own; references to it resolve no metrics
	// (its errors are reported once, at the template).
	bad bool
}

func (l *loader) template(d *dec, name string, cluster bool, pos model.Pos, spec *obj) {
	kind := "AnalysisTemplate"
	if cluster {
		kind = "ClusterAnalysisTemplate"
	}
	td := &templateDoc{d: d, t: model.AnalysisTemplate{Name: name, ClusterScope: cluster, Pos: pos}}
	errsBefore := len(l.diags.Errors())
	declared := map[string]bool{}
	for i, an := range d.list(spec.get("args"), spec.sub("args")) {
		ao := d.object(an, an, spec.sub("args")+"["+strconv.Itoa(i)+"]")
		a := argDef{at: an}
		if ao.require("name", "name the argument") {
			a.name = d.strField(ao, "name")
		}
		if v := ao.get("value"); v != nil && !isNull(v) {
			if s, ok := d.text(v, ao.sub("value")); ok {
				a.value = &s
			}
		}
		ao.ignore("Sluice reads no Kubernetes secrets or fields; pass the value from the Rollout's args instead", "valueFrom")
		ao.end()
		if a.name == "" {
			continue
		}
		if declared[a.name] {
			d.errf(an, CodeReference, "%s: argument %q is declared twice; keep one", ao.path, a.name)
			continue
		}
		declared[a.name] = true
		td.args = append(td.args, a)
		td.t.Args = append(td.t.Args, model.Arg{Name: a.name, Value: a.value})
	}
	td.dryRun = l.dryRunRules(d, spec)
	for _, r := range td.dryRun {
		td.t.DryRun = append(td.t.DryRun, r.pat)
	}
	for i, tn := range d.list(spec.get("templates"), spec.sub("templates")) {
		to := d.object(tn, tn, spec.sub("templates")+"["+strconv.Itoa(i)+"]")
		ref := model.TemplateRef{}
		if to.require("templateName", "name the AnalysisTemplate to include") {
			ref.Name = d.strField(to, "templateName")
		}
		if v := to.get("clusterScope"); v != nil {
			ref.ClusterScope, _ = d.boolean(v, to.sub("clusterScope"))
		}
		to.end()
		if ref.Name != "" {
			td.nested = append(td.nested, nestedRef{ref: ref, at: to.key("templateName")})
			td.t.Templates = append(td.t.Templates, ref)
		}
	}
	spec.ignore("Sluice keeps a bounded number of measurements of its own", "measurementRetention")
	mn := spec.get("metrics")
	if (mn == nil || isNull(mn)) && len(td.nested) == 0 {
		spec.require("metrics", "list at least one metric, or include templates with spec.templates")
	}
	td.metricsNode = mn
	d.allowArgs = true
	for _, pm := range l.metrics(d, mn, spec.sub("metrics")) {
		if pm.unsupported != "" {
			d.warnf(pm.at, CodeIgnored, "%s: Sluice does not run provider %s (%s); a Rollout that uses metric %q is refused unless the metric is dry-run",
				spec.sub("metrics"), pm.unsupported, unsupportedAdvice(pm.unsupported), pm.m.Name)
			continue
		}
		td.t.Metrics = append(td.t.Metrics, pm.m)
	}
	d.allowArgs = false
	// Every {{args.X}} must name a declared argument.
	walkStrings(d, mn, func(n *yaml.Node) {
		for _, m := range argRef.FindAllStringSubmatch(n.Value, -1) {
			if !declared[m[1]] {
				d.errf(n, CodeReference, "{{args.%s}} names no argument of %s %q; declare it in spec.args", m[1], kind, name)
			}
		}
	})
	spec.end()
	td.bad = len(l.diags.Errors()) > errsBefore
	k := tkey{name, cluster}
	if prev, dup := l.templates[k]; dup {
		d.add(pos.Line, SeverityError, CodeReference, "%s %q is already defined at %s; rename one of them", kind, name, prev.t.Pos)
		return
	}
	l.templates[k] = td
	l.cfg.Templates = append(l.cfg.Templates, td.t)
}

// walkStrings calls f for every string scalar under n.
func walkStrings(d *dec, n *yaml.Node, f func(*yaml.Node)) {
	n = d.resolve(n)
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!str" {
			f(n)
		}
		return
	}
	for _, c := range n.Content {
		walkStrings(d, c, f)
	}
}

// metrics decodes spec.metrics, every one of them: a metric whose provider Sluice does
// not run comes back with unsupported set (the caller reports it).
func (l *loader) metrics(d *dec, n *yaml.Node, path string) []parsedMetric {
	var out []parsedMetric
	names := map[string]int{}
	list := d.list(n, path)
	if n != nil && !isNull(d.resolve(n)) && len(list) == 0 && d.resolve(n) != nil && d.resolve(n).Kind == yaml.SequenceNode {
		d.errf(n, CodeSchema, "%s: list at least one metric", path)
	}
	for i, mn := range list {
		o := d.object(mn, mn, path+"["+strconv.Itoa(i)+"]")
		pm, keep := l.metric(d, o)
		o.end()
		if pm.m.Name != "" {
			if prev, dup := names[pm.m.Name]; dup {
				d.errf(o.key("name"), CodeReference, "%s.name: %q is also the name of metric %d; metric names must be unique", o.path, pm.m.Name, prev)
			}
			names[pm.m.Name] = i
		}
		if keep {
			out = append(out, pm)
		}
	}
	return out
}

// metric decodes one metric with Argo's validation (utils/analysis ValidateMetric); keep
// is false when it cannot be used at all.
func (l *loader) metric(d *dec, o *obj) (pm parsedMetric, keep bool) {
	m := model.Metric{
		FailureLimit:          DefaultFailureLimit,
		InconclusiveLimit:     DefaultInconclusiveLimit,
		ConsecutiveErrorLimit: DefaultConsecutiveErrorLimit,
		Pos:                   d.pos(o.at),
	}
	if o.require("name", "name the metric") {
		m.Name = d.strField(o, "name")
	}
	m.Interval = d.dur(o, "interval", 0)
	m.InitialDelay = d.dur(o, "initialDelay", 0)
	m.Count = d.nonNegative(o, "count", 0)
	for _, c := range []struct {
		field string
		dst   *string
	}{{"successCondition", &m.SuccessCondition}, {"failureCondition", &m.FailureCondition}} {
		v := o.get(c.field)
		if v == nil {
			continue
		}
		s, ok := d.str(v, o.sub(c.field))
		if !ok {
			continue
		}
		*c.dst = s
		if s == "" || (d.allowArgs && hasArgRef(s)) {
			continue
		}
		if _, err := condition.Compile(s); err != nil {
			d.errf(v, CodeValue, "%s: %q does not compile: %v", o.sub(c.field), s, err)
		}
	}
	if v := o.get("failureLimit"); v != nil {
		if n, ok := d.integer(v, o.sub("failureLimit")); ok {
			if n < -1 {
				d.errf(v, CodeValue, "%s: %d is invalid; use 0 or more, or -1 to never fail on failed measurements", o.sub("failureLimit"), n)
			} else {
				m.FailureLimit = n
			}
		}
	}
	m.InconclusiveLimit = d.nonNegative(o, "inconclusiveLimit", DefaultInconclusiveLimit)
	m.ConsecutiveErrorLimit = d.nonNegative(o, "consecutiveErrorLimit", DefaultConsecutiveErrorLimit)
	m.ConsecutiveSuccessLimit = d.nonNegative(o, "consecutiveSuccessLimit", 0)
	m.MinRequests = d.nonNegative(o, "minRequests", 0)
	// literal: the field is not an {{args.X}} placeholder (checked after substitution).
	literal := func(f string) bool { return !(d.allowArgs && hasArgRef(scalarValue(o.get(f)))) }
	if m.FailureLimit == -1 && m.ConsecutiveSuccessLimit == 0 && literal("failureLimit") && literal("consecutiveSuccessLimit") {
		d.errf(o.key("failureLimit"), CodeValue, "%s: failureLimit and consecutiveSuccessLimit cannot both be disabled (Argo refuses this spec): with failureLimit -1 a metric failing every time would pass; set consecutiveSuccessLimit (successes in a row that pass the metric), or a failureLimit of 0 or more", o.path)
	}
	if m.Count > 0 && literal("count") {
		switch fl, csl := m.FailureLimit, m.ConsecutiveSuccessLimit; {
		case fl >= 0 && m.Count < fl+csl && csl > 0:
			d.errf(o.key("count"), CodeValue, "%s: count (%d) must be >= failureLimit + consecutiveSuccessLimit (%d + %d) if both >= 0, as in Argo; raise count", o.path, m.Count, fl, csl)
		case fl >= 0 && m.Count < fl:
			d.errf(o.key("failureLimit"), CodeValue, "%s: count (%d) must be >= failureLimit (%d), as in Argo; raise count or lower failureLimit", o.path, m.Count, fl)
		case fl < 0 && m.Count < csl:
			d.errf(o.key("consecutiveSuccessLimit"), CodeValue, "%s: count (%d) must be >= consecutiveSuccessLimit (%d), as in Argo", o.path, m.Count, csl)
		case fl == m.Count && csl == 0 && o.has("failureLimit"):
			d.warnf(o.key("failureLimit"), CodeSuspicious, "%s: failureLimit (%d) equals count (%d), so this metric can never fail the analysis; lower failureLimit", o.path, m.FailureLimit, m.Count)
		}
		if m.InconclusiveLimit > m.Count {
			d.errf(o.key("inconclusiveLimit"), CodeValue, "%s: count (%d) must be >= inconclusiveLimit (%d), as in Argo", o.path, m.Count, m.InconclusiveLimit)
		}
		if m.Count > 1 && m.Interval == 0 && !(d.allowArgs && o.has("interval")) {
			d.errf(o.key("count"), CodeSchema, "%s: count is %d but interval is not set; set interval (e.g. 30s), as Argo requires when count > 1", o.path, m.Count)
		}
	}
	pm.indefinite = m.Count == 0 && m.Interval > 0 && literal("count")
	p, unsupported, at, keep := l.provider(d, o)
	m.Provider = p
	pm.m, pm.unsupported, pm.at = m, unsupported, at
	return pm, keep
}

// scalarValue is n's value when it is a scalar ("" otherwise).
func scalarValue(n *yaml.Node) string {
	if n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// provider decodes metric o's provider. A provider Sluice does not run is returned as
// unsupported (its name, and at: where), for the caller to report: an error unless the
// metric is dry-run.
func (l *loader) provider(d *dec, o *obj) (p model.Provider, unsupported string, at *yaml.Node, keep bool) {
	po := o.obj("provider")
	if !po.present() {
		o.require("provider", "set provider.prometheus (no address: Sluice's own metrics), provider.web or provider.plugin: {sluice/judge: ...}")
		return p, "", nil, false
	}
	kinds := append([]string(nil), po.order...)
	if len(kinds) > 1 {
		d.errf(po.at, CodeSchema, "%s: sets %s; set exactly one provider", po.path, strings.Join(kinds, " and "))
		po.accept(kinds...)
		return p, "", nil, false
	}
	switch {
	case po.has("prometheus"):
		p.Prometheus = l.prometheus(d, po.obj("prometheus"))
	case po.has("web"):
		p.Web = l.web(d, po.obj("web"))
	case po.has("plugin"):
		pl := po.obj("plugin")
		if len(pl.order) != 1 {
			d.errf(pl.at, CodeSchema, "%s: name exactly one plugin, e.g. %s", pl.path, JudgePlugin)
			pl.accept(pl.order...)
			pl.end()
			po.end()
			return p, "", nil, false
		}
		name := pl.order[0]
		if name == JudgePlugin {
			p.Judge = l.judge(d, pl.obj(name))
		} else {
			pl.get(name)
			unsupported, at = "plugin "+name, pl.key(name)
		}
		pl.end()
	default:
		for _, k := range otherProviders {
			if po.has(k.name) {
				po.get(k.name)
				unsupported, at = k.name, po.key(k.name)
			}
		}
		if unsupported == "" {
			d.errf(po.at, CodeSchema, "%s: empty; set prometheus, web or plugin: {%s: ...}", po.path, JudgePlugin)
			po.end()
			return p, "", nil, false
		}
	}
	po.end()
	return p, unsupported, at, unsupported != "" || p.Prometheus != nil || p.Web != nil || p.Judge != nil
}

func (d *dec) httpURL(o *obj, field string, required bool, fix string) string {
	v := o.get(field)
	if v == nil {
		if required {
			o.require(field, fix)
		}
		return ""
	}
	s, ok := d.str(v, o.sub(field))
	if !ok || s == "" {
		return ""
	}
	if d.allowArgs && hasArgRef(s) {
		return s
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		d.errf(v, CodeValue, "%s: %q must start with http:// or https://", o.sub(field), s)
	}
	return s
}

// secondsOrDuration reads Argo's integer seconds, or a duration string.
func (d *dec) secondsOrDuration(o *obj, field string) time.Duration {
	return d.dur(o, field, 0)
}

// keyValues decodes Argo's [{key, value}] header lists.
func (d *dec) keyValues(o *obj, field string) map[string]string {
	var out map[string]string
	for i, hn := range d.list(o.get(field), o.sub(field)) {
		ho := d.object(hn, hn, o.sub(field)+"["+strconv.Itoa(i)+"]")
		if ho.require("key", "name the header") {
			if out == nil {
				out = map[string]string{}
			}
			k := d.strField(ho, "key")
			v, _ := d.text(ho.get("value"), ho.sub("value"))
			out[k] = v
		}
		ho.end()
	}
	return out
}

func (l *loader) prometheus(d *dec, o *obj) *model.PrometheusProvider {
	p := &model.PrometheusProvider{}
	p.Address = d.httpURL(o, "address", false, "")
	if o.require("query", "write the PromQL query") {
		p.Query = d.strField(o, "query")
	}
	if q := o.get("query"); q != nil && p.Query != "" {
		if !(d.allowArgs && (hasArgRef(p.Query) || hasArgRef(p.Address))) {
			d.checkQuery(q, o.sub("query"), p.Query, p.Address == "")
		}
	}
	p.Timeout = d.secondsOrDuration(o, "timeout")
	p.Headers = d.keyValues(o, "headers")
	if ba := o.obj("basicAuth"); ba.present() {
		p.BasicAuthUser = d.strField(ba, "username")
		p.BasicAuthPasswordFile = d.strField(ba, "passwordFile")
		p.BasicAuthPasswordEnv = d.strField(ba, "passwordEnv")
		if p.BasicAuthUser == "" || (p.BasicAuthPasswordFile == "") == (p.BasicAuthPasswordEnv == "") {
			d.errf(ba.at, CodeSchema, "%s: set username and one of passwordFile, passwordEnv", ba.path)
		}
		ba.end()
	}
	p.BearerTokenFile = d.strField(o, "bearerTokenFile")
	p.BearerTokenEnv = d.strField(o, "bearerTokenEnv")
	if p.BearerTokenFile != "" && p.BearerTokenEnv != "" {
		d.errf(o.key("bearerTokenEnv"), CodeSchema, "%s: set bearerTokenFile or bearerTokenEnv, not both", o.path)
	}
	o.ignore("Sluice verifies TLS certificates", "insecure")
	o.ignore("use basicAuth, bearerTokenFile or bearerTokenEnv (Sluice extensions)", "authentication")
	o.ignore("planned: Sluice runs instant queries", "rangeQuery")
	o.end()
	return p
}

func (l *loader) web(d *dec, o *obj) *model.WebProvider {
	w := &model.WebProvider{Method: "GET"}
	w.URL = d.httpURL(o, "url", true, "give the URL to fetch")
	if v := o.get("method"); v != nil {
		if s, ok := d.str(v, o.sub("method")); ok {
			s = strings.ToUpper(s)
			if s != "GET" && s != "POST" && s != "PUT" {
				d.errf(v, CodeValue, "%s: %q is not supported; use GET, POST or PUT", o.sub("method"), s)
			}
			w.Method = s
		}
	}
	w.Headers = d.keyValues(o, "headers")
	w.Body = d.strField(o, "body")
	if jb := o.get("jsonBody"); jb != nil {
		var v any
		if err := jb.Decode(&v); err != nil {
			d.errf(jb, CodeValue, "%s: %v", o.sub("jsonBody"), err)
		} else if b, err := json.Marshal(jsonable(v)); err != nil {
			d.errf(jb, CodeValue, "%s: %v", o.sub("jsonBody"), err)
		} else {
			if w.Body != "" {
				d.errf(jb, CodeSchema, "%s: set body or jsonBody, not both", o.path)
			}
			w.Body = string(b)
		}
	}
	w.JSONPath = d.strField(o, "jsonPath")
	w.Timeout = d.secondsOrDuration(o, "timeoutSeconds")
	o.ignore("Sluice verifies TLS certificates", "insecure")
	o.ignore("planned: put credentials in headers", "authentication")
	o.end()
	return w
}

// jsonable turns YAML-decoded maps into JSON-encodable ones.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case map[any]any:
		m := map[string]any{}
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	}
	return v
}

func (l *loader) judge(d *dec, o *obj) *model.JudgeProvider {
	j := &model.JudgeProvider{
		Alpha: DefaultJudgeAlpha, RelativeTolerance: DefaultJudgeRelativeTolerance,
		Quantile: DefaultJudgeQuantile, MinSamples: DefaultJudgeMinSamples,
	}
	if o.require("signal", "errors or latency") {
		if v := o.get("signal"); v != nil {
			if s, ok := d.str(v, o.sub("signal")); ok {
				if s != "errors" && s != "latency" {
					d.errf(v, CodeValue, "%s: %q is not a signal; use errors or latency", o.sub("signal"), s)
				}
				j.Signal = s
			}
		}
	}
	j.Baseline = d.strField(o, "baseline")
	j.Canary = d.strField(o, "canary")
	j.PrometheusAddress = d.httpURL(o, "prometheusAddress", false, "")
	j.AbsoluteTolerance = DefaultJudgeErrorsAbsTol
	if j.Signal == "latency" {
		j.AbsoluteTolerance = DefaultJudgeLatencyAbsTol
	}
	num := func(field string, dst *float64, ok func(float64) bool, want string) {
		v := o.get(field)
		if v == nil {
			return
		}
		if x, good := d.float(v, o.sub(field)); good {
			if !ok(x) {
				d.errf(v, CodeValue, "%s: %v is out of range; want %s", o.sub(field), x, want)
				return
			}
			*dst = x
		}
	}
	num("alpha", &j.Alpha, func(x float64) bool { return x > 0 && x <= 0.5 }, "0 < alpha <= 0.5")
	num("relativeTolerance", &j.RelativeTolerance, func(x float64) bool { return x >= 1 }, "1 or more (1.2: canary may be 1.2x stable)")
	num("absoluteTolerance", &j.AbsoluteTolerance, func(x float64) bool { return x >= 0 }, "0 or more")
	num("quantile", &j.Quantile, func(x float64) bool { return x > 0 && x < 1 }, "0 < quantile < 1")
	num("wander", &j.Wander, func(x float64) bool { return x >= 0 && x <= 3 }, "0 to 3 (log standard deviation of each cluster's own drift; 0.5: a factor e^±0.5)")
	j.MinSamples = d.positive(o, "minSamples", DefaultJudgeMinSamples)
	j.MaxDuration = d.dur(o, "maxDuration", 0)
	if o.get("burnIn") != nil {
		b := d.dur(o, "burnIn", 0)
		j.BurnIn = &b
	}
	o.end()
	return j
}

// analysisRef decodes {templates, args, dryRun} (a step, background or blue/green
// analysis).
func (l *loader) analysisRef(rd *rolloutDoc, o *obj, mustEnd bool) *refDoc {
	d := rd.d
	ref := &refDoc{ref: &model.AnalysisRef{Pos: d.pos(o.at)}, path: o.path, at: o.at, argAt: map[string]*yaml.Node{}, mustEnd: mustEnd}
	tl := d.list(o.get("templates"), o.sub("templates"))
	if len(tl) == 0 {
		d.errf(o.at, CodeSchema, "%s.templates is required: list the AnalysisTemplates to run, e.g. templates: [{templateName: NAME}]", o.path)
	}
	for i, tn := range tl {
		to := d.object(tn, tn, o.sub("templates")+"["+strconv.Itoa(i)+"]")
		t := model.TemplateRef{}
		if to.require("templateName", "name an AnalysisTemplate") {
			t.Name = d.strField(to, "templateName")
		}
		if v := to.get("clusterScope"); v != nil {
			t.ClusterScope, _ = d.boolean(v, to.sub("clusterScope"))
		}
		to.end()
		if t.Name != "" {
			ref.ref.Templates = append(ref.ref.Templates, t)
			ref.templateAt = append(ref.templateAt, to.key("templateName"))
		}
	}
	for i, an := range d.list(o.get("args"), o.sub("args")) {
		ao := d.object(an, an, o.sub("args")+"["+strconv.Itoa(i)+"]")
		a := model.Arg{}
		if ao.require("name", "name the template argument") {
			a.Name = d.strField(ao, "name")
		}
		if v := ao.get("value"); v != nil && !isNull(v) {
			if s, ok := d.text(v, ao.sub("value")); ok {
				a.Value = &s
			}
		}
		ao.ignore("Sluice reads no Kubernetes objects; pass a literal value", "valueFrom")
		ao.end()
		if a.Name != "" {
			if _, dup := ref.argAt[a.Name]; dup {
				d.errf(an, CodeReference, "%s: argument %q is passed twice; keep one", ao.path, a.Name)
				continue
			}
			ref.argAt[a.Name] = an
			ref.ref.Args = append(ref.ref.Args, a)
		}
	}
	ref.dryRun = l.dryRunRules(d, o)
	o.ignore("Sluice keeps a bounded number of measurements of its own", "measurementRetention")
	o.ignore(k8sOnly, "analysisRunMetadata")
	o.accept("startingStep") // read by the background analysis
	rd.refs = append(rd.refs, ref)
	return ref
}

// dryRunRules decodes o's dryRun[{metricName}]: each a regular expression matched
// unanchored against metric names, as Argo's GetDryRunMetrics does (regexp.MatchString:
// "errors" also makes "total-errors" dry-run; write "^errors$" for one metric).
func (l *loader) dryRunRules(d *dec, o *obj) []dryRunRule {
	var out []dryRunRule
	for i, dn := range d.list(o.get("dryRun"), o.sub("dryRun")) {
		do := d.object(dn, dn, o.sub("dryRun")+"["+strconv.Itoa(i)+"]")
		if do.require("metricName", "name the metric (or a regular expression such as .*)") {
			pat := d.strField(do, "metricName")
			if re, err := regexp.Compile(pat); err != nil {
				d.errf(do.get("metricName"), CodeValue, "%s: %q is not a regular expression: %v", do.sub("metricName"), pat, err)
			} else {
				out = append(out, dryRunRule{pat: pat, re: re, at: do.get("metricName"), d: d})
			}
		}
		do.end()
	}
	return out
}

func scopeKind(cluster bool) string {
	if cluster {
		return "ClusterAnalysisTemplate"
	}
	return "AnalysisTemplate"
}

// resolveRef finds the templates of a reference, merges their arguments with the
// rollout's, substitutes them and decodes the metrics.
func (l *loader) resolveRef(rd *rolloutDoc, ref *refDoc) {
	d := rd.d
	var tds []*templateDoc
	missing := false
	for i, t := range ref.ref.Templates {
		td := l.templates[tkey{t.Name, t.ClusterScope}]
		if td == nil {
			msg := fmt.Sprintf("%s.templates[%d].templateName: %q names no %s; define it, or fix the name", ref.path, i, t.Name, scopeKind(t.ClusterScope))
			if l.templates[tkey{t.Name, !t.ClusterScope}] != nil {
				msg += fmt.Sprintf(" (a %s of that name exists: set clusterScope: %v)", scopeKind(!t.ClusterScope), !t.ClusterScope)
			}
			d.errf(ref.templateAt[i], CodeReference, "%s", msg)
			missing = true
			continue
		}
		tds = append(tds, td)
	}
	if missing || len(tds) == 0 {
		return
	}
	tds, ok := l.withNested(tds)
	if !ok {
		return
	}
	// Merge the templates' declared args, then the rollout's values over them.
	values := map[string]*string{}
	var order []string
	declaredBy := map[string]string{}
	for _, td := range tds {
		for _, a := range td.args {
			if _, seen := values[a.name]; !seen {
				order = append(order, a.name)
				declaredBy[a.name] = td.t.Name
				values[a.name] = a.value
			} else if values[a.name] == nil {
				values[a.name] = a.value
			}
		}
	}
	for _, a := range ref.ref.Args {
		if _, ok := values[a.Name]; !ok {
			d.warnf(ref.argAt[a.Name], CodeSuspicious, "%s.args: argument %q is declared by no template of this analysis; it is ignored", ref.path, a.Name)
			continue
		}
		if a.Value != nil {
			values[a.Name] = a.Value
		}
	}
	var args []model.Arg
	for _, n := range order {
		if values[n] == nil {
			missing = true
			d.errf(ref.at, CodeReference, "%s: argument %q of %s %q has no value; pass it: args: [{name: %s, value: ...}]", ref.path, n, "AnalysisTemplate", declaredBy[n], n)
			continue
		}
		args = append(args, model.Arg{Name: n, Value: values[n]})
	}
	ref.ref.Args = args
	if missing {
		return
	}
	for _, td := range tds {
		if td.bad {
			return
		}
	}
	// Argo's NewAnalysisRunFromTemplates: the templates' metrics run together (names
	// unique across them); every dryRun rule, the templates' and the reference's, applies
	// to every metric and must match one.
	type runMetric struct {
		parsedMetric
		template string
	}
	var all []runMetric
	seen := map[string]string{}
	for _, td := range tds {
		var tmp Diagnostics
		dd := newDec(td.d.file, &tmp, 0)
		dd.budget = td.d.budget + minNodeBudget
		dd.warned = td.d.warned
		sub := substitute(dd, td.metricsNode, values)
		pms := l.metrics(dd, sub, "spec.metrics")
		for i := range tmp {
			tmp[i].Message += fmt.Sprintf(" (with the args of Rollout %q at %s)", rd.r.Name, ref.ref.Pos)
		}
		l.mergeDiags(tmp)
		for _, pm := range pms {
			if other, dup := seen[pm.m.Name]; dup {
				d.errf(ref.at, CodeReference, "%s: metric %q is in templates %q and %q; Argo requires unique metric names across an analysis", ref.path, pm.m.Name, other, td.t.Name)
				continue
			}
			seen[pm.m.Name] = td.t.Name
			all = append(all, runMetric{pm, td.t.Name})
		}
	}
	rules := append([]dryRunRule(nil), ref.dryRun...)
	for _, td := range tds {
		rules = append(rules, td.dryRun...)
	}
	ruleSeen := map[string]bool{}
	for i, rule := range rules {
		if ruleSeen[rule.pat] {
			rule.d.errf(rule.at, CodeReference, "dryRun: two Dry-Run metric rules have the same name '%s' in the analysis of Rollout %q at %s (Argo refuses the analysis); keep one", rule.pat, rd.r.Name, ref.ref.Pos)
			continue
		}
		ruleSeen[rule.pat] = true
		matched := false
		for j := range all {
			if rule.re.MatchString(all[j].m.Name) {
				all[j].m.DryRun, matched = true, true
			}
		}
		if !matched {
			var names []string
			for _, m := range all {
				names = append(names, m.m.Name)
			}
			rule.d.errf(rule.at, CodeReference, "dryRun[%d]: Rule didn't match any metric name(s) (Argo fails the analysis run of Rollout %q at %s); metricName %q is a regular expression matched anywhere in a name, and the analysis has %s",
				i, rd.r.Name, ref.ref.Pos, rule.pat, strings.Join(names, ", "))
		}
	}
	var metrics []model.Metric
	skipped := 0
	for _, rm := range all {
		m := rm.m
		if rm.unsupported != "" && m.DryRun {
			skipped++
		}
		if rm.unsupported != "" {
			if m.DryRun {
				d.warnf(rm.at, CodeIgnored, "metric %q: ignored: Sluice does not run provider %s; it is dry-run, so it is skipped (%s)", m.Name, rm.unsupported, unsupportedAdvice(rm.unsupported))
			} else {
				d.errf(ref.at, CodeUnsupported, "%s: metric %q of template %q uses provider %s, which Sluice does not run, so this analysis could never measure it; %s, or make it informational with dryRun: [{metricName: %s}]",
					ref.path, m.Name, rm.template, rm.unsupported, unsupportedAdvice(rm.unsupported), m.Name)
			}
			continue
		}
		if j := m.Provider.Judge; j != nil {
			stable, canary := "", ""
			if c := rd.r.Canary; c != nil {
				stable, canary = c.StableService, c.CanaryService
			} else if b := rd.r.BlueGreen; b != nil {
				stable, canary = b.ActiveService, b.PreviewService
			}
			if j.Baseline == "" {
				j.Baseline = stable
			}
			if j.Canary == "" {
				j.Canary = canary
			}
		}
		if ref.mustEnd && rm.indefinite {
			d.errf(ref.at, CodeValue, "%s: AnalysisTemplate %s has metric %s which runs indefinitely. Invalid value for count: <nil> (Argo's InvalidSpec: an interval (%s) without count measures until the analysis is stopped, so this step would never complete); set count",
				ref.path, rm.template, m.Name, m.Interval)
		}
		metrics = append(metrics, m)
	}
	if len(metrics) == 0 && skipped > 0 && skipped == len(all) {
		d.warnf(ref.at, CodeSuspicious, "%s: every metric of this analysis is dry-run with a provider Sluice does not run, so it succeeds at once", ref.path)
	}
	ref.ref.Metrics = metrics
	l.warnXDSOnly(rd, ref, metrics)
}

// nestedErr reports a problem with a template's spec.templates entry once, however many
// analyses include the template.
func (l *loader) nestedErr(td *templateDoc, n nestedRef, msg string) {
	if td.nestedErrs == nil {
		td.nestedErrs = map[string]bool{}
	}
	if td.nestedErrs[msg] {
		return
	}
	td.nestedErrs[msg] = true
	td.d.errf(n.at, CodeReference, "%s", msg)
}

// withNested adds the templates tds include through spec.templates (Argo v1.7 nested
// templates), depth first, each once (Argo's FilterUniqueTemplates); a template that
// includes itself, directly or not, is an error.
func (l *loader) withNested(tds []*templateDoc) ([]*templateDoc, bool) {
	var out []*templateDoc
	done := map[*templateDoc]bool{}
	onPath := map[*templateDoc]bool{}
	ok := true
	var visit func(td *templateDoc, path []string)
	visit = func(td *templateDoc, path []string) {
		path = append(path, td.t.Name)
		if done[td] {
			return
		}
		done[td], onPath[td] = true, true
		out = append(out, td)
		for _, n := range td.nested {
			inner := l.templates[tkey{n.ref.Name, n.ref.ClusterScope}]
			switch {
			case inner == nil:
				l.nestedErr(td, n, fmt.Sprintf("spec.templates: %q names no %s; define it, or fix the name", n.ref.Name, scopeKind(n.ref.ClusterScope)))
				ok = false
			case onPath[inner]:
				l.nestedErr(td, n, fmt.Sprintf("spec.templates: including %s %q makes a cycle (%s → %s); remove one of the references",
					scopeKind(n.ref.ClusterScope), n.ref.Name, strings.Join(path, " → "), n.ref.Name))
				ok = false
			default:
				visit(inner, path)
			}
		}
		onPath[td] = false
	}
	for _, td := range tds {
		visit(td, nil)
	}
	for _, td := range out {
		if td.bad {
			return nil, false
		}
	}
	return out, ok
}

// mergeDiags adds diagnostics from a resolution pass, skipping those the template's
// own pass already reported at the same place.
func (l *loader) mergeDiags(tmp Diagnostics) {
	for _, t := range tmp {
		dup := false
		for _, e := range l.diags {
			if e.File == t.File && e.Line == t.Line && e.Code == t.Code {
				dup = true
				break
			}
		}
		if !dup {
			l.diags = append(l.diags, t)
		}
	}
}

// substitute copies n with {{args.NAME}} replaced in every string scalar.
func substitute(d *dec, n *yaml.Node, values map[string]*string) *yaml.Node {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	c := *n
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!str" && strings.Contains(n.Value, "{{") {
			c.Value = argRef.ReplaceAllStringFunc(n.Value, func(m string) string {
				name := argRef.FindStringSubmatch(m)[1]
				if v := values[name]; v != nil {
					return *v
				}
				return m
			})
		}
		return &c
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		c.Content[i] = substitute(d, e, values)
		if c.Content[i] == nil {
			c.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: e.Line}
		}
	}
	return &c
}
