package streamer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/dumpserver"
	"github.com/dmworker/dmworker/streamer"
)

// The MySQL 8 fixture (testdata/mysql8, see mysql8_fixture_test.go): a
// binlog of MySQL 8.0.36 with binlog_transaction_compression=ON, two files,
// five of its nine transactions in Transaction_payload events. No MySQL 8
// server runs here: the remote readers read it from internal/dumpserver, a
// byte source speaking the dump protocol; the local reader from a relay
// directory holding the files.

const mysql8SID = "8a94f357-aab4-11df-86ab-c80aa9429562"

func mysql8Files(t testing.TB) []dumpserver.File {
	t.Helper()
	var out []dumpserver.File
	for _, name := range []string{"binlog.000001", "binlog.000002"} {
		b, err := os.ReadFile(filepath.Join("testdata", "mysql8", name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, dumpserver.File{Name: name, Data: b})
	}
	return out
}

// mysql8Relay is a relay directory holding files in one subdirectory.
func mysql8Relay(t testing.TB, files []dumpserver.File) string {
	t.Helper()
	dir := t.TempDir()
	sub := streamer.SubDirName(mysql8SID, 1)
	for _, f := range files {
		localWriteFile(t, filepath.Join(dir, sub, f.Name), f.Data)
	}
	localAddSubDir(t, dir, sub)
	return dir
}

// serveMySQL8 starts a dump server of files, closed after the test (and
// after the readers, closed by cleanups registered later).
func serveMySQL8(t testing.TB, files []dumpserver.File) (*dumpserver.Server, streamer.UpstreamConfig) {
	t.Helper()
	s, err := dumpserver.Start(files...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, streamer.UpstreamConfig{Host: s.Host(), Port: s.Port(), User: dumpserver.User, Password: dumpserver.Password,
		Flavor: streamer.FlavorMySQL, ServerID: 4242}
}

// mysql8Event is an event of the fixture's files as a decoding reader must
// deliver it: the files' events, each payload replaced by the events it
// holds, with the positions go-mysql gives them (the payload's start for
// all but the last, its end for the last) and the payload's start as
// Event.Start.
type mysql8Event struct {
	typ    replication.EventType
	raw    []byte
	pos    streamer.Position // file and offset
	start  uint64            // Event.Start's offset: where it, or its payload, begins
	txnEnd bool
	gno    int64 // at a transaction end: the last GTID executed
}

// mysql8Expected parses the files with go-mysql.
func mysql8Expected(t testing.TB, files []dumpserver.File) []mysql8Event {
	t.Helper()
	var out []mysql8Event
	var gno int64
	ddl := false
	for _, f := range files {
		p := replication.NewBinlogParser()
		p.SetFlavor(streamer.FlavorMySQL)
		for off := 4; off < len(f.Data); {
			size := int(binary.LittleEndian.Uint32(f.Data[off+9:]))
			be, err := p.Parse(f.Data[off : off+size])
			if err != nil {
				t.Fatal(err)
			}
			start := uint64(off)
			off += size
			evs := []*replication.BinlogEvent{be}
			if tp, ok := be.Event.(*replication.TransactionPayloadEvent); ok {
				evs = tp.Events
			}
			for _, e := range evs {
				k := mysql8Event{typ: e.Header.EventType, raw: e.RawData, pos: streamer.Position{Name: f.Name, Offset: uint64(e.Header.LogPos)}, start: start}
				switch ev := e.Event.(type) {
				case *replication.GTIDEvent:
					gno, ddl = ev.GNO, true
				case *replication.QueryEvent:
					k.txnEnd = ddl && string(ev.Query) != "BEGIN"
					ddl = false
				case *replication.XIDEvent:
					k.txnEnd = true
				case *replication.RotateEvent:
					k.pos = streamer.Position{Name: string(ev.NextLogName), Offset: ev.Position}
					k.start = 0
				}
				if k.txnEnd {
					k.gno = gno
				}
				out = append(out, k)
			}
		}
	}
	return out
}

// checkMySQL8Events checks what a decoding reader delivered (artificial
// events aside) against want.
func checkMySQL8Events(t testing.TB, got []*streamer.Event, want []mysql8Event) {
	t.Helper()
	i := 0
	for _, e := range got {
		if e.Artificial() {
			continue
		}
		if i == len(want) {
			t.Fatalf("an event more than the files hold: %s at %s", e.Header.EventType, e.Pos)
		}
		w := want[i]
		if e.Header.EventType != w.typ || !bytes.Equal(e.RawData, w.raw) || e.Pos.Name != w.pos.Name || e.Pos.Offset != w.pos.Offset || e.TxnEnd != w.txnEnd ||
			e.Start().Offset != w.start {
			t.Fatalf("event %d: %s at %s from %s (end %v, %d bytes), want %s at %s from %d (end %v, %d bytes)", i, e.Header.EventType, e.Pos, e.Start(),
				e.TxnEnd, len(e.RawData), w.typ, w.pos, w.start, w.txnEnd, len(w.raw))
		}
		if w.txnEnd {
			want := mysql8Set(w.gno)
			if e.Pos.GTIDSet == nil || e.Pos.GTIDSet.String() != want {
				t.Fatalf("event %d: GTID set %v at a transaction end, want %s", i, e.Pos.GTIDSet, want)
			}
		}
		i++
	}
	if i != len(want) {
		t.Fatalf("%d events delivered, the files hold %d", i, len(want))
	}
}

// mysql8Set is the GTID set executed after transaction gno.
func mysql8Set(gno int64) string {
	if gno == 1 {
		return mysql8SID + ":1"
	}
	return fmt.Sprintf("%s:1-%d", mysql8SID, gno)
}

// mysql8End is the end of the fixture's last file.
func mysql8End(files []dumpserver.File) streamer.Position {
	last := files[len(files)-1]
	return streamer.Position{Name: last.Name, Offset: uint64(len(last.Data))}
}

// mysql8Offsets returns the start and end offsets of the events of type typ
// in a file.
func mysql8Offsets(f dumpserver.File, typ replication.EventType) (starts, ends []uint64) {
	for off := 4; off < len(f.Data); {
		size := int(binary.LittleEndian.Uint32(f.Data[off+9:]))
		if replication.EventType(f.Data[off+4]) == typ {
			starts, ends = append(starts, uint64(off)), append(ends, uint64(off+size))
		}
		off += size
	}
	return starts, ends
}

// TestMySQL8CompressedDecodingReaders: the remote reader (go-mysql's
// BinlogSyncer, from the dump server) and the local reader (a relay
// directory of the files) deliver the events the payloads hold in their
// place, with go-mysql's positions (the payload's start, its end for the
// last), the transaction's end and the GTID set there, and agree with each
// other, also when started at a payload and when the connection is cut
// right before a payload or right after one.
func TestMySQL8CompressedDecodingReaders(t *testing.T) {
	ctx := testCtx(t)
	files := mysql8Files(t)
	want := mysql8Expected(t, files)
	srv, up := serveMySQL8(t, files)
	start := streamer.Position{Name: "binlog.000001", Offset: 4}

	local := newLocal(t, mysql8Relay(t, files), streamer.StartAtPosition(start), streamer.WithFollow(false))
	localEvs := localReadAll(ctx, t, local)
	checkMySQL8Events(t, localEvs, want)

	remote, err := streamer.NewRemoteReader(up, start)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, remote)
	remoteEvs := drain(ctx, t, remote, mysql8End(files), nil)
	checkMySQL8Events(t, remoteEvs, want)
	equalStreams(t, realKeys(remoteEvs), realKeys(localEvs))

	// Started at a payload (the position of its inner events but the
	// last): both read the whole payload again.
	payStarts, payEnds := mysql8Offsets(files[0], replication.TRANSACTION_PAYLOAD_EVENT)
	mid := streamer.Position{Name: "binlog.000001", Offset: payStarts[1]}
	l2 := newLocal(t, mysql8Relay(t, files), streamer.StartAtPosition(mid), streamer.WithFollow(false))
	r2, err := streamer.NewRemoteReader(up, mid)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r2)
	fromLocal, fromRemote := realKeys(localReadAll(ctx, t, l2)), realKeys(drain(ctx, t, r2, mysql8End(files), nil))
	equalStreams(t, fromRemote, fromLocal)
	if len(fromLocal) < 2 || fromLocal[0].Type != replication.QUERY_EVENT || !strings.HasSuffix(fromLocal[0].Raw, "BEGIN") ||
		fromLocal[0].Pos != mid.String() {
		t.Fatalf("a start at the payload's start begins with %v, want its BEGIN at %s", fromLocal[:2], mid)
	}

	// Cuts right before the first payload (after its GTID event) and
	// right after the second: nothing lost, nothing twice. (The idle
	// readers go first: without heartbeats from the server they would
	// reconnect after their read timeout.)
	remote.Close()
	r2.Close()
	_, gtidEnds := mysql8Offsets(files[0], replication.GTID_EVENT)
	srv.CutAfter("binlog.000001", gtidEnds[2])
	srv.CutAfter("binlog.000001", payEnds[1])
	dumps := srv.Dumps()
	r3, err := streamer.NewRemoteReader(up, start, streamer.WithBackoff(10e6, 50e6))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r3)
	checkMySQL8Events(t, drain(ctx, t, r3, mysql8End(files), nil), want)
	if n := srv.Dumps() - dumps; n < 3 {
		t.Fatalf("%d dumps for a read cut twice, want 3", n)
	}
}

// realKeys keys the real events.
func realKeys(evs []*streamer.Event) []streamKey {
	var real []*streamer.Event
	for _, e := range evs {
		if !e.Artificial() {
			real = append(real, e)
		}
	}
	return streamKeys(real)
}

// rawCopy reads files through a RawReader from the dump server into a relay
// subdirectory, as the relay does, and returns the events delivered.
func rawCopy(ctx context.Context, t *testing.T, r *streamer.RawReader, sub string, end streamer.Position) []rawGot {
	t.Helper()
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := streamer.NewRelayDir(filepath.Dir(sub), streamer.DefaultRelayFileMode, streamer.DefaultRelayDirMode, nil).Writer(filepath.Base(sub), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []rawGot
	for len(got) == 0 || got[len(got)-1].pos.Compare(end) < 0 {
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(got), err)
		}
		if _, err := w.WriteRaw(ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, copyRaw(r, ev))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestMySQL8CompressedRawReaderAndRelay: the raw reader delivers each
// Transaction_payload event as it is, ending its transaction with the GTID
// set there; written into a relay directory as the relay writes, the files
// are the upstream's byte for byte, and the local reader reads them as the
// original. A connection cut right before and right after a payload changes
// nothing.
func TestMySQL8CompressedRawReaderAndRelay(t *testing.T) {
	ctx := testCtx(t)
	files := mysql8Files(t)
	srv, up := serveMySQL8(t, files)
	_, gtidEnds := mysql8Offsets(files[0], replication.GTID_EVENT)
	_, payEnds := mysql8Offsets(files[1], replication.TRANSACTION_PAYLOAD_EVENT)
	srv.CutAfter("binlog.000001", gtidEnds[2])
	srv.CutAfter("binlog.000002", payEnds[0])

	r, err := streamer.NewRawReader(up, streamer.Position{Name: "binlog.000001", Offset: 4}, streamer.WithBackoff(10e6, 50e6))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	dir := t.TempDir()
	sub := streamer.SubDirName(mysql8SID, 1)
	got := rawCopy(ctx, t, r, filepath.Join(dir, sub), mysql8End(files))
	localAddSubDir(t, dir, sub)

	// Every real event, byte for byte, once; a payload ends its
	// transaction, with the set there.
	var real []rawGot
	for _, g := range got {
		if !g.artificial {
			real = append(real, g)
		}
	}
	var want [][]byte
	for _, f := range files {
		for off := 4; off < len(f.Data); {
			size := int(binary.LittleEndian.Uint32(f.Data[off+9:]))
			want = append(want, f.Data[off:off+size])
			off += size
		}
	}
	if len(real) != len(want) {
		t.Fatalf("%d events delivered, the files hold %d", len(real), len(want))
	}
	var gno int64
	payloads := 0
	for i, g := range real {
		typ := g.h.EventType
		if g.data != string(want[i]) {
			t.Fatalf("event %d (%s) differs from the file's", i, typ)
		}
		switch typ {
		case replication.GTID_EVENT:
			gno = int64(binary.LittleEndian.Uint64(want[i][19+1+16:]))
		case replication.TRANSACTION_PAYLOAD_EVENT, replication.XID_EVENT:
			if typ == replication.TRANSACTION_PAYLOAD_EVENT {
				payloads++
			}
			if !g.txnEnd || !g.boundary || g.gset != mysql8Set(gno) {
				t.Fatalf("event %d, %s: end %v boundary %v set %s, want the end of transaction %d", i, typ, g.txnEnd, g.boundary, g.gset, gno)
			}
		}
	}
	if payloads != 5 {
		t.Fatalf("%d payload events", payloads)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, sub, f.Name))
		if err != nil || !bytes.Equal(b, f.Data) {
			t.Fatalf("relay file %s is not the upstream's byte for byte (%v)", f.Name, err)
		}
	}
	if n := srv.Dumps(); n < 3 {
		t.Fatalf("%d dumps for a read cut twice, want 3", n)
	}

	// The local reader reads the copy as the original.
	l := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{Name: "binlog.000001", Offset: 4}), streamer.WithFollow(false))
	checkMySQL8Events(t, localReadAll(ctx, t, l), mysql8Expected(t, files))
}

// TestMySQL8DamagedPayload: a payload whose compressed events are damaged
// (checksum made again, so that only the payload decoder can tell) stops
// the local reader with ErrRelayCorrupt naming the event's offset, and the
// raw reader with an error naming it; nothing of it is delivered.
func TestMySQL8DamagedPayload(t *testing.T) {
	ctx := testCtx(t)
	files := mysql8Files(t)
	starts, ends := mysql8Offsets(files[0], replication.TRANSACTION_PAYLOAD_EVENT)
	bad := bytes.Clone(files[0].Data)
	ev := bad[starts[0]:ends[0]]
	for i := len(ev) - 20; i < len(ev)-8; i++ {
		ev[i] ^= 0x5a
	}
	binary.LittleEndian.PutUint32(ev[len(ev)-4:], crc32.ChecksumIEEE(ev[:len(ev)-4]))
	damaged := []dumpserver.File{{Name: files[0].Name, Data: bad}, files[1]}

	l := newLocal(t, mysql8Relay(t, damaged), streamer.StartAtPosition(streamer.Position{Name: "binlog.000001", Offset: 4}), streamer.WithFollow(false))
	var n int
	var err error
	for err == nil {
		var e *streamer.Event
		if e, err = l.GetEvent(ctx); err == nil && e.Pos.Offset > starts[0] {
			t.Fatalf("delivered %s at %s, past the damaged payload at %d", e.Header.EventType, e.Pos, starts[0])
		}
		n++
	}
	var re *streamer.RelayError
	if !errors.Is(err, streamer.ErrRelayCorrupt) || !errors.As(err, &re) || re.Offset != int64(starts[0]) {
		t.Fatalf("after %d events: %v, want ErrRelayCorrupt at %d", n, err, starts[0])
	}

	_, up := serveMySQL8(t, damaged)
	r, err := streamer.NewRawReader(up, streamer.Position{Name: "binlog.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	for {
		e, err := r.Next(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("binlog.000001:%d", ends[0])) {
				t.Fatalf("raw reader: %v, want an error naming the payload", err)
			}
			break
		}
		if e.Pos.Offset >= ends[0] && e.Pos.Name == "binlog.000001" {
			t.Fatalf("raw reader delivered the damaged payload")
		}
	}
}
