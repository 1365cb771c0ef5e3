package readme

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	orig := "# B\n<!-- a:begin -->\nold a\n<!-- a:end -->\n<!-- b:begin -->\nold b\n<!-- b:end -->\ntail\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "b", "new b\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	want := strings.Replace(orig, "old b\n", "new b\n", 1)
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// A missing pair of markers, or a reversed one, is an error and writes nothing.
	for name, text := range map[string]string{"c": orig, "x": "<!-- x:end -->\n<!-- x:begin -->\n"} {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteSection(p, name, "t\n"); err == nil || !strings.Contains(err.Error(), name+":begin") {
			t.Fatalf("section %s: err %v", name, err)
		}
		if after, _ := os.ReadFile(p); string(after) != text {
			t.Fatalf("section %s: the file changed on error:\n%s", name, after)
		}
	}
}

// TestWriteSectionKeepsNotes: hand-written notes after <!-- notes --> survive a rewrite.
func TestWriteSectionKeepsNotes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	orig := "<!-- r:begin -->\nold table\n<!-- notes -->\nWhat it means.\n<!-- r:end -->\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "r", "new table\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if want := "<!-- r:begin -->\nnew table\n\n<!-- notes -->\nWhat it means.\n<!-- r:end -->\n"; string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}
