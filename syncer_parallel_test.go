package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// conflictWorkload runs transactions built to conflict across parallel
// workers on app.hot: updates hammering five keys, swaps of a unique value
// between two rows, deletes and re-inserts of one key (and of a unique
// value, in another letter case, which the column's collation calls equal),
// and primary-key changes.
func conflictWorkload(t *testing.T, db *sql.DB, rnd *rand.Rand, txns int) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS app")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS app.hot (id INT PRIMARY KEY, v INT NOT NULL, u VARCHAR(16) NOT NULL, UNIQUE KEY (u)) DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_general_ci")
	for id := 1; id <= 5; id++ {
		mustExec(t, db, "INSERT IGNORE INTO app.hot VALUES (?, 0, ?)", id, fmt.Sprintf("u%d", id))
	}
	exec := func(tx *sql.Tx, q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ids := func(tx *sql.Tx) []int {
		t.Helper()
		rows, err := tx.Query("SELECT id FROM app.hot ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []int
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	for i := 0; i < txns; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		have := ids(tx)
		pick := func() int { return have[rnd.IntN(len(have))] }
		switch op := rnd.IntN(10); {
		case op < 4 || len(have) < 3:
			for range 1 + rnd.IntN(3) {
				exec(tx, "UPDATE app.hot SET v = v + 1 WHERE id = ?", pick())
			}
			if len(have) < 5 {
				id := 1 + rnd.IntN(5)
				exec(tx, "INSERT IGNORE INTO app.hot VALUES (?, 0, ?)", id, fmt.Sprintf("n%d-%d", id, i))
			}
		case op < 6:
			// Swap the unique values of two rows.
			a, b := pick(), pick()
			if a == b {
				break
			}
			var ua, ub string
			if err := tx.QueryRow("SELECT u FROM app.hot WHERE id = ?", a).Scan(&ua); err != nil {
				t.Fatal(err)
			}
			if err := tx.QueryRow("SELECT u FROM app.hot WHERE id = ?", b).Scan(&ub); err != nil {
				t.Fatal(err)
			}
			exec(tx, "UPDATE app.hot SET u = ? WHERE id = ?", fmt.Sprintf("swap-%d", i), a)
			exec(tx, "UPDATE app.hot SET u = ? WHERE id = ?", ua, b)
			exec(tx, "UPDATE app.hot SET u = ? WHERE id = ?", ub, a)
		case op < 8:
			// Delete a row; re-insert its key, and its unique value in
			// upper case on another key, in the next transactions.
			id := pick()
			var u string
			if err := tx.QueryRow("SELECT u FROM app.hot WHERE id = ?", id).Scan(&u); err != nil {
				t.Fatal(err)
			}
			exec(tx, "DELETE FROM app.hot WHERE id = ?", id)
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			mustExec(t, db, "INSERT INTO app.hot VALUES (?, ?, ?)", id+1000, i, upper(u))
			mustExec(t, db, "DELETE FROM app.hot WHERE id = ?", id+1000)
			mustExec(t, db, "INSERT INTO app.hot VALUES (?, ?, ?)", id, i, u)
			continue
		default:
			// Move a row to another primary key and back later.
			id := pick()
			var taken int
			if err := tx.QueryRow("SELECT COUNT(*) FROM app.hot WHERE id = ?", id+100).Scan(&taken); err != nil {
				t.Fatal(err)
			}
			if taken == 0 {
				exec(tx, "UPDATE app.hot SET id = id + 100, v = v + 1 WHERE id = ?", id)
				exec(tx, "UPDATE app.hot SET id = id - 100 WHERE id = ?", id+100)
			}
			if id > 100 {
				exec(tx, "UPDATE app.hot SET id = id - 100 WHERE id = ?", id)
			} else if rnd.IntN(2) == 0 {
				exec(tx, "UPDATE app.hot SET id = id + 100 WHERE id = ?", id)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestSyncerParallelConflicts replays a workload built to conflict with 16
// workers, with and without compaction, and with the workload running while
// the syncer does: the downstream ends equal to the upstream, and some
// changes did have to wait for another worker.
func TestSyncerParallelConflicts(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			id := uint32(501)
			if compact {
				id = 502
			}
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: id})
			for _, db := range []*sql.DB{p.updb, p.downdb} {
				mustExec(t, db, "CREATE DATABASE app")
				mustExec(t, db, "CREATE TABLE app.hot (id INT PRIMARY KEY, v INT NOT NULL, u VARCHAR(16) NOT NULL, UNIQUE KEY (u)) DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_general_ci")
			}
			cfg := p.config("conflicts")
			cfg.Workers, cfg.NoCompact, cfg.BatchSize = 16, !compact, 20
			s, err := dmworker.NewSyncer(cfg, p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			conflictWorkload(t, p.updb, rand.New(rand.NewPCG(uint64(id), 1)), 600)
			waitSynced(t, run, p.updb)
			checkEqual(t, p.updb, p.downdb, "app.hot", "app.hot")
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
			st := s.Status()
			if st.Workers != 16 || st.Conflicts == 0 || st.Rows == 0 {
				t.Fatalf("status after a conflicting workload: workers %d, conflicts %d, rows %d", st.Workers, st.Conflicts, st.Rows)
			}
			if st.QueueBytes != 0 {
				t.Fatalf("%d queue bytes held after stopping", st.QueueBytes)
			}
		})
	}
}

// TestSyncerParallelFenced: parallel workers write under their epoch; once
// a newer epoch has stored a checkpoint, their next batch is refused and Run
// stops with ErrStaleEpoch, nothing of it applied.
func TestSyncerParallelFenced(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 503})
	for _, db := range []*sql.DB{p.updb, p.downdb} {
		mustExec(t, db, "CREATE DATABASE app")
		mustExec(t, db, "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
	}
	cfg := p.config("fenced")
	cfg.Workers = 4
	s, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithEpoch(7))
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	mustExec(t, p.updb, "INSERT INTO app.t VALUES (1, 1)")
	waitSynced(t, run, p.updb)
	checkEqual(t, p.updb, p.downdb, "app.t", "app.t")

	// A successor (epoch 8) takes over the checkpoint.
	ctx := context.Background()
	src := upstreamOf(p.up).SourceName()
	cp, ok, err := p.sink.LoadCheckpoint(ctx, cfg.Task, src)
	if err != nil || !ok || cp.Epoch != 7 {
		t.Fatalf("stored checkpoint %+v, %v, %v; want epoch 7", cp, ok, err)
	}
	cp.Epoch, cp.Schema = 8, nil
	if err := p.sink.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, "INSERT INTO app.t VALUES (2, 2)")
	err = run.Wait(t)
	if !errors.Is(err, dmworker.ErrStaleEpoch) {
		t.Fatalf("Run after a newer epoch: %v, want ErrStaleEpoch", err)
	}
	if n := len(tableRows(t, p.downdb, "app.t")); n != 1 {
		t.Fatalf("%d rows downstream, want 1: the fenced batch was applied", n)
	}
	cp2, _, err := p.sink.LoadCheckpoint(ctx, cfg.Task, src)
	if err != nil || cp2.Epoch != 8 || !cp2.Pos.Equal(cp.Pos) {
		t.Fatalf("checkpoint after the fenced run: %+v, %v", cp2, err)
	}
	// A syncer of the old epoch cannot start again either.
	s2, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithEpoch(7))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Run(ctx); !errors.Is(err, dmworker.ErrStaleEpoch) {
		t.Fatalf("Run of epoch 7 after epoch 8: %v", err)
	}
}

// cancelAfterRows is a reader that cancels the syncer's context once it has
// delivered n rows events.
type cancelAfterRows struct {
	streamer.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfterRows) GetEvent(ctx context.Context) (*streamer.Event, error) {
	ev, err := c.Reader.GetEvent(ctx)
	if err == nil {
		if _, ok := ev.Event.(*replication.RowsEvent); ok {
			if c.n--; c.n == 0 {
				c.cancel()
			}
		}
	}
	return ev, err
}

// TestSyncerStopMidTransaction: a syncer stopped in the middle of an
// upstream transaction applies what it read of it, and the next run does
// not apply it twice (it replays the rest of the transaction in safe mode).
func TestSyncerStopMidTransaction(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 504})
		p.workers = workers
		for _, db := range []*sql.DB{p.updb, p.downdb} {
			mustExec(t, db, "CREATE DATABASE app")
			mustExec(t, db, "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
		}
		file, pos := masterPos(t, p.updb)
		tx, err := p.updb.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := tx.Exec("INSERT INTO app.t VALUES (?, ?), (?, ?)", 2*i, i, 2*i+1, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		cfg := p.config("midtxn")
		cfg.Start = streamer.Position{Name: file, Offset: pos}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithReaderFactory(
			func(ctx context.Context, start streamer.Position) (streamer.Reader, error) {
				r, err := streamer.NewRemoteReader(upstreamOf(p.up), start)
				if err != nil {
					return nil, err
				}
				return &cancelAfterRows{Reader: r, n: 1, cancel: cancel}, nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run(ctx); err != nil {
			t.Fatalf("first run: %v", err)
		}
		s2, err := dmworker.NewSyncer(cfg, p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s2)
		mustExec(t, p.updb, "INSERT INTO app.t VALUES (100, 100)")
		waitSynced(t, run, p.updb)
		checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
	})
}

// TestSyncerCheckpointPassesNonDataEvents: a binlog that ends with events
// outside any transaction (a rotation's format description, GTID list and
// binlog checkpoint) still gets the checkpoint to its end.
func TestSyncerCheckpointPassesNonDataEvents(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 507})
		p.workers = workers
		for _, db := range []*sql.DB{p.updb, p.downdb} {
			mustExec(t, db, "CREATE DATABASE app")
			mustExec(t, db, "CREATE TABLE app.t (id INT PRIMARY KEY)")
		}
		s, err := dmworker.NewSyncer(p.config("tail"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		mustExec(t, p.updb, "INSERT INTO app.t VALUES (1)")
		waitSynced(t, run, p.updb)
		mustExec(t, p.updb, "FLUSH BINARY LOGS")
		waitSynced(t, run, p.updb) // in the new file, after its header events
		mustExec(t, p.updb, "INSERT INTO app.t VALUES (2)")
		waitSynced(t, run, p.updb)
		checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
	})
}
