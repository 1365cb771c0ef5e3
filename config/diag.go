package config

import (
	"sort"
	"strconv"
	"strings"
)

// Severity says whether a diagnostic makes the configuration invalid.
type Severity int

// Severities.
const (
	// SeverityError makes the configuration invalid: nothing of it may be applied.
	SeverityError Severity = iota
	// SeverityWarning reports something ignored, or a likely mistake; the
	// configuration stays valid.
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Code classifies a diagnostic, so that callers and tests can tell a parse error from an
// unresolved reference without matching message text.
type Code string

// Diagnostic codes.
const (
	// CodeSyntax: the file is not YAML (malformed, binary, too large, too deep).
	CodeSyntax Code = "syntax"
	// CodeSchema: an unknown field, a wrong type, a missing required field.
	CodeSchema Code = "schema"
	// CodeValue: a value out of range or unparsable (weight, duration, condition).
	CodeValue Code = "value"
	// CodeReference: a name that no given file defines (Cluster, Listener, template,
	// managed route, argument), or one defined twice.
	CodeReference Code = "reference"
	// CodeIgnored: a Kubernetes-only field or kind, or a provider Sluice does not run in a
	// template no Rollout uses (or in a dry-run metric).
	CodeIgnored Code = "ignored"
	// CodeUnsupported: a metric whose provider Sluice does not run (job, datadog, other
	// plugins, …) in an analysis a Rollout runs, and not dry-run: it would never be
	// measured, so it is an error.
	CodeUnsupported Code = "unsupported"
	// CodeSuspicious: valid, but most likely not what the author means.
	CodeSuspicious Code = "suspicious"
)

// Diagnostic is one problem or warning, with where it is.
type Diagnostic struct {
	File     string
	Line     int
	Severity Severity
	Code     Code
	Message  string
}

// String formats the diagnostic as "FILE:LINE: message", or
// "FILE:LINE: warning: message" for a warning.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(d.Line))
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is every problem and warning found in one load, sorted by file and line.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Errors returns the errors only.
func (ds Diagnostics) Errors() Diagnostics { return ds.filter(SeverityError) }

// Warnings returns the warnings only.
func (ds Diagnostics) Warnings() Diagnostics { return ds.filter(SeverityWarning) }

func (ds Diagnostics) filter(s Severity) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// String returns one diagnostic a line.
func (ds Diagnostics) String() string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// sortDiags orders by file (in the order files were given), then line; equal
// positions keep the order they were found in.
func sortDiags(ds Diagnostics, fileOrder map[string]int) {
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].File != ds[j].File {
			oi, iok := fileOrder[ds[i].File]
			oj, jok := fileOrder[ds[j].File]
			if iok && jok && oi != oj {
				return oi < oj
			}
			return ds[i].File < ds[j].File
		}
		return ds[i].Line < ds[j].Line
	})
}
