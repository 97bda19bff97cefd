package dmworker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSourceWorkerSkipReplaceDDL: a subtask of a SourceWorker paused on a
// DDL the syncer cannot apply goes on once SkipSubTaskDDL (or
// ReplaceSubTaskDDL) and ResumeSubTask are called on the worker; the
// downstream ends equal. A subtask the worker does not run is refused.
func TestSourceWorkerSkipReplaceDDL(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 1801, 1802, testserver.MariaDBOptions{})
	up := upstreamOf(p.up)
	up.ServerID = 1801 + 40
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up}))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SkipSubTaskDDL("a", streamer.Position{}); !errors.Is(err, dmworker.ErrSubTaskNotFound) {
		t.Fatalf("skip before Run: %v, want ErrSubTaskNotFound", err)
	}
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	status := taskStatus(w, "a")
	waitUntil(t, "the syncer to start", func() bool { return status().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE d")
	mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (1, 1)")
	waitSubTaskSynced(t, status, p)

	// pausedOn waits for the subtask to stop on an unsupported DDL and
	// returns the error's position.
	pausedOn := func() streamer.Position {
		t.Helper()
		s := waitStage(t, status, dmworker.SubTaskPaused)
		var se *dmworker.SyncError
		if !errors.Is(s.LastError, dmworker.ErrUnsupportedDDL) || !errors.As(s.LastError, &se) {
			t.Fatalf("paused with %v, want ErrUnsupportedDDL in a SyncError", s.LastError)
		}
		return se.Pos
	}

	// Skip: partitioning is beyond the schema tracker, and the downstream
	// needs none of it.
	mustExec(t, p.updb, "ALTER TABLE d.t PARTITION BY HASH(id) PARTITIONS 2")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (2, 2)")
	pos := pausedOn()
	if err := w.SkipSubTaskDDL("nosuch", pos); !errors.Is(err, dmworker.ErrSubTaskNotFound) {
		t.Fatalf("skip of an unknown subtask: %v, want ErrSubTaskNotFound", err)
	}
	if err := w.SkipSubTaskDDL("a", pos); err != nil {
		t.Fatal(err)
	}
	if err := w.ResumeSubTask("a"); err != nil {
		t.Fatal(err)
	}
	waitSubTaskSynced(t, status, p)
	if s := status(); s.LastError != nil || s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("after SkipSubTaskDDL and ResumeSubTask: %s %v", s.Stage, s.LastError)
	}
	checkEqual(t, p.updb, p.downdb, "d.t", "d.t")

	// Replace: a column added in the same statement as a repartitioning
	// reaches the downstream through the statement given instead.
	mustExec(t, p.updb, "ALTER TABLE d.t ADD COLUMN c INT NOT NULL DEFAULT 7 PARTITION BY HASH(id) PARTITIONS 3")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (3, 3, 3)")
	pos = pausedOn()
	if err := w.ReplaceSubTaskDDL("a", pos); err == nil || !strings.Contains(err.Error(), "no statement") {
		t.Fatalf("replace with nothing: %v, want an error", err)
	}
	if err := w.ReplaceSubTaskDDL("a", pos, "ALTER TABLE d.t ADD COLUMN c INT NOT NULL DEFAULT 7"); err != nil {
		t.Fatal(err)
	}
	if err := w.ResumeSubTask("a"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (4, 4, 4)")
	waitSubTaskSynced(t, status, p)
	if s := status(); s.LastError != nil || s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("after ReplaceSubTaskDDL and ResumeSubTask: %s %v", s.Stage, s.LastError)
	}
	checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
}

// TestSourceWorkerSkipDDLEtcdMode: a worker driven through etcd takes
// SkipSubTaskDDL and ReplaceSubTaskDDL (they change no stage): for a
// subtask it does not run they return ErrSubTaskNotFound, not ErrEtcdMode.
func TestSourceWorkerSkipDDLEtcdMode(t *testing.T) {
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return nil, nil
	}
	w, err := dmworker.NewSourceWorker("w", sinks, dmworker.WithEtcd(&clientv3.Client{}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, err := range []error{w.SkipSubTaskDDL("t", streamer.Position{}), w.ReplaceSubTaskDDL("t", streamer.Position{}, "SELECT 1")} {
		if !errors.Is(err, dmworker.ErrSubTaskNotFound) || errors.Is(err, dmworker.ErrEtcdMode) {
			t.Errorf("in etcd mode: %v, want ErrSubTaskNotFound", err)
		}
	}
}
