package mysqlsink_test

import (
	"bytes"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// TestCheckpointTableGainsSnapshotColumn: a checkpoint table created before
// the snapshot column existed gets it, keeps its rows, and stores the
// snapshot's progress.
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
	if err != nil || !ok || cp.Epoch != 2 || cp.Snapshot != nil || string(cp.Schema) != "{}" {
		t.Fatalf("old checkpoint: %+v %v %v", cp, ok, err)
	}
	pos, _ := streamer.ParsePosition("mysql-bin.000002:100")
	progress := []byte("{\"done\":\"0101\"}")
	if err := s.SaveCheckpoint(t.Context(), dmworker.Checkpoint{Task: "old", Source: "src", Pos: pos, Epoch: 2, Snapshot: progress}); err != nil {
		t.Fatal(err)
	}
	// A second sink on the same table finds the column there.
	cp, ok, err = newSink(t, db).LoadCheckpoint(t.Context(), "old", "src")
	if err != nil || !ok || !bytes.Equal(cp.Snapshot, progress) || !cp.Pos.Equal(pos) {
		t.Fatalf("after the upgrade: %+v %v %v", cp, ok, err)
	}
}
