package dmworker

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestSeedConsistent: a fresh start's table definitions are those at the
// position it starts at, although a DDL runs upstream while they are read.
// On the old code the start position was read before the definitions, so
// the run started before the DDL with the definition after it.
func TestSeedConsistent(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 361})
	db := m.DB(t)
	ctx := context.Background()
	up := streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port), User: m.User, Password: m.Password, Flavor: streamer.FlavorMariaDB}
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	end := func() streamer.Position {
		t.Helper()
		st, err := streamer.QueryUpstream(ctx, up)
		if err != nil {
			t.Fatal(err)
		}
		return st.Master
	}
	rs, err := newRules(SyncerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	exec("CREATE DATABASE d")
	exec("CREATE TABLE d.t (id INT PRIMARY KEY, a INT)")
	master := func(ctx context.Context) (streamer.Position, error) { return end(), nil }
	columns := func(tr *schema.Tracker) int {
		t.Helper()
		def, ok := tr.Table("d", "t")
		if !ok {
			t.Fatal("d.t not tracked")
		}
		return len(def.Columns)
	}

	// A DDL between the start position and the read: read again, start
	// after the DDL.
	p1 := end()
	reads := 0
	var afterDDL streamer.Position
	read := func(ctx context.Context) (*schema.Tracker, error) {
		reads++
		if reads == 1 {
			exec("ALTER TABLE d.t ADD COLUMN b INT")
			afterDDL = end()
		}
		return seedTracker(ctx, db, rs)
	}
	tr, start, err := seedConsistent(ctx, db, slog.Default(), p1, master, read)
	if err != nil {
		t.Fatal(err)
	}
	if reads != 2 || start.Compare(afterDDL) < 0 || columns(tr) != 3 {
		t.Fatalf("after a DDL mid-read: %d reads, start %s (the DDL ends at %s), %d columns; want 2 reads, a start at or after the DDL, 3 columns",
			reads, start, afterDDL, columns(tr))
	}

	// Only rows written meanwhile, across a rotation: one read, the start
	// stays where it was.
	p1 = end()
	reads = 0
	read = func(ctx context.Context) (*schema.Tracker, error) {
		reads++
		exec("INSERT INTO d.t VALUES (1, 1, 1)")
		exec("FLUSH BINARY LOGS")
		exec("INSERT INTO d.t VALUES (2, 2, 2)")
		return seedTracker(ctx, db, rs)
	}
	tr, start, err = seedConsistent(ctx, db, slog.Default(), p1, master, read)
	if err != nil {
		t.Fatal(err)
	}
	if reads != 1 || start.Compare(p1) != 0 || columns(tr) != 3 {
		t.Fatalf("with rows only: %d reads, start %s (want %s), %d columns", reads, start, p1, columns(tr))
	}

	// A DDL in the next file is seen too.
	p1 = end()
	exec("FLUSH BINARY LOGS")
	exec("CREATE INDEX ia ON d.t (a)")
	p2 := end()
	if p1.Name == p2.Name {
		t.Fatalf("no rotation: %s, %s", p1, p2)
	}
	stmt, err := ddlBetween(ctx, db, p1, p2)
	if err != nil || !strings.Contains(stmt, "CREATE INDEX ia") {
		t.Fatalf("ddlBetween across a rotation: %q, %v", stmt, err)
	}
	if stmt, err := ddlBetween(ctx, db, p2, end()); err != nil || stmt != "" {
		t.Fatalf("ddlBetween of an empty range: %q, %v", stmt, err)
	}

	// DDLs at every read: a clear error, after seedAttempts reads.
	reads = 0
	read = func(ctx context.Context) (*schema.Tracker, error) {
		reads++
		exec("ALTER TABLE d.t MODIFY a BIGINT")
		return seedTracker(ctx, db, rs)
	}
	if _, _, err := seedConsistent(ctx, db, slog.Default(), end(), master, read); err == nil || reads != seedAttempts ||
		!strings.Contains(err.Error(), "ALTER TABLE d.t MODIFY a BIGINT") {
		t.Fatalf("DDLs at every read: %d reads, %v", reads, err)
	}
}

func TestTxnControl(t *testing.T) {
	for info, want := range map[string]bool{
		"BEGIN":                             true,
		"COMMIT /* xid=12 */":               true,
		"use `d`; COMMIT":                   true,
		"XA START X'01',X'',1":              true,
		"use `d`; ALTER TABLE t ADD b INT":  false,
		"CREATE TABLE d.t (id INT)":         false,
		"":                                  false,
		"use `d`; INSERT INTO t VALUES (1)": false,
	} {
		if got := txnControl(info); got != want {
			t.Errorf("txnControl(%q) = %v, want %v", info, got, want)
		}
	}
}
