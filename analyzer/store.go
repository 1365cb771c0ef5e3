package analyzer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Store persists rollout states. Save must be durable when it returns.
type Store interface {
	Load() (map[string]*State, error)
	Save(st *State) error
}

// FileStore keeps one JSON file per rollout in Dir, replaced atomically: write a temp
// file, fsync it, rename it over the old one, fsync the directory.
type FileStore struct{ Dir string }

// NewFileStore creates dir if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &FileStore{Dir: dir}, nil
}

func (f *FileStore) path(name string) string {
	return filepath.Join(f.Dir, "rollout-"+safeName(name)+".json")
}

func safeName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
}

// Load reads every rollout state in Dir.
func (f *FileStore) Load() (map[string]*State, error) {
	out := map[string]*State{}
	ents, err := os.ReadDir(f.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "rollout-") || !strings.HasSuffix(n, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(f.Dir, n))
		if err != nil {
			return nil, err
		}
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if err := MigrateState(&st); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out[st.Rollout] = &st
	}
	return out, nil
}

// Save writes st durably and atomically.
func (f *FileStore) Save(st *State) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	final := f.path(st.Rollout)
	tmp, err := os.CreateTemp(f.Dir, ".tmp-rollout-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	d, err := os.Open(f.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// MemStore keeps states in memory (tests, or no StateDir).
type MemStore struct{ m map[string][]byte }

// Load returns copies of the saved states.
func (s *MemStore) Load() (map[string]*State, error) {
	out := map[string]*State{}
	for k, b := range s.m {
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, err
		}
		if err := MigrateState(&st); err != nil {
			return nil, err
		}
		out[k] = &st
	}
	return out, nil
}

// Save keeps a copy of st.
func (s *MemStore) Save(st *State) error {
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	s.m[st.Rollout] = b
	return nil
}
