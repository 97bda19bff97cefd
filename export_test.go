package dmworker

import (
	"context"
	"log/slog"

	"github.com/dmworker/dmworker/streamer"
)

// SetWatchHook makes w call f just before it starts watching etcd at
// revision rev+1 (f gets rev), so that a test can compact etcd past the
// watched revision deterministically. Set it before Run.
func SetWatchHook(w *SourceWorker, f func(rev int64)) { w.testHookBeforeWatch = f }

// SnapshotUnitForTest exposes the unexported snapshot unit to the package's
// external tests (SubTask is its caller in the library).
type SnapshotUnitForTest struct{ u *snapshotUnit }

func NewSnapshotUnitForTest(cfg SyncerConfig, sc SnapshotConfig, sink Sink, store CheckpointStore, epoch int64, logger *slog.Logger) (*SnapshotUnitForTest, error) {
	u, err := newSnapshotUnit(cfg, sc, sink, store, epoch, logger)
	if err != nil {
		return nil, err
	}
	return &SnapshotUnitForTest{u}, nil
}

func (t *SnapshotUnitForTest) Run(ctx context.Context) (streamer.Position, error) {
	return t.u.run(ctx)
}
func (t *SnapshotUnitForTest) Status() SnapshotStatus { return t.u.status() }

// Config is the unit's snapshot configuration, defaults filled in.
func (t *SnapshotUnitForTest) Config() SnapshotConfig { return t.u.sc }

// SinkStoreForTest is the CheckpointStore a Syncer uses by default for a
// CheckpointSink.
func SinkStoreForTest(s CheckpointSink) CheckpointStore {
	return sinkStore{s: s, timeout: DefaultSinkTimeout}
}
