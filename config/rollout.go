package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/model"
)

// Rollout defaults (Argo's).
const (
	DefaultAutoPromotionEnabled  = true
	DefaultScaleDownDelaySeconds = 30
	// DefaultProgressDeadlineSeconds is Argo's default progressDeadlineSeconds: how long
	// a step waits for a healthy canary endpoint before the rollout aborts.
	DefaultProgressDeadlineSeconds = 600
	DefaultMirrorPercentage        = 100
	// DefaultPreviewHeader is the header that reaches a blueGreen preview cluster before
	// the switch when strategy.blueGreen.previewHeader is not set.
	DefaultPreviewHeader = "x-sluice-preview"
	// RevisionAnnotation sets a Rollout's revision explicitly.
	RevisionAnnotation = "sluice.dev/revision"
)

const k8sOnly = "Kubernetes-only: Sluice shifts traffic between Clusters and runs no pods"

// rolloutDoc is a decoded Rollout with what resolution needs: where each reference is.
type rolloutDoc struct {
	d        *dec
	r        *model.Rollout
	services []serviceRef
	ingress  *serviceRef
	refs     []*refDoc
	managed  map[string]bool
	// routeUses are setHeaderRoute/setMirrorRoute names, checked against managedRoutes.
	routeUses []serviceRef
}

// serviceRef is a name the rollout points at, with where.
type serviceRef struct {
	name, path string
	at         *yaml.Node
}

// refDoc is an analysis reference (a step, background, pre/post promotion).
type refDoc struct {
	ref        *model.AnalysisRef
	path       string
	at         *yaml.Node
	templateAt []*yaml.Node
	argAt      map[string]*yaml.Node
	// mustEnd: the rollout waits for this analysis to finish (inline step,
	// pre-promotion), so a metric that never ends blocks it forever.
	mustEnd bool
	dryRun  []dryRunRule
}

func (l *loader) rollout(d *dec, name string, pos model.Pos, spec, annotations *obj) {
	rd := &rolloutDoc{d: d, r: &model.Rollout{Name: name, Pos: pos}, managed: map[string]bool{}}
	spec.ignore(k8sOnly, "replicas", "selector", "minReadySeconds", "revisionHistoryLimit",
		"restartAt", "rollbackWindow", "analysis", "paused")
	rd.r.ProgressDeadline = time.Duration(d.positive(spec, "progressDeadlineSeconds", DefaultProgressDeadlineSeconds)) * time.Second
	spec.ignore("Sluice always aborts a rollout whose step waited progressDeadlineSeconds for a healthy canary endpoint "+
		"(every request goes back to stable)", "progressDeadlineAbort")
	spec.ignore("Sluice runs no pods; only its hash is used, as the rollout's revision", "template", "workloadRef")
	rev := ""
	if annotations.present() {
		if v := annotations.get(RevisionAnnotation); v != nil {
			if s, ok := d.text(v, "metadata.annotations."+RevisionAnnotation); ok {
				if s == "" {
					d.errf(v, CodeValue, "metadata.annotations.%s: empty; give the release a name, or remove it", RevisionAnnotation)
				}
				rev = s
			}
		}
		for _, k := range annotations.order {
			annotations.get(k)
		}
	}
	if rev == "" {
		if t := spec.get("template"); t != nil {
			rev = hashNode(d, t)
		} else if w := spec.get("workloadRef"); w != nil {
			rev = hashNode(d, w)
		}
	}
	st := spec.obj("strategy")
	if !st.present() {
		spec.require("strategy", "set strategy.canary or strategy.blueGreen")
	}
	canary, blueGreen := st.obj("canary"), st.obj("blueGreen")
	switch {
	case canary.present() && blueGreen.present():
		d.errf(st.key("blueGreen"), CodeSchema, "%s: set canary or blueGreen, not both", st.path)
	case canary.present():
		rd.r.Strategy = model.StrategyCanary
		rd.r.Canary = l.canary(rd, canary)
	case blueGreen.present():
		rd.r.Strategy = model.StrategyBlueGreen
		rd.r.BlueGreen = l.blueGreen(rd, blueGreen)
	case st.present():
		d.errf(st.at, CodeSchema, "%s: set canary or blueGreen", st.path)
	}
	st.end()
	spec.end()
	if rev == "" {
		var names []string
		for _, s := range rd.services {
			names = append(names, s.name)
		}
		rev = hashString(strings.Join(names, "\x00"))
	}
	rd.r.Revision = rev
	if l.define(d, l.rolloutAt, "Rollout", name, pos) {
		l.rollouts = append(l.rollouts, rd)
	}
}

func hashString(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:10]
}

// hashNode hashes a YAML subtree's content (not its comments or layout).
func hashNode(d *dec, n *yaml.Node) string {
	h := sha256.New()
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		n = d.resolve(n)
		if n == nil {
			return
		}
		h.Write([]byte{byte(n.Kind), byte(len(n.Content)), byte(len(n.Content) >> 8)})
		h.Write([]byte(n.Tag))
		h.Write([]byte{0})
		h.Write([]byte(n.Value))
		h.Write([]byte{0})
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return hex.EncodeToString(h.Sum(nil))[:10]
}

func (rd *rolloutDoc) service(o *obj, field string) string {
	v := o.get(field)
	if v == nil {
		return ""
	}
	s, ok := rd.d.str(v, o.sub(field))
	if !ok || s == "" {
		return ""
	}
	rd.services = append(rd.services, serviceRef{name: s, path: o.sub(field), at: v})
	return s
}

func (l *loader) canary(rd *rolloutDoc, o *obj) *model.CanaryStrategy {
	d := rd.d
	c := &model.CanaryStrategy{}
	stableAt, canaryAt := o.key("stableService"), o.key("canaryService")
	c.StableService = rd.service(o, "stableService")
	c.CanaryService = rd.service(o, "canaryService")
	o.ignore(k8sOnly, "maxSurge", "maxUnavailable", "canaryMetadata", "stableMetadata", "scaleDownDelaySeconds",
		"scaleDownDelayRevisionLimit", "abortScaleDownDelaySeconds", "dynamicStableScale", "antiAffinity",
		"minPodsPerReplicaSet", "replicaProgressThreshold", "pingPong")
	if tr := o.obj("trafficRouting"); tr.present() {
		for i, mn := range d.list(tr.get("managedRoutes"), tr.sub("managedRoutes")) {
			mo := d.object(mn, mn, tr.sub("managedRoutes")+"["+strconv.Itoa(i)+"]")
			if mo.require("name", "name the route, as setHeaderRoute/setMirrorRoute steps do") {
				n := d.strField(mo, "name")
				if rd.managed[n] {
					d.errf(mo.get("name"), CodeReference, "%s: managed route %q is listed twice", mo.sub("name"), n)
				}
				rd.managed[n] = true
				c.ManagedRoutes = append(c.ManagedRoutes, n)
			}
			mo.end()
		}
		if ng := tr.obj("nginx"); ng.present() {
			if v := ng.get("stableIngress"); v != nil {
				if s, ok := d.str(v, ng.sub("stableIngress")); ok && s != "" {
					c.StableIngress = s
					rd.ingress = &serviceRef{name: s, path: ng.sub("stableIngress"), at: v}
				}
			}
			// The blog-post placement of the services.
			for _, f := range []struct {
				field string
				dst   *string
				at    **yaml.Node
			}{{"stableService", &c.StableService, &stableAt}, {"canaryService", &c.CanaryService, &canaryAt}} {
				v := ng.get(f.field)
				if v == nil {
					continue
				}
				s, ok := d.str(v, ng.sub(f.field))
				if !ok || s == "" {
					continue
				}
				if *f.dst != "" && *f.dst != s {
					d.errf(v, CodeValue, "%s: %q differs from %s %q; set it in one place", ng.sub(f.field), s, o.sub(f.field), *f.dst)
					continue
				}
				if *f.dst == "" {
					*f.dst = s
					*f.at = v
					rd.services = append(rd.services, serviceRef{name: s, path: ng.sub(f.field), at: v})
				}
			}
			ng.ignore("Sluice's Listener does what the Ingress annotations would", "annotationPrefix", "additionalIngressAnnotations", "canaryIngressAnnotations", "additionalStableIngresses")
			ng.ignore("Sluice owns one Listener per rollout; use stableIngress", "stableIngresses")
			ng.end()
		}
		tr.ignore("Sluice routes traffic itself, through its router or Envoy over xDS", "istio", "smi", "alb", "ambassador",
			"appMesh", "traefik", "apisix", "plugins")
		tr.ignore("planned: Sluice weights are percentages of 100", "maxTrafficWeight")
		tr.end()
	}
	if c.StableService == "" {
		d.errf(o.at, CodeSchema, "%s.stableService is required: name the Cluster that serves the stable version (Sluice shifts traffic between two Clusters)", o.path)
	}
	if c.CanaryService == "" {
		d.errf(o.at, CodeSchema, "%s.canaryService is required: name the Cluster that serves the canary version (Sluice shifts traffic between two Clusters)", o.path)
	}
	if c.StableService != "" && c.StableService == c.CanaryService {
		d.errf(canaryAt, CodeValue, "%s: canaryService and stableService are both %q; name two different Clusters", o.path, c.StableService)
	}
	origToNew := map[int]int{}
	steps := o.get("steps")
	nsteps := 0
	lastWeight, lastWeightAt := -1, 0
	for i, sn := range d.list(steps, o.sub("steps")) {
		nsteps++
		origToNew[i] = len(c.Steps)
		for _, s := range l.step(rd, sn, o.sub("steps")+"["+strconv.Itoa(i)+"]") {
			if s.SetWeight != nil {
				if *s.SetWeight < lastWeight {
					d.add(s.Pos.Line, SeverityWarning, CodeSuspicious, "%s.setWeight: %d is lower than the %d set at line %d; the canary loses traffic here — is that intended?", o.sub("steps")+"["+strconv.Itoa(i)+"]", *s.SetWeight, lastWeight, lastWeightAt)
				}
				lastWeight, lastWeightAt = *s.SetWeight, s.Pos.Line
			}
			c.Steps = append(c.Steps, s)
		}
	}
	if bg := o.obj("analysis"); bg.present() {
		ref := l.analysisRef(rd, bg, false)
		ba := &model.BackgroundAnalysis{AnalysisRef: *ref.ref}
		if v := bg.get("startingStep"); v != nil {
			if n, ok := d.integer(v, bg.sub("startingStep")); ok {
				switch {
				case n < 0:
					d.errf(v, CodeValue, "%s: %d is negative; use a step index from 0", bg.sub("startingStep"), n)
				case n >= nsteps && nsteps > 0:
					d.errf(v, CodeValue, "%s: %d is past the last step; there are %d steps (0 to %d)", bg.sub("startingStep"), n, nsteps, nsteps-1)
				default:
					ba.StartingStep = origToNew[n]
				}
			}
		}
		bg.end()
		c.Analysis = ba
		ref.ref = &c.Analysis.AnalysisRef
	}
	o.end()
	return c
}

var stepActions = []string{"setWeight", "pause", "analysis", "setHeaderRoute", "setMirrorRoute", "setCanaryScale", "experiment", "plugin"}

// step decodes one canary step; a step that sets several actions becomes several
// steps, in the order written.
func (l *loader) step(rd *rolloutDoc, n *yaml.Node, path string) []model.Step {
	d := rd.d
	o := d.object(n, n, path)
	if !o.present() {
		if isNull(d.resolve(n)) {
			d.errf(n, CodeSchema, "%s: empty step; set one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute", path)
		}
		return nil
	}
	for _, a := range stepActions {
		o.has(a)
	}
	var actions []string
	for _, k := range o.order {
		for _, a := range stepActions {
			if k == a {
				actions = append(actions, k)
			}
		}
	}
	if len(actions) > 1 {
		d.warnf(o.key(actions[0]), CodeSuspicious, "%s sets %s in one step; Argo expects one action per step, so Sluice runs them as %d consecutive steps in this order", path, strings.Join(actions, ", "), len(actions))
	}
	var out []model.Step
	for _, a := range actions {
		s := model.Step{Pos: d.pos(o.key(a))}
		p := o.sub(a)
		v := o.get(a)
		switch a {
		case "setWeight":
			w, ok := d.integer(v, p)
			if !ok {
				if isNull(d.resolve(v)) {
					d.errf(o.key(a), CodeSchema, "%s: want a percentage from 0 to 100", p)
				}
				continue
			}
			if w < 0 || w > 100 {
				d.errf(v, CodeValue, "%s: %d is outside 0-100; use a percentage of traffic from 0 to 100", p, w)
				continue
			}
			s.SetWeight = &w
		case "pause":
			if pv := d.resolve(v); pv != nil && pv.Kind == yaml.ScalarNode && !isNull(pv) {
				d.errf(pv, CodeSchema, "%s: want a mapping; write pause: {duration: %s} (or pause: {} to wait for sluice promote)", p, pv.Value)
				continue
			}
			po := d.object(v, o.key(a), p)
			pz := &model.Pause{}
			if dv := po.get("duration"); dv != nil && !isNull(dv) {
				if t, ok := d.duration(dv, po.sub("duration")); ok {
					pz.Duration = &t
				}
			}
			po.end()
			s.Pause = pz
		case "analysis":
			ao := d.object(v, o.key(a), p)
			ref := l.analysisRef(rd, ao, true)
			ao.end()
			s.Analysis = ref.ref
		case "setHeaderRoute":
			ho := d.object(v, o.key(a), p)
			hr := &model.SetHeaderRoute{}
			if ho.require("name", "name a route listed in trafficRouting.managedRoutes") {
				hr.Name = d.strField(ho, "name")
				rd.routeUses = append(rd.routeUses, serviceRef{name: hr.Name, path: ho.sub("name"), at: ho.get("name")})
			}
			for i, mn := range d.list(ho.get("match"), ho.sub("match")) {
				if h, ok := d.argoHeaderMatch(d.object(mn, mn, ho.sub("match")+"["+strconv.Itoa(i)+"]")); ok {
					hr.Match = append(hr.Match, h)
				}
			}
			ho.end()
			s.SetHeaderRoute = hr
		case "setMirrorRoute":
			mo := d.object(v, o.key(a), p)
			mr := &model.SetMirrorRoute{Percentage: DefaultMirrorPercentage}
			if mo.require("name", "name a route listed in trafficRouting.managedRoutes") {
				mr.Name = d.strField(mo, "name")
				rd.routeUses = append(rd.routeUses, serviceRef{name: mr.Name, path: mo.sub("name"), at: mo.get("name")})
			}
			if pv := mo.get("percentage"); pv != nil {
				if pc, ok := d.integer(pv, mo.sub("percentage")); ok {
					if pc < 0 || pc > 100 {
						d.errf(pv, CodeValue, "%s: %d is outside 0-100; use a percentage from 0 to 100", mo.sub("percentage"), pc)
					} else {
						mr.Percentage = pc
					}
				}
			}
			for i, mn := range d.list(mo.get("match"), mo.sub("match")) {
				mr.Match = append(mr.Match, d.requestMatch(d.object(mn, mn, mo.sub("match")+"["+strconv.Itoa(i)+"]")))
			}
			mo.end()
			s.SetMirrorRoute = mr
		default: // setCanaryScale, experiment, plugin
			s.Ignored = true
			key := "step:" + a
			if !d.warned[key] {
				d.warned[key] = true
				why := k8sOnly
				if a == "plugin" {
					why = "Sluice runs no step plugins"
				}
				d.warnf(o.key(a), CodeIgnored, "%s is ignored (skipped as a step): %s", p, why)
			}
		}
		out = append(out, s)
	}
	if len(actions) == 0 {
		o.end()
		if len(o.order) == 0 {
			d.errf(n, CodeSchema, "%s: empty step; set one of setWeight, pause, analysis, setHeaderRoute, setMirrorRoute", path)
		}
		return nil
	}
	o.end()
	return out
}

// argoHeaderMatch decodes Argo's {headerName, headerValue: {exact|prefix|regex}}.
func (d *dec) argoHeaderMatch(o *obj) (model.HeaderMatch, bool) {
	h := model.HeaderMatch{}
	ok := o.require("headerName", "name the header to match")
	h.Name = strings.ToLower(d.strField(o, "headerName"))
	vo := o.obj("headerValue")
	if !vo.present() {
		o.require("headerValue", "give headerValue: {exact: VALUE} (or prefix, regex)")
		ok = false
	} else {
		sm, mok := d.stringMatch(vo, "")
		vo.end()
		h.Value, ok = sm, ok && mok
	}
	o.end()
	return h, ok
}

// requestMatch decodes Argo's RouteMatch {method, path, headers: {NAME: {exact...}}}.
func (d *dec) requestMatch(o *obj) model.RequestMatch {
	var m model.RequestMatch
	if mo := o.obj("method"); mo.present() {
		sm, _ := d.stringMatch(mo, "")
		mo.end()
		m.Method = &sm
	}
	if po := o.obj("path"); po.present() {
		sm, _ := d.stringMatch(po, "")
		po.end()
		m.Path = &sm
	}
	if ho := o.obj("headers"); ho.present() {
		for _, k := range ho.order {
			vo := ho.obj(k)
			sm, ok := d.stringMatch(vo, "")
			vo.end()
			if ok {
				m.Headers = append(m.Headers, model.HeaderMatch{Name: strings.ToLower(k), Value: sm})
			}
		}
	}
	o.end()
	return m
}

func (l *loader) blueGreen(rd *rolloutDoc, o *obj) *model.BlueGreenStrategy {
	d := rd.d
	b := &model.BlueGreenStrategy{AutoPromotionEnabled: DefaultAutoPromotionEnabled, ScaleDownDelaySeconds: DefaultScaleDownDelaySeconds}
	if o.has("activeService") {
		b.ActiveService = rd.service(o, "activeService")
	}
	if b.ActiveService == "" {
		d.errf(o.at, CodeSchema, "%s.activeService is required: name the Cluster that serves production traffic", o.path)
	}
	b.PreviewService = rd.service(o, "previewService")
	if b.PreviewService != "" && b.PreviewService == b.ActiveService {
		d.errf(o.key("previewService"), CodeValue, "%s: previewService and activeService are both %q; name two different Clusters", o.path, b.ActiveService)
	}
	if v := o.get("autoPromotionEnabled"); v != nil {
		if x, ok := d.boolean(v, o.sub("autoPromotionEnabled")); ok {
			b.AutoPromotionEnabled = x
		}
	}
	b.AutoPromotionSeconds = d.nonNegative(o, "autoPromotionSeconds", 0)
	if b.AutoPromotionSeconds > 0 && !b.AutoPromotionEnabled {
		d.warnf(o.key("autoPromotionSeconds"), CodeSuspicious, "%s: has no effect while autoPromotionEnabled is false; the rollout waits for `sluice promote`", o.sub("autoPromotionSeconds"))
	}
	b.ScaleDownDelaySeconds = d.nonNegative(o, "scaleDownDelaySeconds", DefaultScaleDownDelaySeconds)
	if po := o.obj("prePromotionAnalysis"); po.present() {
		ref := l.analysisRef(rd, po, true)
		po.end()
		b.PrePromotionAnalysis = ref.ref
	}
	if po := o.obj("postPromotionAnalysis"); po.present() {
		ref := l.analysisRef(rd, po, true)
		po.end()
		b.PostPromotionAnalysis = ref.ref
	}
	if ph := o.get("previewHeader"); ph != nil {
		for i, hn := range d.list(ph, o.sub("previewHeader")) {
			if h, ok := d.headerMatch(d.object(hn, hn, o.sub("previewHeader")+"["+strconv.Itoa(i)+"]")); ok {
				b.PreviewHeader = append(b.PreviewHeader, h)
			}
		}
	} else if b.PreviewService != "" {
		b.PreviewHeader = []model.HeaderMatch{{Name: DefaultPreviewHeader, Value: model.StringMatch{Exact: "true"}}}
	}
	if v := o.get("activeIngress"); v != nil {
		if s, ok := d.str(v, o.sub("activeIngress")); ok && s != "" {
			b.ActiveIngress = s
			rd.ingress = &serviceRef{name: s, path: o.sub("activeIngress"), at: v}
		}
	}
	o.ignore(k8sOnly, "previewReplicaCount", "scaleDownDelayRevisionLimit", "antiAffinity", "activeMetadata",
		"previewMetadata", "abortScaleDownDelaySeconds", "maxUnavailable")
	o.end()
	return b
}

// resolveRollout checks a rollout's references and resolves its analyses.
func (l *loader) resolveRollout(rd *rolloutDoc) {
	d := rd.d
	for _, s := range rd.services {
		if l.cfg.Cluster(s.name) == nil {
			d.errf(s.at, CodeReference, "%s: %q names no Cluster; define a sluice.dev/v1alpha1 Cluster %q with its endpoints, or fix the name", s.path, s.name, s.name)
		}
	}
	owned := ""
	if r := rd.r; r.Canary != nil {
		owned = r.Canary.StableService
	} else if r.BlueGreen != nil {
		owned = r.BlueGreen.ActiveService
	}
	if rd.ingress != nil {
		ln := l.cfg.Listener(rd.ingress.name)
		if ln == nil {
			d.errf(rd.ingress.at, CodeReference, "%s: %q names no Listener; define a sluice.dev/v1alpha1 Listener %q, or fix the name", rd.ingress.path, rd.ingress.name, rd.ingress.name)
		} else if owned != "" && l.cfg.Cluster(owned) != nil && !routesTo(ln, owned) {
			d.errf(rd.ingress.at, CodeReference, "%s: Listener %q has no route to Cluster %q, so the rollout would move no traffic; add a route with cluster: %s", rd.ingress.path, ln.Name, owned, owned)
		}
	} else if owned != "" && l.cfg.Cluster(owned) != nil {
		found := false
		for i := range l.cfg.Listeners {
			found = found || routesTo(&l.cfg.Listeners[i], owned)
		}
		if !found {
			d.add(rd.r.Pos.Line, SeverityWarning, CodeSuspicious, "Rollout %q: no Listener route sends traffic to Cluster %q, so the rollout moves no traffic; add a Listener with a route to it", rd.r.Name, owned)
		}
	}
	for _, u := range rd.routeUses {
		if !rd.managed[u.name] {
			d.errf(u.at, CodeReference, "%s: %q is not in trafficRouting.managedRoutes; add - name: %s there", u.path, u.name, u.name)
		}
	}
	for _, other := range l.rollouts {
		if other == rd || owned == "" {
			continue
		}
		if o := ownedCluster(other.r); o == owned && other.r.Name < rd.r.Name {
			d.add(rd.r.Pos.Line, SeverityError, CodeReference, "Rollout %q shifts traffic away from Cluster %q, as Rollout %q (%s) does; one Cluster can have one rollout", rd.r.Name, owned, other.r.Name, other.r.Pos)
		}
	}
	for _, ref := range rd.refs {
		l.resolveRef(rd, ref)
	}
	l.cfg.Rollouts = append(l.cfg.Rollouts, *rd.r)
}

func ownedCluster(r *model.Rollout) string {
	if r.Canary != nil {
		return r.Canary.StableService
	}
	if r.BlueGreen != nil {
		return r.BlueGreen.ActiveService
	}
	return ""
}

func routesTo(ln *model.Listener, cluster string) bool {
	for _, r := range ln.Routes {
		if r.Cluster == cluster {
			return true
		}
	}
	return false
}
