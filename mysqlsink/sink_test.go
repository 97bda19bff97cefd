package mysqlsink_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
	"github.com/go-sql-driver/mysql"
)

func TestNewOptions(t *testing.T) {
	db := openNowhere(t)
	if _, err := mysqlsink.New(nil); err == nil {
		t.Error("New(nil): no error")
	}
	for _, opts := range [][]mysqlsink.Option{
		{mysqlsink.WithMaxStatementRows(0)},
		{mysqlsink.WithMaxStatementRows(70000)},
		{mysqlsink.WithCheckpointSchema("")},
		{mysqlsink.WithCheckpointSchema(strings.Repeat("x", 65))},
		{mysqlsink.WithCheckpointSchema("trailing ")},
	} {
		if _, err := mysqlsink.New(db, opts...); err == nil {
			t.Errorf("New with bad options: no error")
		}
	}
	if _, err := mysqlsink.New(db, nil, mysqlsink.WithMaxStatementRows(1), mysqlsink.WithCheckpointSchema("ok")); err != nil {
		t.Errorf("New with good options: %v", err)
	}
}

func mustPos(t *testing.T, s string) streamer.Position {
	t.Helper()
	p, err := streamer.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckpointTable checks the checkpoint table's location and columns.
func TestCheckpointTable(t *testing.T) {
	m := server(t, 12)
	db := openDB(t, m, nil)
	s := newSink(t, db, mysqlsink.WithCheckpointSchema("my`meta"))
	cp := dmworker.Checkpoint{Task: "task", Source: "src", Pos: mustPos(t, "mysql-bin.000002:77"), Schema: []byte(`{"t":1}`), Epoch: 4}
	if err := s.SaveCheckpoint(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	var task, source, pos, safeUntil, schema string
	var epoch int64
	var updated string
	err := db.QueryRow("SELECT task, source, pos, safe_until, schema_json, epoch, updated_at FROM `my``meta`.`checkpoint`").
		Scan(&task, &source, &pos, &safeUntil, &schema, &epoch, &updated)
	if err != nil {
		t.Fatal(err)
	}
	if task != "task" || source != "src" || pos != "mysql-bin.000002:77" || safeUntil != "(none)" || schema != `{"t":1}` || epoch != 4 || updated == "" {
		t.Fatalf("stored row: %q %q %q %q %q %d %q", task, source, pos, safeUntil, schema, epoch, updated)
	}
	// A second sink finds the table made by the first.
	got, ok, err := newSink(t, db, mysqlsink.WithCheckpointSchema("my`meta")).LoadCheckpoint(t.Context(), "task", "src")
	if err != nil || !ok || got.Epoch != 4 || !got.Pos.Equal(cp.Pos) {
		t.Fatalf("load: %+v %v %v", got, ok, err)
	}
}

// sessionState is what the sink changes in a session.
func sessionState(t *testing.T, db *sql.DB) string {
	t.Helper()
	var tz, mode, fk, checks, dbName, tzVar, checksVar sql.NullString
	err := db.QueryRow("SELECT @@SESSION.time_zone, @@SESSION.sql_mode, @@SESSION.foreign_key_checks, @@SESSION.check_constraint_checks, DATABASE(), @dmworker_time_zone, @dmworker_check_constraint_checks").
		Scan(&tz, &mode, &fk, &checks, &dbName, &tzVar, &checksVar)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("tz=%v mode=%v fk=%v checks=%v db=%v saved=%v/%v", tz, mode, fk, checks, dbName, tzVar, checksVar)
}

// TestSessionRestored checks that the host's pooled connections come back
// as they were lent.
func TestSessionRestored(t *testing.T) {
	m := server(t, 13)
	db := openDB(t, m, func(c *mysql.Config) { c.Params = map[string]string{"time_zone": "'+05:00'"} })
	db.SetMaxOpenConns(1) // one connection: the sink gets the one we inspect
	before := sessionState(t, db)
	if !strings.Contains(before, "tz={+05:00 true}") {
		t.Fatalf("DSN time zone not in effect: %s", before)
	}
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "int(11)", false), col("ts", "timestamp", true),
	}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1), "2020-01-01 00:00:00")}})
	if after := sessionState(t, db); after != before {
		t.Fatalf("session after Apply:\n%s\nwant\n%s", after, before)
	}
	// TIMESTAMP text is UTC, whatever the host's session time zone.
	var unix int64
	if err := db.QueryRow("SELECT UNIX_TIMESTAMP(ts) FROM d.t").Scan(&unix); err != nil || unix != 1577836800 {
		t.Fatalf("UNIX_TIMESTAMP = %d, %v; want 1577836800", unix, err)
	}
	if err := s.ExecDDL(t.Context(), &dmworker.DDL{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD COLUMN x INT"}); err != nil {
		t.Fatal(err)
	}
	if after := sessionState(t, db); after != before {
		t.Fatalf("session after ExecDDL:\n%s\nwant\n%s", after, before)
	}
	// CHECK constraints are the upstream's to check (a session of it may
	// have turned them off): rows and DDL that break them go in.
	exec(t, db, "CREATE TABLE d.c (id INT PRIMARY KEY, v INT CHECK (v > 0))")
	ctbl := &dmworker.Table{Schema: "d", Name: "c", Columns: []dmworker.Column{col("id", "int(11)", false), col("v", "int(11)", true)}, PrimaryKey: []int{0}}
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(ctbl, int64(1), int64(-1))}})
	if err := s.ExecDDL(t.Context(), &dmworker.DDL{Schema: "d", Table: "c", Query: "ALTER TABLE c ADD CONSTRAINT big CHECK (v > 5)"}); err != nil {
		t.Fatal(err)
	}
	if after := sessionState(t, db); after != before {
		t.Fatalf("session after the checks:\n%s\nwant\n%s", after, before)
	}
}

// TestExclusivePool: with WithExclusivePool the session is set up once per
// connection and left so; TIMESTAMP text is still UTC, and a connection the
// server killed is replaced and set up again.
func TestExclusivePool(t *testing.T) {
	m := server(t, 801)
	db := openDB(t, m, func(c *mysql.Config) { c.Params = map[string]string{"time_zone": "'+05:00'"} })
	db.SetMaxOpenConns(1)
	s := newSink(t, db, mysqlsink.WithExclusivePool())
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "int(11)", false), col("ts", "timestamp", true),
	}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	setOptions := func() int {
		t.Helper()
		var name string
		var n int
		if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Com_set_option'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := setOptions()
	for i := range 5 {
		apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(i), "2020-01-01 00:00:00")}})
	}
	// One SET for the setup; SHOW SESSION STATUS itself is not a SET.
	if got := setOptions() - before; got != 1 {
		t.Fatalf("%d SET statements for 5 batches on one connection, want 1", got)
	}
	var tz string
	if err := db.QueryRow("SELECT @@SESSION.time_zone").Scan(&tz); err != nil || tz != "+00:00" {
		t.Fatalf("session time zone %q, %v: want the sink's +00:00 left set", tz, err)
	}
	var unix int64
	if err := db.QueryRow("SELECT UNIX_TIMESTAMP(ts) FROM d.t WHERE id = 4").Scan(&unix); err != nil || unix != 1577836800 {
		t.Fatalf("UNIX_TIMESTAMP = %d, %v; want 1577836800", unix, err)
	}
	// Kill the connection from another session: the next Apply gets a new
	// one, which must be set up again (else TIMESTAMP text would be read
	// at +05:00).
	var id int64
	if err := db.QueryRow("SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	other := openDB(t, m, nil)
	exec(t, other, fmt.Sprintf("KILL %d", id))
	var err error
	for range 3 { // the pool may hand out the dead connection first
		if err = s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(10), "2020-01-01 00:00:00")}}); err == nil || !dmworker.IsRetryable(err) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Apply after the connection was killed: %v", err)
	}
	if err := db.QueryRow("SELECT UNIX_TIMESTAMP(ts) FROM d.t WHERE id = 10").Scan(&unix); err != nil || unix != 1577836800 {
		t.Fatalf("after reconnecting: UNIX_TIMESTAMP = %d, %v; want 1577836800", unix, err)
	}
}

// TestWithoutBinlog: a sink WithoutBinlog writes rows and DDL without the
// downstream's binlog moving, and gives the connection back logging; a
// default sink's writes are logged.
func TestWithoutBinlog(t *testing.T) {
	m := server(t, 802)
	db := openDB(t, m, nil)
	db.SetMaxOpenConns(1)
	end := func() string {
		t.Helper()
		var file, pos, doDB, ignoreDB string
		if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
			t.Fatal(err)
		}
		return file + ":" + pos
	}
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{col("id", "int(11)", false)}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	quiet := newSink(t, db, mysqlsink.WithoutBinlog())
	before := end()
	apply(t, quiet, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1)), ins(tbl, int64(2))}})
	if err := quiet.ExecDDL(t.Context(), &dmworker.DDL{Schema: "d", Table: "u", Query: "CREATE TABLE u (id INT)"}); err != nil {
		t.Fatal(err)
	}
	if after := end(); after != before {
		t.Fatalf("binlog moved from %s to %s for writes WithoutBinlog", before, after)
	}
	if rows := readRows(t, db, "d", "t"); len(rows) != 2 {
		t.Fatalf("rows %v, want 2", rows)
	}
	var logBin int
	if err := db.QueryRow("SELECT @@SESSION.sql_log_bin").Scan(&logBin); err != nil || logBin != 1 {
		t.Fatalf("the pool's connection came back with sql_log_bin = %d, %v", logBin, err)
	}
	apply(t, newSink(t, db), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3))}})
	if after := end(); after == before {
		t.Fatalf("binlog did not move for a default sink's write")
	}
}

// TestGeneratedColumns checks that generated columns are never written.
func TestGeneratedColumns(t *testing.T) {
	m := server(t, 14)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	exec(t, db, "CREATE TABLE d.t (id INT PRIMARY KEY, a INT, s INT AS (a * 2) STORED, v INT AS (a + 1) VIRTUAL)")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "int(11)", false), col("a", "int(11)", true),
		{Name: "s", Type: "int(11)", Nullable: true, Generated: true},
		{Name: "v", Type: "int(11)", Nullable: true, Generated: true},
	}, PrimaryKey: []int{0}}
	noKey := *tbl
	noKey.PrimaryKey = nil
	for _, safe := range []bool{false, true} {
		exec(t, db, "DELETE FROM d.t")
		apply(t, s, &dmworker.Batch{SafeMode: safe, Changes: []dmworker.Change{
			ins(tbl, int64(1), int64(10), int64(20), int64(11)),
			ins(tbl, int64(2), int64(5), int64(10), int64(6)),
			upd(tbl, r(int64(1), int64(10), int64(20), int64(11)), r(int64(1), int64(7), int64(14), int64(8))),
			del(tbl, int64(2), int64(5), int64(10), int64(6)),
			// Matched by every column but the generated ones (whose
			// values here are wrong on purpose).
			ins(&noKey, int64(3), int64(1), nil, nil),
			upd(&noKey, r(int64(3), int64(1), int64(99), nil), r(int64(3), int64(2), nil, nil)),
		}})
		got := readRows(t, db, "d", "t")
		sinktest.SortRows(got)
		want := [][]any{{int64(1), int64(7), int64(14), int64(8)}, {int64(3), int64(2), int64(4), int64(3)}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("safe mode %v: rows %v, want %v", safe, got, want)
		}
	}
}

// TestUpstreamValues checks values a non-strict upstream can hold.
func TestUpstreamValues(t *testing.T) {
	m := server(t, 15)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	exec(t, db, "CREATE TABLE d.t (id INT AUTO_INCREMENT PRIMARY KEY, e ENUM('a','b'), dt DATE, dtm DATETIME(3), s SET('x','y'), c CHAR(3))")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "int(11)", false), col("e", "enum('a','b')", true), col("dt", "date", true),
		col("dtm", "datetime(3)", true), col("s", "set('x','y')", true), col("c", "char(3)", true),
	}, PrimaryKey: []int{0}}
	rows := [][]any{
		{int64(0), "", "2020-02-31", "2020-00-00 00:00:00.500", "", ""}, // id 0 kept, enum error value, invalid dates
		{int64(1), "b", "0000-00-00", "0000-00-00 00:00:00.000", "x,y", "abc"},
	}
	var changes []dmworker.Change
	for _, row := range rows {
		changes = append(changes, ins(tbl, row...))
	}
	apply(t, s, &dmworker.Batch{Changes: changes})
	got := readRows(t, db, "d", "t")
	sinktest.SortRows(got)
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("rows %v, want %v", got, rows)
	}
	// Matching by every column works with those values too.
	noKey := *tbl
	noKey.PrimaryKey = nil
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{del(&noKey, rows[0]...)}})
	if got := readRows(t, db, "d", "t"); len(got) != 1 {
		t.Fatalf("rows after delete: %v", got)
	}
}

// TestForeignKeysNotChecked: batches may reach the downstream in another
// order than the upstream's statements.
func TestForeignKeysNotChecked(t *testing.T) {
	m := server(t, 16)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	exec(t, db, "CREATE TABLE d.parent (id INT PRIMARY KEY)")
	exec(t, db, "CREATE TABLE d.child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES d.parent(id))")
	parent := &dmworker.Table{Schema: "d", Name: "parent", Columns: []dmworker.Column{col("id", "int(11)", false)}, PrimaryKey: []int{0}}
	child := &dmworker.Table{Schema: "d", Name: "child", Columns: []dmworker.Column{col("id", "int(11)", false), col("p", "int(11)", true)}, PrimaryKey: []int{0}}
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(child, int64(1), int64(7))}})
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(parent, int64(7))}})
	if n := len(readRows(t, db, "d", "child")); n != 1 {
		t.Fatalf("%d child rows", n)
	}
}

// TestLargeBatches checks statements cut by placeholders and by size.
func TestLargeBatches(t *testing.T) {
	m := server(t, 17)
	prepared := openDB(t, m, func(c *mysql.Config) { c.InterpolateParams = false })
	s := newSink(t, prepared)
	exec(t, prepared, "CREATE DATABASE d")

	// 300 columns x 256 rows is more placeholders than a prepared
	// statement takes.
	wide := &dmworker.Table{Schema: "d", Name: "wide", PrimaryKey: []int{0}}
	for i := range 300 {
		wide.Columns = append(wide.Columns, col(fmt.Sprintf("c%d", i), "int(11)", i > 0))
	}
	createTable(t, prepared, wide)
	var changes []dmworker.Change
	for i := range 256 {
		row := make([]any, 300)
		row[0] = int64(i)
		row[299] = int64(i * 2)
		changes = append(changes, ins(wide, row...))
	}
	apply(t, s, &dmworker.Batch{Changes: changes})
	var n, sum int64
	if err := prepared.QueryRow("SELECT COUNT(*), SUM(c299) FROM d.wide").Scan(&n, &sum); err != nil || n != 256 || sum != 255*256 {
		t.Fatalf("wide: %d rows, sum %d, %v", n, sum, err)
	}

	// 18 MiB of blobs in one batch, more than max_allowed_packet (16 MiB).
	blobs := &dmworker.Table{Schema: "d", Name: "blobs", Columns: []dmworker.Column{
		col("id", "int(11)", false), col("b", "longblob", true),
	}, PrimaryKey: []int{0}}
	createTable(t, prepared, blobs)
	for _, db := range []*sql.DB{prepared, openDB(t, m, nil)} {
		exec(t, db, "DELETE FROM d.blobs")
		changes = changes[:0]
		for i := range 18 {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(i + j)
			}
			changes = append(changes, ins(blobs, int64(i), b))
		}
		apply(t, newSink(t, db), &dmworker.Batch{Changes: changes})
		if err := db.QueryRow("SELECT COUNT(*), SUM(LENGTH(b)) FROM d.blobs").Scan(&n, &sum); err != nil || n != 18 || sum != 18<<20 {
			t.Fatalf("blobs: %d rows, %d bytes, %v", n, sum, err)
		}
	}
}

// TestNoPrimaryKeyTables applies the same changes to tables without a primary
// key (one with unique keys, one with none and many equal rows), in
// statements of few rows, and compares with MemSink.
func TestNoPrimaryKeyTables(t *testing.T) {
	m := server(t, 18)
	db := openDB(t, m, nil)
	s := newSink(t, db, mysqlsink.WithMaxStatementRows(7))
	ref := sinktest.NewMemSink()
	exec(t, db, "CREATE DATABASE d")
	// Unique key on a NOT NULL column, and a nullable one first.
	uk := &dmworker.Table{Schema: "d", Name: "uk", Columns: []dmworker.Column{
		col("n", "int(11)", true), col("code", "varchar(16)", false), col("v", "int(11)", true),
	}, UniqueKeys: [][]int{{0}, {1}}}
	none := &dmworker.Table{Schema: "d", Name: "none", Columns: []dmworker.Column{
		col("a", "int(11)", true), col("b", "double", true), col("c", "varchar(8)", true),
	}}
	createTable(t, db, uk)
	createTable(t, db, none)
	var changes []dmworker.Change
	for i := range 100 {
		var n any = int64(i)
		if i%3 == 0 {
			n = nil
		}
		changes = append(changes, ins(uk, n, fmt.Sprintf("c%d", i), int64(i)))
		changes = append(changes, ins(none, int64(i%10), float64(i%10)/3, "dup"))
	}
	for _, sink := range []dmworker.Sink{s, ref} {
		apply(t, sink, &dmworker.Batch{Changes: changes})
	}
	changes = changes[:0]
	for i := range 100 {
		var n any = int64(i)
		if i%3 == 0 {
			n = nil
		}
		switch i % 4 {
		case 0:
			changes = append(changes, del(uk, n, fmt.Sprintf("c%d", i), int64(i)))
			changes = append(changes, del(none, int64(i%10), float64(i%10)/3, "dup"))
		case 1:
			changes = append(changes, upd(uk, r(n, fmt.Sprintf("c%d", i), int64(i)), r(nil, fmt.Sprintf("c%d", i), int64(-i))))
			changes = append(changes, upd(none, r(int64(i%10), float64(i%10)/3, "dup"), r(int64(i%10), float64(i%10)/3, "moved")))
		}
	}
	for _, sink := range []dmworker.Sink{s, ref} {
		apply(t, sink, &dmworker.Batch{Changes: changes})
	}
	for _, tbl := range []*dmworker.Table{uk, none} {
		got := readRows(t, db, tbl.Schema, tbl.Name)
		sinktest.SortRows(got)
		want := ref.Rows(tbl.Schema, tbl.Name)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d rows differ from MemSink's %d", tbl.Name, len(got), len(want))
		}
	}
}

// TestEpochFencingConcurrent runs an old writer while a new one takes over:
// once the new epoch is stored, nothing of the old writer lands, and what
// the old writer was told landed did.
func TestEpochFencingConcurrent(t *testing.T) {
	m := server(t, 19)
	dbA, dbB := openDB(t, m, nil), openDB(t, m, nil)
	oldW, newW := newSink(t, dbA), newSink(t, dbB)
	exec(t, dbA, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("w", "varchar(8)", false),
	}, PrimaryKey: []int{0}}
	createTable(t, dbA, tbl)
	cp := func(epoch int64, off int) *dmworker.Checkpoint {
		return &dmworker.Checkpoint{Task: "fence", Source: "s", Epoch: epoch, Pos: mustPos(t, fmt.Sprintf("mysql-bin.000001:%d", off))}
	}
	ctx := t.Context()

	var (
		fenced    atomic.Bool // set once the new epoch is stored
		acked     []int64     // ids the old writer was told are applied
		lateAcked []int64     // of those, ids whose Apply began after fencing
		started   = make(chan struct{})
		stop      = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	start := func() { once.Do(func() { close(started) }) }
	defer func() {
		close(stop) // on an early failure, stop the old writer too
		wg.Wait()
	}()
	wg.Go(func() {
		for i := int64(1); i <= 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			after := fenced.Load()
			err := oldW.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, i, "old")}, Checkpoint: cp(1, int(i))})
			switch {
			case err == nil:
				acked = append(acked, i)
				if after {
					lateAcked = append(lateAcked, i)
				}
				if i == 20 {
					start()
				}
			case errors.Is(err, dmworker.ErrStaleEpoch):
				start()
				return
			case dmworker.IsRetryable(err):
				i-- // a deadlock on first contention: retry
			default:
				t.Errorf("old writer: %v", err)
				start()
				return
			}
		}
		t.Error("old writer never fenced")
		start()
	})
	<-started
	if err := newW.SaveCheckpoint(ctx, *cp(2, 1_000_000)); err != nil {
		t.Fatal(err)
	}
	fenced.Store(true)
	for i := int64(1); i <= 20; i++ {
		if err := newW.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, 100000+i, "new")}, Checkpoint: cp(2, 1_000_000+int(i))}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(lateAcked) > 0 {
		t.Errorf("old writer's batches %v acknowledged after the new epoch was stored", lateAcked)
	}
	var old []int64
	rows, err := dbA.Query("SELECT id FROM d.t WHERE w = 'old' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		old = append(old, id)
	}
	_ = rows.Close()
	if !reflect.DeepEqual(old, acked) {
		t.Errorf("old writer's rows %v, acknowledged %v", old, acked)
	}
	got, ok, err := newW.LoadCheckpoint(ctx, "fence", "s")
	if err != nil || !ok || got.Epoch != 2 || got.Pos.Offset != 1_000_020 {
		t.Fatalf("final checkpoint %+v %v %v", got, ok, err)
	}
	t.Logf("old writer applied %d batches before being fenced", len(acked))
}

// blocker holds a row lock in a transaction of its own until released.
type blocker struct {
	tx *sql.Tx
}

func lockRow(t *testing.T, db *sql.DB, query string, args ...any) *blocker {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
	b := &blocker{tx: tx}
	t.Cleanup(b.release)
	return b
}

func (b *blocker) release() { _ = b.tx.Rollback() }

// waitQuery waits until a statement starting with prefix is running and
// returns its connection id.
func waitQuery(t *testing.T, db *sql.DB, prefix string) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var id int64
		err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT(?, '%') LIMIT 1", prefix).Scan(&id)
		if err == nil {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no running statement like %q", prefix)
	return 0
}

// TestRetryable checks which failures are marked retryable, and that none
// leaves anything applied.
func TestRetryable(t *testing.T) {
	m := server(t, 20)
	db := openDB(t, m, nil)
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("v", "varchar(8)", true),
	}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	exec(t, db, "INSERT INTO d.t VALUES (1, 'one'), (2, 'two')")
	initial := [][]any{{int64(1), "one"}, {int64(2), "two"}}
	blocked := &dmworker.Batch{Changes: []dmworker.Change{
		ins(tbl, int64(3), "three"),
		upd(tbl, r(int64(1), "one"), r(int64(1), "uno")),
	}}
	unchanged := func(what string) {
		t.Helper()
		got := readRows(t, db, "d", "t")
		sinktest.SortRows(got)
		if !reflect.DeepEqual(got, initial) {
			t.Fatalf("%s: rows %v, want %v", what, got, initial)
		}
	}
	// runBlocked applies the blocked batch while row 1 is locked, does
	// act once the batch waits on the lock, and returns Apply's error.
	runBlocked := func(s *mysqlsink.Sink, ctx context.Context, act func(connID int64)) error {
		t.Helper()
		b := lockRow(t, db, "SELECT * FROM d.t WHERE id = 1 FOR UPDATE")
		defer b.release()
		errc := make(chan error, 1)
		go func() { errc <- s.Apply(ctx, blocked) }()
		id := waitQuery(t, db, "UPDATE `d`.`t`")
		act(id)
		return <-errc
	}
	wantErr := func(what string, err error, retryable bool) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if dmworker.IsRetryable(err) != retryable {
			t.Errorf("%s: retryable %v, want %v: %v", what, dmworker.IsRetryable(err), retryable, err)
		}
		var e *mysqlsink.Error
		if !errors.As(err, &e) {
			t.Errorf("%s: not a *mysqlsink.Error: %v", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
	s := newSink(t, db)

	t.Run("connection killed", func(t *testing.T) {
		err := runBlocked(s, t.Context(), func(id int64) { exec(t, db, fmt.Sprintf("KILL CONNECTION %d", id)) })
		wantErr("KILL CONNECTION", err, true)
		unchanged("after KILL CONNECTION")
	})
	t.Run("query killed", func(t *testing.T) {
		err := runBlocked(s, t.Context(), func(id int64) { exec(t, db, fmt.Sprintf("KILL QUERY %d", id)) })
		wantErr("KILL QUERY", err, true)
		unchanged("after KILL QUERY")
	})
	t.Run("lock wait timeout", func(t *testing.T) {
		short := newSink(t, openDB(t, m, func(c *mysql.Config) {
			c.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
		}))
		err := runBlocked(short, t.Context(), func(int64) {})
		wantErr("lock wait timeout", err, true)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1205 {
			t.Errorf("want error 1205, got %v", err)
		}
		unchanged("after a lock wait timeout")
	})
	t.Run("deadlock", func(t *testing.T) {
		// The other transaction has written more, so InnoDB picks the
		// sink's as the victim.
		exec(t, db, "CREATE TABLE IF NOT EXISTS d.heavy (id INT PRIMARY KEY)")
		exec(t, db, "INSERT INTO d.heavy SELECT seq FROM d.seq_1_to_500")
		b := lockRow(t, db, "DELETE FROM d.heavy")
		if _, err := b.tx.Exec("SELECT * FROM d.t WHERE id = 2 FOR UPDATE"); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			errc <- s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{
				upd(tbl, r(int64(1), "one"), r(int64(1), "uno")),
				upd(tbl, r(int64(2), "two"), r(int64(2), "dos")),
			}})
		}()
		// Wait for the second update to wait on the lock, then close the
		// cycle.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS").Scan(&n)
			if n > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, lockErr := b.tx.Exec("SELECT * FROM d.t WHERE id = 1 FOR UPDATE")
		err := <-errc
		b.release()
		if lockErr != nil {
			t.Fatalf("InnoDB chose the heavier transaction as the deadlock victim: %v", lockErr)
		}
		wantErr("deadlock", err, true)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1213 {
			t.Errorf("want error 1213, got %v", err)
		}
		unchanged("after a deadlock")
	})
	t.Run("cancelled while blocked", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		err := runBlocked(s, ctx, func(int64) { cancel() })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error does not wrap context.Canceled: %v", err)
		}
		wantErr("cancelled", err, false)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("cancelled Apply returned after %v", d)
		}
		unchanged("after a cancelled Apply")
	})
	t.Run("not retryable", func(t *testing.T) {
		err := s.ExecDDL(t.Context(), &dmworker.DDL{Schema: "d", Query: "CREATE TABLEX nonsense"})
		wantErr("syntax error", err, false)
		var e *mysqlsink.Error
		if errors.As(err, &e) && (e.Op != "ddl" || e.Statement != "CREATE TABLEX nonsense") {
			t.Errorf("error fields: %+v", e)
		}
		err = s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3), "x"), ins(tbl, int64(1), "dup")}})
		wantErr("duplicate key", err, false)
		if errors.As(err, &e) && (e.Op != "insert" || e.Table != "d.t" || !strings.HasPrefix(e.Statement, "INSERT INTO `d`.`t`")) {
			t.Errorf("error fields: %+v", e)
		}
		missing := &dmworker.Table{Schema: "d", Name: "missing", Columns: tbl.Columns, PrimaryKey: []int{0}}
		err = s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3), "x"), ins(missing, int64(1), "x")}})
		wantErr("missing table", err, false)
		unchanged("after failed batches")
	})
	t.Run("server down", func(t *testing.T) {
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3), "x")}})
		wantErr("server down", err, true)
		_, _, err = s.LoadCheckpoint(ctx, "t", "s")
		wantErr("server down, load checkpoint", err, true)
		if err := m.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		unchanged("after a restart")
		apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3), "three")}})
		exec(t, db, "DELETE FROM d.t WHERE id = 3")
	})
}

// TestCommitBoundedByContext holds Apply's COMMIT on the server (another
// session's FLUSH TABLES WITH READ LOCK, taken once the batch's statements
// ran): Apply returns when its context ends, with the outcome unknown, instead of waiting for the server's answer as
// database/sql's Commit does (a connection gone half-open during a commit
// held the syncer past WithSinkTimeout for ever).
func TestCommitBoundedByContext(t *testing.T) {
	m := server(t, 22)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{col("id", "bigint(20)", false)}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	lock, err := openDB(t, m, nil).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	mysqlsink.SetCommit(s, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := lock.ExecContext(context.Background(), "FLUSH TABLES WITH READ LOCK"); err != nil {
			return err
		}
		return mysqlsink.CommitTx(ctx, tx)
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1))}}) }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_, _ = lock.ExecContext(context.Background(), "UNLOCK TABLES")
		<-done
		t.Fatal("Apply's commit waited for the server long past its context's end")
	}
	if _, uerr := lock.ExecContext(context.Background(), "UNLOCK TABLES"); uerr != nil {
		t.Fatal(uerr)
	}
	// (Not retryable by itself: its caller's context ended; the syncer's
	// bound makes it a retryable ErrSinkTimeout.)
	if !errors.Is(err, mysqlsink.ErrCommitUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply with its commit held past its context: %v; want ErrCommitUnknown", err)
	}
	// The sink works on: the batch applied again in safe mode.
	mysqlsink.SetCommit(s, nil)
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1))}, SafeMode: true})
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM d.t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after the replay: %d, %v", n, err)
	}
}

// TestCommitLost checks what Apply says when the connection breaks during
// the commit.
func TestCommitLost(t *testing.T) {
	m := server(t, 21)
	db := openDB(t, m, nil)
	db.SetMaxOpenConns(1) // nothing may need a second connection
	s := newSink(t, db)
	exec(t, db, "CREATE DATABASE d")
	tbl := &dmworker.Table{Schema: "d", Name: "t", Columns: []dmworker.Column{col("id", "bigint(20)", false)}, PrimaryKey: []int{0}}
	createTable(t, db, tbl)
	cp := func(off int) *dmworker.Checkpoint {
		return &dmworker.Checkpoint{Task: "lost", Source: "s", Epoch: 1, Pos: mustPos(t, fmt.Sprintf("mysql-bin.000001:%d", off))}
	}
	apply(t, s, &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1))}, Checkpoint: cp(100)})
	count := func() int {
		var n int
		_ = db.QueryRow("SELECT COUNT(*) FROM d.t").Scan(&n)
		return n
	}

	// Committed, acknowledgement lost: the checkpoint read back says so.
	mysqlsink.SetCommit(s, func(_ context.Context, tx *sql.Tx) error {
		if err := tx.Commit(); err != nil {
			return err
		}
		return mysql.ErrInvalidConn
	})
	if err := s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(2))}, Checkpoint: cp(200)}); err != nil {
		t.Fatalf("committed batch: %v", err)
	}
	if count() != 2 {
		t.Fatal("row 2 missing")
	}

	// Not committed: retryable, and known not to be applied.
	mysqlsink.SetCommit(s, func(_ context.Context, tx *sql.Tx) error {
		_ = tx.Rollback()
		return mysql.ErrInvalidConn
	})
	err := s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3))}, Checkpoint: cp(300)})
	if !dmworker.IsRetryable(err) || errors.Is(err, mysqlsink.ErrCommitUnknown) {
		t.Fatalf("rolled-back batch: %v; want retryable, not ErrCommitUnknown", err)
	}
	// Without a checkpoint there is nothing to read back.
	err = s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3))}})
	if !dmworker.IsRetryable(err) || !errors.Is(err, mysqlsink.ErrCommitUnknown) {
		t.Fatalf("batch without checkpoint: %v; want retryable ErrCommitUnknown", err)
	}
	if count() != 2 {
		t.Fatal("rolled-back rows present")
	}

	// A DDL with its checkpoint, on a pool of one connection.
	d := &dmworker.DDL{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD COLUMN x INT", Checkpoint: cp(400)}
	if err := s.ExecDDL(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.LoadCheckpoint(t.Context(), "lost", "s")
	if err != nil || !ok || got.Pos.Offset != 400 {
		t.Fatalf("checkpoint after the DDL: %+v %v %v", got, ok, err)
	}
}
