package re2

import "testing"

func TestProgramSizeKnownFigures(t *testing.T) {
	// Envoy's test before envoyproxy/envoy#9171 pinned "/asdf/.*" at 24.
	if n, err := ProgramSize("/asdf/.*"); err != nil || n < 24 || n > 26 {
		t.Fatalf(`ProgramSize("/asdf/.*") = %d, %v; RE2 reports 24`, n, err)
	}
	// Each ".*" adds about 15 (envoyproxy/envoy#9174).
	a, _ := ProgramSize("/asdf/.*")
	b, _ := ProgramSize("/asdf/.*/asdf/.*")
	if d := b - a; d < 15+6 || d > 15+6+3 {
		t.Fatalf("a second /asdf/.* added %d, want about 21 (6 literals and 15)", d)
	}
}

func TestProgramSizeOverEnvoysDefault(t *testing.T) {
	over := []string{
		"/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*/asdf/.*", // Envoy's own over-limit example
		"/static/[a-zA-Z0-9._-]{0,200}/[a-zA-Z0-9._-]{0,200}",                              // kumahq/kuma#2103
		"[a-z]{101}", // one byte range per copy
		"(.*,){8}",
	}
	for _, e := range over {
		if n, err := ProgramSize(e); err != nil || n <= 100 {
			t.Errorf("ProgramSize(%q) = %d, %v; RE2 refuses it at the default 100", e, n, err)
		}
	}
	under := []string{"v1|v2", "^(canary|beta)$", "[0-9]+", "Mozilla/.*Chrome/.*", "(?i)android"}
	for _, e := range under {
		if n, err := ProgramSize(e); err != nil || n > 100 {
			t.Errorf("ProgramSize(%q) = %d, %v; want well under 100", e, n, err)
		}
	}
	if _, err := ProgramSize("a("); err == nil {
		t.Error("a syntax error was not reported")
	}
}
