package mysqlsink_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// TestCheckpointTableGainsSnapshotColumn: a checkpoint table created before
// the snapshot and server columns existed gets them, keeps its rows (the
// server unknown), and stores the snapshot's progress and the server.
func TestCheckpointTableGainsSnapshotColumn(t *testing.T) {
	db := openDB(t, server(t, 370), nil)
	exec(t, db, "CREATE DATABASE "+mysqlsink.DefaultCheckpointSchema)
	exec(t, db, "CREATE TABLE "+mysqlsink.DefaultCheckpointSchema+".checkpoint (task VARCHAR(255) NOT NULL, source VARCHAR(255) NOT NULL, "+
		"pos TEXT NULL, safe_until TEXT NULL, schema_json LONGBLOB NULL, epoch BIGINT NOT NULL DEFAULT 0, "+
		"updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), PRIMARY KEY (task, source))")
	exec(t, db, "INSERT INTO "+mysqlsink.DefaultCheckpointSchema+".checkpoint (task, source, pos, safe_until, schema_json, epoch) "+
		"VALUES ('old', 'src', 'mysql-bin.000001:4', '(none)', '{}', 2)")
	s := newSink(t, db)
	cp, ok, err := s.LoadCheckpoint(t.Context(), "old", "src")
	if err != nil || !ok || cp.Epoch != 2 || cp.Snapshot != nil || string(cp.Schema) != "{}" || cp.Server != "" {
		t.Fatalf("old checkpoint: %+v %v %v", cp, ok, err)
	}
	pos, _ := streamer.ParsePosition("mysql-bin.000002:100")
	progress := []byte("{\"done\":\"0101\"}")
	if err := s.SaveCheckpoint(t.Context(), dmworker.Checkpoint{Task: "old", Source: "src", Pos: pos, Epoch: 2, Snapshot: progress, Server: "0-7"}); err != nil {
		t.Fatal(err)
	}
	// A second sink on the same table finds the columns there.
	cp, ok, err = newSink(t, db).LoadCheckpoint(t.Context(), "old", "src")
	if err != nil || !ok || !bytes.Equal(cp.Snapshot, progress) || !cp.Pos.Equal(pos) || cp.Server != "0-7" {
		t.Fatalf("after the upgrade: %+v %v %v", cp, ok, err)
	}
}

// TestMoveCheckpoint: a checkpoint moves to another source name whole, in
// place; nothing moves from a source without one or onto a source with
// one; CheckpointSources lists the sources with a checkpoint.
func TestMoveCheckpoint(t *testing.T) {
	s := newSink(t, openDB(t, server(t, 371), nil))
	ctx := t.Context()
	pos, _ := streamer.ParsePosition("mysql-bin.000002:100 mariadb-gtid=0-1-9")
	old := dmworker.Checkpoint{Task: "t", Source: "127.0.0.1:3306", Pos: pos, Schema: []byte("s"), Epoch: 4, Server: "0-1"}
	if err := s.SaveCheckpoint(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, dmworker.Checkpoint{Task: "t", Source: "taken", Pos: pos}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"none", "x", false},
		{"127.0.0.1:3306", "taken", false},
		{"127.0.0.1:3306", "shop", true},
		{"127.0.0.1:3306", "again", false},
	} {
		moved, err := s.MoveCheckpoint(ctx, "t", c.from, c.to)
		if err != nil || moved != c.want {
			t.Fatalf("move %s to %s: %v %v, want %v", c.from, c.to, moved, err, c.want)
		}
	}
	cp, ok, err := s.LoadCheckpoint(ctx, "t", "shop")
	want := old
	want.Source = "shop"
	if err != nil || !ok || !cp.Pos.Equal(want.Pos) || string(cp.Schema) != "s" || cp.Epoch != 4 || cp.Server != "0-1" || cp.Source != "shop" {
		t.Fatalf("moved checkpoint: %+v %v %v", cp, ok, err)
	}
	if _, ok, _ := s.LoadCheckpoint(ctx, "t", "127.0.0.1:3306"); ok {
		t.Fatal("the checkpoint is still under its old name")
	}
	if srcs, err := s.CheckpointSources(ctx, "t"); err != nil || strings.Join(srcs, ",") != "shop,taken" {
		t.Fatalf("sources %q, %v", srcs, err)
	}
	if srcs, err := s.CheckpointSources(ctx, "other"); err != nil || len(srcs) != 0 {
		t.Fatalf("sources of a task without checkpoints: %q, %v", srcs, err)
	}
}
