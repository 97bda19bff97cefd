package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// Server faults: the upstream or the downstream MariaDB itself killed with
// SIGKILL mid-workload and restarted on the same datadir (InnoDB and binlog
// crash recovery), while subtasks replicate. What the worker must show at
// the end: the downstream equal to the upstream by content, nothing lost
// and nothing applied twice (a table without a key shows a duplicate as an
// extra row).

// faultWriter runs a random mixed DML workload on the upstream from several
// goroutines, each with its own seeded rand. A statement that fails because
// the server went away is retried until the server is back (its effect is
// unknown then: the test compares content, not an expected set).
type faultWriter struct {
	db        *sql.DB
	committed atomic.Int64
	failed    atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
}

func faultSchema(t *testing.T, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS fw")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS fw.acc (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(200), u INT, UNIQUE KEY (u))")
	// No key: a row applied twice downstream is a row too many.
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS fw.nokey (a INT, b VARCHAR(40))")
}

// faultCopySchema makes faultWriter's tables and fw.big, 50,000 rows for a
// snapshot copy long enough to be hit mid-way; with nokey, 6,000 rows of
// duplicates in fw.nokey too.
func faultCopySchema(t *testing.T, db *sql.DB, nokey bool) {
	t.Helper()
	faultSchema(t, db)
	mustExec(t, db, "CREATE DATABASE seq")
	mustExec(t, db, "CREATE TABLE fw.big (id INT PRIMARY KEY, pad VARCHAR(200))")
	mustExec(t, db, "INSERT INTO fw.big SELECT seq, REPEAT(CHAR(65 + seq % 26), seq % 200) FROM seq.seq_1_to_50000")
	if nokey {
		mustExec(t, db, "INSERT INTO fw.nokey SELECT seq % 50, CONCAT('pre-', seq) FROM seq.seq_1_to_6000")
	}
}

// faultProxy is a faultnet proxy in front of m, closed with the test.
func faultProxy(t *testing.T, m *testserver.MariaDB) *faultnet.Proxy {
	t.Helper()
	px, err := faultnet.New(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

// sinkVia is a mysqlsink writing to m through px, its sessions rolled back
// by the server 3s after their client goes silent.
func sinkVia(t *testing.T, m *testserver.MariaDB, px *faultnet.Proxy) *mysqlsink.Sink {
	t.Helper()
	cfg := m.Config("")
	cfg.Addr = px.Addr()
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	sink, err := mysqlsink.New(db, mysqlsink.WithSessionIdleTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// faultTables are the tables faultWriter writes.
var faultTables = []string{"fw.acc", "fw.nokey"}

func startFaultWriter(t *testing.T, db *sql.DB, seed uint64, writers int) *faultWriter {
	t.Helper()
	faultSchema(t, db)
	w := &faultWriter{db: db, stop: make(chan struct{})}
	for g := 0; g < writers; g++ {
		rnd := rand.New(rand.NewPCG(seed, uint64(g)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				if err := w.txn(rnd, g, i); err != nil {
					w.failed.Add(1)
					// The server is down or restarting: back off a little
					// (the next try is the wait; the pool redials).
					select {
					case <-w.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				w.committed.Add(1)
			}
		}()
	}
	t.Cleanup(w.Stop)
	return w
}

func (w *faultWriter) txn(rnd *rand.Rand, g, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for j := 0; j < 1+rnd.IntN(4); j++ {
		id := rnd.IntN(300)
		switch rnd.IntN(6) {
		case 0, 1:
			_, err = tx.Exec("INSERT INTO fw.acc (id, v, s, u) VALUES (?, ?, ?, NULL) ON DUPLICATE KEY UPDATE v = v + 1, s = VALUES(s)",
				id, rnd.IntN(1000), strings.Repeat(string(rune('a'+rnd.IntN(26))), rnd.IntN(150)))
		case 2:
			// The unique key moves between rows: a conflict a replay must not
			// turn into a lost or doubled row.
			_, err = tx.Exec("UPDATE fw.acc SET u = IF(u IS NULL, ?, NULL), v = v - 1 WHERE id = ?", rnd.IntN(1<<30), id)
		case 3:
			_, err = tx.Exec("DELETE FROM fw.acc WHERE id = ?", id)
		case 4:
			_, err = tx.Exec("INSERT INTO fw.nokey VALUES (?, ?)", rnd.IntN(50), fmt.Sprintf("g%d-%d-%d", g, i, j))
		case 5:
			_, err = tx.Exec("DELETE FROM fw.nokey WHERE a = ? LIMIT 2", rnd.IntN(50))
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// waitCommitted waits until n more transactions have committed.
func (w *faultWriter) waitCommitted(t *testing.T, n int64) {
	t.Helper()
	want := w.committed.Load() + n
	waitUntil(t, fmt.Sprintf("%d upstream commits", want), func() bool { return w.committed.Load() >= want })
}

func (w *faultWriter) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// TestUpstreamKilled kills the upstream MariaDB with SIGKILL at random
// moments of a concurrent workload and restarts it on the same datadir,
// while two subtasks replicate: one reading a relay (a SourceWorker with the
// relay on; the small max_binlog_size rotates files throughout) and one
// reading the upstream directly into a second downstream. Both must end
// equal to the upstream.
func TestUpstreamKilled(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 760, 761, testserver.MariaDBOptions{MaxBinlogSize: 32 << 10})
	down2 := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 762})
	down2db := down2.DB(t)

	up := upstreamOf(p.up)
	up.ServerID = 763
	src := dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}
	w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb), dmworker.WithSource(src), dmworker.WithRelayDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "relayed"}); err != nil {
		t.Fatal(err)
	}
	direct := upstreamOf(p.up)
	direct.ServerID = 764
	sink2, err := mysqlsink.New(down2db)
	if err != nil {
		t.Fatal(err)
	}
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "direct"}, direct, sink2,
		dmworker.WithAutoResume(50*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	relayed := taskStatus(w, "relayed")
	waitUntil(t, "both subtasks reading", func() bool {
		return relayed().Syncer.Read.Name != "" && st.Status().Syncer.Read.Name != ""
	})

	fw := startFaultWriter(t, p.updb, seed, 3)
	for round := 0; round < 3; round++ {
		n := int64(20 + rnd.IntN(200))
		fw.waitCommitted(t, n)
		t.Logf("round %d: upstream killed after %d more commits", round, n)
		if err := p.up.Kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := p.up.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: upstream back with binlogs %s", round, binlogState(t, p.updb))
	}
	fw.waitCommitted(t, 50)
	fw.Stop()
	t.Logf("%d transactions committed, %d failed by the faults", fw.committed.Load(), fw.failed.Load())

	waitSubTaskSynced(t, relayed, p)
	waitSubTaskSynced(t, st.Status, &syncPair{up: p.up, down: down2})
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
		checkEqual(t, p.updb, down2db, tbl, tbl)
	}
}

// TestDownstreamKilled kills the downstream MariaDB with SIGKILL at random
// moments while a subtask applies a concurrent workload (parallel syncer),
// and restarts it: the syncer retries, resumes from the checkpoint stored
// with the data (the same transaction), and ends equal to the upstream.
func TestDownstreamKilled(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 770, 771, testserver.MariaDBOptions{})
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "downkill", SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, upstreamOf(p.up), p.sink,
		dmworker.WithSinkRetry(time.Minute), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the subtask reading", func() bool { return st.Status().Syncer.Read.Name != "" })

	fw := startFaultWriter(t, p.updb, seed, 3)
	for round := 0; round < 3; round++ {
		n := int64(20 + rnd.IntN(200))
		fw.waitCommitted(t, n)
		t.Logf("round %d: downstream killed after %d more commits", round, n)
		if err := p.down.Kill(); err != nil {
			t.Fatal(err)
		}
		if rnd.IntN(2) == 0 {
			// Writes pile up while it is down.
			fw.waitCommitted(t, int64(rnd.IntN(100)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := p.down.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	fw.waitCommitted(t, 50)
	fw.Stop()
	t.Logf("%d transactions committed", fw.committed.Load())
	waitSubTaskSynced(t, st.Status, p)
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}

// binlogState is the server's binlog files and sizes and its GTID position,
// for the log of a fault schedule.
func binlogState(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query("SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var name, size string
		if err := rows.Scan(&name, &size); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s ", name, size)
	}
	var pos string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return b.String() + "gtid " + pos
}

// TestDownstreamHalfOpen freezes, at a random moment of a concurrent
// workload, every connection open to the downstream (half-open: no reset,
// no byte, as when a peer or middlebox vanishes), while new connections
// work. A sink call on a frozen connection must not hold the subtask up for
// ever without a word: it must end up equal to the upstream.
func TestDownstreamHalfOpen(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 780, 781, testserver.MariaDBOptions{})
	px := faultProxy(t, p.down)
	sink := sinkVia(t, p.down, px)
	logs := &logText{}
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "halfopen", SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, upstreamOf(p.up), sink,
		dmworker.WithLogger(slog.New(logs)), dmworker.WithSinkTimeout(2*time.Second), dmworker.WithAutoResume(100*time.Millisecond, time.Second, 10))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the subtask reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	fw := startFaultWriter(t, p.updb, seed, 3)
	n := int64(50 + rnd.IntN(200))
	fw.waitCommitted(t, n)
	t.Logf("downstream connections frozen after %d commits", n)
	px.StallOpen()
	frozen := time.Now()
	fw.waitCommitted(t, 100)
	fw.Stop()
	// Said loudly: the frozen call is abandoned with ErrSinkTimeout, in
	// the status (a retryable error, resumed) and the log.
	var seen dmworker.SubTaskStatus
	waitUntil(t, "the subtask resuming after ErrSinkTimeout", func() bool {
		seen = st.Status()
		return seen.Retries > 0 && errors.Is(seen.LastError, dmworker.ErrSinkTimeout) && dmworker.IsRetryable(seen.LastError)
	})
	t.Logf("%s after the freeze: %v", time.Since(frozen).Round(time.Millisecond), seen.LastError)
	if !strings.Contains(logs.String(), "sink call has no answer yet") || !strings.Contains(logs.String(), "sink call abandoned") {
		t.Fatalf("no WARN about the hung sink call; logs:\n%s", logs.String())
	}
	waitSubTaskSynced(t, st.Status, p)
	t.Logf("caught up %s after the freeze; status %+v", time.Since(frozen).Round(time.Millisecond), st.Status().Syncer)
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}

// TestNetworkFaults cuts (reset) and stalls (silent, both ways for a
// while, or half-open for good) the upstream and the downstream paths at
// random moments of a concurrent workload (seed logged), while a relay-backed
// subtask and a direct one replicate through them. Both must end equal to
// the upstream.
func TestNetworkFaults(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 800, 801, testserver.MariaDBOptions{MaxBinlogSize: 32 << 10})
	down2 := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 802})
	down2db := down2.DB(t)
	pu, pd, pd2 := faultProxy(t, p.up), faultProxy(t, p.down), faultProxy(t, down2)
	up := upstreamOf(p.up)
	up.Host, up.Port = "127.0.0.1", uint16(pu.Port())
	opts := []dmworker.SourceWorkerOption{
		dmworker.WithRemoteOptions(streamer.WithHeartbeat(200*time.Millisecond), streamer.WithReadTimeout(time.Second)),
		dmworker.WithSinkTimeout(2 * time.Second), dmworker.WithAutoResume(100*time.Millisecond, time.Second, 1000),
	}
	relayUp := up
	relayUp.ServerID = 803
	sink1 := sinkVia(t, p.down, pd)
	w, err := dmworker.NewSourceWorker("w", func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return sink1, nil
	},
		append(opts, dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: relayUp, EnableRelay: true}), dmworker.WithRelayDir(t.TempDir()))...)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "relayed", SyncerTuning: dmworker.SyncerTuning{Workers: 4}}); err != nil {
		t.Fatal(err)
	}
	directUp := up
	directUp.ServerID = 804
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "direct"}, directUp, sinkVia(t, down2, pd2),
		dmworker.WithRemoteOptions(streamer.WithHeartbeat(200*time.Millisecond), streamer.WithReadTimeout(time.Second)),
		dmworker.WithSinkTimeout(2*time.Second), dmworker.WithAutoResume(100*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	relayed := taskStatus(w, "relayed")
	waitUntil(t, "both subtasks reading", func() bool {
		return relayed().Syncer.Read.Name != "" && st.Status().Syncer.Read.Name != ""
	})

	fw := startFaultWriter(t, p.updb, seed, 3)
	paths := []struct {
		name string
		px   *faultnet.Proxy
	}{{"upstream", pu}, {"downstream", pd}, {"downstream2", pd2}}
	for round := range 8 {
		fw.waitCommitted(t, int64(20+rnd.IntN(150)))
		path := paths[rnd.IntN(len(paths))]
		switch rnd.IntN(3) {
		case 0:
			t.Logf("round %d: %s cut", round, path.name)
			path.px.CutAll()
		case 1:
			t.Logf("round %d: %s half-open", round, path.name)
			path.px.StallOpen()
		case 2:
			n := int64(20 + rnd.IntN(100))
			t.Logf("round %d: %s stalled for %d upstream commits", round, path.name, n)
			path.px.Stall(true)
			fw.waitCommitted(t, n)
			path.px.Stall(false)
		}
	}
	fw.waitCommitted(t, 50)
	fw.Stop()
	t.Logf("%d transactions committed", fw.committed.Load())
	waitSubTaskSynced(t, relayed, p)
	waitSubTaskSynced(t, st.Status, &syncPair{up: p.up, down: down2})
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
		checkEqual(t, p.updb, down2db, tbl, tbl)
	}
}

// faultSeed is the seed of a fault test's schedule and workload: the
// environment's DMWORKER_FAULT_SEED when set (to replay a failure), a new
// one otherwise. It is logged either way.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DMWORKER_FAULT_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("DMWORKER_FAULT_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay: DMWORKER_FAULT_SEED=%d)", seed, seed)
	return seed
}

// TestSnapshotDownstreamHalfOpen freezes every downstream connection in
// the middle of a snapshot copy (mode all): the copy must not hang on a
// frozen connection for ever; the subtask must end equal to the upstream.
func TestSnapshotDownstreamHalfOpen(t *testing.T) {
	seed := faultSeed(t)
	p := newPair(t, 820, 821, testserver.MariaDBOptions{})
	faultCopySchema(t, p.updb, true)
	px := faultProxy(t, p.down)
	sink := sinkVia(t, p.down, px)
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "snaphalfopen", Mode: dmworker.ModeAll,
		Snapshot: dmworker.SnapshotConfig{ChunkRows: 500, Concurrency: 2}}, upstreamOf(p.up), sink,
		dmworker.WithSinkTimeout(2*time.Second), dmworker.WithAutoResume(100*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the copy under way", func() bool { return countRowsIfAny(p.downdb, "fw.big") > 0 })
	px.StallOpen()
	t.Logf("downstream frozen with fw.big at %d rows", countRowsIfAny(p.downdb, "fw.big"))
	waitUntil(t, "the copy resuming after ErrSinkTimeout", func() bool {
		s := st.Status()
		return s.Retries > 0 && errors.Is(s.LastError, dmworker.ErrSinkTimeout)
	})
	fw := startFaultWriter(t, p.updb, seed, 2)
	fw.waitCommitted(t, 100)
	fw.Stop()
	waitSubTaskSynced(t, st.Status, p)
	for _, tbl := range append([]string{"fw.big"}, faultTables...) {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}

// TestSnapshotUpstreamKilled kills the upstream MariaDB with SIGKILL in the
// middle of a snapshot copy (mode all), with writes going on, and restarts
// it: the subtask must resume the copy (a new consistent snapshot where the
// old one cannot go on) and end equal to the upstream.
func TestSnapshotUpstreamKilled(t *testing.T) {
	seed := faultSeed(t)
	p := newPair(t, 830, 831, testserver.MariaDBOptions{})
	faultCopySchema(t, p.updb, true)
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "snapupkill", Mode: dmworker.ModeAll,
		Snapshot: dmworker.SnapshotConfig{ChunkRows: 500, Concurrency: 2}}, upstreamOf(p.up), p.sink,
		dmworker.WithAutoResume(100*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	fw := startFaultWriter(t, p.updb, seed, 2)
	waitUntil(t, "the copy under way", func() bool { return countRowsIfAny(p.downdb, "fw.big") > 0 })
	t.Logf("upstream killed with fw.big at %d rows downstream", countRowsIfAny(p.downdb, "fw.big"))
	if err := p.up.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err = p.up.Restart(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	fw.waitCommitted(t, 100)
	fw.Stop()
	waitSubTaskSynced(t, st.Status, p)
	for _, tbl := range append([]string{"fw.big"}, faultTables...) {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}

// TestSnapshotDownstreamKilled kills the downstream MariaDB with SIGKILL
// twice in the middle of a snapshot copy (mode all; a keyless table among
// the tables) and restarts it: the copy must resume, with no row lost or
// copied twice, and the subtask end equal to the upstream.
func TestSnapshotDownstreamKilled(t *testing.T) {
	seed := faultSeed(t)
	p := newPair(t, 840, 841, testserver.MariaDBOptions{})
	faultCopySchema(t, p.updb, false)
	mustExec(t, p.updb, "CREATE TABLE fw.bignokey (a INT, b VARCHAR(40))")
	mustExec(t, p.updb, "INSERT INTO fw.bignokey SELECT seq % 97, CONCAT('pre-', seq) FROM seq.seq_1_to_30000")
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "snapdownkill", Mode: dmworker.ModeAll,
		Snapshot: dmworker.SnapshotConfig{ChunkRows: 500, Concurrency: 2}}, upstreamOf(p.up), p.sink,
		dmworker.WithSinkRetry(time.Minute), dmworker.WithAutoResume(100*time.Millisecond, time.Second, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	fw := startFaultWriter(t, p.updb, seed, 2)
	for round, at := range []int{1, 20000} {
		waitUntil(t, "the copy under way", func() bool { return countRowsIfAny(p.downdb, "fw.big") >= at })
		t.Logf("round %d: downstream killed with fw.big at %d rows", round, countRowsIfAny(p.downdb, "fw.big"))
		if err := p.down.Kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := p.down.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	fw.waitCommitted(t, 100)
	fw.Stop()
	waitSubTaskSynced(t, st.Status, p)
	for _, tbl := range append([]string{"fw.big", "fw.bignokey"}, faultTables...) {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}
