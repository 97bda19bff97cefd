package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/internal/typefixtures"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// typeFamilyTables, typeFamilyRows and typeFamilyChanges are the type
// fixtures of internal/typefixtures; typeFamilyTables are created upstream
// after the syncer started, so that their CREATE TABLE replicates too.
var (
	typeFamilyTables  = typefixtures.Tables
	typeFamilyRows    = typefixtures.Rows
	typeFamilyChanges = typefixtures.Changes
)

func TestSyncerTypeFamilies(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		for _, tc := range []struct {
			meta string
			id   uint32
		}{{"FULL", 61}, {"MINIMAL", 62}} {
			t.Run(tc.meta, func(t *testing.T) {
				p := newSyncPair(t, testserver.MariaDBOptions{ServerID: tc.id, RowMetadata: tc.meta})
				p.workers = workers
				s, err := dmworker.NewSyncer(p.config("types"), p.sink)
				if err != nil {
					t.Fatal(err)
				}
				run := runSyncer(t, s)
				exec := fillTypeFamilies(t, p.updb)
				waitSynced(t, run, p.updb)
				for _, tb := range typeFamilyTables {
					checkEqual(t, p.updb, p.downdb, "tf."+tb.Name, "tf."+tb.Name)
				}
				// Updates and deletes, some in one transaction.
				exec("BEGIN")
				for _, q := range typeFamilyChanges[:len(typeFamilyChanges)/2] {
					exec(q)
				}
				exec("COMMIT")
				for _, q := range typeFamilyChanges[len(typeFamilyChanges)/2:] {
					exec(q)
				}
				waitSynced(t, run, p.updb)
				for _, tb := range typeFamilyTables {
					checkEqual(t, p.updb, p.downdb, "tf."+tb.Name, "tf."+tb.Name)
				}
				if err := run.Stop(); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// checkpointBefore returns the latest checkpoint recorded at or before pos,
// with its Schema filled from the last one that carried a schema.
func checkpointBefore(t *testing.T, store *recordingStore, pos streamer.Position) dmworker.Checkpoint {
	t.Helper()
	store.mu.Lock()
	defer store.mu.Unlock()
	var cp dmworker.Checkpoint
	var schema []byte
	found := false
	for _, c := range store.saved {
		if c.Pos.Compare(pos) > 0 {
			break
		}
		if c.Schema != nil {
			schema = c.Schema
		}
		if !c.Pos.IsZero() {
			cp, found = c, true
		}
	}
	if !found || schema == nil {
		t.Fatalf("no checkpoint with a schema at or before %s among %d", pos, len(store.saved))
	}
	cp.Schema = schema
	cp.SafeUntil = streamer.Position{}
	return cp
}

// schemaAfter returns the first schema recorded in a checkpoint after pos.
func schemaAfter(t *testing.T, store *recordingStore, pos streamer.Position) []byte {
	t.Helper()
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, c := range store.saved {
		if c.Pos.Compare(pos) > 0 && c.Schema != nil {
			return c.Schema
		}
	}
	t.Fatalf("no checkpoint with a schema after %s", pos)
	return nil
}

func upstreamPos(t *testing.T, db *sql.DB) streamer.Position {
	t.Helper()
	f, o := masterPos(t, db)
	return streamer.Position{Name: f, Offset: o}
}

// copyTable copies a table's rows from one server to another, through text.
func copyTable(t *testing.T, from, to *sql.DB, table string) {
	t.Helper()
	rows, err := from.Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	marks := strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			if v.Valid {
				args[i] = v.String
			}
		}
		mustExec(t, to, "INSERT INTO "+table+" VALUES ("+marks+")", args...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncerMinimalMetadataAlter(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 63, RowMetadata: "MINIMAL"})
		p.workers = workers
		store := &recordingStore{}
		s, err := dmworker.NewSyncer(p.config("alter"), p.sink, dmworker.WithCheckpointStore(store))
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		db := p.updb
		mustExec(t, db, "CREATE DATABASE m")
		const create = "CREATE TABLE m.t (id INT PRIMARY KEY, a INT, b VARCHAR(20), c DATETIME(6))"
		mustExec(t, db, create)
		mustExec(t, db, "INSERT INTO m.t VALUES (1, 10, 'one', '2001-01-01 00:00:00.1'), (2, 20, 'two', NULL)")
		waitSynced(t, run, db)
		early := upstreamPos(t, db) // rows of m.t follow this position
		mustExec(t, db, "INSERT INTO m.t VALUES (3, 30, 'three', '2003-03-03 03:03:03.333333'), (4, NULL, '🥝', '2004-04-04')")
		mustExec(t, db, "UPDATE m.t SET b = 'uno' WHERE id = 1")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 2")
		waitSynced(t, run, db)
		beforeAlter := upstreamPos(t, db)
		// The downstream as it was at beforeAlter, for the fresh start below.
		snapshot := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 69})
		snapdb := snapshot.DB(t)
		mustExec(t, snapdb, "CREATE DATABASE m")
		mustExec(t, snapdb, create)
		copyTable(t, db, snapdb, "m.t")

		mustExec(t, db, "ALTER TABLE m.t ADD COLUMN x BIGINT DEFAULT 7 AFTER a")
		mustExec(t, db, "INSERT INTO m.t VALUES (5, 50, -5, 'five', '2005-05-05 05:05:05.5')")
		mustExec(t, db, "UPDATE m.t SET x = 9223372036854775807, b = 'tres' WHERE id = 3")
		mustExec(t, db, "ALTER TABLE m.t DROP COLUMN b")
		mustExec(t, db, "INSERT INTO m.t VALUES (6, 60, 6, '2006-06-06 06:06:06')")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 4")
		mustExec(t, db, "UPDATE m.t SET a = a + 1 WHERE id IN (1, 5)")
		mustExec(t, db, "ALTER TABLE m.t MODIFY COLUMN c DATETIME(6) FIRST")
		mustExec(t, db, "INSERT INTO m.t VALUES ('2007-07-07 07:07:07.000007', 7, 70, 700)")
		mustExec(t, db, "UPDATE m.t SET c = NULL, x = -1 WHERE id = 6")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 1")
		waitSynced(t, run, db)
		checkEqual(t, db, p.downdb, "m.t", "m.t")
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}

		t.Run("restart before the ALTER", func(t *testing.T) {
			cp := checkpointBefore(t, store, beforeAlter)
			mem := &dmworker.MemoryCheckpointStore{}
			if err := mem.Save(context.Background(), cp); err != nil {
				t.Fatal(err)
			}
			sink, err := mysqlsink.New(snapdb)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := dmworker.NewSyncer(p.config("alter"), sink, dmworker.WithCheckpointStore(mem))
			if err != nil {
				t.Fatal(err)
			}
			run2 := runSyncer(t, s2)
			waitSynced(t, run2, db)
			checkEqual(t, db, snapdb, "m.t", "m.t")
			if err := run2.Stop(); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("wrong schema is an error", func(t *testing.T) {
			cp := checkpointBefore(t, store, early)
			cp.Schema = schemaAfter(t, store, beforeAlter) // has column x
			mem := &dmworker.MemoryCheckpointStore{}
			if err := mem.Save(context.Background(), cp); err != nil {
				t.Fatal(err)
			}
			s3, err := dmworker.NewSyncer(p.config("alter"), sinktest.NewMemSink(), dmworker.WithCheckpointStore(mem))
			if err != nil {
				t.Fatal(err)
			}
			runErr := s3.Run(context.Background())
			var se *dmworker.SyncError
			if !errors.Is(runErr, dmworker.ErrSchemaMismatch) || !errors.As(runErr, &se) {
				t.Fatalf("Run: %v, want ErrSchemaMismatch in a *SyncError", runErr)
			}
			if se.Table != "m.t" || se.Pos.Name == "" || !strings.Contains(runErr.Error(), "m.t") {
				t.Fatalf("the error does not name the table and position: %+v", se)
			}
		})
	})
}

func TestSyncerRoutingAndFilters(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 64})
		p.workers = workers
		cfg := p.config("route")
		cfg.Routes = []dmworker.RouteRule{
			{SchemaPattern: "shard_*", TablePattern: "orders_*", TargetSchema: "all", TargetTable: "orders"},
			{SchemaPattern: "shard_*", TargetSchema: "all"},
		}
		cfg.Filter = dmworker.BlockAllowList{
			IgnoreDBs:    []string{"scratch"},
			IgnoreTables: []dmworker.TablePattern{{Schema: "shard_2", Name: "secret"}},
		}
		cfg.EventFilters = []dmworker.EventFilterRule{
			// Both shards' CREATE DATABASE and CREATE TABLE route to the same
			// target, which is created by hand downstream: the second one
			// would collide.
			{SchemaPattern: "shard_*", Events: []string{"create database", "create table"}, Action: "Ignore"},
			{SchemaPattern: "shard_1", TablePattern: "*", Events: []string{"delete"}, Action: "Ignore"},
		}
		const ordersDef = "(id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), note TEXT)"
		mustExec(t, p.downdb, "CREATE DATABASE `all`")
		mustExec(t, p.downdb, "CREATE TABLE `all`.orders "+ordersDef)

		s, err := dmworker.NewSyncer(cfg, p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		db := p.updb
		for _, sh := range []string{"1", "2"} {
			mustExec(t, db, "CREATE DATABASE shard_"+sh)
			mustExec(t, db, "CREATE TABLE shard_"+sh+".orders_"+sh+" "+ordersDef)
		}
		mustExec(t, db, "CREATE TABLE shard_2.secret (id INT PRIMARY KEY, pw VARCHAR(20))")
		for i := 1; i <= 40; i++ {
			mustExec(t, db, "INSERT INTO shard_1.orders_1 VALUES (?, ?, ?, ?)", i, "c1", float64(i)*1.25, "🥝")
			mustExec(t, db, "INSERT INTO shard_2.orders_2 VALUES (?, ?, ?, NULL)", 1000+i, "c2", float64(i)*2.5)
			mustExec(t, db, "INSERT INTO shard_2.secret VALUES (?, 'hunter2')", i)
		}
		mustExec(t, db, "UPDATE shard_1.orders_1 SET amount = amount + 1 WHERE id % 3 = 0")
		mustExec(t, db, "UPDATE shard_2.orders_2 SET note = 'upd' WHERE id % 4 = 0")
		mustExec(t, db, "UPDATE shard_2.secret SET pw = 'x'")
		// Deletes on shard_1 are filtered out, those on shard_2 are not.
		// The rows whose delete is dropped are kept aside, in a schema the
		// task ignores.
		mustExec(t, db, "CREATE DATABASE scratch")
		mustExec(t, db, "CREATE TABLE scratch.deleted_1 LIKE shard_1.orders_1")
		mustExec(t, db, "INSERT INTO scratch.deleted_1 SELECT * FROM shard_1.orders_1 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_1.orders_1 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_2.orders_2 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_2.secret WHERE id < 10")
		waitSynced(t, run, db)
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}

		// The expected rows: both shards, plus shard_1's deleted rows.
		mustExec(t, db, "CREATE DATABASE expect")
		mustExec(t, db, "CREATE TABLE expect.orders "+ordersDef)
		mustExec(t, db, "INSERT INTO expect.orders SELECT * FROM shard_1.orders_1 UNION ALL SELECT * FROM shard_2.orders_2 UNION ALL SELECT * FROM scratch.deleted_1")
		checkEqual(t, db, p.downdb, "expect.orders", "`all`.orders")

		var schemas []string
		rows, err := p.downdb.Query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'test', ?) ORDER BY 1", mysqlsink.DefaultCheckpointSchema)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			schemas = append(schemas, n)
		}
		rows.Close()
		if strings.Join(schemas, ",") != "all" {
			t.Fatalf("downstream schemas %v, want only all", schemas)
		}
		var tables []string
		rows, err = p.downdb.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'all' ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, n)
		}
		rows.Close()
		if strings.Join(tables, ",") != "orders" {
			t.Fatalf("downstream tables in all: %v, want only orders (no secret)", tables)
		}
	})
}

// fillTypeFamilies creates the type-family tables in db and fills them
// with typeFamilyRows, on one session with zero dates allowed and a time
// zone that is not UTC for the TIMESTAMP columns; it returns a function
// that runs more statements on that session (closed at the test's end).
func fillTypeFamilies(t *testing.T, db *sql.DB) func(q string) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'")
	exec("SET SESSION time_zone = '+05:30'")
	exec("CREATE DATABASE tf")
	for _, tb := range typeFamilyTables {
		exec(tb.Create)
	}
	for _, q := range typeFamilyRows {
		exec(q)
	}
	return exec
}
