package streamer_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// upstreamOf describes a test server as a streamer upstream.
func upstreamOf(m *testserver.MariaDB) streamer.UpstreamConfig {
	return streamer.UpstreamConfig{
		Host: m.Host, Port: uint16(m.Port), User: m.User, Password: m.Password,
		Flavor: streamer.FlavorMariaDB,
	}
}

// workload runs n transactions on db: several single-row statements each (so
// a transaction spans several row events), with a DDL every 25.
func workload(t testing.TB, db *sql.DB, from, n int) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS wl")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS wl.t (id INT PRIMARY KEY, v VARCHAR(200), n INT)")
	for i := from; i < from+n; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 5; j++ {
			id := i*10 + j
			if _, err := tx.Exec("INSERT INTO wl.t VALUES (?, ?, ?)", id, strings.Repeat("x", 100+j), i); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec("UPDATE wl.t SET n = n + 1 WHERE id = ?", i*10); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("DELETE FROM wl.t WHERE id = ?", i*10+4); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if i%25 == 24 {
			mustExec(t, db, fmt.Sprintf("CREATE TABLE IF NOT EXISTS wl.ddl_%d (a INT)", i))
		}
	}
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func masterStatus(t testing.TB, db *sql.DB) (streamer.Position, string) {
	t.Helper()
	var file string
	var pos uint64
	var gtid string
	rows, err := db.Query("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	for i := range vals {
		vals[i] = new(sql.RawBytes)
	}
	if !rows.Next() {
		t.Fatal("SHOW MASTER STATUS: no row")
	}
	if err := rows.Scan(vals...); err != nil {
		t.Fatal(err)
	}
	file = string(*vals[0].(*sql.RawBytes))
	fmt.Sscan(string(*vals[1].(*sql.RawBytes)), &pos)
	rows.Close()
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	return streamer.Position{Name: file, Offset: pos}, gtid
}

// evKey identifies an event by where it ends and what its bytes are.
type evKey struct {
	File string
	End  uint64
	Type replication.EventType
	Raw  string
}

func (k evKey) String() string {
	return fmt.Sprintf("%s:%d %s (%d bytes)", k.File, k.End, k.Type, len(k.Raw))
}

// fileEvents parses the server's own binlog files: the reference a remote
// read must match.
func fileEvents(t testing.TB, m *testserver.MariaDB) []evKey {
	t.Helper()
	files, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []evKey
	for _, f := range files {
		name := f[strings.LastIndexByte(f, '/')+1:]
		p := replication.NewBinlogParser()
		p.SetFlavor(mysql.MariaDBFlavor)
		// Not verified: the active file's format description has the
		// in-use flag set after its checksum was computed. The raw bytes
		// are compared instead.
		err := p.ParseFile(f, 4, func(e *replication.BinlogEvent) error {
			raw := string(e.RawData)
			if e.Header.EventType == replication.FORMAT_DESCRIPTION_EVENT && e.Header.Flags&replication.LOG_EVENT_BINLOG_IN_USE_F != 0 {
				// The server marks the file it is writing as in use and
				// sends the event with the mark cleared (the checksum
				// covers the cleared form).
				b := []byte(raw)
				b[17] &^= byte(replication.LOG_EVENT_BINLOG_IN_USE_F)
				raw = string(b)
			}
			out = append(out, evKey{File: name, End: uint64(e.Header.LogPos), Type: e.Header.EventType, Raw: raw})
			return nil
		})
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
	}
	return out
}

// lastPos is the position after the last of the events. The server may
// append more (MariaDB writes binlog checkpoint events in the background), so
// a test compares up to here.
func lastPos(evs []evKey) streamer.Position {
	k := evs[len(evs)-1]
	if k.Type == replication.ROTATE_EVENT {
		panic("binlog ends with a rotate event")
	}
	return streamer.Position{Name: k.File, Offset: k.End}
}

// drain reads until the reader has delivered everything up to end.
func drain(ctx context.Context, t testing.TB, r streamer.Reader, end streamer.Position, got []*streamer.Event) []*streamer.Event {
	t.Helper()
	for {
		if n := len(got); n > 0 && got[n-1].Pos.Compare(end) >= 0 {
			return got
		}
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatalf("GetEvent after %d events: %v", len(got), err)
		}
		got = append(got, ev)
	}
}

// keys returns the real (non-artificial) events as evKeys. A real rotate
// event ends its file: its Pos is already in the next file, so it is keyed by
// the file it ends.
func keys(evs []*streamer.Event) []evKey {
	var out []evKey
	file := ""
	for _, e := range evs {
		if e.Artificial() {
			file = e.Pos.Name
			continue
		}
		k := evKey{File: e.Pos.Name, End: e.Pos.Offset, Type: e.Header.EventType, Raw: string(e.RawData)}
		if e.Header.EventType == replication.ROTATE_EVENT {
			k.File, k.End = file, uint64(e.Header.LogPos)
		}
		file = e.Pos.Name
		out = append(out, k)
	}
	return out
}

// from returns the file events after position p.
func from(all []evKey, p streamer.Position) []evKey {
	for i, k := range all {
		if (streamer.Position{Name: k.File, Offset: k.End}).Compare(p) > 0 {
			return all[i:]
		}
	}
	return nil
}

func equalEvents(t testing.TB, got, want []evKey) {
	t.Helper()
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			t.Fatalf("event %d differs:\n got  %s\n want %s", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		var extra evKey
		if len(got) > n {
			extra = got[n]
		} else {
			extra = want[n]
		}
		t.Fatalf("got %d events, want %d; first unmatched: %s", len(got), len(want), extra)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func closeReader(t testing.TB, r interface{ Close() error }) {
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

func TestRemoteReaderFromPositionEqualsFiles(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 11, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 120)
	want := fileEvents(t, m)
	end := lastPos(want)
	if files := map[string]bool{}; true {
		for _, k := range want {
			files[k.File] = true
		}
		if len(files) < 3 {
			t.Fatalf("workload made %d binlog files, want rotations", len(files))
		}
	}
	ctx := testCtx(t)

	t.Run("from the first file", func(t *testing.T) {
		r, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4}, streamer.WithHeartbeat(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		closeReader(t, r)
		got := drain(ctx, t, r, end, nil)
		equalEvents(t, keys(got), want)
		checkTransactions(t, got)
	})

	t.Run("without row values", func(t *testing.T) {
		r, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4}, streamer.WithoutRowValues())
		if err != nil {
			t.Fatal(err)
		}
		closeReader(t, r)
		got := drain(ctx, t, r, end, nil)
		equalEvents(t, keys(got), want)
		rows := 0
		for _, e := range got {
			if re, ok := e.Event.(*replication.RowsEvent); ok {
				rows++
				if re.Rows != nil || re.TableID == 0 {
					t.Fatalf("rows event at %s: rows %v, table id %d", e.Pos, re.Rows, re.TableID)
				}
			}
		}
		if rows == 0 {
			t.Fatal("no rows events")
		}
		checkTransactions(t, got)
	})

	t.Run("from a transaction end mid-file", func(t *testing.T) {
		// The 40th XID: a position in the middle of some file.
		var start streamer.Position
		xids := 0
		for _, k := range want {
			if k.Type == replication.XID_EVENT {
				if xids++; xids == 40 {
					start = streamer.Position{Name: k.File, Offset: k.End}
					break
				}
			}
		}
		r, err := streamer.NewRemoteReader(upstreamOf(m), start)
		if err != nil {
			t.Fatal(err)
		}
		closeReader(t, r)
		got := drain(ctx, t, r, end, nil)
		equalEvents(t, keys(got), from(want, start))
	})
}

// checkTransactions checks transaction framing and GTID bookkeeping: every
// transaction starts with a GTID event, ends once, and the set at its end
// holds its GTID.
func checkTransactions(t testing.TB, evs []*streamer.Event) {
	t.Helper()
	open := ""
	ends := 0
	for _, e := range evs {
		if g, ok := e.Event.(*replication.MariadbGTIDEvent); ok {
			if open != "" {
				t.Fatalf("GTID %s starts before %s ended", g.GTID.String(), open)
			}
			open = g.GTID.String()
		}
		if e.GTID != open && !e.Artificial() {
			t.Fatalf("event %s at %s: GTID %q, want %q", e.Header.EventType, e.Pos, e.GTID, open)
		}
		if e.TxnEnd {
			if open == "" {
				t.Fatalf("transaction end at %s outside a transaction", e.Pos)
			}
			if e.Pos.GTIDSet == nil {
				t.Fatalf("no GTID set at %s", e.Pos)
			}
			want, _ := mysql.ParseMariadbGTIDSet(open)
			if !e.Pos.GTIDSet.Contain(want) {
				t.Fatalf("set %s at %s lacks %s", e.Pos.GTIDSet, e.Pos, open)
			}
			open = ""
			ends++
		}
	}
	if ends == 0 {
		t.Fatal("no transaction ends seen")
	}
}

func TestRemoteReaderFromGTID(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 12, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 80)
	_, gtidEnd := masterStatus(t, db)
	want := fileEvents(t, m)
	end := lastPos(want)
	ctx := testCtx(t)

	var seq uint64
	fmt.Sscanf(gtidEnd, "0-12-%d", &seq)
	if seq < 80 {
		t.Fatalf("gtid_binlog_pos %q", gtidEnd)
	}
	startSeq := seq / 2
	gset, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, fmt.Sprintf("0-12-%d", startSeq))
	if err != nil {
		t.Fatal(err)
	}
	r, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: gset})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	got := drain(ctx, t, r, end, nil)
	checkTransactions(t, got)

	// Every transaction after the start, in order, each once.
	next := startSeq + 1
	for _, e := range got {
		if g, ok := e.Event.(*replication.MariadbGTIDEvent); ok {
			if g.GTID.SequenceNumber != next {
				t.Fatalf("GTID %s, want sequence %d", g.GTID.String(), next)
			}
			next++
		}
	}
	if next != seq+1 {
		t.Fatalf("stream ended before sequence %d (got up to %d)", seq, next-1)
	}
	last := got[len(got)-1].Pos
	if last.GTIDSet.String() != gtidEnd {
		t.Fatalf("final GTID set %s, want %s", last.GTIDSet, gtidEnd)
	}
	// The real events delivered are exactly the file's from the first
	// transaction on.
	var firstGTID evKey
	for _, k := range keys(got) {
		if k.Type == replication.MARIADB_GTID_EVENT {
			firstGTID = k
			break
		}
	}
	gotKeys := keys(got)
	for i, k := range gotKeys {
		if k == firstGTID {
			gotKeys = gotKeys[i:]
			break
		}
	}
	for i, k := range want {
		if k == firstGTID {
			want = want[i:]
			break
		}
	}
	equalEvents(t, gotKeys, want)
}

// cutMidTransaction reads until the reader has delivered a row event of an
// open transaction.
func readToMidTransaction(ctx context.Context, t testing.TB, r streamer.Reader, got []*streamer.Event) []*streamer.Event {
	t.Helper()
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
		if _, ok := ev.Event.(*replication.RowsEvent); ok && !ev.TxnEnd && len(got) > 200 {
			return got
		}
	}
}

// logCounter is an slog handler that counts records by message and keeps
// the text of all of them.
type logCounter struct {
	mu    sync.Mutex
	count map[string]int
	buf   bytes.Buffer
}

func newLogCounter() *logCounter { return &logCounter{count: map[string]int{}} }

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count[r.Message]++
	l.buf.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&l.buf, " %s=%v", a.Key, a.Value)
		return true
	})
	l.buf.WriteByte('\n')
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) n(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[msg]
}
func (l *logCounter) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemoteReaderReconnects(t *testing.T) {
	cases := []struct {
		name  string
		proxy bool
		// fault breaks the connection; it may read events while doing so
		// and returns them.
		fault func(ctx context.Context, t *testing.T, m *testserver.MariaDB, p *faultnet.Proxy, logs *logCounter, r streamer.Reader) []*streamer.Event
	}{
		{"kill dump thread", false, func(_ context.Context, t *testing.T, m *testserver.MariaDB, _ *faultnet.Proxy, _ *logCounter, _ streamer.Reader) []*streamer.Event {
			db := m.DB(t)
			var id int64
			if err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&id); err != nil {
				t.Fatal(err)
			}
			mustExec(t, db, fmt.Sprintf("KILL %d", id))
			return nil
		}},
		{"upstream restart", false, func(ctx context.Context, t *testing.T, m *testserver.MariaDB, _ *faultnet.Proxy, logs *logCounter, r streamer.Reader) []*streamer.Event {
			if err := m.Stop(); err != nil {
				t.Fatal(err)
			}
			// Keep the reader busy until it has failed to reconnect
			// twice, so that the retry path is exercised, then bring the
			// server back.
			var got []*streamer.Event
			waitFor(t, "failed reconnects", func() bool {
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				ev, err := r.GetEvent(short)
				if err == nil {
					got = append(got, ev)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("GetEvent while the upstream is down: %v", err)
				}
				return logs.n("upstream connection failed, retrying") >= 2
			})
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := m.Restart(rctx); err != nil {
				t.Fatalf("restart: %v", err)
			}
			return got
		}},
		{"network cut", true, func(_ context.Context, t *testing.T, _ *testserver.MariaDB, p *faultnet.Proxy, _ *logCounter, _ streamer.Reader) []*streamer.Event {
			before := p.Accepted()
			p.Stall(true)
			go func() {
				// The read timeout notices the silence and the reader
				// dials again; then the network comes back.
				deadline := time.Now().Add(time.Minute)
				for p.Accepted() == before && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				p.CutAll()
				p.Stall(false)
			}()
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, ctx, up, p := startFaultUpstream(t, 13, tc.proxy)
			logs := newLogCounter()
			r, err := streamer.NewRemoteReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4},
				streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
				streamer.WithHeartbeat(200*time.Millisecond), streamer.WithReadTimeout(time.Second),
				streamer.WithEventQueueSize(4))
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)

			got := readToMidTransaction(ctx, t, r, nil)
			got = append(got, tc.fault(ctx, t, m, p, logs, r)...)
			// Keep writing while the reader recovers.
			workload(t, m.DB(t), 60, 40)
			want := fileEvents(t, m)
			got = drain(ctx, t, r, lastPos(want), got)
			if logs.n("upstream connection failed, retrying") == 0 && logs.n("reading upstream binlog") < 2 {
				t.Fatalf("the reader never reconnected; logs:\n%s", logs.text())
			}
			equalEvents(t, keys(got), want)
			checkTransactions(t, got)
			if strings.Contains(logs.text(), m.Password) {
				t.Fatal("the password appears in the logs")
			}
		})
	}
}

func TestRemoteReaderErrors(t *testing.T) {
	m, ctx, cases := readerErrorCases(t, 14)
	const badPassword = errorCaseBadPassword
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.upstream(m)
			logs := newLogCounter()
			r, err := streamer.NewRemoteReader(up, tc.start, errorCaseOptions(logs)...)
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)
			var ev *streamer.Event
			for err == nil {
				ev, err = r.GetEvent(ctx)
				_ = ev
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var se *streamer.Error
			if !errors.As(err, &se) || se.Source == "" {
				t.Fatalf("error %v is not a *streamer.Error naming the source", err)
			}
			if !strings.Contains(err.Error(), up.SourceName()) {
				t.Fatalf("error %q does not name the source %s", err, up.SourceName())
			}
			for _, pw := range []string{m.Password, badPassword} {
				if strings.Contains(err.Error(), pw) || strings.Contains(logs.text(), pw) {
					t.Fatalf("the password shows in the error or the logs: %v\n%s", err, logs.text())
				}
			}
			// Terminal: the same error again.
			if _, err2 := r.GetEvent(ctx); !errors.Is(err2, tc.want) {
				t.Fatalf("second GetEvent: %v", err2)
			}
		})
	}
}

func TestRemoteReaderCloseUnblocksGetEvent(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 15})
	end, _ := masterStatus(t, m.DB(t))
	r, err := streamer.NewRemoteReader(upstreamOf(m), end)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// Drain the header events, then block at the live tail.
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := r.GetEvent(ctx); err != nil {
				errc <- err
				return
			}
		}
	}()
	waitFor(t, "the dump thread", func() bool {
		var n int
		_ = m.DB(t).QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&n)
		return n > 0
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, streamer.ErrClosed) {
			t.Fatalf("GetEvent after Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("GetEvent did not return after Close")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRemoteReaderContextCancelKeepsReader(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 16})
	db := m.DB(t)
	end, gtid := masterStatus(t, db)
	// A file position with the GTID set executed there: events carry the
	// set from the start.
	end.Flavor = streamer.FlavorMariaDB
	var err error
	if end.GTIDSet, err = streamer.NewGTIDSet(streamer.FlavorMariaDB, gtid); err != nil {
		t.Fatal(err)
	}
	r, err := streamer.NewRemoteReader(upstreamOf(m), end)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	ctx := testCtx(t)
	// Read to the live tail, then let a short context expire there.
	for {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := r.GetEvent(short)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	workload(t, db, 0, 3)
	end, _ = masterStatus(t, db)
	got := drain(ctx, t, r, end, nil)
	checkTransactions(t, got)
}

func TestPickServerIDAvoidsReplicas(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 17})
	ctx := testCtx(t)
	up := upstreamOf(m)
	up.ServerID = 4242
	r, err := streamer.NewRemoteReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if _, err := r.GetEvent(ctx); err != nil {
		t.Fatal(err)
	}
	used := streamer.UsedServerIDsForTest(ctx, t, upstreamOf(m))
	if !used[4242] || !used[17] {
		t.Fatalf("used ids %v lack the replica 4242 or the server's own 17", used)
	}
	for i := 0; i < 20; i++ {
		id, err := streamer.PickServerID(ctx, upstreamOf(m))
		if err != nil {
			t.Fatal(err)
		}
		if used[id] || id == 0 {
			t.Fatalf("picked used id %d", id)
		}
	}
	// A reader without a server id picks one and registers with it.
	r2, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r2)
	if _, err := r2.GetEvent(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two registered replicas", func() bool {
		return len(streamer.UsedServerIDsForTest(ctx, t, upstreamOf(m))) == 4 // 0, 17, 4242, picked
	})
}

// errorCaseBadPassword is the wrong password of readerErrorCases.
const errorCaseBadPassword = "not-the-Password-42"

// readerErrorCase is a start that a remote reader (RemoteReader or
// RawReader) must refuse with want.
type readerErrorCase struct {
	name  string
	up    func(streamer.UpstreamConfig) streamer.UpstreamConfig
	start streamer.Position
	want  error
}

// readerErrorCases starts a MariaDB (server id serverID) whose binlog starts
// at mysql-bin.000003 and returns the starts a remote reader must refuse:
// wrong password, unknown host, purged file, purged GTID, GTID from the
// future, offset past the end.
func readerErrorCases(t *testing.T, serverID uint32) (*testserver.MariaDB, context.Context, []readerErrorCase) {
	t.Helper()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: serverID, MaxBinlogSize: 8 << 10})
	db := m.DB(t)
	workload(t, db, 0, 60)
	mustExec(t, db, "FLUSH BINARY LOGS")
	mustExec(t, db, "PURGE BINARY LOGS TO 'mysql-bin.000003'")
	_, gtidEnd := masterStatus(t, db)
	ctx := testCtx(t)

	gset := func(s string) mysql.GTIDSet {
		g, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	var seq uint64
	fmt.Sscanf(gtidEnd, fmt.Sprintf("0-%d-%%d", serverID), &seq)

	return m, ctx, []readerErrorCase{
		{"wrong password", func(u streamer.UpstreamConfig) streamer.UpstreamConfig { u.Password = errorCaseBadPassword; return u },
			streamer.Position{Name: "mysql-bin.000003", Offset: 4}, streamer.ErrAccessDenied},
		{"unknown host", func(u streamer.UpstreamConfig) streamer.UpstreamConfig { u.Host = "no-such-host.invalid"; return u },
			streamer.Position{Name: "mysql-bin.000003", Offset: 4}, streamer.ErrUnknownHost},
		{"purged file", nil, streamer.Position{Name: "mysql-bin.000001", Offset: 4}, streamer.ErrBinlogPurged},
		{"purged GTID", nil, streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: gset(fmt.Sprintf("0-%d-1", serverID))}, streamer.ErrGTIDNotServable},
		{"GTID from the future", nil, streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: gset(fmt.Sprintf("0-%d-%d", serverID, seq+1000))}, streamer.ErrGTIDNotServable},
		{"offset past the end", nil, streamer.Position{Name: "mysql-bin.000003", Offset: 1 << 30}, streamer.ErrBadPosition},
	}
}

// startFaultUpstream starts a MariaDB (server id serverID, 16 KiB binlog
// files) holding a workload, for a reconnect test; with proxy, the returned
// upstream goes through a faultnet proxy that the test can stall and cut.
func startFaultUpstream(t *testing.T, serverID uint32, proxy bool) (*testserver.MariaDB, context.Context, streamer.UpstreamConfig, *faultnet.Proxy) {
	t.Helper()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: serverID, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 60)
	ctx := testCtx(t)
	up := upstreamOf(m)
	var p *faultnet.Proxy
	if proxy {
		var err error
		p, err = faultnet.New(m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		up.Port = uint16(p.Port())
	}
	return m, ctx, up, p
}

// upstream is the case's upstream on m.
func (tc readerErrorCase) upstream(m *testserver.MariaDB) streamer.UpstreamConfig {
	up := upstreamOf(m)
	if tc.up != nil {
		up = tc.up(up)
	}
	return up
}

// errorCaseOptions are the reader options of the error cases: logs, and a
// short backoff.
func errorCaseOptions(logs *logCounter) []streamer.RemoteOption {
	return []streamer.RemoteOption{streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(10*time.Millisecond, 50*time.Millisecond)}
}
