package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// rawGot is a copy of what a RawReader delivered for one event.
type rawGot struct {
	h          replication.EventHeader
	data       string
	pos        streamer.Position
	artificial bool
	txnEnd     bool
	boundary   bool
	gset       string // GTIDSet() after a transaction's end
}

func copyRaw(r *streamer.RawReader, ev *streamer.RawEvent) rawGot {
	g := rawGot{h: ev.Header, data: string(ev.Data), pos: ev.Pos, artificial: ev.Artificial(), txnEnd: ev.TxnEnd, boundary: ev.Boundary}
	if ev.TxnEnd {
		if s := r.GTIDSet(); s != nil {
			g.gset = s.String()
		}
	}
	return g
}

// drainRaw reads until the reader has delivered everything up to end.
func drainRaw(ctx context.Context, t testing.TB, r *streamer.RawReader, end streamer.Position, got []rawGot) []rawGot {
	t.Helper()
	for {
		if n := len(got); n > 0 && got[n-1].pos.Compare(end) >= 0 {
			return got
		}
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(got), err)
		}
		got = append(got, copyRaw(r, ev))
	}
}

// rawKeys keys the real events as keys does for decoded ones.
func rawKeys(evs []rawGot) []evKey {
	var out []evKey
	file := ""
	for _, e := range evs {
		if e.artificial {
			file = e.pos.Name
			continue
		}
		k := evKey{File: e.pos.Name, End: e.pos.Offset, Type: e.h.EventType, Raw: e.data}
		if e.h.EventType == replication.ROTATE_EVENT {
			k.File, k.End = file, uint64(e.h.LogPos)
		}
		file = e.pos.Name
		out = append(out, k)
	}
	return out
}

// checkRawTransactions checks the raw reader's transaction framing and GTID
// bookkeeping: each MariaDB GTID event opens a transaction that ends once,
// and the set after its end holds its GTID.
func checkRawTransactions(t testing.TB, evs []rawGot) {
	t.Helper()
	open := ""
	ends := 0
	for _, e := range evs {
		if e.h.EventType == replication.MARIADB_GTID_EVENT && !e.artificial {
			if open != "" {
				t.Fatalf("a GTID event at %s starts before %s ended", e.pos, open)
			}
			b := []byte(e.data)[replication.EventHeaderSize:]
			open = fmt.Sprintf("%d-%d-%d", le32(b[8:]), e.h.ServerID, le64(b))
		}
		if e.txnEnd {
			if open == "" {
				t.Fatalf("transaction end at %s outside a transaction", e.pos)
			}
			set, err := mysql.ParseMariadbGTIDSet(e.gset)
			if err != nil || e.gset == "" {
				t.Fatalf("GTID set %q at %s: %v", e.gset, e.pos, err)
			}
			want, _ := mysql.ParseMariadbGTIDSet(open)
			if !set.Contain(want) {
				t.Fatalf("set %s at %s lacks %s", e.gset, e.pos, open)
			}
			if !e.boundary {
				t.Fatalf("transaction end at %s is not a boundary", e.pos)
			}
			open = ""
			ends++
		}
	}
	if ends == 0 {
		t.Fatal("no transaction ends seen")
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

// sameAsRemote checks that the raw reader and the decoding RemoteReader,
// reading the same range, agree on every event: bytes, position,
// transaction end, boundary and the GTID set at each transaction end.
func sameAsRemote(t testing.TB, raw []rawGot, dec []*streamer.Event) {
	t.Helper()
	if len(raw) != len(dec) {
		t.Fatalf("raw reader delivered %d events, remote reader %d", len(raw), len(dec))
	}
	for i, d := range dec {
		r := raw[i]
		dset := ""
		if d.TxnEnd && d.Pos.GTIDSet != nil {
			dset = d.Pos.GTIDSet.String()
		}
		dpos := streamer.Position{Name: d.Pos.Name, Offset: d.Pos.Offset}
		if r.data != string(d.RawData) || r.pos != dpos || r.txnEnd != d.TxnEnd || r.boundary != d.Boundary ||
			r.artificial != d.Artificial() || r.gset != dset {
			t.Fatalf("event %d differs:\n raw    %s %s end=%v boundary=%v set=%q\n remote %s %s end=%v boundary=%v set=%q",
				i, r.h.EventType, r.pos, r.txnEnd, r.boundary, r.gset, d.Header.EventType, dpos, d.TxnEnd, d.Boundary, dset)
		}
	}
}

func TestRawReaderEqualsFilesAndRemoteReader(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 300, MaxBinlogSize: 16 << 10,
		ExtraArgs: []string{"--max-allowed-packet=64M"}})
	db := m.DB(t)
	workload(t, db, 0, 60)
	// Events larger than the read buffer (1 MiB) and than one protocol
	// packet (16 MiB) take the reader's assembling path.
	mustExec(t, db, "CREATE TABLE wl.big (id INT PRIMARY KEY, b LONGBLOB)")
	mustExec(t, db, "INSERT INTO wl.big VALUES (1, REPEAT('a', 3 << 20))")
	mustExec(t, db, "INSERT INTO wl.big VALUES (2, REPEAT('b', 17 << 20))")
	workload(t, db, 60, 30)
	want := fileEvents(t, m)
	end := lastPos(want)
	big, huge := 0, 0
	for _, k := range want {
		if len(k.Raw) > 1<<20 {
			big++
		}
		if len(k.Raw) >= 1<<24 {
			huge++
		}
	}
	if big != 2 || huge != 1 {
		t.Fatalf("%d events over 1 MiB, %d over 16 MiB; want 2 and 1", big, huge)
	}
	ctx := testCtx(t)

	for _, start := range []streamer.Position{
		{Name: "mysql-bin.000001", Offset: 4},
		midFile(want, 40),
	} {
		t.Run(start.String(), func(t *testing.T) {
			r, err := streamer.NewRawReader(upstreamOf(m), start, streamer.WithHeartbeat(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)
			got := drainRaw(ctx, t, r, end, nil)
			equalEvents(t, rawKeys(got), from(want, start))
			if start.Offset == 4 {
				checkRawTransactions(t, got)
			}

			rr, err := streamer.NewRemoteReader(upstreamOf(m), start, streamer.WithoutRowValues())
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, rr)
			sameAsRemote(t, got, drain(ctx, t, rr, end, nil))
		})
	}
}

// midFile is the position after the n-th XID event.
func midFile(evs []evKey, n int) streamer.Position {
	for _, k := range evs {
		if k.Type == replication.XID_EVENT {
			if n--; n == 0 {
				return streamer.Position{Name: k.File, Offset: k.End}
			}
		}
	}
	panic("not enough transactions")
}

func TestRawReaderFromMariaDBGTID(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 301, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 80)
	_, gtidEnd := masterStatus(t, db)
	want := fileEvents(t, m)
	end := lastPos(want)
	ctx := testCtx(t)

	var seq uint64
	fmt.Sscanf(gtidEnd, "0-301-%d", &seq)
	if seq < 80 {
		t.Fatalf("gtid_binlog_pos %q", gtidEnd)
	}
	startSeq := seq / 2
	gset, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, fmt.Sprintf("0-301-%d", startSeq))
	if err != nil {
		t.Fatal(err)
	}
	start := streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: gset}
	r, err := streamer.NewRawReader(upstreamOf(m), start)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	got := drainRaw(ctx, t, r, end, nil)
	checkRawTransactions(t, got)
	if gset.String() != fmt.Sprintf("0-301-%d", startSeq) {
		t.Fatalf("the reader modified the start's GTID set: %s", gset)
	}

	// Every transaction after the start, in order, each once.
	next := startSeq + 1
	for _, e := range got {
		if e.h.EventType == replication.MARIADB_GTID_EVENT && !e.artificial {
			if s := le64([]byte(e.data)[replication.EventHeaderSize:]); s != next {
				t.Fatalf("GTID sequence %d, want %d", s, next)
			}
			next++
		}
	}
	if next != seq+1 {
		t.Fatalf("stream ended before sequence %d (got up to %d)", seq, next-1)
	}
	if p := r.Position(); p.GTIDSet == nil || p.GTIDSet.String() != gtidEnd {
		t.Fatalf("final position %s, want GTID set %s", p, gtidEnd)
	}
	// The same events as the decoding reader from the same set.
	rr, err := streamer.NewRemoteReader(upstreamOf(m), start)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, rr)
	sameAsRemote(t, got, drain(ctx, t, rr, end, nil))
}

// readRawToMidTransaction reads until the reader has delivered a rows event
// of an open transaction.
func readRawToMidTransaction(ctx context.Context, t testing.TB, r *streamer.RawReader, got []rawGot) []rawGot {
	t.Helper()
	for {
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, copyRaw(r, ev))
		switch ev.Header.EventType {
		case replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
			replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2:
			if !ev.TxnEnd && len(got) > 200 {
				return got
			}
		}
	}
}

func TestRawReaderReconnects(t *testing.T) {
	killDump := func(t *testing.T, m *testserver.MariaDB) {
		db := m.DB(t)
		var id int64
		if err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&id); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, fmt.Sprintf("KILL %d", id))
	}
	cases := []struct {
		name  string
		proxy bool
		fault func(ctx context.Context, t *testing.T, m *testserver.MariaDB, p *faultnet.Proxy, logs *logCounter, r *streamer.RawReader) []rawGot
	}{
		{"kill dump thread", false, func(_ context.Context, t *testing.T, m *testserver.MariaDB, _ *faultnet.Proxy, _ *logCounter, _ *streamer.RawReader) []rawGot {
			killDump(t, m)
			return nil
		}},
		{"upstream restart", false, func(ctx context.Context, t *testing.T, m *testserver.MariaDB, _ *faultnet.Proxy, logs *logCounter, r *streamer.RawReader) []rawGot {
			if err := m.Stop(); err != nil {
				t.Fatal(err)
			}
			var got []rawGot
			waitFor(t, "failed reconnects", func() bool {
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				ev, err := r.Next(short)
				if err == nil {
					got = append(got, copyRaw(r, ev))
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Next while the upstream is down: %v", err)
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
		{"network stall then cut", true, func(_ context.Context, t *testing.T, _ *testserver.MariaDB, p *faultnet.Proxy, _ *logCounter, _ *streamer.RawReader) []rawGot {
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
		{"connection reset", true, func(_ context.Context, t *testing.T, _ *testserver.MariaDB, p *faultnet.Proxy, _ *logCounter, _ *streamer.RawReader) []rawGot {
			p.CutAll()
			return nil
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, ctx, up, p := startFaultUpstream(t, uint32(310+i), tc.proxy)
			logs := newLogCounter()
			r, err := streamer.NewRawReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4},
				streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
				streamer.WithHeartbeat(200*time.Millisecond), streamer.WithReadTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)

			got := readRawToMidTransaction(ctx, t, r, nil)
			got = append(got, tc.fault(ctx, t, m, p, logs, r)...)
			// Keep writing while the reader recovers.
			workload(t, m.DB(t), 60, 40)
			want := fileEvents(t, m)
			got = drainRaw(ctx, t, r, lastPos(want), got)
			if logs.n("reading upstream binlog") < 2 {
				t.Fatalf("the reader never reconnected; logs:\n%s", logs.text())
			}
			equalEvents(t, rawKeys(got), want)
			checkRawTransactions(t, got)
			if strings.Contains(logs.text(), m.Password) {
				t.Fatal("the password appears in the logs")
			}
		})
	}
}

func TestRawReaderErrors(t *testing.T) {
	m, ctx, cases := readerErrorCases(t, 302)
	const badPassword = errorCaseBadPassword
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.upstream(m)
			logs := newLogCounter()
			r, err := streamer.NewRawReader(up, tc.start, errorCaseOptions(logs)...)
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)
			for err == nil {
				_, err = r.Next(ctx)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var se *streamer.Error
			if !errors.As(err, &se) || !strings.Contains(err.Error(), up.SourceName()) {
				t.Fatalf("error %v is not a *streamer.Error naming the source %s", err, up.SourceName())
			}
			for _, pw := range []string{m.Password, badPassword} {
				if strings.Contains(err.Error(), pw) || strings.Contains(logs.text(), pw) {
					t.Fatalf("the password shows in the error or the logs: %v\n%s", err, logs.text())
				}
			}
			if _, err2 := r.Next(ctx); !errors.Is(err2, tc.want) {
				t.Fatalf("second Next: %v", err2)
			}
		})
	}
}

func TestRawReaderCloseAndCancel(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 303})
	db := m.DB(t)
	end, gtid := masterStatus(t, db)
	end.Flavor = streamer.FlavorMariaDB
	var err error
	if end.GTIDSet, err = streamer.NewGTIDSet(streamer.FlavorMariaDB, gtid); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	dumps := func() int {
		var n int
		_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&n)
		return n
	}

	t.Run("a context that ends keeps the reader", func(t *testing.T) {
		r, err := streamer.NewRawReader(upstreamOf(m), end)
		if err != nil {
			t.Fatal(err)
		}
		closeReader(t, r)
		// Read to the live tail, then let short contexts expire there,
		// several times: each interrupts a blocked read.
		for expired := 0; expired < 3; {
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err := r.Next(short)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				expired++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		workload(t, db, 0, 3)
		to, _ := masterStatus(t, db)
		got := drainRaw(ctx, t, r, to, nil)
		checkRawTransactions(t, got)
		if p := r.Position(); p.GTIDSet == nil || p.Name != to.Name || p.Offset != to.Offset {
			t.Fatalf("position %s, want %s with a GTID set", p, to)
		}
	})

	t.Run("close unblocks next and ends the dump thread", func(t *testing.T) {
		r, err := streamer.NewRawReader(upstreamOf(m), end)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			for {
				if _, err := r.Next(ctx); err != nil {
					errc <- err
					return
				}
			}
		}()
		waitFor(t, "the dump thread", func() bool { return dumps() > 0 })
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, streamer.ErrClosed) {
				t.Fatalf("Next after Close: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Next did not return after Close")
		}
		waitFor(t, "no dump thread", func() bool { return dumps() == 0 })
		if err := r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// TestRawReaderOnCaughtUp: the hook runs, inside Next, once the reader has
// taken everything the upstream sent, with Position at the upstream's end;
// and again after the upstream sends more and pauses.
func TestRawReaderOnCaughtUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the hook needs batched reads (Linux)")
	}
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 304, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 40)
	r, err := streamer.NewRawReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	ctx := testCtx(t)
	// readUntilCaughtUpAt reads until the hook sees the reader at end; the
	// hook then ends the read's context, so that Next returns.
	readUntilCaughtUpAt := func(end streamer.Position) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		reached, calls := false, 0
		r.OnCaughtUp(func() {
			calls++
			if p := r.Position(); p.Name == end.Name && p.Offset == end.Offset {
				reached = true
				cancel()
			}
		})
		defer r.OnCaughtUp(nil)
		for !reached {
			_, err := r.Next(rctx)
			if reached && errors.Is(err, context.Canceled) {
				break
			}
			if err != nil {
				t.Fatalf("after %d calls of the hook, at %s, short of %s: %v", calls, r.Position(), end, err)
			}
		}
	}
	end, _ := masterStatus(t, db)
	readUntilCaughtUpAt(end)
	workload(t, db, 40, 20)
	end, _ = masterStatus(t, db)
	if end.Name == "mysql-bin.000001" {
		t.Fatal("the workload did not rotate the binlog")
	}
	readUntilCaughtUpAt(end)
}
