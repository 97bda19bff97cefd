package dmworker_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// xaExec runs an XA transaction's statements on a connection of its own
// (XA PREPARE detaches it: the prepared transaction outlives the session).
func xaExec(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Close the session itself: back in the pool, it would still be
		// the prepared transaction's.
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		c.Close()
	}()
	for _, q := range stmts {
		if _, err := c.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// xaPrepare runs XA START, stmts, XA END and XA PREPARE for xid.
func xaPrepare(t *testing.T, db *sql.DB, xid string, stmts ...string) {
	t.Helper()
	all := append([]string{"XA START " + xid}, stmts...)
	xaExec(t, db, append(all, "XA END "+xid, "XA PREPARE "+xid)...)
}

// waitRead waits until the syncer has read up to the upstream's current
// position.
func waitRead(t *testing.T, r *syncRunner, db *sql.DB) {
	t.Helper()
	want := upstreamPos(t, db)
	waitUntil(t, "the syncer to read "+want.String(), func() bool {
		select {
		case <-r.done:
			t.Fatalf("syncer stopped: %v", r.err)
		default:
		}
		return r.s.Status().Read.Compare(want) >= 0
	})
}

// waitEqual waits until a table has the same rows downstream as upstream
// (with parallel workers a later transaction may land before an earlier
// one: one row is no sign the others are there).
func waitEqual(t *testing.T, r *syncRunner, up, down *sql.DB, upTable, downTable string) {
	t.Helper()
	waitUntil(t, downTable+" equal to "+upTable, func() bool {
		select {
		case <-r.done:
			t.Fatalf("syncer stopped: %v", r.err)
		default:
		}
		return strings.Join(tableRows(t, up, upTable), "\n") == strings.Join(tableRows(t, down, downTable), "\n")
	})
}

// TestSyncerXA: MariaDB logs an XA transaction's rows at XA PREPARE (a GTID
// event flagged PREPARED_XA, the rows, XA END, an XA_PREPARE event) and its
// outcome later, as a transaction of its own (XA COMMIT or XA ROLLBACK). The
// syncer applies the rows when the commit comes and drops them at a
// rollback; the checkpoint stays before the oldest open prepared XA, so a
// restart in between reads its rows again.
func TestSyncerXA(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 71})
		p.workers = workers
		s, err := dmworker.NewSyncer(p.config("xa"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		mustExec(t, p.updb, "CREATE DATABASE xa")
		mustExec(t, p.updb, "CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20))")
		mustExec(t, p.updb, "INSERT INTO xa.t VALUES (100, 'old'), (101, 'old')")

		// Interleaved: a and b prepared, a plain transaction after them.
		xaPrepare(t, p.updb, "'a'", "INSERT INTO xa.t VALUES (1, 'a')", "UPDATE xa.t SET v = 'a' WHERE id = 100")
		xaPrepare(t, p.updb, "'b'", "INSERT INTO xa.t VALUES (2, 'b')", "DELETE FROM xa.t WHERE id = 101")
		mustExec(t, p.updb, "INSERT INTO xa.t VALUES (10, 'plain')")
		// Nothing prepared is applied before its commit: once everything
		// is read, the downstream has the upstream's committed rows.
		waitRead(t, run, p.updb)
		waitEqual(t, run, p.updb, p.downdb, "xa.t", "xa.t")

		// b commits first, a rolls back; c commits in one phase.
		xaExec(t, p.updb, "XA COMMIT 'b'")
		xaExec(t, p.updb, "XA ROLLBACK 'a'")
		xaExec(t, p.updb, "XA START 'c'", "INSERT INTO xa.t VALUES (3, 'c')", "XA END 'c'", "XA COMMIT 'c' ONE PHASE")
		waitSynced(t, run, p.updb)
		checkEqual(t, p.updb, p.downdb, "xa.t", "xa.t")

		// A prepared XA open across a restart: the checkpoint stays before
		// it, and the rows arrive with the commit that the next run reads.
		floor := upstreamPos(t, p.updb)
		xaPrepare(t, p.updb, "X'0a7f',X'ff',7", "INSERT INTO xa.t VALUES (4, 'd')", "UPDATE xa.t SET v = 'd' WHERE id = 10")
		mustExec(t, p.updb, "INSERT INTO xa.t VALUES (11, 'plain')")
		waitRead(t, run, p.updb)
		waitEqual(t, run, p.updb, p.downdb, "xa.t", "xa.t")
		// Every checkpoint stored meanwhile (what a killed process leaves)
		// is before the prepared XA, safe mode reaching past it.
		if st := s.Status(); st.Checkpoint.Compare(floor) > 0 {
			t.Fatalf("status checkpoint %s passed the prepared XA at %s", st.Checkpoint, floor)
		}
		cp, _, err := p.sink.LoadCheckpoint(context.Background(), "xa", upstreamOf(p.up).SourceName())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Pos.Compare(floor) > 0 {
			t.Fatalf("stored checkpoint %s passed the prepared XA at %s", cp.Pos, floor)
		}
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}
		if cp, _, err = p.sink.LoadCheckpoint(context.Background(), "xa", upstreamOf(p.up).SourceName()); err != nil || cp.Pos.Compare(floor) > 0 ||
			cp.SafeUntil.Compare(floor) <= 0 {
			t.Fatalf("checkpoint after the stop %s safe until %s (%v), want at or before %s and safe past it", cp.Pos, cp.SafeUntil, err, floor)
		}
		checkEqual(t, p.updb, p.downdb, "xa.t", "xa.t")
		xaExec(t, p.updb, "XA COMMIT X'0a7f',X'ff',7")
		mustExec(t, p.updb, "INSERT INTO xa.t VALUES (12, 'plain')")
		s2, err := dmworker.NewSyncer(p.config("xa"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run2 := runSyncer(t, s2)
		waitSynced(t, run2, p.updb)
		checkEqual(t, p.updb, p.downdb, "xa.t", "xa.t")
		if err := run2.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSyncerXAPreparedBeforeStart: an XA COMMIT whose XA PREPARE came before
// the position the task started at has no rows to apply; the syncer stops
// there with ErrXAPreparedBeforeStart rather than lose them.
func TestSyncerXAPreparedBeforeStart(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 72})
	mustExec(t, p.updb, "CREATE DATABASE xa")
	mustExec(t, p.updb, "CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20))")
	xaPrepare(t, p.updb, "'early'", "INSERT INTO xa.t VALUES (1, 'a')")
	start := upstreamPos(t, p.updb)
	mustExec(t, p.downdb, "CREATE DATABASE xa")
	mustExec(t, p.downdb, "CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20))")
	cfg := p.config("xa-early")
	cfg.Start = start
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	xaExec(t, p.updb, "XA COMMIT 'early'")
	err = run.Wait(t)
	if !errors.Is(err, dmworker.ErrXAPreparedBeforeStart) {
		t.Fatalf("Run: %v, want ErrXAPreparedBeforeStart", err)
	}
	var se *dmworker.SyncError
	if !errors.As(err, &se) || se.Pos.Compare(streamer.Position{Name: start.Name, Offset: start.Offset}) <= 0 || se.Statement == "" {
		t.Fatalf("Run: %v, want a SyncError at the XA COMMIT", err)
	}
}

// TestSubTaskXA: XA transactions through a SubTask in both modes, with a
// pause and resume while one is prepared, and the validator beside it:
// the downstream ends equal to the upstream, holds no prepared row before
// its commit, and the validator finds no difference.
func TestSubTaskXA(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 73, 173, testserver.MariaDBOptions{})
		setupBoth(t, p.updb, p.downdb, mode, "CREATE DATABASE xa", "CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20))",
			"INSERT INTO xa.t VALUES (100, 'old'), (101, 'old')")
		st := startTask(t, p, dmworker.SubTaskConfig{
			Name: "xa", Mode: mode, Filter: dmworker.BlockAllowList{DoDBs: []string{"xa"}},
			SyncerTuning: dmworker.SyncerTuning{Workers: workers},
			Validation:   dmworker.ValidationConfig{Mode: dmworker.ValidationFull, RowErrorDelay: dmworker.Duration(2 * time.Second)},
		})
		xaPrepare(t, p.updb, "'a'", "INSERT INTO xa.t VALUES (1, 'a')", "UPDATE xa.t SET v = 'a' WHERE id = 100")
		xaPrepare(t, p.updb, "'b'", "INSERT INTO xa.t VALUES (2, 'b')", "DELETE FROM xa.t WHERE id = 101")
		mustExec(t, p.updb, "INSERT INTO xa.t VALUES (10, 'plain')")
		waitUntil(t, "the rows but the prepared ones downstream", func() bool {
			return strings.Join(tableRows(t, p.updb, "xa.t"), "\n") == strings.Join(tableRows(t, p.downdb, "xa.t"), "\n")
		})
		if err := st.Pause(); err != nil {
			t.Fatal(err)
		}
		waitStage(t, st.Status, dmworker.SubTaskPaused)
		xaExec(t, p.updb, "XA COMMIT 'a'")
		if err := st.Resume(); err != nil {
			t.Fatal(err)
		}
		xaExec(t, p.updb, "XA ROLLBACK 'b'")
		waitSubTaskSynced(t, st.Status, p)
		checkEqual(t, p.updb, p.downdb, "xa.t", "xa.t")
		// The validator, beside it, finds nothing different: it sees the
		// XA's rows when the syncer applies them, and never the rolled
		// back ones.
		if vs := waitValidated(t, st, p); vs.Differing != 0 || vs.ErrorRows != 0 || vs.Checked == 0 {
			t.Fatalf("validator: %+v", vs)
		}
		if keys := errorKeys(t, p.downdb, "xa"); len(keys) != 0 {
			t.Fatalf("validator error rows: %v", keys)
		}
	})
}
