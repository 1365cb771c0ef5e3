package main

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileStamp is what one configuration file looked like when last checked.
type fileStamp struct {
	size    int64
	modTime time.Time
	missing bool
}

// configStamps maps each configuration file — the files given with -f and the *.yaml and
// *.yml files directly inside each directory given with -f, as config.Load reads them —
// to its stamp. A file edited in place (new size or modification time), added to or
// removed from a directory changes it.
type configStamps map[string]fileStamp

// stampConfig stamps paths (files or directories).
func stampConfig(paths []string) configStamps {
	m := configStamps{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			m[p] = fileStamp{missing: true}
			continue
		}
		if !fi.IsDir() {
			m[p] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			m[p] = fileStamp{missing: true}
			continue
		}
		// The directory itself: a listing error and an empty directory differ from before.
		m[p] = fileStamp{size: -1}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue
			}
			fp := filepath.Join(p, name)
			fi, err := os.Stat(fp)
			switch {
			case err != nil:
				m[fp] = fileStamp{missing: true}
			case !fi.IsDir():
				m[fp] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
			}
		}
	}
	return m
}

// equal reports whether nothing changed between a and b.
func (a configStamps) equal(b configStamps) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.size != w.size || v.missing != w.missing || !v.modTime.Equal(w.modTime) {
			return false
		}
	}
	return true
}
