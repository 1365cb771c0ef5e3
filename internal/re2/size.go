// Package re2 estimates the size of the program RE2 compiles a regular expression to,
// the figure Envoy compares with re2.max_program_size.error_level (default 100) before it
// accepts a safe_regex, and that Sluice checks before it sends one.
//
// RE2 itself is C++ and not linked here. The estimate walks the expression parsed and
// simplified by Go's regexp/syntax (a port of RE2's parser, with the same operators and
// the same expansion of counted repetition) and charges each node what RE2's compiler
// and its program flattening emit: one instruction per UTF-8 byte of a literal, byte
// ranges per UTF-8 length of a character class, about seven for '.', a loop's body
// twice (its entry and its back edge become separate lists), plus the fail and match
// instructions and the unanchored ".*?" prefix. It matches the figures Envoy and RE2
// report where they are known ("/asdf/.*" is 24; each further ".*" adds 15) and errs
// on the large side elsewhere: a regex it passes is not refused by Envoy's default
// limit, while one near the limit may be refused here and pass in Envoy.
package re2

import (
	"regexp/syntax"
	"unicode/utf8"
)

// EnvoyDefaultLimit is Envoy's default re2.max_program_size.error_level: a safe_regex
// whose program is larger is refused (the route configuration is NACKed).
const EnvoyDefaultLimit = 100

// ProgramSize returns the estimated size of RE2's program for expr, or the parse error.
func ProgramSize(expr string) (int, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return 0, err
	}
	// fail + match instructions, and the unanchored prefix (a byte range and its list).
	return 4 + cost(re.Simplify()), nil
}

func cost(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpNoMatch:
		return 1
	case syntax.OpEmptyMatch:
		return 0
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += utf8.RuneLen(r)
		}
		return n
	case syntax.OpCharClass:
		return classCost(re.Rune, re.Flags&syntax.FoldCase != 0)
	case syntax.OpAnyCharNotNL:
		return 7
	case syntax.OpAnyChar:
		return 6
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 1
	case syntax.OpCapture:
		return 2 + cost(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return 2*cost(re.Sub[0]) + 1
	case syntax.OpQuest:
		return cost(re.Sub[0]) + 1
	case syntax.OpRepeat: // Simplify leaves none; charge the expansion anyway
		n := re.Max
		if n < 0 {
			n = re.Min + 1
		}
		return n * (cost(re.Sub[0]) + 1)
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += cost(s)
		}
		return n
	case syntax.OpAlternate:
		n := len(re.Sub) - 1
		for _, s := range re.Sub {
			n += cost(s)
		}
		return n
	}
	return 1
}

// classCost charges a character class by its ranges: one instruction per ASCII range,
// and for non-ASCII ranges one per byte of the longest UTF-8 sequence in the range plus
// one for the lead byte's split (RE2 shares continuation-byte suffixes between ranges).
func classCost(ranges []rune, fold bool) int {
	n := 0
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if lo < utf8.RuneSelf {
			n++
			if hi < utf8.RuneSelf {
				continue
			}
			lo = utf8.RuneSelf
		}
		n += utf8.RuneLen(min(hi, utf8.MaxRune)) + 1
	}
	if fold && n > 1 {
		// A case-folded letter class is one range with RE2's fold flag.
		n = (n + 1) / 2
	}
	return max(n, 1)
}
