package streamer_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// xaSession runs statements on a session of its own, closed at the end (a
// prepared XA outlives it).
func xaSession(t testing.TB, db *sql.DB, stmts ...string) {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		c.Close()
	}()
	for _, q := range stmts {
		if _, err := c.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestXATransactionFraming: MariaDB logs a prepared XA transaction as a
// GTID event, its rows and an XA_PREPARE event, and its XA COMMIT or XA
// ROLLBACK later under a GTID of its own. Every reader ends the prepared
// transaction at the XA_PREPARE event with its GTID in the set there (as
// the server's gtid_binlog_pos counts it), and a relay file that ends
// with a prepared XA ends with a whole transaction.
func TestXATransactionFraming(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 37})
	db := m.DB(t)
	mustExec(t, db, "CREATE DATABASE xa")
	mustExec(t, db, "CREATE TABLE xa.t (id INT PRIMARY KEY, v VARCHAR(20))")
	xaSession(t, db, "XA START 'a'", "INSERT INTO xa.t VALUES (1, 'a')", "XA END 'a'", "XA PREPARE 'a'")
	xaSession(t, db, "XA START 'b'", "INSERT INTO xa.t VALUES (2, 'b')", "XA END 'b'", "XA PREPARE 'b'")
	mustExec(t, db, "INSERT INTO xa.t VALUES (10, 'plain')")
	xaSession(t, db, "XA COMMIT 'b'")
	xaSession(t, db, "XA ROLLBACK 'a'")
	xaSession(t, db, "XA START 'c'", "INSERT INTO xa.t VALUES (3, 'c')", "XA END 'c'", "XA COMMIT 'c' ONE PHASE")
	// The binlog ends with a prepared XA.
	xaSession(t, db, "XA START 'd'", "INSERT INTO xa.t VALUES (4, 'd')", "XA END 'd'", "XA PREPARE 'd'")
	end, gtidEnd := masterStatus(t, db)
	t.Cleanup(func() { xaSession(t, db, "XA ROLLBACK 'd'") })
	ctx := testCtx(t)

	start := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
	rr, err := streamer.NewRemoteReader(upstreamOf(m), start)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, rr)
	remote := drain(ctx, t, rr, end, nil)
	checkTransactions(t, remote)
	prepares := 0
	for _, e := range remote {
		if e.Header.EventType == replication.XA_PREPARE_LOG_EVENT {
			prepares++
			if !e.TxnEnd || !e.Boundary {
				t.Fatalf("XA_PREPARE at %s: TxnEnd %v Boundary %v", e.Pos, e.TxnEnd, e.Boundary)
			}
		}
	}
	if prepares != 3 {
		t.Fatalf("%d XA_PREPARE events, want 3", prepares)
	}
	if got := remote[len(remote)-1].Pos.GTIDSet; got == nil || got.String() != gtidEnd {
		t.Fatalf("final GTID set %v, want %s", got, gtidEnd)
	}

	raw, err := streamer.NewRawReader(upstreamOf(m), start)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, raw)
	checkRawTransactions(t, drainRaw(ctx, t, raw, end, nil))

	dir := t.TempDir()
	sub := streamer.SubDirName("37", 1)
	files := localCopyRelay(t, m, dir, sub, true)
	local := localReadAll(ctx, t, newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(false)))
	equalStreams(t, streamKeys(local), streamKeys(remote))
	checkTransactions(t, local)
	// Both say alike where a transaction may be resumed after.
	if lb, rb := boundaries(local), boundaries(remote); lb != rb {
		t.Fatalf("boundaries (after each real event):\nlocal  %s\nremote %s", lb, rb)
	}

	scan, err := streamer.ScanRelayFile(filepath.Join(dir, sub, files[len(files)-1]), streamer.FlavorMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	if scan.TxnEnd != scan.Size || scan.Size != int64(end.Offset) {
		t.Fatalf("relay file of %d bytes (binlog at %d): whole transactions end at %d", scan.Size, end.Offset, scan.TxnEnd)
	}
}

// boundaries writes, for each real event, whether it is a Boundary.
func boundaries(evs []*streamer.Event) string {
	var b []byte
	for _, e := range evs {
		if e.Artificial() {
			continue
		}
		if e.Boundary {
			b = append(b, 'B')
		} else {
			b = append(b, '.')
		}
	}
	return string(b)
}
