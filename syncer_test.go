package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// syncPair is an upstream and a downstream MariaDB with a mysqlsink on the
// downstream.
type syncPair struct {
	up, down     *testserver.MariaDB
	updb, downdb *sql.DB
	sink         *mysqlsink.Sink
	workers      int // SyncerConfig.Workers of config
}

// workerCounts are the worker counts the syncer's correctness tests run
// with: the serial syncer and two parallel ones.
var workerCounts = []int{1, 4, 16}

// forWorkers runs f as a subtest for each of workerCounts.
func forWorkers(t *testing.T, f func(t *testing.T, workers int)) {
	for _, w := range workerCounts {
		t.Run(fmt.Sprintf("workers=%d", w), func(t *testing.T) { f(t, w) })
	}
}

func newSyncPair(t *testing.T, upOpts testserver.MariaDBOptions) *syncPair {
	t.Helper()
	p := &syncPair{up: testserver.StartMariaDB(t, upOpts), down: testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: upOpts.ServerID + 100})}
	p.updb, p.downdb = p.up.DB(t), p.down.DB(t)
	var err error
	if p.sink, err = mysqlsink.New(p.downdb); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *syncPair) config(task string) dmworker.SyncerConfig {
	return dmworker.SyncerConfig{Task: task, Upstream: upstreamOf(p.up), SyncerTuning: dmworker.SyncerTuning{Workers: p.workers}}
}

// syncRunner is a syncer running in a goroutine.
type syncRunner struct {
	s      *dmworker.Syncer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// runSyncer starts s.Run in a goroutine and waits until it has chosen its
// start position; Stop cancels it and returns its result.
func runSyncer(t *testing.T, s *dmworker.Syncer) *syncRunner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &syncRunner{s: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() { r.Stop() })
	waitUntil(t, "the syncer to start", func() bool {
		select {
		case <-r.done:
			t.Fatalf("syncer stopped at start: %v", r.err)
		default:
		}
		return s.Status().Read.Name != ""
	})
	return r
}

// Stop cancels Run and returns its result.
func (r *syncRunner) Stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// Wait waits for Run to return on its own.
func (r *syncRunner) Wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(2 * time.Minute):
		t.Fatal("the syncer did not stop")
		return nil
	}
}

// waitSynced waits until the syncer has checkpointed the upstream's current
// position.
func waitSynced(t *testing.T, r *syncRunner, db *sql.DB) {
	t.Helper()
	file, pos := masterPos(t, db)
	want := streamer.Position{Name: file, Offset: pos}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := r.s.Status()
		if st.Checkpoint.Compare(want) >= 0 {
			return
		}
		select {
		case <-r.done:
			t.Fatalf("syncer stopped: %v", r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncer at %s (read %s), upstream at %s", st.Checkpoint, st.Read, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tableRows returns a table's rows ordered by every column, as text.
func tableRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	out := queryRows(t, db, "SELECT * FROM "+table)
	sort.Strings(out)
	return out
}

// checkEqual compares tables upstream and downstream by content.
func checkEqual(t *testing.T, up, down *sql.DB, upTable, downTable string) {
	t.Helper()
	a, b := tableRows(t, up, upTable), tableRows(t, down, downTable)
	if len(a) != len(b) {
		t.Fatalf("%s has %d rows upstream, %s %d downstream; only upstream: %s; only downstream: %s",
			upTable, len(a), downTable, len(b), onlyIn(a, b), onlyIn(b, a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%s differs from %s at sorted row %d:\n up:   %s\n down: %s", upTable, downTable, i, a[i], b[i])
		}
	}
}

// onlyIn lists (up to 5 of) the rows of a that b lacks.
func onlyIn(a, b []string) string {
	have := make(map[string]int, len(b))
	for _, r := range b {
		have[r]++
	}
	var out []string
	for _, r := range a {
		if have[r] > 0 {
			have[r]--
			continue
		}
		if len(out) == 5 {
			out = append(out, "...")
			break
		}
		out = append(out, r)
	}
	return "[" + strings.Join(out, "; ") + "]"
}

// syncWorkload creates tables and runs a mixed workload on them, with DDL
// in the middle.
func syncWorkload(t *testing.T, db *sql.DB, rnd *rand.Rand, txns int) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS app")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS app.accounts (id INT PRIMARY KEY, owner VARCHAR(64) NOT NULL, balance DECIMAL(12,2), note TEXT, UNIQUE KEY (owner))")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS app.events (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, account INT, kind ENUM('open','deposit','withdraw','close'), at DATETIME(6), payload JSON)")
	for i := 0; i < txns; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 1+rnd.IntN(4); j++ {
			id := rnd.IntN(200)
			switch rnd.IntN(4) {
			case 0, 1:
				_, err = tx.Exec("INSERT INTO app.accounts (id, owner, balance, note) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE balance = balance + 1",
					id, fmt.Sprintf("owner-%d", id), float64(rnd.IntN(100000))/100, strings.Repeat("n", rnd.IntN(50)))
			case 2:
				_, err = tx.Exec("UPDATE app.accounts SET balance = balance - 1.25, note = CONCAT(IFNULL(note,''), 'x') WHERE id = ?", id)
			case 3:
				_, err = tx.Exec("DELETE FROM app.accounts WHERE id = ?", id)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO app.events (account, kind, at, payload) VALUES (?, ?, NOW(6), ?)",
				id, []string{"open", "deposit", "withdraw", "close"}[rnd.IntN(4)], fmt.Sprintf(`{"n": %d, "s": "é🥝"}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if i == txns/2 {
			mustExec(t, db, "ALTER TABLE app.accounts ADD COLUMN IF NOT EXISTS flags SET('a','b','c') DEFAULT 'a,c' AFTER owner")
		}
	}
}

func TestSyncerReplicatesWorkload(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 41, MaxBinlogSize: 64 << 10})
		p.workers = workers
		s, err := dmworker.NewSyncer(p.config("wl"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		rnd := rand.New(rand.NewPCG(41, 1))
		syncWorkload(t, p.updb, rnd, 300)
		waitSynced(t, run, p.updb)
		checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
		checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}

		// A restart continues from the checkpoint.
		syncWorkload(t, p.updb, rnd, 100)
		s2, err := dmworker.NewSyncer(p.config("wl"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		waitSynced(t, runSyncer(t, s2), p.updb)
		checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
		checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
	})
}

func TestSyncerUnsupportedDDLSkipAndReplace(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 42})
		p.workers = workers
		s, err := dmworker.NewSyncer(p.config("ddl"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		mustExec(t, p.updb, "CREATE DATABASE d")
		mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (1, 1)")
		waitSynced(t, run, p.updb)
		// Partitioning is beyond the tracker.
		mustExec(t, p.updb, "ALTER TABLE d.t PARTITION BY HASH(id) PARTITIONS 2")
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (2, 2)")
		runErr := run.Wait(t)
		var se *dmworker.SyncError
		if !errors.Is(runErr, dmworker.ErrUnsupportedDDL) || !errors.As(runErr, &se) {
			t.Fatalf("Run: %v, want ErrUnsupportedDDL in a *SyncError", runErr)
		}
		if se.Task != "ddl" || se.Pos.Name == "" || !strings.Contains(se.Statement, "PARTITION BY") {
			t.Fatalf("error does not name task, position and statement: %+v", se)
		}

		// Skip it and go on.
		s2, err := dmworker.NewSyncer(p.config("ddl"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		s2.Skip(se.Pos)
		run2 := runSyncer(t, s2)
		waitSynced(t, run2, p.updb)
		checkEqual(t, p.updb, p.downdb, "d.t", "d.t")

		// Replace the next one with something the tracker knows.
		mustExec(t, p.updb, "ALTER TABLE d.t ADD COLUMN w INT PARTITION BY KEY(id) PARTITIONS 3")
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (3, 3, 3)")
		if runErr = run2.Wait(t); !errors.As(runErr, &se) {
			t.Fatalf("Run: %v", runErr)
		}
		s3, err := dmworker.NewSyncer(p.config("ddl"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		s3.Replace(se.Pos, "ALTER TABLE d.t ADD COLUMN w INT")
		waitSynced(t, runSyncer(t, s3), p.updb)
		checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
	})
}

// recordingStore is a MemoryCheckpointStore that keeps every checkpoint
// saved.
type recordingStore struct {
	dmworker.MemoryCheckpointStore
	mu    sync.Mutex
	saved []dmworker.Checkpoint
}

func (r *recordingStore) Save(ctx context.Context, cp dmworker.Checkpoint) error {
	r.mu.Lock()
	r.saved = append(r.saved, cp)
	r.mu.Unlock()
	return r.MemoryCheckpointStore.Save(ctx, cp)
}

// TestSyncerSeparateCheckpointStore keeps checkpoints outside the sink and
// simulates a crash that lost the later ones: the restart goes back to an
// early checkpoint, before an ALTER, with the data far ahead of it. It
// replays in safe mode (the DDL too) and converges.
func TestSyncerSeparateCheckpointStore(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 43})
		p.workers = workers
		store := &recordingStore{}
		s, err := dmworker.NewSyncer(p.config("sep"), p.sink, dmworker.WithCheckpointStore(store))
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		rnd := rand.New(rand.NewPCG(43, 1))
		syncWorkload(t, p.updb, rnd, 120) // ALTER at transaction 60
		waitSynced(t, run, p.updb)
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		store.mu.Lock()
		var first dmworker.Checkpoint
		for _, cp := range store.saved {
			if cp.Schema != nil && !cp.Pos.IsZero() {
				first = cp
				break
			}
		}
		n := len(store.saved)
		store.mu.Unlock()
		if first.Schema == nil || n < 3 {
			t.Fatalf("%d checkpoints saved, none with a schema", n)
		}
		lost := &dmworker.MemoryCheckpointStore{}
		if err := lost.Save(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		syncWorkload(t, p.updb, rnd, 40)
		s2, err := dmworker.NewSyncer(p.config("sep"), p.sink, dmworker.WithCheckpointStore(lost))
		if err != nil {
			t.Fatal(err)
		}
		run2 := runSyncer(t, s2)
		if st := s2.Status(); st.SafeUntil.IsZero() {
			t.Fatalf("a restart with a separate store must replay in safe mode: %+v", st)
		}
		waitSynced(t, run2, p.updb)
		checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
		checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
	})
}

// TestSyncerCharsets: text in latin1 and gbk columns, and in a table that
// inherits a latin1 database default (created before and after the start),
// arrives downstream as the same characters.
func TestSyncerCharsets(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 46})
		p.workers = workers
		for _, db := range []*sql.DB{p.updb, p.downdb} {
			mustExec(t, db, "CREATE DATABASE cs DEFAULT CHARACTER SET latin1")
			mustExec(t, db, "CREATE TABLE cs.before_start (id INT PRIMARY KEY, v VARCHAR(40))")
		}
		s, err := dmworker.NewSyncer(p.config("cs"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		mustExec(t, p.updb, "CREATE TABLE cs.after_start (id INT PRIMARY KEY, v VARCHAR(40), g VARCHAR(40) CHARACTER SET gbk, u VARCHAR(40) CHARACTER SET utf8mb4)")
		for i, v := range []string{"é ñ ü € œ", "Grüße", "", "plain"} {
			mustExec(t, p.updb, "INSERT INTO cs.before_start VALUES (?, ?)", i, v)
			mustExec(t, p.updb, "INSERT INTO cs.after_start VALUES (?, ?, ?, ?)", i, v, "中文 啊", "🥝 "+v)
		}
		mustExec(t, p.updb, "UPDATE cs.after_start SET v = CONCAT(v, ' ½') WHERE id < 2")
		waitSynced(t, run, p.updb)
		checkEqual(t, p.updb, p.downdb, "cs.before_start", "cs.before_start")
		checkEqual(t, p.updb, p.downdb, "cs.after_start", "cs.after_start")
	})
}
