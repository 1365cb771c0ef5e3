package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// DataPlane serves snapshots: the router and the xDS server (analyzer.DataPlane).
type DataPlane interface {
	// Apply starts serving snap. It must not block for long.
	Apply(*model.Snapshot) error
	// WaitApplied returns nil once version (or a later one) is in effect everywhere.
	WaitApplied(ctx context.Context, version uint64) error
}

// Overlay stands between the analyzer and the data planes. It passes on every
// snapshot the analyzer applies with the discovered clusters' endpoints put in, and
// when discovery changes a set (OnChange) it applies the analyzer's last snapshot
// again with the new endpoints: the data planes see snapshots in which only
// endpoints changed. It numbers the snapshots it applies itself and maps the
// analyzer's versions onto them, so WaitApplied keeps its meaning.
type Overlay struct {
	planes []DataPlane
	log    *zap.Logger

	mu       sync.Mutex
	last     *model.Snapshot // the analyzer's last snapshot
	sets     map[string][]model.Endpoint
	version  uint64
	versions []versionPair // ascending; the newest maxVersions
}

type versionPair struct{ analyzer, applied uint64 }

const maxVersions = 1024

// NewOverlay returns an Overlay in front of planes.
func NewOverlay(log *zap.Logger, planes ...DataPlane) *Overlay {
	if log == nil {
		log = zap.NewNop()
	}
	return &Overlay{planes: planes, log: log, sets: map[string][]model.Endpoint{}}
}

// Apply passes on the analyzer's snapshot with the discovered endpoints in it.
func (o *Overlay) Apply(s *model.Snapshot) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = s
	v, err := o.push()
	o.versions = append(o.versions, versionPair{analyzer: s.Version, applied: v})
	if len(o.versions) > maxVersions {
		o.versions = slices.Delete(o.versions, 0, len(o.versions)-maxVersions)
	}
	return err
}

// OnChange takes the Manager's changes and applies the last snapshot again with them.
// Pass it as Options.OnChange.
func (o *Overlay) OnChange(changes []Change) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range changes {
		if c.Removed {
			delete(o.sets, c.Cluster)
		} else {
			o.sets[c.Cluster] = c.Endpoints
		}
	}
	if o.last == nil {
		return // the analyzer's first snapshot will carry them
	}
	if _, err := o.push(); err != nil {
		o.log.Error("a data plane refused the discovered endpoints", zap.Error(err))
	}
}

// push applies the last snapshot with the discovered sets under a new version.
func (o *Overlay) push() (uint64, error) {
	o.version++
	s := *o.last
	s.Version = o.version
	s.Clusters = slices.Clone(o.last.Clusters)
	for i := range s.Clusters {
		if set, ok := o.sets[s.Clusters[i].Name]; ok {
			s.Clusters[i].Endpoints = set
		}
	}
	var errs []error
	for _, p := range o.planes {
		if err := p.Apply(&s); err != nil {
			errs = append(errs, err)
		}
	}
	return o.version, errors.Join(errs...)
}

// WaitApplied waits until the analyzer's version (or a later one) is in effect on
// every data plane.
func (o *Overlay) WaitApplied(ctx context.Context, version uint64) error {
	o.mu.Lock()
	var applied uint64 // of the first snapshot applied at version or later
	for i := len(o.versions) - 1; i >= 0 && o.versions[i].analyzer >= version; i-- {
		applied = o.versions[i].applied
	}
	o.mu.Unlock()
	if applied == 0 {
		return fmt.Errorf("snapshot version %d was never applied", version)
	}
	for _, p := range o.planes {
		if err := p.WaitApplied(ctx, applied); err != nil {
			return err
		}
	}
	return nil
}
