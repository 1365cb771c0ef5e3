// Package readme writes a benchmark's results into its section of bench/README.md.
package readme

import (
	"fmt"
	"os"
	"strings"
)

// notesMarker starts hand-written notes at the end of a section: WriteSection keeps them.
const notesMarker = "<!-- notes -->"

// WriteSection replaces the text between the markers <!-- NAME:begin --> and
// <!-- NAME:end --> in the file at path with text (the markers stay). Hand-written notes
// at the end of the section, from a line <!-- notes --> on, are kept after the new text.
// It fails, writing nothing, when the file has no such pair of markers.
func WriteSection(path, name, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s markers", path, begin, end)
	}
	notes := ""
	if k := strings.Index(s[i:j], notesMarker); k >= 0 {
		notes = "\n" + strings.TrimSpace(s[i+k:j]) + "\n"
	}
	return os.WriteFile(path, []byte(s[:i+len(begin)]+"\n"+text+notes+s[j:]), 0o644)
}
