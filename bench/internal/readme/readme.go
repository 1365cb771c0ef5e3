// Package readme writes a benchmark's results into its section of bench/README.md.
package readme

import (
	"fmt"
	"os"
	"strings"
)

// WriteSection replaces the text between the markers <!-- NAME:begin --> and
// <!-- NAME:end --> in the file at path with text (the markers stay). It fails, writing
// nothing, when the file has no such pair of markers.
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
	return os.WriteFile(path, []byte(s[:i+len(begin)]+"\n"+text+s[j:]), 0o644)
}
