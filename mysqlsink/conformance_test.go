package mysqlsink_test

import (
	"context"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/go-sql-driver/mysql"
)

// TestConformance runs the sink conformance suite against a real MariaDB:
// with the values written into the statements by the sink (its default on
// a utf8mb4 connection), and with placeholders, which the driver
// interpolates or sends as server-side prepared statements (the binary
// protocol), as hosts may configure either.
func TestConformance(t *testing.T) {
	m := server(t, 11)
	t.Run("literals", func(t *testing.T) {
		sinktest.RunSinkConformance(t, harness(openDB(t, m, nil)))
	})
	t.Run("placeholders interpolated", func(t *testing.T) {
		sinktest.RunSinkConformance(t, placeholders(harness(openDB(t, m, nil))))
	})
	t.Run("placeholders prepared", func(t *testing.T) {
		db := openDB(t, m, func(c *mysql.Config) { c.InterpolateParams = false })
		sinktest.RunSinkConformance(t, placeholders(harness(db)))
	})
	t.Run("exclusive pool", func(t *testing.T) {
		sinktest.RunSinkConformance(t, harness(openDB(t, m, nil), mysqlsink.WithExclusivePool()))
	})
}

func placeholders(h sinktest.Harness) sinktest.Harness {
	newSink := h.New
	h.New = func(t *testing.T) dmworker.Sink {
		s := newSink(t)
		mysqlsink.UsePlaceholders(s.(*mysqlsink.Sink))
		return s
	}
	return h
}

// sinkStore is the sink's checkpoint half seen as a dmworker.CheckpointStore
// (as the syncer sees it), moving checkpoints as the sink does.
type sinkStore struct{ s *mysqlsink.Sink }

func (s sinkStore) Load(ctx context.Context, task, source string) (dmworker.Checkpoint, bool, error) {
	return s.s.LoadCheckpoint(ctx, task, source)
}

func (s sinkStore) Save(ctx context.Context, cp dmworker.Checkpoint) error {
	return s.s.SaveCheckpoint(ctx, cp)
}

func (s sinkStore) MoveCheckpoint(ctx context.Context, task, from, to string) (bool, error) {
	return s.s.MoveCheckpoint(ctx, task, from, to)
}

func (s sinkStore) LoadShardLocks(ctx context.Context, task string) (map[string][]byte, error) {
	return s.s.LoadShardLocks(ctx, task)
}

func (s sinkStore) SaveShardLock(ctx context.Context, task, target string, state []byte) error {
	return s.s.SaveShardLock(ctx, task, target, state)
}

// TestCheckpointStoreConformance runs the checkpoint store conformance
// suite on the checkpoints the sink keeps in MariaDB.
func TestCheckpointStoreConformance(t *testing.T) {
	db := openDB(t, server(t, 12), nil)
	sinktest.RunCheckpointStoreConformance(t, func(t *testing.T) dmworker.CheckpointStore {
		return sinkStore{newSink(t, db)}
	})
}
