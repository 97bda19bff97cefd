package dmworker_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	exec := fillTypeFamilies(t, updb)
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
		sameRows(t, "tf."+tb.Name, bySyncer.Rows("tf", tb.Name), bySnapshot.Rows("tf", tb.Name))
	}
	if !st.Done || st.Stage != "Done" || len(st.Tables) != len(typeFamilyTables) || st.Rows == 0 || !st.Pos.Equal(pos) {
		t.Fatalf("status %+v", st)
	}
	// The checkpoint left for a syncer: at the point, with the schema, no
	// progress.
	cp, ok, err := bySnapshot.LoadCheckpoint(t.Context(), cfg.Task, cfg.Source)
	if cfg.Source == "" {
		cp, ok, err = bySnapshot.LoadCheckpoint(t.Context(), cfg.Task, cfg.Upstream.SourceName())
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
	"CREATE TABLE shapes.nopk (a INT, b VARCHAR(20), KEY (b))",
	"CREATE TABLE shapes.empty (id INT PRIMARY KEY, v TEXT)",
	"CREATE TABLE shapes.empty_nopk (a INT)",
	"CREATE TABLE shapes.composite (a INT, b VARCHAR(20), c DATETIME(6), v DOUBLE, PRIMARY KEY (a, b, c), KEY (v), KEY cb (c, b))",
	"CREATE TABLE shapes.uniq (u VARCHAR(30) NOT NULL, n INT, UNIQUE KEY (u))",
	"CREATE TABLE shapes.deckey (d DECIMAL(30,10) PRIMARY KEY, v INT)",
	"CREATE TABLE shapes.binkey (k BINARY(4) PRIMARY KEY, v INT)",
	"CREATE TABLE shapes.ubig (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(10))",
	"CREATE TABLE shapes.neg (id INT PRIMARY KEY, v INT, KEY (v))",
	"CREATE TABLE shapes.blobs (id INT PRIMARY KEY, a LONGBLOB, b MEDIUMTEXT, c VARBINARY(100), KEY bk (b(10), a(5)) COMMENT 'a, b')",
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
// every row and chunk. One table exists downstream beforehand holding other
// values under some of the keys: the copy's plain inserts meet them, and
// the batches go again in safe mode.
func TestSnapshotTableShapes(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 351})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 352})
	updb, downdb := up.DB(t), down.DB(t)
	fillShapes(t, updb)
	mustExec(t, downdb, "CREATE DATABASE copy")
	mustExec(t, downdb, "CREATE TABLE copy.neg (id INT PRIMARY KEY, v INT)")
	mustExec(t, downdb, "INSERT INTO copy.neg VALUES (-100, -1), (-2, -1), (103, -1)")
	// The user's own table, without the upstream's secondary keys, whose
	// creation an event filter skips: the copy leaves its indexes alone.
	mustExec(t, downdb, "CREATE TABLE copy.composite (a INT, b VARCHAR(20), c DATETIME(6), v DOUBLE, PRIMARY KEY (a, b, c))")
	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dmworker.SyncerConfig{Task: "shapes", Upstream: upstreamOf(up),
		Routes:       []dmworker.RouteRule{{SchemaPattern: "shapes", TargetSchema: "copy"}},
		Filter:       dmworker.BlockAllowList{IgnoreTables: []dmworker.TablePattern{{Schema: "shapes", Name: "skipme"}}},
		EventFilters: []dmworker.EventFilterRule{{SchemaPattern: "shapes", TablePattern: "composite", Events: []string{"create table"}, Action: "Ignore"}}}
	_, st := runSnapshot(t, cfg, dmworker.SnapshotConfig{Concurrency: 3, ChunkRows: 7, BatchRows: 5}, concurrentSink{sink}, dmworker.SinkStoreForTest(sink))
	for _, n := range shapeNames {
		checkEqual(t, updb, downdb, "shapes."+n, "copy."+n)
		if n != "composite" {
			sameDefinition(t, updb, downdb, "shapes", "copy", n)
		}
	}
	var name, def string
	if err := downdb.QueryRow("SHOW CREATE TABLE copy.composite").Scan(&name, &def); err != nil || strings.Contains(def, "KEY `v`") {
		t.Fatalf("the user's table got the upstream's index (%v):\n%s", err, def)
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

// sysbenchPrepare creates sbtest.sbtest1..tables of size rows upstream.
func sysbench(t *testing.T, m *testserver.MariaDB, tables, size int, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("sysbench")
	if err != nil {
		if testserver.Required() {
			t.Fatalf("sysbench not found (apt-get install sysbench, or make test): %v", err)
		}
		t.Skip("sysbench not found: apt-get install sysbench, or run make test")
	}
	base := []string{"--db-driver=mysql", "--mysql-host=127.0.0.1", fmt.Sprintf("--mysql-port=%d", m.Port),
		"--mysql-user=" + m.User, "--mysql-password=" + m.Password, "--mysql-db=sbtest",
		fmt.Sprintf("--tables=%d", tables), fmt.Sprintf("--table-size=%d", size)}
	return exec.Command(bin, append(base, args...)...)
}

// TestSnapshotAllModeUnderWrites is mode all with sysbench writing all the
// time: the snapshot copies the tables at one point while writes go on, the
// syncer takes over from that point, and once the writes stop and the
// syncer caught up, every table downstream equals the upstream's.
func TestSnapshotAllModeUnderWrites(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 353})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 354})
	updb, downdb := up.DB(t), down.DB(t)
	mustExec(t, updb, "CREATE DATABASE sbtest")
	const tables = 4
	if out, err := sysbench(t, up, tables, 3000, "oltp_write_only", "prepare").CombinedOutput(); err != nil {
		t.Fatalf("sysbench prepare: %v\n%s", err, out)
	}
	before := upstreamPos(t, updb)
	run := sysbench(t, up, tables, 3000, "oltp_write_only", "--threads=2", "--time=8", "--events=0", "run")
	var out strings.Builder
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan struct{})
	var runErr error
	go func() { runErr = run.Wait(); close(runDone) }()
	t.Cleanup(func() {
		_ = run.Process.Kill()
		<-runDone
	})
	waitUntil(t, "sysbench to write", func() bool { return upstreamPos(t, updb).Compare(before) > 0 })

	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dmworker.SyncerConfig{Task: "all", Upstream: upstreamOf(up)}
	// IndexesFirst: the tables are created whole (the other tests cover
	// indexes added after the rows).
	pos, st := runSnapshot(t, cfg, dmworker.SnapshotConfig{Concurrency: 4, ChunkRows: 500, BatchRows: 200, IndexesFirst: true}, concurrentSink{sink}, dmworker.SinkStoreForTest(sink))
	after := upstreamPos(t, updb)
	if pos.Compare(before) <= 0 || after.Compare(pos) <= 0 {
		t.Fatalf("the snapshot's point %s is not between writes (%s before, %s after)", pos, before, after)
	}
	t.Logf("snapshot at %s by %s, commits blocked %s, %d rows", pos, st.Method, st.Blocked, st.Rows)

	s, err := dmworker.NewSyncer(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	syncer := runSyncer(t, s)
	if st := s.Status(); !st.Checkpoint.Equal(pos) && st.Checkpoint.Compare(pos) < 0 {
		t.Fatalf("the syncer starts at %s, before the snapshot's %s", st.Checkpoint, pos)
	}
	select {
	case <-runDone:
		if runErr != nil {
			t.Fatalf("sysbench run: %v\n%s", runErr, out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("sysbench did not end")
	}
	waitSynced(t, syncer, updb)
	for i := 1; i <= tables; i++ {
		tbl := fmt.Sprintf("sbtest.sbtest%d", i)
		checkEqual(t, updb, downdb, tbl, tbl)
		sameDefinition(t, updb, downdb, "sbtest", "sbtest", fmt.Sprintf("sbtest%d", i))
	}
}

// snapshotChildEnv makes the test binary run a snapshot instead of the
// tests: "task|upstream user:pass@host:port|downstream user:pass@host:port|N".
// After N sink calls it prints "HALFWAY" and blocks every further call, to
// be killed.
const snapshotChildEnv = "DMWORKER_TEST_SNAPSHOT_CHILD"

func init() {
	if spec := os.Getenv(snapshotChildEnv); spec != "" {
		os.Exit(snapshotChild(spec))
	}
}

// blockingSink applies after calls, then blocks.
type blockingSink struct {
	concurrentSink
	after int64
	n     atomic.Int64
	once  sync.Once
}

func (b *blockingSink) Apply(ctx context.Context, batch *dmworker.Batch) error {
	if b.n.Add(1) > b.after {
		b.once.Do(func() { fmt.Println("HALFWAY") })
		<-ctx.Done()
		return ctx.Err()
	}
	return b.concurrentSink.Apply(ctx, batch)
}

// ApplyBulk counts and blocks as Apply does: the copy's batches come
// through it.
func (b *blockingSink) ApplyBulk(ctx context.Context, batch *dmworker.Batch) error {
	if b.n.Add(1) > b.after {
		b.once.Do(func() { fmt.Println("HALFWAY") })
		<-ctx.Done()
		return ctx.Err()
	}
	return b.concurrentSink.ApplyBulk(ctx, batch)
}

func snapshotChild(spec string) int {
	parts := strings.SplitN(spec, "|", 4)
	up, err := streamer.ParseUpstream(parts[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := childDB(parts[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	after, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sink, err := mysqlsink.New(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	u, err := dmworker.NewSnapshotUnitForTest(dmworker.SyncerConfig{Task: parts[0], Upstream: up},
		dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 1000, BatchRows: 250},
		&blockingSink{concurrentSink: concurrentSink{sink}, after: after}, dmworker.SinkStoreForTest(sink), 0, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := u.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// writeLoad changes rows of the sbtest tables and of app.keyed until stop
// is closed.
func writeLoad(t *testing.T, db *sql.DB, tables int, seed uint64, stop <-chan struct{}) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	for {
		select {
		case <-stop:
			return
		default:
		}
		tbl := fmt.Sprintf("sbtest.sbtest%d", 1+rnd.IntN(tables))
		id := 1 + rnd.IntN(6000)
		var err error
		switch rnd.IntN(4) {
		case 0:
			_, err = db.Exec("UPDATE "+tbl+" SET k = k + 1, c = ? WHERE id = ?", fmt.Sprintf("upd-%d", rnd.IntN(1000)), id)
		case 1:
			_, err = db.Exec("DELETE FROM "+tbl+" WHERE id = ?", id)
		case 2:
			_, err = db.Exec("INSERT INTO "+tbl+" (id, k, c, pad) VALUES (?, ?, 'ins', 'pad') ON DUPLICATE KEY UPDATE pad = 'dup'", id, rnd.IntN(100))
		case 3:
			_, err = db.Exec("UPDATE app.keyed SET v = v + 1 WHERE a = ? AND b = ?", rnd.IntN(30), fmt.Sprintf("b%d", rnd.IntN(50)))
		}
		if err != nil {
			t.Errorf("write load: %v", err)
			return
		}
	}
}

// TestSnapshotKilledAndResumed kills a snapshot process with SIGKILL half
// way through its copy while writes go on, resumes it in this process,
// then runs the syncer from its checkpoint: every table ends equal to the
// upstream's, the table without a key included (no row copied twice).
func TestSnapshotKilledAndResumed(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 355})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 356})
	updb, downdb := up.DB(t), down.DB(t)
	mustExec(t, updb, "CREATE DATABASE sbtest")
	const tables = 3
	if out, err := sysbench(t, up, tables, 5000, "oltp_write_only", "prepare").CombinedOutput(); err != nil {
		t.Fatalf("sysbench prepare: %v\n%s", err, out)
	}
	mustExec(t, updb, "CREATE DATABASE app")
	mustExec(t, updb, "CREATE DATABASE seq") // for the sequence engine's tables
	mustExec(t, updb, "CREATE TABLE app.nokey (a INT, b VARCHAR(20))")
	mustExec(t, updb, "INSERT INTO app.nokey SELECT seq % 100, CONCAT('r', seq % 300) FROM seq.seq_1_to_4000")
	mustExec(t, updb, "CREATE TABLE app.keyed (a INT, b VARCHAR(20), v BIGINT, PRIMARY KEY (a, b))")
	mustExec(t, updb, "INSERT INTO app.keyed SELECT s1.seq, CONCAT('b', s2.seq), 0 FROM seq.seq_0_to_29 s1, seq.seq_0_to_49 s2")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { writeLoad(t, up.DB(t), tables, 355, stop) })
	stopWrites := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWrites)

	const task = "killed"
	spec := fmt.Sprintf("%s|%s:%s@%s|%s:%s@%s|%d", task, up.User, up.Password, up.Addr(), down.User, down.Password, down.Addr(), 14)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), snapshotChildEnv+"="+spec)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	halfway := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "HALFWAY" {
				halfway <- true
				return
			}
		}
		halfway <- false
	}()
	select {
	case ok := <-halfway:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("the snapshot child ended before half way: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the snapshot child did not get half way: %s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("snapshot child ended on its own (%v): %s", err, stderr.String())
	}

	// Killed half way: some rows are there, not all of the table without a
	// key (which the resumed copy must empty first).
	var copied, nokey int
	if err := downdb.QueryRow("SELECT (SELECT COUNT(*) FROM sbtest.sbtest1) + (SELECT COUNT(*) FROM sbtest.sbtest2) + "+
		"(SELECT COUNT(*) FROM sbtest.sbtest3) + (SELECT COUNT(*) FROM app.keyed) + (SELECT COUNT(*) FROM app.nokey), "+
		"(SELECT COUNT(*) FROM app.nokey)").Scan(&copied, &nokey); err != nil {
		t.Fatal(err)
	}
	if copied == 0 || nokey >= 4000 {
		t.Fatalf("after the kill: %d rows copied (%d of app.nokey's 4000), want some and not all of app.nokey", copied, nokey)
	}
	t.Logf("killed with %d rows copied, %d of app.nokey", copied, nokey)
	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dmworker.SyncerConfig{Task: task, Upstream: upstreamOf(up)}
	cp, ok, err := sink.LoadCheckpoint(context.Background(), task, cfg.Upstream.SourceName())
	if err != nil || !ok || len(cp.Snapshot) == 0 {
		t.Fatalf("after the kill: checkpoint %v %v, progress %q", ok, err, cp.Snapshot)
	}
	// Writes go on between the kill and the resumption.
	waitUntil(t, "writes after the kill", func() bool { return upstreamPos(t, updb).Compare(cp.Pos) > 0 })
	u, err := dmworker.NewSnapshotUnitForTest(cfg, dmworker.SnapshotConfig{Concurrency: 3, ChunkRows: 1000, BatchRows: 250},
		sink, dmworker.SinkStoreForTest(sink), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	pos, err := u.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := u.Status()
	if !pos.Equal(cp.Pos) || st.SafeUntil.Compare(pos) <= 0 {
		t.Fatalf("resumed at %s (safe until %s), the first point was %s", pos, st.SafeUntil, cp.Pos)
	}
	done, _, err := sink.LoadCheckpoint(context.Background(), task, cfg.Upstream.SourceName())
	if err != nil || done.Snapshot != nil || !done.SafeUntil.Equal(st.SafeUntil) {
		t.Fatalf("final checkpoint %+v, %v", done, err)
	}

	s, err := dmworker.NewSyncer(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	syncer := runSyncer(t, s)
	stopWrites()
	waitSynced(t, syncer, updb)
	for i := 1; i <= tables; i++ {
		tbl := fmt.Sprintf("sbtest.sbtest%d", i)
		checkEqual(t, updb, downdb, tbl, tbl)
		// The secondary index deferred by the first run is there.
		sameDefinition(t, updb, downdb, "sbtest", "sbtest", fmt.Sprintf("sbtest%d", i))
	}
	checkEqual(t, updb, downdb, "app.nokey", "app.nokey")
	checkEqual(t, updb, downdb, "app.keyed", "app.keyed")
}

// cancellingSink records every batch and cancels the run's context after a
// number of them.
type cancellingSink struct {
	*sinktest.MemSink
	mu      sync.Mutex
	after   int
	cancel  context.CancelFunc
	batches []*dmworker.Batch
}

func (c *cancellingSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	c.mu.Lock()
	c.batches = append(c.batches, b)
	n := len(c.batches)
	c.mu.Unlock()
	if err := c.MemSink.Apply(ctx, b); err != nil {
		return err
	}
	if n == c.after {
		c.cancel()
	}
	return nil
}

// TestSnapshotCancelledAndResumed stops a snapshot (context cancelled)
// after a random number of batches (a table without a key needs a run long
// enough for all of it) and resumes it until it finishes: the copy equals an
// uninterrupted one row for row, duplicates of the table without a key
// included; every batch was fenced with the unit's epoch and carried no
// checkpoint; a checkpoint from a newer epoch stops the unit.
func TestSnapshotCancelledAndResumed(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 357})
	updb := up.DB(t)
	fillShapes(t, updb)
	cfg := dmworker.SyncerConfig{Task: "cancel", Upstream: upstreamOf(up)}
	sc := dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 4, BatchRows: 3}
	want := sinktest.NewMemSink()
	runSnapshot(t, cfg, sc, want, &dmworker.MemoryCheckpointStore{})

	got := &cancellingSink{MemSink: sinktest.NewMemSink()}
	store := &dmworker.MemoryCheckpointStore{}
	source := cfg.Upstream.SourceName()
	rnd := rand.New(rand.NewPCG(357, 1))
	var first streamer.Position
	runs := 0
	for ; runs < 100; runs++ {
		ctx, cancel := context.WithCancel(context.Background())
		got.mu.Lock()
		got.after, got.cancel = len(got.batches)+1+rnd.IntN(40), cancel
		got.mu.Unlock()
		u, err := dmworker.NewSnapshotUnitForTest(cfg, sc, got, store, 7, nil)
		if err != nil {
			t.Fatal(err)
		}
		pos, err := u.Run(ctx)
		cancel()
		if err == nil {
			if !pos.Equal(first) {
				t.Fatalf("finished at %s, began at %s", pos, first)
			}
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: %v", runs, err)
		}
		cp, ok, _ := store.Load(context.Background(), cfg.Task, source)
		if !ok {
			continue // cancelled before the first save
		}
		if len(cp.Snapshot) == 0 || cp.Epoch != 7 {
			t.Fatalf("run %d: stopped with checkpoint %+v", runs, cp)
		}
		if first.IsZero() {
			first = cp.Pos
		} else if !cp.Pos.Equal(first) {
			t.Fatalf("run %d: the checkpoint moved from %s to %s", runs, first, cp.Pos)
		}
	}
	t.Logf("finished after %d interrupted runs", runs)
	if runs < 2 || runs == 100 {
		t.Fatalf("%d runs: the copy was never interrupted, or never finished", runs)
	}
	for _, n := range shapeNames {
		if strings.HasPrefix(n, "empty") {
			if rows := got.Rows("shapes", n); len(rows) != 0 {
				t.Fatalf("shapes.%s: %d rows, want none", n, len(rows))
			}
			continue
		}
		sameRows(t, "shapes."+n, want.Rows("shapes", n), got.Rows("shapes", n))
	}
	for _, b := range got.batches {
		if b.Checkpoint != nil || b.Fence != (dmworker.Fence{Task: cfg.Task, Source: source, Epoch: 7}) {
			t.Fatalf("batch fence %+v checkpoint %v", b.Fence, b.Checkpoint)
		}
	}

	// A newer epoch has written: this unit must not.
	cp, _, _ := store.Load(context.Background(), cfg.Task, source)
	cp.Epoch, cp.Snapshot = 8, []byte(`{"version":1}`)
	if err := store.Save(context.Background(), cp); err != nil {
		t.Fatal(err)
	}
	u, err := dmworker.NewSnapshotUnitForTest(cfg, sc, got, store, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	var se *dmworker.SnapshotError
	if _, err := u.Run(context.Background()); !errors.Is(err, dmworker.ErrStaleEpoch) || !errors.As(err, &se) || se.Task != cfg.Task {
		t.Fatalf("stale epoch: %v", err)
	}
}

// TestSnapshotResumeRefusesChangedTable: a table altered between a stopped
// copy and its resumption cannot be finished (its first chunks hold the old
// columns): the unit says so with ErrSnapshotSchemaChanged.
func TestSnapshotResumeRefusesChangedTable(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 358})
	updb := up.DB(t)
	mustExec(t, updb, "CREATE DATABASE app")
	mustExec(t, updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
	mustExec(t, updb, "CREATE DATABASE seq")
	mustExec(t, updb, "INSERT INTO app.t SELECT seq, seq FROM seq.seq_1_to_100")
	mustExec(t, updb, "ANALYZE TABLE app.t")
	cfg := dmworker.SyncerConfig{Task: "ddl", Upstream: upstreamOf(up)}
	sc := dmworker.SnapshotConfig{Concurrency: 1, ChunkRows: 10, BatchRows: 5}
	store := &dmworker.MemoryCheckpointStore{}
	ctx, cancel := context.WithCancel(context.Background())
	sink := &cancellingSink{MemSink: sinktest.NewMemSink(), after: 5, cancel: cancel}
	u, err := dmworker.NewSnapshotUnitForTest(cfg, sc, sink, store, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	mustExec(t, updb, "ALTER TABLE app.t ADD COLUMN w INT")
	u, err = dmworker.NewSnapshotUnitForTest(cfg, sc, sink, store, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Run(context.Background())
	var se *dmworker.SnapshotError
	if !errors.Is(err, dmworker.ErrSnapshotSchemaChanged) || !errors.As(err, &se) || se.Table != "app.t" || se.Pos.IsZero() {
		t.Fatalf("resumed after an ALTER: %v", err)
	}
}

// sameDefinition checks that a copied table has the upstream's definition,
// indexes included (the snapshot adds secondary indexes after the rows).
func sameDefinition(t *testing.T, up, down *sql.DB, upSchema, downSchema, name string) {
	t.Helper()
	def := func(db *sql.DB, schema string) string {
		t.Helper()
		var n, q string
		if err := db.QueryRow("SHOW CREATE TABLE "+quoteName(schema, name)).Scan(&n, &q); err != nil {
			t.Fatal(err)
		}
		return autoIncrement.ReplaceAllString(q, "")
	}
	if a, b := def(up, upSchema), def(down, downSchema); a != b {
		t.Fatalf("%s.%s downstream:\n%s\nupstream:\n%s", downSchema, name, b, a)
	}
}

var autoIncrement = regexp.MustCompile(` AUTO_INCREMENT=[0-9]+`)
