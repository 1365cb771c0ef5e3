// Package config reads Sluice's configuration: Argo Rollouts argoproj.io/v1alpha1
// Rollout, AnalysisTemplate and ClusterAnalysisTemplate documents as users already
// write them, plus Sluice's own sluice.dev/v1alpha1 Cluster, Listener and ControlPlane
// kinds, into a validated model.Config.
//
// Decoding is strict: an unknown field, a wrong type, a bad value, a missing required
// field, a duplicate name or a reference to something no given file defines is an
// error, and every error in every file is reported in one run, each as
// "FILE:LINE: message" that names the field and the fix. Kubernetes-only fields and
// kinds, and providers Sluice does not run, are warnings. A configuration with errors
// yields no model: nothing of it may be applied.
//
// README.md's "Configuration reference" lists every kind and field, with defaults;
// its "Argo Rollouts compatibility" table says which Argo fields are supported, ignored or planned.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/model"
)

// MaxFileSize is the largest file Load reads. Larger files are refused unread.
const MaxFileSize = 10 << 20

// maxDepth bounds how deeply a document may nest, checked before parsing.
const maxDepth = 100

// maxEntries bounds the lines plus flow-list separators of a file, checked before
// parsing, so that the parsed tree stays small (a YAML node costs a few hundred bytes:
// 10 MiB of "a," would take a gigabyte).
const maxEntries = 200_000

// entries counts newlines and commas: an upper bound on what the parser will build,
// give or take a constant.
func entries(data []byte) int {
	return bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte(","))
}

// Load reads the given files and directories (every *.yaml and *.yml file directly in
// a directory, in name order; a file named twice is read once) as one configuration. It returns the model when there is
// no error, else nil; the diagnostics hold every error and warning either way, sorted
// by file and line.
func Load(paths ...string) (*model.Config, Diagnostics) {
	l := newLoader()
	if len(paths) == 0 {
		l.diags = append(l.diags, Diagnostic{File: "<args>", Line: 0, Code: CodeSyntax, Message: "no configuration files given"})
	}
	for _, p := range paths {
		l.path(p)
	}
	return l.finish()
}

// LoadBytes reads one file's content, named name in diagnostics.
func LoadBytes(name string, data []byte) (*model.Config, Diagnostics) {
	l := newLoader()
	l.file(name, data)
	return l.finish()
}

// load is Load without dropping the model on error, for tests.
func load(paths ...string) (*model.Config, Diagnostics) {
	l := newLoader()
	for _, p := range paths {
		l.path(p)
	}
	l.resolveAll()
	return &l.cfg, l.sorted()
}

type loader struct {
	diags     Diagnostics
	fileOrder map[string]int
	cfg       model.Config
	// Positions of defined names, for duplicate reports and references.
	clusterAt, listenerAt, rolloutAt map[string]model.Pos
	templates                        map[tkey]*templateDoc
	rollouts                         []*rolloutDoc
	controlPlaneAt                   *model.Pos
	ignoredKinds                     map[string]bool
	routeRefs                        []routeRef
	stickyRefs                       []stickyRef
	readPaths                        map[string]bool
}

type tkey struct {
	name    string
	cluster bool
}

func newLoader() *loader {
	return &loader{
		fileOrder:    map[string]int{},
		clusterAt:    map[string]model.Pos{},
		listenerAt:   map[string]model.Pos{},
		rolloutAt:    map[string]model.Pos{},
		templates:    map[tkey]*templateDoc{},
		ignoredKinds: map[string]bool{},
		readPaths:    map[string]bool{},
	}
}

func (l *loader) finish() (*model.Config, Diagnostics) {
	l.resolveAll()
	ds := l.sorted()
	if ds.HasErrors() {
		return nil, ds
	}
	cfg := l.cfg
	return &cfg, ds
}

func (l *loader) sorted() Diagnostics {
	sortDiags(l.diags, l.fileOrder)
	return l.diags
}

func (l *loader) fail(file string, lineNo int, format string, args ...any) {
	l.diags = append(l.diags, Diagnostic{File: file, Line: lineNo, Code: CodeSyntax, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) path(p string) {
	st, err := os.Stat(p)
	if err != nil {
		l.fail(p, 0, "cannot read: %v", unwrapPathErr(err))
		return
	}
	if !st.IsDir() {
		l.readFile(p, st.Size())
		return
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		l.fail(p, 0, "cannot read directory: %v", unwrapPathErr(err))
		return
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		fp := filepath.Join(p, name)
		st, err := os.Stat(fp)
		if err != nil {
			l.fail(fp, 0, "cannot read: %v", unwrapPathErr(err))
			continue
		}
		if st.IsDir() {
			continue
		}
		n++
		l.readFile(fp, st.Size())
	}
	if n == 0 {
		l.fail(p, 0, "directory holds no .yaml or .yml files")
	}
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (l *loader) readFile(p string, size int64) {
	// The same file named twice (directly, or also through its directory) is read once.
	key := filepath.Clean(p)
	if abs, err := filepath.Abs(p); err == nil {
		key = abs
	}
	if l.readPaths[key] {
		return
	}
	l.readPaths[key] = true
	if size > MaxFileSize {
		l.fail(p, 0, "file is %d bytes; the limit is %d (10 MiB): split it or remove what is not configuration", size, MaxFileSize)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		l.fail(p, 0, "cannot read: %v", unwrapPathErr(err))
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		l.fail(p, 0, "cannot read: %v", err)
		return
	}
	l.file(p, data)
}

var (
	yamlLineErr   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^unknown anchor '([^']*)' referenced`)
)

// file decodes one file's documents.
func (l *loader) file(name string, data []byte) {
	if _, seen := l.fileOrder[name]; !seen {
		l.fileOrder[name] = len(l.fileOrder)
	}
	if len(data) > MaxFileSize {
		l.fail(name, 0, "file is %d bytes; the limit is %d (10 MiB): split it or remove what is not configuration", len(data), MaxFileSize)
		return
	}
	if i := bytes.IndexByte(data, 0); i >= 0 || !utf8.Valid(data) {
		if i < 0 {
			i = firstInvalidUTF8(data)
		}
		l.fail(name, 1+bytes.Count(data[:i], []byte("\n")), "not a YAML text file: binary data at byte %d", i)
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		l.fail(name, 1, "file is empty: want YAML documents (apiVersion, kind, metadata, spec)")
		return
	}
	if ln, ok := tooDeep(data); !ok {
		l.fail(name, ln, "document nests more than %d levels deep; configuration never does", maxDepth)
		return
	}
	if n := entries(data); n > maxEntries {
		l.fail(name, 1, "file has about %d entries (lines and list items); the limit is %d: split it", n, maxEntries)
		return
	}
	d := newDec(name, &l.diags, len(data))
	yd := yaml.NewDecoder(bytes.NewReader(data))
	docs := 0
	for {
		var n yaml.Node
		err := yd.Decode(&n)
		if err == io.EOF {
			break
		}
		if err != nil {
			msg := err.Error()
			lineNo := 1
			if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
				lineNo, _ = strconv.Atoi(m[1])
				msg = m[2]
				if strings.HasPrefix(msg, "did not find expected") {
					// yaml.v3 reports a parser error's context line 0-based.
					lineNo++
				}
				if tabIndented(data, lineNo) {
					msg += " (a tab indents this line: YAML indents with spaces only)"
				}
			} else {
				msg = strings.TrimPrefix(msg, "yaml: ")
				if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
					if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
						lineNo = 1 + bytes.Count(data[:i], []byte("\n"))
					}
					msg += "; define it with &" + m[1] + " before using it"
				}
			}
			l.fail(name, lineNo, "invalid YAML: %s", msg)
			return
		}
		if len(n.Content) > 0 && !isNull(n.Content[0]) {
			docs++
		}
		l.doc(d, &n)
		if d.over {
			return
		}
	}
	if docs == 0 {
		l.fail(name, 1, "file holds no YAML documents")
	}
}

// tabIndented reports whether line n (1-based) of data is indented with a tab.
func tabIndented(data []byte, n int) bool {
	lines := bytes.SplitN(data, []byte("\n"), n+1)
	if n < 1 || n > len(lines) {
		return false
	}
	l := lines[n-1]
	i := 0
	for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
		i++
	}
	return bytes.IndexByte(l[:i], '\t') >= 0
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return 0
}

// tooDeep scans for flow ([ {) and block (indentation) nesting deeper than maxDepth,
// so that hostile input is refused before the parser builds a deep tree. It returns the
// line where the limit was passed.
func tooDeep(data []byte) (int, bool) {
	depth, lineNo := 0, 1
	inQuote := byte(0)
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			lineNo++
			// Block nesting: indentation of the next line, in steps of at least one space.
			j := i + 1
			for j < len(data) && (data[j] == ' ' || data[j] == '-') {
				j++
			}
			if j-i-1 > 2*maxDepth*4 && depth == 0 {
				return lineNo, false
			}
		case inQuote != 0:
			if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'':
			if depth > 0 {
				inQuote = c
			}
		case c == '#':
			if depth == 0 {
				for i < len(data) && data[i] != '\n' {
					i++
				}
				i--
			}
		case c == '[' || c == '{':
			depth++
			if depth > maxDepth {
				return lineNo, false
			}
		case c == ']' || c == '}':
			if depth > 0 {
				depth--
			}
		}
	}
	return 0, true
}

const (
	argoAPI   = "argoproj.io/v1alpha1"
	sluiceAPI = "sluice.dev/v1alpha1"
)

// k8sKindFix says what a Kubernetes kind's role is in Sluice.
var k8sKindFix = map[string]string{
	"Service":                 "declare a sluice.dev/v1alpha1 Cluster with its endpoints for each Service a Rollout names",
	"Ingress":                 "declare a sluice.dev/v1alpha1 Listener for it",
	"VirtualService":          "declare a sluice.dev/v1alpha1 Listener for it",
	"HTTPRoute":               "declare a sluice.dev/v1alpha1 Listener for it",
	"ApisixRoute":             "declare a sluice.dev/v1alpha1 Listener for it",
	"Gateway":                 "declare a sluice.dev/v1alpha1 Listener for it",
	"DestinationRule":         "Sluice splits by Cluster, not subset",
	"TrafficSplit":            "Sluice splits traffic itself",
	"Deployment":              "Sluice does not run workloads",
	"ReplicaSet":              "Sluice does not run workloads",
	"Experiment":              "Sluice does not run experiments",
	"AnalysisRun":             "Sluice creates its own analysis runs from templates",
	"TraefikService":          "declare a sluice.dev/v1alpha1 Listener for it",
	"Mapping":                 "declare a sluice.dev/v1alpha1 Listener for it",
	"ConfigMap":               "Sluice does not read Kubernetes objects",
	"Secret":                  "Sluice does not read Kubernetes objects",
	"ServiceMonitor":          "Sluice measures with its own router metrics or Prometheus",
	"PodMonitor":              "Sluice measures with its own router metrics or Prometheus",
	"HorizontalPodAutoscaler": "Sluice does not run workloads",
}

// doc decodes one YAML document.
func (l *loader) doc(d *dec, n *yaml.Node) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if isNull(d.resolve(n)) {
		return
	}
	top := d.object(n, n, "")
	if !top.present() {
		return
	}
	apiVersion, _ := d.str(top.get("apiVersion"), "apiVersion")
	kind, _ := d.str(top.get("kind"), "kind")
	if apiVersion == "" || kind == "" {
		top.require("apiVersion", "argoproj.io/v1alpha1 (Rollout, AnalysisTemplate) or sluice.dev/v1alpha1 (Cluster, Listener, ControlPlane)")
		top.require("kind", "Rollout, AnalysisTemplate, ClusterAnalysisTemplate, Cluster, Listener or ControlPlane")
		top.accept("metadata", "spec", "status")
		return
	}
	kindAt := top.key("kind")
	known := apiVersion == argoAPI && (kind == "Rollout" || kind == "AnalysisTemplate" || kind == "ClusterAnalysisTemplate") ||
		apiVersion == sluiceAPI && (kind == "Cluster" || kind == "Listener" || kind == "ControlPlane")
	if !known {
		switch {
		case strings.HasPrefix(apiVersion, "sluice.dev/") && apiVersion != sluiceAPI:
			d.errf(top.key("apiVersion"), CodeSchema, "apiVersion %q is not supported; use %s", apiVersion, sluiceAPI)
		case apiVersion == sluiceAPI:
			msg := fmt.Sprintf("kind %q is not a Sluice kind; use Cluster, Listener or ControlPlane", kind)
			if s := suggest(kind, []string{"Cluster", "Listener", "ControlPlane"}); s != "" {
				msg = fmt.Sprintf("kind %q is not a Sluice kind; did you mean %q?", kind, s)
			}
			d.errf(kindAt, CodeSchema, "%s", msg)
		case strings.HasPrefix(apiVersion, "argoproj.io/") && apiVersion != argoAPI:
			d.errf(top.key("apiVersion"), CodeSchema, "apiVersion %q is not supported; Argo Rollouts kinds are %s", apiVersion, argoAPI)
		case apiVersion == argoAPI && kind != "Experiment" && kind != "AnalysisRun":
			msg := fmt.Sprintf("kind %q is not an Argo Rollouts kind Sluice reads; use Rollout, AnalysisTemplate or ClusterAnalysisTemplate", kind)
			if s := suggest(kind, []string{"Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate"}); s != "" {
				msg = fmt.Sprintf("kind %q is not an Argo Rollouts kind; did you mean %q?", kind, s)
			}
			d.errf(kindAt, CodeSchema, "%s", msg)
		default:
			key := d.file + "\x00" + apiVersion + "\x00" + kind
			if l.ignoredKinds[key] {
				return
			}
			l.ignoredKinds[key] = true
			fix := k8sKindFix[kind]
			if fix == "" {
				fix = "Sluice reads only Argo Rollouts and sluice.dev kinds"
			}
			d.warnf(kindAt, CodeIgnored, "kind %s (%s) is ignored: %s", kind, apiVersion, fix)
		}
		// A kind Sluice does not read is not checked further: any fields go.
		return
	}
	meta := top.obj("metadata")
	name := ""
	if meta.require("name", "give the "+kind+" a name") {
		name, _ = d.str(meta.get("name"), "metadata.name")
	}
	meta.accept("namespace", "labels", "uid", "resourceVersion", "generation", "creationTimestamp",
		"generateName", "ownerReferences", "finalizers", "managedFields", "selfLink", "deletionTimestamp")
	annotations := d.object(meta.get("annotations"), meta.key("annotations"), "metadata.annotations")
	meta.end()
	top.ignore("Sluice keeps its own status", "status")
	spec := top.obj("spec")
	top.end()
	if !spec.present() {
		if v := top.get("spec"); v == nil || isNull(d.resolve(v)) {
			top.require("spec", "describe the "+kind)
		}
		l.placeholder(d, kind, name, d.pos(meta.key("name")))
		return
	}
	if name == "" {
		return
	}
	pos := d.pos(meta.key("name"))
	switch kind {
	case "Rollout":
		l.rollout(d, name, pos, spec, annotations)
	case "AnalysisTemplate", "ClusterAnalysisTemplate":
		l.template(d, name, kind == "ClusterAnalysisTemplate", pos, spec)
	case "Cluster":
		l.cluster(d, name, pos, spec)
	case "Listener":
		l.listener(d, name, pos, spec)
	case "ControlPlane":
		l.controlPlane(d, name, pos, spec)
	}
}

// placeholder defines the name of a document whose spec is unusable (already reported),
// so that references to it do not report it a second time as missing.
func (l *loader) placeholder(d *dec, kind, name string, pos model.Pos) {
	if name == "" {
		return
	}
	switch kind {
	case "Cluster":
		if l.define(d, l.clusterAt, kind, name, pos) {
			l.cfg.Clusters = append(l.cfg.Clusters, model.Cluster{Name: name, Pos: pos})
		}
	case "Listener":
		if l.define(d, l.listenerAt, kind, name, pos) {
			l.cfg.Listeners = append(l.cfg.Listeners, model.Listener{Name: name, Pos: pos})
		}
	case "AnalysisTemplate", "ClusterAnalysisTemplate":
		k := tkey{name, kind == "ClusterAnalysisTemplate"}
		if l.templates[k] == nil {
			l.templates[k] = &templateDoc{d: d, t: model.AnalysisTemplate{Name: name, ClusterScope: k.cluster, Pos: pos}, bad: true}
		}
	}
}

// define records a name of a kind, reporting a duplicate.
func (l *loader) define(d *dec, seen map[string]model.Pos, kind, name string, pos model.Pos) bool {
	if prev, dup := seen[name]; dup {
		d.add(pos.Line, SeverityError, CodeReference, "%s %q is already defined at %s; rename one of them", kind, name, prev)
		return false
	}
	seen[name] = pos
	return true
}

// resolveAll checks references across documents once every file is read, then sorts.
func (l *loader) resolveAll() {
	if l.controlPlaneAt == nil {
		l.cfg.ControlPlane = defaultControlPlane()
	}
	for _, r := range l.rollouts {
		l.resolveRollout(r)
	}
	sort.Slice(l.cfg.Clusters, func(i, j int) bool { return l.cfg.Clusters[i].Name < l.cfg.Clusters[j].Name })
	sort.Slice(l.cfg.Listeners, func(i, j int) bool { return l.cfg.Listeners[i].Name < l.cfg.Listeners[j].Name })
	sort.Slice(l.cfg.Rollouts, func(i, j int) bool { return l.cfg.Rollouts[i].Name < l.cfg.Rollouts[j].Name })
	sort.Slice(l.cfg.Templates, func(i, j int) bool {
		a, b := l.cfg.Templates[i], l.cfg.Templates[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return !a.ClusterScope && b.ClusterScope
	})
	l.checkListeners()
}
