package dmworker_test

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// schemaOptions returns a schema's default character set and collation.
func schemaOptions(t *testing.T, db *sql.DB, name string) (string, string) {
	t.Helper()
	var cs, coll string
	err := db.QueryRow("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&cs, &coll)
	if err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	return cs, coll
}

func schemaExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestRouteCreatesTargetSchema: shard tables routed into a schema the
// downstream does not have (shard1.t_* -> merged.t) get it created, with the
// source schema's character set and collation, by the snapshot and by the
// syncer; the merged table ends equal to the union of the shards.
func TestRouteCreatesTargetSchema(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 621, 622, testserver.MariaDBOptions{})
		create := []string{
			"CREATE DATABASE shard1 CHARACTER SET latin1 COLLATE latin1_german1_ci",
			"CREATE TABLE shard1.t_1 (id INT PRIMARY KEY, v VARCHAR(20))",
			"CREATE TABLE shard1.t_2 (id INT PRIMARY KEY, v VARCHAR(20))",
			"INSERT INTO shard1.t_1 VALUES (1, 'Grüße'), (2, 'b')",
			"INSERT INTO shard1.t_2 VALUES (10, 'x')",
		}
		if mode == dmworker.ModeAll {
			for _, q := range create {
				mustExec(t, p.updb, q)
			}
		}
		st := startTask(t, p, dmworker.SubTaskConfig{
			Name:         "route",
			Mode:         mode,
			Routes:       []dmworker.RouteRule{{SchemaPattern: "shard1", TablePattern: "t_*", TargetSchema: "merged", TargetTable: "t"}},
			SyncerTuning: dmworker.SyncerTuning{Workers: workers},
		})
		if mode == dmworker.ModeIncremental {
			for _, q := range create {
				mustExec(t, p.updb, q)
			}
		}
		mustExec(t, p.updb, "CREATE TABLE shard1.t_3 (id INT PRIMARY KEY, v VARCHAR(20))")
		mustExec(t, p.updb, "INSERT INTO shard1.t_3 VALUES (20, 'ñ')")
		mustExec(t, p.updb, "INSERT INTO shard1.t_1 VALUES (3, 'c')")
		mustExec(t, p.updb, "UPDATE shard1.t_2 SET v = 'y' WHERE id = 10")
		waitSubTaskSynced(t, st.Status, p)
		union := "(SELECT * FROM shard1.t_1 UNION ALL SELECT * FROM shard1.t_2 UNION ALL SELECT * FROM shard1.t_3) u"
		checkEqual(t, p.updb, p.downdb, union, "merged.t")
		if cs, coll := schemaOptions(t, p.downdb, "merged"); cs != "latin1" || coll != "latin1_german1_ci" {
			t.Fatalf("merged created with %s / %s, want the source schema's latin1 / latin1_german1_ci", cs, coll)
		}
	})
}

// TestSyncErrorPositions: a DDL that fails downstream stops the task with an
// error naming where the statement starts and the position after it. A new
// task started at Start runs the DDL (no skip), and Replace and Skip take
// Start as well as Pos.
func TestSyncErrorPositions(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 623, 624, testserver.MariaDBOptions{})
		setupBoth(t, p.updb, p.downdb, mode, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)", "INSERT INTO d.t VALUES (1, 1)")
		st := startTask(t, p, dmworker.SubTaskConfig{Name: "pos", Mode: mode, SyncerTuning: dmworker.SyncerTuning{Workers: workers}})
		paused := func(st *dmworker.SubTask, stmt string) *dmworker.SyncError {
			t.Helper()
			s := waitStage(t, st.Status, dmworker.SubTaskPaused)
			var se *dmworker.SyncError
			if !errors.As(s.LastError, &se) {
				t.Fatalf("paused with %v, want a SyncError", s.LastError)
			}
			if !strings.Contains(se.Statement, stmt) || se.Start.Name != se.Pos.Name || se.Start.Offset == 0 || se.Start.Offset >= se.Pos.Offset {
				t.Fatalf("error about %q: start %s, pos %s, statement %q", stmt, se.Start, se.Pos, se.Statement)
			}
			if msg := se.Error(); !strings.Contains(msg, se.Pos.String()) || !strings.Contains(msg, "starts at "+se.Start.Name) {
				t.Fatalf("the message does not name both positions: %s", msg)
			}
			return se
		}

		// The downstream has a d.t2 of its own: the CREATE TABLE fails.
		mustExec(t, p.downdb, "CREATE TABLE d.t2 (id INT PRIMARY KEY, other INT)")
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (2, 2)")
		mustExec(t, p.updb, "CREATE TABLE d.t2 (id INT PRIMARY KEY, w VARCHAR(10))")
		mustExec(t, p.updb, "INSERT INTO d.t2 VALUES (1, 'a')")
		se := paused(st, "CREATE TABLE d.t2")
		st.Stop()

		// Once the downstream's table is gone, a task started at Start
		// (no checkpoint of its own) runs the CREATE TABLE, then the rows.
		mustExec(t, p.downdb, "DROP TABLE d.t2")
		st2 := startTask(t, p, dmworker.SubTaskConfig{Name: "pos-restart", Start: se.Start, SyncerTuning: dmworker.SyncerTuning{Workers: workers}})
		mustExec(t, p.updb, "INSERT INTO d.t2 VALUES (2, 'b')")
		waitSubTaskSynced(t, st2.Status, p)
		checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
		checkEqual(t, p.updb, p.downdb, "d.t2", "d.t2")

		// Replace with Start: the downstream's own d.t3 is right already.
		mustExec(t, p.downdb, "CREATE TABLE d.t3 (id INT PRIMARY KEY, w INT)")
		mustExec(t, p.updb, "CREATE TABLE d.t3 (id INT PRIMARY KEY, w INT)")
		mustExec(t, p.updb, "INSERT INTO d.t3 VALUES (1, 1)")
		se = paused(st2, "CREATE TABLE d.t3")
		st2.Replace(se.Start, "CREATE TABLE IF NOT EXISTS d.t3 (id INT PRIMARY KEY, w INT)")
		if err := st2.Resume(); err != nil {
			t.Fatal(err)
		}
		mustExec(t, p.updb, "INSERT INTO d.t3 VALUES (2, 2)")
		waitSubTaskSynced(t, st2.Status, p)
		checkEqual(t, p.updb, p.downdb, "d.t3", "d.t3")

		// Skip with Start: the downstream has the index already.
		mustExec(t, p.downdb, "CREATE INDEX ix ON d.t (v)")
		mustExec(t, p.updb, "CREATE INDEX ix ON d.t (v)")
		se = paused(st2, "CREATE INDEX ix")
		st2.Skip(se.Start)
		if err := st2.Resume(); err != nil {
			t.Fatal(err)
		}
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (3, 3)")
		waitSubTaskSynced(t, st2.Status, p)
		checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
		checkEqual(t, p.updb, p.downdb, "d.t2", "d.t2")
		checkEqual(t, p.updb, p.downdb, "d.t3", "d.t3")
	})
}

// TestFilteredSchemaDDL: with a block/allow list of app.* (migrate's
// -tables 'app.*'), CREATE, ALTER and DROP DATABASE of other schemas do not
// reach the downstream (a downstream schema of the same name is left
// alone), and an event filter that ignores DROP DATABASE for a replicated
// schema keeps it downstream.
func TestFilteredSchemaDDL(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 625, 626, testserver.MariaDBOptions{})
		setupBoth(t, p.updb, p.downdb, mode, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)", "INSERT INTO app.t VALUES (1, 1)")
		mustExec(t, p.updb, "CREATE DATABASE before_start")
		mustExec(t, p.updb, "CREATE TABLE before_start.x (id INT PRIMARY KEY)")
		// The downstream's own schema, which the upstream's namesake must
		// not touch.
		mustExec(t, p.downdb, "CREATE DATABASE mine")
		mustExec(t, p.downdb, "CREATE TABLE mine.keep (id INT PRIMARY KEY)")
		mustExec(t, p.downdb, "INSERT INTO mine.keep VALUES (42)")
		st := startTask(t, p, dmworker.SubTaskConfig{
			Name:         "filt",
			Mode:         mode,
			Filter:       dmworker.BlockAllowList{DoTables: []dmworker.TablePattern{{Schema: "app", Name: "*"}, {Schema: "kept", Name: "*"}}},
			EventFilters: []dmworker.EventFilterRule{{SchemaPattern: "kept", Events: []string{"drop database"}, Action: "Ignore"}},
			SyncerTuning: dmworker.SyncerTuning{Workers: workers},
		})
		for _, q := range []string{
			"CREATE DATABASE other", "CREATE TABLE other.x (id INT PRIMARY KEY)", "INSERT INTO other.x VALUES (1)",
			"ALTER DATABASE other CHARACTER SET latin1", "ALTER DATABASE before_start CHARACTER SET latin1",
			"CREATE DATABASE mine", "DROP DATABASE mine",
			"CREATE DATABASE kept", "CREATE TABLE kept.k (id INT PRIMARY KEY)", "INSERT INTO kept.k VALUES (1), (2)",
			"INSERT INTO app.t VALUES (2, 2)",
		} {
			mustExec(t, p.updb, q)
		}
		waitSubTaskSynced(t, st.Status, p)
		keptBefore := tableRows(t, p.updb, "kept.k")
		mustExec(t, p.updb, "DROP DATABASE kept")
		mustExec(t, p.updb, "UPDATE app.t SET v = 10 WHERE id = 1")
		waitSubTaskSynced(t, st.Status, p)
		checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
		for _, s := range []string{"other", "before_start"} {
			if schemaExists(t, p.downdb, s) {
				t.Errorf("the filtered schema %s was created downstream", s)
			}
		}
		if got := tableRows(t, p.downdb, "mine.keep"); len(got) != 1 {
			t.Errorf("the downstream's own schema mine was touched: %q", got)
		}
		if got := tableRows(t, p.downdb, "kept.k"); strings.Join(got, ",") != strings.Join(keptBefore, ",") {
			t.Errorf("kept.k downstream %q, want %q (DROP DATABASE filtered)", got, keptBefore)
		}
	})
}
