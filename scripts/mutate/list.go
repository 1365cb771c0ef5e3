package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Mutant is one plausible bug: in File, the text Original (found exactly once) becomes
// Replacement, and the tests of Packages must then fail.
type Mutant struct {
	Name        string
	File        string   // path from the repository root
	Packages    []string // go test package patterns, e.g. ./router
	Run         string   // optional -run regexp (slow end-to-end packages only)
	Timeout     time.Duration
	Bug         string // one line: what the bug breaks
	Original    string
	Replacement string
	Line        int // where the entry starts in the list (for messages)
}

// parseList reads the mutant list format (see mutants.txt's header):
//
//	== name
//	file: router/match.go
//	test: ./router
//	bug:  what breaks
//	- original text (one or more lines)
//	+ replacement text (zero or more lines)
//
// Lines starting with "#" and blank lines between entries are ignored. The text after
// "- " and "+ " is taken exactly as written, tabs included; several "-" (or "+") lines
// are joined with newlines.
func parseList(r io.Reader, name string) ([]*Mutant, error) {
	var (
		out      []*Mutant
		cur      *Mutant
		orig     []string
		repl     []string
		names    = map[string]int{}
		errs     []string
		lineNo   int
		sawPlus  bool
		sawMinus bool
	)
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", name, lineNo, fmt.Sprintf(format, a...)))
	}
	finish := func() {
		if cur == nil {
			return
		}
		cur.Original = strings.Join(orig, "\n")
		cur.Replacement = strings.Join(repl, "\n")
		at := func(format string, a ...any) {
			errs = append(errs, fmt.Sprintf("%s:%d: %s: %s", name, cur.Line, cur.Name, fmt.Sprintf(format, a...)))
		}
		switch {
		case cur.File == "":
			at("no file:")
		case len(cur.Packages) == 0:
			at("no test: packages")
		case cur.Bug == "":
			at("no bug: description")
		case !sawMinus || strings.TrimSpace(cur.Original) == "":
			at("no original text (- lines)")
		case cur.Original == cur.Replacement:
			at("the replacement equals the original")
		}
		out = append(out, cur)
		cur, orig, repl, sawPlus, sawMinus = nil, nil, nil, false, false
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "== "):
			finish()
			n := strings.TrimSpace(line[3:])
			if n == "" || strings.ContainsAny(n, " \t") {
				fail("a mutant name is one word: %q", n)
			}
			if first, dup := names[n]; dup {
				fail("mutant %s already defined at line %d", n, first)
			}
			names[n] = lineNo
			cur = &Mutant{Name: n, Line: lineNo}
		case cur == nil && (line == "" || strings.HasPrefix(line, "#")):
		case cur == nil:
			fail("text outside an entry (entries start with \"== name\")")
		case line == "-" || strings.HasPrefix(line, "- "):
			if sawPlus {
				fail("a - line after a + line")
			}
			sawMinus = true
			orig = append(orig, strings.TrimPrefix(strings.TrimPrefix(line, "-"), " "))
		case line == "+" || strings.HasPrefix(line, "+ "):
			sawPlus = true
			repl = append(repl, strings.TrimPrefix(strings.TrimPrefix(line, "+"), " "))
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			key, val, ok := strings.Cut(line, ":")
			val = strings.TrimSpace(val)
			if !ok || sawMinus {
				fail("expected \"key: value\" before the - and + lines, got %q", line)
				continue
			}
			switch strings.TrimSpace(key) {
			case "file":
				cur.File = val
			case "test":
				cur.Packages = strings.Fields(val)
			case "run":
				cur.Run = val
			case "bug":
				cur.Bug = val
			case "timeout":
				d, err := time.ParseDuration(val)
				if err != nil || d <= 0 {
					fail("timeout %q: want a duration such as 5m", val)
				}
				cur.Timeout = d
			default:
				fail("unknown key %q (file, test, run, timeout, bug)", key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	finish()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// apply returns src with m planted, or an error saying why m is stale: its original
// text is not in src exactly once.
func (m *Mutant) apply(src string) (string, error) {
	switch n := strings.Count(src, m.Original); n {
	case 1:
		return strings.Replace(src, m.Original, m.Replacement, 1), nil
	case 0:
		return "", fmt.Errorf("original text not found in %s", m.File)
	default:
		return "", fmt.Errorf("original text found %d times in %s (add context to make it unique)", n, m.File)
	}
}
