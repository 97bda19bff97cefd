package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// concurrentSink says yes to parallel Apply calls: mysqlsink.Sink is safe
// for concurrent use, and the snapshot's parallel writers are tested
// through this wrapper.
type concurrentSink struct{ *mysqlsink.Sink }

func (concurrentSink) Concurrent() bool { return true }

// runSnapshot runs a snapshot unit to its end.
func runSnapshot(t *testing.T, cfg dmworker.SyncerConfig, sc dmworker.SnapshotConfig, sink dmworker.Sink, store dmworker.CheckpointStore) (streamer.Position, dmworker.SnapshotStatus) {
	t.Helper()
	u, err := dmworker.NewSnapshotUnitForTest(cfg, sc, sink, store, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	pos, err := u.Run(context.Background())
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return pos, u.Status()
}

// sameRows compares two tables' rows (sorted, as MemSink.Rows returns them)
// value by value, Go types included.
func sameRows(t *testing.T, table string, want, got [][]any) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: no rows to compare", table)
	}
	if len(want) != len(got) {
		t.Fatalf("%s: %d rows by the syncer, %d by the snapshot", table, len(want), len(got))
	}
	for i := range want {
		if len(want[i]) != len(got[i]) {
			t.Fatalf("%s row %d: %d values by the syncer, %d by the snapshot", table, i, len(want[i]), len(got[i]))
		}
		for j := range want[i] {
			w, g := want[i][j], got[i][j]
			if sinktest.CompareValues(w, g) != 0 || fmt.Sprintf("%T", w) != fmt.Sprintf("%T", g) {
				t.Errorf("%s row %d column %d: syncer %T %#v, snapshot %T %#v", table, i, j, w, w, g, g)
			}
		}
	}
}

// TestSnapshotValuesMatchSyncer copies the type-family tables once by the
// syncer (from before their creation) and once by a snapshot of their end
// state: every value is the same, with the same Go type.
func TestSnapshotValuesMatchSyncer(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 350})
	updb := up.DB(t)
	cfg := dmworker.SyncerConfig{Task: "types", Upstream: upstreamOf(up)}
	bySyncer := sinktest.NewMemSink()
	s, err := dmworker.NewSyncer(cfg, bySyncer)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	ctx := context.Background()
	conn, err := updb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
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
		exec(tb.create)
	}
	for _, q := range typeFamilyRows {
		exec(q)
	}
	for _, q := range typeFamilyChanges {
		exec(q)
	}
	waitSynced(t, run, updb)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}

	bySnapshot := sinktest.NewMemSink()
	cfg.Task = "types-snapshot"
	pos, st := runSnapshot(t, cfg, dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 2, BatchRows: 3}, bySnapshot, dmworker.SinkStoreForTest(bySnapshot))
	for _, tb := range typeFamilyTables {
		sameRows(t, "tf."+tb.name, bySyncer.Rows("tf", tb.name), bySnapshot.Rows("tf", tb.name))
	}
	if !st.Done || st.Stage != "Done" || len(st.Tables) != len(typeFamilyTables) || st.Rows == 0 || !st.Pos.Equal(pos) {
		t.Fatalf("status %+v", st)
	}
	// The checkpoint left for a syncer: at the point, with the schema, no
	// progress.
	cp, ok, err := bySnapshot.LoadCheckpoint(ctx, cfg.Task, cfg.Source)
	if cfg.Source == "" {
		cp, ok, err = bySnapshot.LoadCheckpoint(ctx, cfg.Task, cfg.Upstream.SourceName())
	}
	if err != nil || !ok || !cp.Pos.Equal(pos) || cp.Snapshot != nil || len(cp.Schema) == 0 || cp.Pos.GTIDSet == nil {
		t.Fatalf("checkpoint %+v %v %v", cp, ok, err)
	}
	// A second run finds the copy finished and returns its position.
	pos2, _ := runSnapshot(t, cfg, dmworker.SnapshotConfig{}, bySnapshot, dmworker.SinkStoreForTest(bySnapshot))
	if !pos2.Equal(pos) {
		t.Fatalf("second run: %s, want %s", pos2, pos)
	}
}

// shapeTables cover the chunking modes: integer ranges (signed, unsigned
// beyond MaxInt64), keyset pages (composite, unique NOT NULL, decimal key),
// whole tables (no key, BINARY key), empty tables, and wide rows.
var shapeTables = []string{
	"CREATE TABLE shapes.nopk (a INT, b VARCHAR(20))",
	"CREATE TABLE shapes.empty (id INT PRIMARY KEY, v TEXT)",
	"CREATE TABLE shapes.empty_nopk (a INT)",
	"CREATE TABLE shapes.composite (a INT, b VARCHAR(20), c DATETIME(6), v DOUBLE, PRIMARY KEY (a, b, c))",
	"CREATE TABLE shapes.uniq (u VARCHAR(30) NOT NULL, n INT, UNIQUE KEY (u))",
	"CREATE TABLE shapes.deckey (d DECIMAL(30,10) PRIMARY KEY, v INT)",
	"CREATE TABLE shapes.binkey (k BINARY(4) PRIMARY KEY, v INT)",
	"CREATE TABLE shapes.ubig (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(10))",
	"CREATE TABLE shapes.neg (id INT PRIMARY KEY, v INT)",
	"CREATE TABLE shapes.blobs (id INT PRIMARY KEY, a LONGBLOB, b MEDIUMTEXT, c VARBINARY(100))",
	"CREATE TABLE shapes.skipme (id INT PRIMARY KEY)",
}

func fillShapes(t *testing.T, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE shapes")
	for _, q := range shapeTables {
		mustExec(t, db, q)
	}
	for i := 0; i < 30; i++ {
		mustExec(t, db, "INSERT INTO shapes.nopk VALUES (?, ?)", i%7, fmt.Sprintf("v%d", i%5)) // duplicates
		mustExec(t, db, "INSERT INTO shapes.uniq VALUES (?, ?)", fmt.Sprintf("u-%03d-é", i), i)
		mustExec(t, db, "INSERT INTO shapes.deckey VALUES (?, ?)", fmt.Sprintf("12345678901234567890.%010d", i), i) // beyond a double
		mustExec(t, db, "INSERT INTO shapes.binkey VALUES (?, ?)", []byte{byte(i), 0, byte(i), 0}[:1+i%4], i)
		mustExec(t, db, "INSERT INTO shapes.ubig VALUES (?, 'lo'), (?, 'hi')", uint64(i), uint64(18446744073709551615)-uint64(i))
		mustExec(t, db, "INSERT INTO shapes.neg VALUES (?, ?)", i*7-100, i)
		mustExec(t, db, "INSERT INTO shapes.skipme VALUES (?)", i)
	}
	mustExec(t, db, "INSERT INTO shapes.nopk VALUES (NULL, NULL), (NULL, NULL)")
	for a := 0; a < 5; a++ {
		for b := 0; b < 10; b++ {
			mustExec(t, db, "INSERT INTO shapes.composite VALUES (?, ?, ?, ?)", a, fmt.Sprintf("k%d", 9-b), fmt.Sprintf("2024-01-0%d 00:00:00.%06d", 1+b%3, b), float64(a)/3)
		}
	}
	for i := 0; i < 12; i++ {
		mustExec(t, db, "INSERT INTO shapes.blobs VALUES (?, REPEAT(CHAR(?, 0, 255 USING binary), ?), REPEAT('🥝x', ?), ?)",
			i, i, 150000+i*1000, 40000+i, []byte{0, byte(i), 0xff})
	}
	mustExec(t, db, "ANALYZE TABLE shapes.ubig, shapes.neg, shapes.composite")
}

var shapeNames = []string{"nopk", "empty", "empty_nopk", "composite", "uniq", "deckey", "binkey", "ubig", "neg", "blobs"}

// TestSnapshotTableShapes copies tables of every shape through mysqlsink
// with parallel writers, routed into another schema: downstream equals
// upstream, the table the filter drops is not there, and the status counts
// every row and chunk.
func TestSnapshotTableShapes(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 351})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 352})
	updb, downdb := up.DB(t), down.DB(t)
	fillShapes(t, updb)
	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dmworker.SyncerConfig{Task: "shapes", Upstream: upstreamOf(up),
		Routes: []dmworker.RouteRule{{SchemaPattern: "shapes", TargetSchema: "copy"}},
		Filter: dmworker.BlockAllowList{IgnoreTables: []dmworker.TablePattern{{Schema: "shapes", Name: "skipme"}}}}
	_, st := runSnapshot(t, cfg, dmworker.SnapshotConfig{Concurrency: 3, ChunkRows: 7, BatchRows: 5}, concurrentSink{sink}, dmworker.SinkStoreForTest(sink))
	for _, n := range shapeNames {
		checkEqual(t, updb, downdb, "shapes."+n, "copy."+n)
	}
	var n int
	if err := downdb.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'skipme'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the filtered table is downstream (%d, %v)", n, err)
	}
	if len(st.Tables) != len(shapeNames) {
		t.Fatalf("%d tables in the status, want %d", len(st.Tables), len(shapeNames))
	}
	var total int64
	for _, ts := range st.Tables {
		var rows int64
		if err := updb.QueryRow("SELECT COUNT(*) FROM " + quoteName(ts.Schema, ts.Name)).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if !ts.Done || ts.ChunksDone != ts.Chunks || ts.Rows != rows || ts.TargetSchema != "copy" || ts.TargetName != ts.Name {
			t.Errorf("table status %+v, want done with %d rows", ts, rows)
		}
		if ts.Name == "ubig" && ts.Chunks < 2 {
			t.Errorf("ubig in %d chunk(s): the unsigned range was not split", ts.Chunks)
		}
		total += rows
	}
	if st.Rows != total || st.Bytes == 0 {
		t.Fatalf("status totals %d rows %d bytes, want %d rows", st.Rows, st.Bytes, total)
	}
}

func quoteName(schema, table string) string { return "`" + schema + "`.`" + table + "`" }

var _ = errors.Is
