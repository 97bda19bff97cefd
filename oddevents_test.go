package dmworker_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// oddRig replicates one upstream schema, odd, through both readers at once:
// a syncer on the remote reader (serial) routes it to odd_remote, one on a
// live relay's local reader (16 workers) to odd_relay, both into the same
// downstream. Both start at the upstream's position when the rig is made,
// before the test creates anything.
type oddRig struct {
	p        *syncPair
	rel      *dmworker.Relay
	relayDir string
	runs     map[string]*syncRunner // by target schema
}

// oddTargets are the rig's target schemas.
var oddTargets = []string{"odd_remote", "odd_relay"}

func newOddRig(t *testing.T, upOpts, downOpts testserver.MariaDBOptions) *oddRig {
	t.Helper()
	return newOddRigWith(t, upOpts, downOpts, nil)
}

// newOddRigWith is newOddRig with both syncers' configs changed by edit.
func newOddRigWith(t *testing.T, upOpts, downOpts testserver.MariaDBOptions, edit func(*dmworker.SyncerConfig)) *oddRig {
	t.Helper()
	p := &syncPair{up: testserver.StartMariaDB(t, upOpts), down: testserver.StartMariaDB(t, downOpts)}
	p.updb, p.downdb = p.up.DB(t), p.down.DB(t)
	var err error
	if p.sink, err = mysqlsink.New(p.downdb); err != nil {
		t.Fatal(err)
	}
	g := &oddRig{p: p, relayDir: t.TempDir(), runs: map[string]*syncRunner{}}
	g.rel, err = dmworker.NewRelay(upstreamOf(p.up), g.relayDir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, g.rel)
	waitRelayed(t, g.rel, p.updb, errc)
	for i, target := range oddTargets {
		cfg := dmworker.SyncerConfig{
			Task:     target,
			Upstream: upstreamOf(p.up),
			Filter:   dmworker.BlockAllowList{DoDBs: []string{"odd"}},
			Routes:   []dmworker.RouteRule{{SchemaPattern: "odd", TargetSchema: target}},
		}
		if edit != nil {
			edit(&cfg)
		}
		var opts []dmworker.SyncerOption
		if i == 1 {
			cfg.Workers = 16
			opts = append(opts, dmworker.WithReaderFactory(func(_ context.Context, start streamer.Position) (streamer.Reader, error) {
				return streamer.NewLocalReader(g.relayDir, streamer.StartAtPosition(start), streamer.WithRelayTail(g.rel))
			}))
		}
		s, err := dmworker.NewSyncer(cfg, p.sink, opts...)
		if err != nil {
			t.Fatal(err)
		}
		g.runs[target] = runSyncer(t, s)
	}
	return g
}

// sync waits until both syncers have checkpointed the upstream's position.
func (g *oddRig) sync(t *testing.T) {
	t.Helper()
	for _, target := range oddTargets {
		waitSynced(t, g.runs[target], g.p.updb)
	}
}

// check compares the upstream's odd tables with both copies, row by row.
func (g *oddRig) check(t *testing.T, tables ...string) {
	t.Helper()
	g.sync(t)
	for _, target := range oddTargets {
		for _, tb := range tables {
			checkEqual(t, g.p.updb, g.p.downdb, "odd."+tb, target+"."+tb)
		}
	}
}

// relayEqualsUpstream checks the relay's files are the upstream's, byte for
// byte.
func (g *oddRig) relayEqualsUpstream(t *testing.T) {
	t.Helper()
	waitUntil(t, "the relay to catch up", func() bool {
		file, pos := masterPos(t, g.p.updb)
		got, _ := g.rel.Relayed()
		return got.Name == file && got.Offset >= pos
	})
	checkRelayEqualsUpstream(t, onlySubdir(t, g.relayDir), upstreamFiles(t, g.p.up), nil)
}

// stopErr waits (a minute at most) for the syncer of target to stop on its
// own and returns its error.
func (g *oddRig) stopErr(t *testing.T, target string) error {
	t.Helper()
	r := g.runs[target]
	select {
	case <-r.done:
		return r.err
	case <-time.After(time.Minute):
		t.Fatalf("the %s syncer did not stop", target)
		return nil
	}
}

// TestOddXA runs XA transactions through both readers (the remote one and
// a live relay's local one): prepared ones interleaved, committed and
// rolled back, one-phase, and one open while more follows.
func TestOddXA(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 81}, testserver.MariaDBOptions{ServerID: 181})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.t (id INT PRIMARY KEY, v VARCHAR(20))")
	mustExec(t, db, "INSERT INTO odd.t VALUES (100, 'old'), (101, 'old')")
	xaPrepare(t, db, "'a'", "INSERT INTO odd.t VALUES (1, 'a')", "UPDATE odd.t SET v = 'a' WHERE id = 100")
	xaPrepare(t, db, "'b'", "INSERT INTO odd.t VALUES (2, 'b')", "DELETE FROM odd.t WHERE id = 101")
	mustExec(t, db, "INSERT INTO odd.t VALUES (10, 'plain')")
	for _, target := range oddTargets {
		waitRead(t, g.runs[target], db)
		waitEqual(t, g.runs[target], db, g.p.downdb, "odd.t", target+".t")
	}
	xaExec(t, db, "XA COMMIT 'b'")
	xaExec(t, db, "XA ROLLBACK 'a'")
	xaExec(t, db, "XA START 'c'", "INSERT INTO odd.t VALUES (3, 'c')", "XA END 'c'", "XA COMMIT 'c' ONE PHASE")
	xaPrepare(t, db, "'d'", "UPDATE odd.t SET v = 'd' WHERE id = 10")
	mustExec(t, db, "INSERT INTO odd.t VALUES (11, 'plain')")
	xaExec(t, db, "XA COMMIT 'd'")
	g.check(t, "t")
	g.relayEqualsUpstream(t)
}

// TestOddCompressed: MariaDB's binlog compression (log_bin_compress) logs
// statements as QUERY_COMPRESSED events and rows as *_ROWS_COMPRESSED_V1
// events once they pass log_bin_compress_min_len: both readers and the
// syncer take them, and the relay copies them byte for byte.
func TestOddCompressed(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 82, ExtraArgs: []string{"--log-bin-compress=ON", "--log-bin-compress-min-len=10"}},
		testserver.MariaDBOptions{ServerID: 182})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.t (id INT PRIMARY KEY, s VARCHAR(300), b MEDIUMBLOB, d DECIMAL(20,6), ts DATETIME(6), j JSON, e ENUM('x','y'), bits BIT(12), tm TIME(3))")
	for i := 0; i < 60; i++ {
		mustExec(t, db, "INSERT INTO odd.t VALUES (?, REPEAT(?, ?), REPEAT(?, ?), ?, NOW(6), ?, ?, ?, ?)",
			i, string(rune('a'+i%26)), 1+i*5, "\x00\xff", i*300, float64(i)*1.5, `{"k": `+string(rune('0'+i%10))+`}`, []string{"x", "y"}[i%2], i, "12:34:56.789")
	}
	mustExec(t, db, "UPDATE odd.t SET s = CONCAT(s, 'u'), b = NULL WHERE id % 3 = 0")
	mustExec(t, db, "DELETE FROM odd.t WHERE id % 7 = 0")
	mustExec(t, db, "ALTER TABLE odd.t ADD COLUMN extra VARCHAR(100) DEFAULT 'a long enough default to be compressed'")
	mustExec(t, db, "UPDATE odd.t SET extra = REPEAT('z', id)")
	// XA transactions: XA END and XA COMMIT are compressed statements.
	xaPrepare(t, db, "'compressed-a'", "INSERT INTO odd.t (id, s) VALUES (500, REPEAT('x', 100))")
	xaPrepare(t, db, "'compressed-b'", "UPDATE odd.t SET s = 'rolled back' WHERE id = 1")
	xaExec(t, db, "XA COMMIT 'compressed-a'")
	xaExec(t, db, "XA ROLLBACK 'compressed-b'")
	// A short statement and a short row stay uncompressed.
	mustExec(t, db, "SET @x = 1")
	mustExec(t, db, "INSERT INTO odd.t (id) VALUES (1000)")
	g.check(t, "t")
	g.relayEqualsUpstream(t)
	compressed := 0
	for _, k := range streamerFileEventTypes(t, g.p.up) {
		switch k {
		case replication.MARIADB_QUERY_COMPRESSED_EVENT, replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1,
			replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
			compressed++
		}
	}
	if compressed < 60 {
		t.Fatalf("only %d compressed events in the upstream's binlog", compressed)
	}
}

// streamerFileEventTypes lists the types of the events in the upstream's
// binlog files, in order.
func streamerFileEventTypes(t *testing.T, m *testserver.MariaDB) []replication.EventType {
	t.Helper()
	files, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []replication.EventType
	for _, f := range files {
		p := replication.NewBinlogParser()
		if err := p.ParseFile(f, 0, func(e *replication.BinlogEvent) error {
			out = append(out, e.Header.EventType)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// bigArgs raise max_allowed_packet, so that rows of tens of MiB can be
// written upstream and applied downstream.
var bigArgs = []string{"--max-allowed-packet=256M"}

// bigRows compares a table of (id, b LONGBLOB) by length and digest of b.
func bigRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	return queryRows(t, db, "SELECT id, LENGTH(b), MD5(b) FROM "+table+" ORDER BY id")
}

// checkBig compares odd.big upstream with both copies.
func (g *oddRig) checkBig(t *testing.T) {
	t.Helper()
	g.sync(t)
	want := bigRows(t, g.p.updb, "odd.big")
	for _, target := range oddTargets {
		if got := bigRows(t, g.p.downdb, target+".big"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s.big:\n%s\nupstream:\n%s", target, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestOddLargeEvents: events over 16 MiB arrive over several packets of
// the dump protocol (a rows event of a 20 MiB LONGBLOB, its update of over 40 MiB, and rows
// events whose sizes put the packet payload, the event and its OK byte,
// right around one and two times 0xffffff, where the protocol sends a full
// packet and then an empty or a short one). Both readers, the relay's
// copy and the syncers take them whole.
func TestOddLargeEvents(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 83, ExtraArgs: bigArgs}, testserver.MariaDBOptions{ServerID: 183, ExtraArgs: bigArgs})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.big (id INT PRIMARY KEY, b LONGBLOB)")
	mustExec(t, db, "INSERT INTO odd.big VALUES (1, REPEAT('a', 20 << 20))")
	// Its update event holds both images: over 40 MiB.
	mustExec(t, db, "UPDATE odd.big SET b = CONCAT(b, 'tail') WHERE id = 1")
	g.checkBig(t)

	// The rows event of a row of n bytes is n + overhead bytes long.
	file, before := masterPos(t, db)
	mustExec(t, db, "INSERT INTO odd.big VALUES (3, REPEAT('c', 1000))")
	overhead := int64(rowsEventSize(t, db, file, before)) - 1000
	const packet = 0xffffff
	var sizes []int64 // event sizes
	for _, payload := range []int64{packet - 1, packet, packet + 1, 2*packet - 1, 2 * packet, 2*packet + 1} {
		sizes = append(sizes, payload-1) // the payload is the OK byte and the event
	}
	// One transaction of the first three, then the others alone.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i, size := range sizes[:3] {
		if _, err := tx.Exec("INSERT INTO odd.big VALUES (?, REPEAT('t', ?))", 10+i, size-overhead); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i, size := range sizes[3:] {
		file, before := masterPos(t, db)
		mustExec(t, db, "INSERT INTO odd.big VALUES (?, REPEAT('s', ?))", 20+i, size-overhead)
		if got := rowsEventSize(t, db, file, before); int64(got) != size {
			t.Fatalf("rows event of %d bytes, want %d", got, size)
		}
	}
	g.checkBig(t)
	g.relayEqualsUpstream(t)
}

// rowsEventSize is the size of the first rows event in file after offset
// from.
func rowsEventSize(t *testing.T, db *sql.DB, file string, from uint64) uint64 {
	t.Helper()
	rows, err := db.Query(fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d", file, from))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ, info string
		var pos, serverID, end uint64
		if err := rows.Scan(&name, &pos, &typ, &serverID, &end, &info); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(typ, "Write_rows") {
			return end - pos
		}
	}
	t.Fatalf("no rows event in %s after %d", file, from)
	return 0
}

// sessionExec runs statements on one session of db.
func sessionExec(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range stmts {
		if _, err := c.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Leave no session setting behind for the pool's next user.
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
}

// TestOddSessionSettings: sessions that change how they log, on a ROW
// server. MIXED logs the unsafe statements as rows (replicated as usual);
// sql_log_bin=0 logs nothing (nothing to do: the downstream never sees
// those changes); binlog_annotate_row_events off and on (an Annotate_rows
// event before the rows or not). Both readers go on through all of them.
func TestOddSessionSettings(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 85}, testserver.MariaDBOptions{ServerID: 185})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.t (id INT PRIMARY KEY, v VARCHAR(40))")
	mustExec(t, db, "CREATE TABLE odd.nolog (id INT PRIMARY KEY)")
	sessionExec(t, db, "SET SESSION binlog_format = 'MIXED'",
		"INSERT INTO odd.t VALUES (1, UUID())",
		"INSERT INTO odd.t SELECT id + 10, v FROM odd.t ORDER BY id LIMIT 1",
		"UPDATE odd.t SET v = UUID() WHERE id = 1")
	sessionExec(t, db, "SET SESSION sql_log_bin = 0", "INSERT INTO odd.nolog VALUES (1)")
	sessionExec(t, db, "SET SESSION binlog_annotate_row_events = OFF", "INSERT INTO odd.t VALUES (2, 'no annotate')",
		"UPDATE odd.t SET v = 'still none' WHERE id = 2")
	sessionExec(t, db, "SET SESSION binlog_annotate_row_events = ON", "INSERT INTO odd.t VALUES (3, 'annotated')",
		"DELETE FROM odd.t WHERE id = 2")
	g.check(t, "t")
	for _, target := range oddTargets {
		if n := len(tableRows(t, g.p.downdb, target+".nolog")); n != 0 {
			t.Fatalf("%s.nolog has %d rows: a change with sql_log_bin=0 is in no event", target, n)
		}
	}
	g.relayEqualsUpstream(t)
}

// TestOddSystemVersioning: a table WITH SYSTEM VERSIONING (its rows events
// carry the invisible row_start and row_end columns, and an update logs the
// history row too) is not supported: the schema tracker refuses its CREATE
// TABLE, and both syncers stop there, loudly, with ErrUnsupportedDDL naming
// the statement, before anything of the table is applied.
func TestOddSystemVersioning(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 86}, testserver.MariaDBOptions{ServerID: 186})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.sv (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING")
	mustExec(t, db, "INSERT INTO odd.sv VALUES (1, 1), (2, 2), (3, 3)")
	mustExec(t, db, "UPDATE odd.sv SET v = v + 10 WHERE id < 3")
	for _, target := range oddTargets {
		err := g.stopErr(t, target)
		var se *dmworker.SyncError
		if !errors.Is(err, dmworker.ErrUnsupportedDDL) || !errors.As(err, &se) || !strings.Contains(se.Statement, "WITH SYSTEM VERSIONING") {
			t.Fatalf("%s: %v, want ErrUnsupportedDDL at the CREATE TABLE", target, err)
		}
	}
}

// TestOddSequence: a SEQUENCE is not supported. The tracker passes over
// CREATE SEQUENCE (it makes no table), so the rows events MariaDB logs for
// NEXTVAL and SETVAL (rows of the sequence's own table) stop both syncers,
// loudly, with ErrUnknownTable naming the sequence. Blocking the sequence
// in the task's filter is the way through: the values NEXTVAL gave arrive
// as they are in the rows of the tables that took them.
func TestOddSequence(t *testing.T) {
	workload := func(db *sql.DB) {
		mustExec(t, db, "CREATE DATABASE odd")
		mustExec(t, db, "CREATE SEQUENCE odd.seq START WITH 100 INCREMENT BY 5")
		mustExec(t, db, "CREATE TABLE odd.useq (id BIGINT PRIMARY KEY, v INT)")
		mustExec(t, db, "INSERT INTO odd.useq VALUES (NEXTVAL(odd.seq), 1), (NEXTVAL(odd.seq), 2)")
		mustExec(t, db, "SELECT SETVAL(odd.seq, 1000)")
		mustExec(t, db, "INSERT INTO odd.useq VALUES (NEXTVAL(odd.seq), 3)")
	}
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 87}, testserver.MariaDBOptions{ServerID: 187})
	workload(g.p.updb)
	for _, target := range oddTargets {
		err := g.stopErr(t, target)
		var se *dmworker.SyncError
		if !errors.Is(err, dmworker.ErrUnknownTable) || !errors.As(err, &se) || se.Table != "odd.seq" {
			t.Fatalf("%s: %v, want ErrUnknownTable for odd.seq", target, err)
		}
	}

	g = newOddRigWith(t, testserver.MariaDBOptions{ServerID: 89}, testserver.MariaDBOptions{ServerID: 189}, func(cfg *dmworker.SyncerConfig) {
		cfg.Filter.IgnoreTables = []dmworker.TablePattern{{Schema: "odd", Name: "seq"}}
	})
	workload(g.p.updb)
	g.check(t, "useq")
	g.relayEqualsUpstream(t)
}

// TestOddTemporaryAndLoadData: temporary tables in ROW format (never
// logged; what they feed into a real table arrives as rows) and LOAD DATA
// LOCAL INFILE (logged as rows in ROW format), through both readers.
func TestOddTemporaryAndLoadData(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 88}, testserver.MariaDBOptions{ServerID: 188})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.fromtmp (id INT PRIMARY KEY, v VARCHAR(10))")
	sessionExec(t, db, "CREATE TEMPORARY TABLE odd.tmp (id INT PRIMARY KEY, v VARCHAR(10))",
		"INSERT INTO odd.tmp VALUES (1, 'a'), (2, 'b')",
		"INSERT INTO odd.fromtmp SELECT * FROM odd.tmp",
		"UPDATE odd.tmp SET v = 'c'",
		"UPDATE odd.fromtmp f JOIN odd.tmp t USING (id) SET f.v = t.v WHERE id = 2",
		"DROP TEMPORARY TABLE odd.tmp")

	mustExec(t, db, "CREATE TABLE odd.loaded (id INT PRIMARY KEY, v VARCHAR(20))")
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "%d\tline %d\n", i, i)
	}
	mysql.RegisterReaderHandler("oddload", func() io.Reader { return strings.NewReader(b.String()) })
	defer mysql.DeregisterReaderHandler("oddload")
	mustExec(t, db, "LOAD DATA LOCAL INFILE 'Reader::oddload' INTO TABLE odd.loaded")
	mustExec(t, db, "LOAD DATA LOCAL INFILE 'Reader::oddload' REPLACE INTO TABLE odd.loaded (id, @v) SET v = CONCAT(@v, '!')")
	g.check(t, "fromtmp", "loaded")
	g.relayEqualsUpstream(t)
}

// TestOddNoChecksum: an upstream with binlog_checksum=NONE (no CRC32 after
// each event), through both readers; the relay copies its files as they are.
func TestOddNoChecksum(t *testing.T) {
	g := newOddRig(t, testserver.MariaDBOptions{ServerID: 91, ExtraArgs: []string{"--binlog-checksum=NONE"}}, testserver.MariaDBOptions{ServerID: 191})
	db := g.p.updb
	mustExec(t, db, "CREATE DATABASE odd")
	mustExec(t, db, "CREATE TABLE odd.t (id INT PRIMARY KEY, v VARCHAR(40))")
	for i := range 20 {
		mustExec(t, db, "INSERT INTO odd.t VALUES (?, ?)", i, strings.Repeat("v", i))
	}
	mustExec(t, db, "UPDATE odd.t SET v = 'u' WHERE id % 2 = 0")
	xaPrepare(t, db, "'nc'", "DELETE FROM odd.t WHERE id = 3")
	mustExec(t, db, "FLUSH BINARY LOGS")
	xaExec(t, db, "XA COMMIT 'nc'")
	mustExec(t, db, "ALTER TABLE odd.t ADD COLUMN w INT DEFAULT 5")
	g.check(t, "t")
	g.relayEqualsUpstream(t)
}
