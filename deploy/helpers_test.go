// Package deploy holds no Go code: its tests check the deployment files of the repository
// (deploy/kubernetes, deploy/systemd, deploy/grafana, the Dockerfile) against the APIs and
// tools that consume them.
package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository root, one level above this package.
const repoRoot = ".."

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDoc is one document of a multi-document YAML file.
type yamlDoc struct {
	file string
	line int // first line of the document, 1-based
	data []byte
}

func (d yamlDoc) String() string { return d.file + ":" + strconv.Itoa(d.line) }

var docSeparator = regexp.MustCompile(`^---\s*$`)

// splitYAML splits data at "---" lines and drops documents that hold only comments.
func splitYAML(file string, data []byte) []yamlDoc {
	var docs []yamlDoc
	lines := bytes.SplitAfter(data, []byte("\n"))
	start, cur := 1, []byte{}
	flush := func() {
		if hasContent(cur) {
			docs = append(docs, yamlDoc{file: file, line: start, data: cur})
		}
	}
	for i, l := range lines {
		if docSeparator.Match(bytes.TrimRight(l, "\n")) {
			flush()
			start, cur = i+2, []byte{}
			continue
		}
		cur = append(cur, l...)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}
