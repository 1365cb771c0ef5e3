package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/model"
)

// minNodeBudget is the least number of YAML node visits a file's decoding may make;
// the budget is this plus the file's size in bytes (a node takes at least one byte),
// so plain input never runs out and aliases cannot expand without bound.
const minNodeBudget = 100_000

// dec decodes documents of one file, collecting diagnostics.
type dec struct {
	file   string
	diags  *Diagnostics
	budget int
	// over is set once the node budget ran out; everything after is skipped.
	over bool
	// warned records ignored-field warnings already given, so each is given once.
	warned map[string]bool
	// allowArgs: scalars holding {{args.X}} skip number/duration checks (a template
	// before its arguments are substituted).
	allowArgs bool
}

func newDec(file string, diags *Diagnostics, size int) *dec {
	return &dec{file: file, diags: diags, budget: minNodeBudget + size, warned: map[string]bool{}}
}

func (d *dec) add(line int, sev Severity, code Code, format string, args ...any) {
	*d.diags = append(*d.diags, Diagnostic{File: d.file, Line: line, Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (d *dec) errf(n *yaml.Node, code Code, format string, args ...any) {
	d.add(line(n), SeverityError, code, format, args...)
}

func (d *dec) warnf(n *yaml.Node, code Code, format string, args ...any) {
	d.add(line(n), SeverityWarning, code, format, args...)
}

func (d *dec) pos(n *yaml.Node) model.Pos { return model.Pos{File: d.file, Line: line(n)} }

func line(n *yaml.Node) int {
	if n == nil {
		return 1
	}
	return n.Line
}

// resolve follows aliases and charges the node budget. It returns nil when the budget
// is spent (reported once).
func (d *dec) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	d.budget--
	if d.budget < 0 {
		if !d.over {
			d.over = true
			d.errf(n, CodeSyntax, "document is too complex: its aliases expand to too many nodes; write it out plainly")
		}
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", clip(n.Value))
		case "!!null":
			return "null"
		default:
			return clip(n.Value)
		}
	}
	return "an unknown node"
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// obj is a YAML mapping being decoded: fields are fetched by name, and end() reports
// every field that was not.
type obj struct {
	d     *dec
	path  string
	node  *yaml.Node // the mapping (nil when absent or wrong)
	at    *yaml.Node // where to report a missing field: the key holding the mapping
	vals  map[string]*yaml.Node
	keys  map[string]*yaml.Node
	order []string
	known []string
	used  map[string]bool
}

// object opens n as a mapping at path. at is the key node that holds it (for errors
// about missing fields). A null or absent n gives an empty object; a non-mapping is an
// error and an empty object.
func (d *dec) object(n, at *yaml.Node, path string) *obj {
	o := &obj{d: d, path: path, at: at, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, used: map[string]bool{}}
	if at == nil {
		o.at = n
	}
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return o
	}
	if n.Kind != yaml.MappingNode {
		d.errf(n, CodeSchema, "%s: want a mapping, got %s", orTop(path), kindName(n))
		return o
	}
	o.node = n
	o.collect(n, false)
	return o
}

func (o *obj) collect(n *yaml.Node, merged bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := o.d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return
		}
		if k.Tag == "!!merge" {
			if m := o.d.resolve(v); m != nil && m.Kind == yaml.MappingNode {
				o.collect(m, true)
			} else if m != nil && m.Kind == yaml.SequenceNode {
				for _, e := range m.Content {
					if e = o.d.resolve(e); e != nil && e.Kind == yaml.MappingNode {
						o.collect(e, true)
					}
				}
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			o.d.errf(k, CodeSchema, "%s: a key must be a plain name, got %s", o.path, kindName(k))
			continue
		}
		if prev, dup := o.keys[k.Value]; dup {
			if !merged {
				o.d.errf(k, CodeSchema, "%s: field %q appears twice (first at line %d); keep one", o.path, k.Value, prev.Line)
			}
			continue
		}
		o.keys[k.Value] = k
		o.vals[k.Value] = v
		o.order = append(o.order, k.Value)
	}
}

// has reports whether the field is present (and marks it known).
func (o *obj) has(name string) bool {
	o.known = append(o.known, name)
	_, ok := o.vals[name]
	return ok
}

// get returns the value node of a field, or nil; the field counts as known.
func (o *obj) get(name string) *yaml.Node {
	o.known = append(o.known, name)
	v, ok := o.vals[name]
	if !ok {
		return nil
	}
	o.used[name] = true
	return v
}

// key returns the key node of a present field (for positions), else the mapping's.
func (o *obj) key(name string) *yaml.Node {
	if k, ok := o.keys[name]; ok {
		return k
	}
	return o.at
}

func (o *obj) sub(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

// obj opens a field as a mapping.
func (o *obj) obj(name string) *obj {
	return o.d.object(o.get(name), o.key(name), o.sub(name))
}

// present reports whether the object exists in the input.
func (o *obj) present() bool { return o.node != nil }

// require reports a missing required field; it returns false when missing.
func (o *obj) require(name, fix string) bool {
	if v := o.get(name); v != nil && !isNull(v) {
		return true
	}
	o.d.errf(o.at, CodeSchema, "%s is required: %s", o.sub(name), fix)
	return false
}

// ignore warns, once per field path, that a present field is ignored.
func (o *obj) ignore(why string, names ...string) {
	for _, name := range names {
		if o.get(name) == nil {
			continue
		}
		p := o.sub(name)
		if o.d.warned[p+why] {
			continue
		}
		o.d.warned[p+why] = true
		o.d.warnf(o.keys[name], CodeIgnored, "%s is ignored: %s", p, why)
	}
}

// accept marks fields as known and silently accepted (metadata that has no effect).
func (o *obj) accept(names ...string) {
	for _, n := range names {
		o.get(n)
	}
}

// end reports the fields that no get() asked for.
func (o *obj) end() {
	for _, k := range o.order {
		if o.used[k] {
			continue
		}
		msg := fmt.Sprintf("%s: unknown field %q", orTop(o.path), k)
		if s := suggest(k, o.known); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else if len(o.known) > 0 {
			msg += "; known fields: " + strings.Join(uniqSorted(o.known), ", ")
		}
		o.d.errf(o.keys[k], CodeSchema, "%s", msg)
	}
}

func orTop(p string) string {
	if p == "" {
		return "document"
	}
	return p
}

func uniqSorted(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, v := range s {
		if !m[v] {
			m[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// suggest returns the known name closest to s when it is close enough to be a typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	ls := strings.ToLower(s)
	for _, k := range known {
		if strings.ToLower(k) == ls {
			return k
		}
		if d := editDistance(ls, strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list opens n as a sequence; null is an empty list; anything else is an error.
func (d *dec) list(n *yaml.Node, path string) []*yaml.Node {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errf(n, CodeSchema, "%s: want a list, got %s", path, kindName(n))
		return nil
	}
	return n.Content
}

// scalar returns n as a scalar, or reports a wrong type.
func (d *dec) scalar(n *yaml.Node, path, want string) (*yaml.Node, bool) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return n, false
	}
	if n.Kind != yaml.ScalarNode {
		d.errf(n, CodeSchema, "%s: want %s, got %s", path, want, kindName(n))
		return n, false
	}
	return n, true
}

// str decodes a string. Numbers and booleans are refused: quote them.
func (d *dec) str(n *yaml.Node, path string) (string, bool) {
	s, ok := d.scalar(n, path, "a string")
	if !ok {
		return "", false
	}
	if s.Tag != "!!str" && s.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		d.errf(s, CodeSchema, "%s: want a string, got %s; quote it: \"%s\"", path, s.Value, s.Value)
		return "", false
	}
	return s.Value, true
}

// text decodes any scalar as text (for argument values and header values, where
// users write 8080 or true unquoted).
func (d *dec) text(n *yaml.Node, path string) (string, bool) {
	s, ok := d.scalar(n, path, "a string")
	if !ok {
		return "", false
	}
	return s.Value, true
}

func hasArgRef(s string) bool { return strings.Contains(s, "{{") }

// integer decodes an int; a string of digits is accepted too (Argo's IntOrString).
// ok is false when absent, invalid or an unsubstituted {{args.X}}.
func (d *dec) integer(n *yaml.Node, path string) (int, bool) {
	s, ok := d.scalar(n, path, "an integer")
	if !ok {
		return 0, false
	}
	if s.Tag == "!!str" && d.allowArgs && hasArgRef(s.Value) {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s.Value), 10, 32)
	if err != nil || (s.Tag != "!!int" && s.Tag != "!!str") {
		d.errf(s, CodeSchema, "%s: want an integer, got %s", path, kindName(s))
		return 0, false
	}
	return int(v), true
}

// boolean decodes true or false.
func (d *dec) boolean(n *yaml.Node, path string) (bool, bool) {
	s, ok := d.scalar(n, path, "true or false")
	if !ok {
		return false, false
	}
	if s.Tag != "!!bool" {
		d.errf(s, CodeSchema, "%s: want true or false, got %s", path, kindName(s))
		return false, false
	}
	return s.Value == "true" || s.Value == "True" || s.Value == "TRUE", true
}

// float decodes a number.
func (d *dec) float(n *yaml.Node, path string) (float64, bool) {
	s, ok := d.scalar(n, path, "a number")
	if !ok {
		return 0, false
	}
	if s.Tag == "!!str" && d.allowArgs && hasArgRef(s.Value) {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s.Value), 64)
	if err != nil || (s.Tag != "!!int" && s.Tag != "!!float" && s.Tag != "!!str") || math.IsNaN(v) || math.IsInf(v, 0) {
		d.errf(s, CodeSchema, "%s: want a number, got %s", path, kindName(s))
		return 0, false
	}
	return v, true
}

// duration decodes a duration: an integer is seconds (Argo's pause duration: 30),
// a string is "30", "30s", "5m", "1h30m", "250ms". Negative durations are errors.
func (d *dec) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.scalar(n, path, "a duration")
	if !ok {
		return 0, false
	}
	v := strings.TrimSpace(s.Value)
	if s.Tag == "!!str" && d.allowArgs && hasArgRef(v) {
		return 0, false
	}
	var dur time.Duration
	var err error
	if secs, e := strconv.ParseInt(v, 10, 64); e == nil && (s.Tag == "!!int" || s.Tag == "!!str") {
		if secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			err = fmt.Errorf("too large")
		}
		dur = time.Duration(secs) * time.Second
	} else if s.Tag == "!!str" {
		dur, err = time.ParseDuration(v)
	} else {
		err = fmt.Errorf("not a duration")
	}
	if err != nil {
		d.errf(s, CodeValue, "%s: %s is not a duration; write seconds (30) or a number with a unit (30s, 5m, 1h)", path, kindName(s))
		return 0, false
	}
	if dur < 0 {
		d.errf(s, CodeValue, "%s: duration %s is negative; use 0 or more", path, v)
		return 0, false
	}
	return dur, true
}
