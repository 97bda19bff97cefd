package streamer_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// localCopyRelay copies m's binlog files into dir/sub as relay files and
// appends sub to the index. clearInUse clears the in-use mark of the active
// file's format description, as the server does when it sends the file (the
// relay writes what it is sent); without it the copy is the server's file
// byte for byte.
func localCopyRelay(t testing.TB, m *testserver.MariaDB, dir, sub string, clearInUse bool) []string {
	t.Helper()
	files, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if clearInUse && len(data) > 4+19 {
			data[4+17] &^= byte(replication.LOG_EVENT_BINLOG_IN_USE_F)
		}
		name := filepath.Base(f)
		localWriteFile(t, filepath.Join(dir, sub, name), data)
		names = append(names, name)
	}
	localAddSubDir(t, dir, sub)
	return names
}

func localWriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// localAddSubDir appends sub to dir's index.
func localAddSubDir(t testing.TB, dir, sub string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	// The index as written, not ReadRelayIndex: the caller may have
	// written the files first, which the relay never does (an unlisted
	// subdirectory with files reads as a damaged index).
	data, err := os.ReadFile(filepath.Join(dir, streamer.RelayIndexFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := streamer.WriteRelayIndex(dir, append(strings.Fields(string(data)), sub)); err != nil {
		t.Fatal(err)
	}
}

func newLocal(t testing.TB, dir string, start streamer.LocalStart, opts ...streamer.LocalOption) *streamer.LocalReader {
	t.Helper()
	r, err := streamer.NewLocalReader(dir, start, opts...)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	return r
}

// localReadAll reads a non-following reader to its end.
func localReadAll(ctx context.Context, t testing.TB, r streamer.Reader) []*streamer.Event {
	t.Helper()
	var got []*streamer.Event
	for {
		ev, err := r.GetEvent(ctx)
		if errors.Is(err, streamer.ErrEndOfStream) {
			return got
		}
		if err != nil {
			t.Fatalf("GetEvent after %d events: %v", len(got), err)
		}
		got = append(got, ev)
	}
}

// streamKey is what two readers must agree on for an event: its type, its
// Pos (file, offset, GTID set), GTID and TxnEnd, and for a real event its
// bytes.
type streamKey struct {
	Type       replication.EventType
	Artificial bool
	Pos        string
	GTID       string
	TxnEnd     bool
	Raw        string
}

func (k streamKey) String() string {
	a := ""
	if k.Artificial {
		a = " (artificial)"
	}
	return fmt.Sprintf("%s%s at %s gtid=%q end=%v (%d bytes)", k.Type, a, k.Pos, k.GTID, k.TxnEnd, len(k.Raw))
}

// streamKeys keys the events both readers deliver: every real event, and the
// artificial rotates and format descriptions; heartbeats and MariaDB's fake
// GTID list (remote only) are left out.
func streamKeys(evs []*streamer.Event) []streamKey {
	var out []streamKey
	for _, e := range evs {
		t := e.Header.EventType
		art := e.Artificial()
		if art && t != replication.ROTATE_EVENT && t != replication.FORMAT_DESCRIPTION_EVENT {
			continue
		}
		k := streamKey{Type: t, Artificial: art, Pos: e.Pos.String(), GTID: e.GTID, TxnEnd: e.TxnEnd}
		if !art {
			k.Raw = string(e.RawData)
		}
		out = append(out, k)
	}
	return out
}

func equalStreams(t testing.TB, got, want []streamKey) {
	t.Helper()
	n := min(len(got), len(want))
	for i := range n {
		if got[i] != want[i] {
			t.Fatalf("event %d differs:\n local  %s\n remote %s", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		var extra streamKey
		if len(got) > n {
			extra = got[n]
		} else {
			extra = want[n]
		}
		t.Fatalf("local has %d events, remote %d; first unmatched: %s", len(got), len(want), extra)
	}
}

// localXIDEnd is the position after the n-th XID event of evs.
func localXIDEnd(t testing.TB, evs []evKey, n int) streamer.Position {
	t.Helper()
	for _, k := range evs {
		if k.Type == replication.XID_EVENT {
			if n--; n == 0 {
				return streamer.Position{Name: k.File, Offset: k.End}
			}
		}
	}
	t.Fatalf("fewer than %d XIDs", n)
	return streamer.Position{}
}

func TestLocalReaderEqualsRemote(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 31, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 120)
	_, gtidEnd := masterStatus(t, db)
	want := fileEvents(t, m)
	ctx := testCtx(t)

	dir := t.TempDir()
	sub := streamer.SubDirName("31", 1)
	files := localCopyRelay(t, m, dir, sub, true)
	if len(files) < 4 {
		t.Fatalf("workload made %d binlog files, want rotations", len(files))
	}
	// The same files as the server holds them, in-use mark and all.
	rawDir := t.TempDir()
	localCopyRelay(t, m, rawDir, sub, false)

	mid := localXIDEnd(t, want, 40)
	var seq uint64
	fmt.Sscanf(gtidEnd, "0-31-%d", &seq)
	half, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, fmt.Sprintf("0-31-%d", seq/2))
	if err != nil {
		t.Fatal(err)
	}
	dm, err := streamer.DMPosition(1, mid.Name)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		dir    string
		local  streamer.LocalStart
		remote streamer.Position
	}{
		{"oldest", dir, streamer.StartAtPosition(streamer.Position{}), streamer.Position{Name: files[0], Offset: 4}},
		{"first file", dir, streamer.StartAtPosition(streamer.Position{Name: files[0], Offset: 4}), streamer.Position{Name: files[0], Offset: 4}},
		{"server's own files", rawDir, streamer.StartAtPosition(streamer.Position{Name: files[0]}), streamer.Position{Name: files[0], Offset: 4}},
		{"position mid-file", dir, streamer.StartAtPosition(mid), mid},
		{"relay position", dir, streamer.StartAtRelayPos(streamer.RelayPos{SubDir: sub, Name: mid.Name, Offset: mid.Offset}, nil), mid},
		{"DM position", dir, streamer.StartAtDMPos(dm, mid.Offset, nil), mid},
		{"GTID", dir, streamer.StartAtGTID(half), streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: half}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lr := newLocal(t, tc.dir, tc.local, streamer.WithFollow(false))
			local := localReadAll(ctx, t, lr)
			if len(local) < 100 {
				t.Fatalf("only %d events", len(local))
			}
			if lr.SubDir() != sub {
				t.Fatalf("SubDir %q, want %q", lr.SubDir(), sub)
			}
			end := local[len(local)-1].Pos
			rr, err := streamer.NewRemoteReader(upstreamOf(m), tc.remote, streamer.WithHeartbeat(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, rr)
			remote := drain(ctx, t, rr, end, nil)
			equalStreams(t, streamKeys(local), streamKeys(remote))
			if tc.remote.GTIDSet != nil || tc.remote.Offset == 4 {
				checkTransactions(t, local)
			}
			if got := end.GTIDSet; got == nil || got.String() != gtidEnd {
				t.Fatalf("final GTID set %v, want %s", got, gtidEnd)
			}
		})
	}
}

// localReplayAs writes transactions on db under another server's GTIDs, as
// a replica applying them would.
func localReplayAs(t testing.TB, db *localSession, serverID uint32, seqs []uint64) {
	t.Helper()
	for _, s := range seqs {
		db.exec(t, fmt.Sprintf("SET SESSION server_id = %d, gtid_seq_no = %d", serverID, s))
		db.exec(t, fmt.Sprintf("INSERT INTO wl.t VALUES (%d, 'replayed', 0)", 900000+s))
	}
	db.exec(t, "SET SESSION server_id = @@GLOBAL.server_id")
}

// TestLocalReaderCompressedEqualsRemote covers MariaDB's compressed query
// and rows events (log_bin_compress), whose sizes the reader checks before
// go-mysql decompresses them.
func TestLocalReaderCompressedEqualsRemote(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 32, MaxBinlogSize: 16 << 10,
		ExtraArgs: []string{"--log-bin-compress=ON", "--log-bin-compress-min-len=10"}})
	db := m.DB(t)
	workload(t, db, 0, 40)
	dir := t.TempDir()
	sub := streamer.SubDirName("32", 1)
	localCopyRelay(t, m, dir, sub, true)
	compressed := 0
	for _, k := range localRelayEvents(t, dir, sub) {
		switch k.Type {
		case replication.MARIADB_QUERY_COMPRESSED_EVENT, replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1,
			replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
			compressed++
		}
	}
	if compressed < 100 {
		t.Fatalf("only %d compressed events", compressed)
	}
	ctx := testCtx(t)
	local := localReadAll(ctx, t, newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(false)))
	rr, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, rr)
	remote := drain(ctx, t, rr, local[len(local)-1].Pos, nil)
	equalStreams(t, streamKeys(local), streamKeys(remote))
	checkTransactions(t, local)
}

func TestLocalReaderFollowsSubDirs(t *testing.T) {
	a := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 41, MaxBinlogSize: 16 << 10})
	b := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 42, MaxBinlogSize: 16 << 10})
	dbA, dbB := a.DB(t), b.DB(t)
	workload(t, dbA, 0, 60)
	_, gtidA := masterStatus(t, dbA)
	var seqA uint64
	fmt.Sscanf(gtidA, "0-41-%d", &seqA)

	// b becomes the new master: it has the schema, repeats a's last three
	// transactions with their GTIDs (as a replica with log_slave_updates
	// would), then goes on with its own.
	cb := newLocalSession(t, dbB)
	cb.exec(t, "SET SESSION sql_log_bin = 0")
	cb.exec(t, "CREATE DATABASE wl")
	cb.exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(200), n INT)")
	cb.exec(t, "SET SESSION sql_log_bin = 1")
	localReplayAs(t, cb, 41, []uint64{seqA - 2, seqA - 1, seqA})
	workload(t, dbB, 1000, 50)
	_, gtidB := masterStatus(t, dbB)

	dir := t.TempDir()
	subA, subB := streamer.SubDirName("41", 1), streamer.SubDirName("42", 2)
	localCopyRelay(t, a, dir, subA, true)
	wantA := localRelayEvents(t, dir, subA)
	ctx := testCtx(t)

	// Follow: the reader drains a's subdirectory and waits at its end
	// until b's subdirectory appears.
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithPollInterval(5*time.Millisecond))
	got := drain(ctx, t, r, lastPos(wantA), nil)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if ev, err := r.GetEvent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetEvent at the end of the first subdirectory: %v, %v; want to wait", ev, err)
	}
	cancel()
	localCopyRelay(t, b, dir, subB, true)

	wantB := localRelayEvents(t, dir, subB)
	var switchAt int
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
		if r.SubDir() == subB && switchAt == 0 {
			switchAt = len(got) - 1
			if !ev.Artificial() || ev.Header.EventType != replication.ROTATE_EVENT {
				t.Fatalf("first event of the new subdirectory is %s, want a fake rotate", ev.Header.EventType)
			}
		}
		if r.SubDir() == subB && ev.Pos.Compare(lastPos(wantB)) >= 0 {
			break
		}
	}
	checkTransactions(t, got)
	if s := got[len(got)-1].Pos.GTIDSet.String(); s != gtidB {
		t.Fatalf("final GTID set %s, want %s", s, gtidB)
	}

	// The expected stream: a's files, then b's without the transactions
	// repeated from a.
	var wantBKept []evKey
	skipping := false
	for _, k := range wantB {
		if k.Type == replication.MARIADB_GTID_EVENT {
			skipping = binary.LittleEndian.Uint32([]byte(k.Raw[5:9])) == 41
		}
		if !skipping {
			wantBKept = append(wantBKept, k)
		}
		if k.Type == replication.XID_EVENT {
			skipping = false
		}
	}
	if len(wantBKept) > len(wantB)-3*4 {
		t.Fatalf("expected to drop three transactions of b's binlog, dropped %d events", len(wantB)-len(wantBKept))
	}
	equalEvents(t, keys(got[:switchAt]), wantA)
	equalEvents(t, keys(got[switchAt:]), wantBKept)
}

// fakeTail is a RelayTail that a test moves by hand.
type fakeTail struct {
	mu  sync.Mutex
	end streamer.RelayPos
	ch  chan struct{}
}

func newFakeTail(end streamer.RelayPos) *fakeTail {
	return &fakeTail{end: end, ch: make(chan struct{})}
}

func (f *fakeTail) Relayed() (streamer.RelayPos, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.end, f.ch
}

func (f *fakeTail) publish(end streamer.RelayPos) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.end = end
	close(f.ch)
	f.ch = make(chan struct{})
}

// localBinlog is a server's finished binlog file and its events.
type localBinlog struct {
	name string
	data []byte
	evs  []evKey
}

// localFinishedFile runs a workload on a fresh server and returns its first
// binlog file, finished by a rotation.
func localFinishedFile(t testing.TB, serverID uint32, txns int) localBinlog {
	t.Helper()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: serverID})
	db := m.DB(t)
	workload(t, db, 0, txns)
	mustExec(t, db, "FLUSH BINARY LOGS")
	files, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var evs []evKey
	for _, k := range fileEvents(t, m) {
		if k.File == filepath.Base(files[0]) {
			evs = append(evs, k)
		}
	}
	return localBinlog{name: filepath.Base(files[0]), data: data, evs: evs}
}

func TestLocalReaderWakesOnRelayTail(t *testing.T) {
	bl := localFinishedFile(t, 51, 10)
	dir := t.TempDir()
	sub := streamer.SubDirName("51", 1)
	path := filepath.Join(dir, sub, bl.name)
	localAddSubDir(t, dir, sub)

	// The relay has written up to the 3rd transaction end and durably
	// published up to the 2nd; the reader must stop at the 2nd.
	x2 := localXIDEnd(t, bl.evs, 2)
	x3 := localXIDEnd(t, bl.evs, 3)
	localWriteFile(t, path, bl.data[:x3.Offset])
	tail := newFakeTail(streamer.RelayPos{SubDir: sub, Name: bl.name, Offset: x2.Offset})
	// No poll: only the tail's channel can wake the reader.
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithRelayTail(tail), streamer.WithPollInterval(time.Hour))
	ctx := testCtx(t)
	got := drain(ctx, t, r, x2, nil)
	if p := got[len(got)-1].Pos; p.Name != x2.Name || p.Offset != x2.Offset {
		t.Fatalf("read to %s, want %s", p, x2)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if ev, err := r.GetEvent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetEvent past the durable end: %v, %v; want to wait", ev, err)
	}
	cancel()

	// Publishing wakes a reader that is waiting.
	next := make(chan error, 1)
	var ev *streamer.Event
	go func() {
		var err error
		ev, err = r.GetEvent(ctx)
		next <- err
	}()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bl.data[x3.Offset:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tail.publish(streamer.RelayPos{SubDir: sub, Name: bl.name, Offset: x3.Offset})
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	got = append(got, ev)
	got = drain(ctx, t, r, x3, got)
	tail.publish(streamer.RelayPos{SubDir: sub, Name: bl.name, Offset: uint64(len(bl.data))})
	got = drain(ctx, t, r, streamer.Position{Name: bl.name, Offset: uint64(len(bl.data))}, got)
	equalEvents(t, keys(got), bl.evs)
}

func TestLocalReaderWaitsAtTornTail(t *testing.T) {
	bl := localFinishedFile(t, 52, 10)
	dir := t.TempDir()
	sub := streamer.SubDirName("52", 1)
	path := filepath.Join(dir, sub, bl.name)
	localAddSubDir(t, dir, sub)

	// The writer is in the middle of transaction 5: whole events up to a
	// row event, then half of the next event.
	x4 := localXIDEnd(t, bl.evs, 4)
	x5 := localXIDEnd(t, bl.evs, 5)
	var cut, torn uint64
	for i, k := range bl.evs {
		if k.End > x4.Offset && k.End < x5.Offset && k.Type == replication.TABLE_MAP_EVENT {
			cut, torn = k.End, k.End+uint64(len(bl.evs[i+1].Raw))/2
			break
		}
	}
	// The torn event's bytes are not the ones written again after the
	// restart (the crash left them half-written): the reader must not keep
	// them.
	tornData := append([]byte(nil), bl.data[:torn]...)
	tornData[torn-1] ^= 0xff
	localWriteFile(t, path, tornData)
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithPollInterval(2*time.Millisecond))
	ctx := testCtx(t)
	got := drain(ctx, t, r, streamer.Position{Name: bl.name, Offset: cut}, nil)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if ev, err := r.GetEvent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetEvent at a torn tail: %v, %v; want to wait", ev, err)
	}
	cancel()

	// The relay restarts: it cuts the file back to the last whole
	// transaction and pulls it again. The reader, already past that point,
	// waits for the file to catch up and goes on.
	if err := os.Truncate(path, int64(x4.Offset)); err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	if ev, err := r.GetEvent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetEvent after the file was cut back: %v, %v; want to wait", ev, err)
	}
	cancel()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bl.data[x4.Offset:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got = drain(ctx, t, r, streamer.Position{Name: bl.name, Offset: uint64(len(bl.data))}, got)
	equalEvents(t, keys(got), bl.evs)
	checkTransactions(t, got)
}

func TestLocalReaderCorruption(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 53, MaxBinlogSize: 16 << 10})
	workload(t, m.DB(t), 0, 80)
	all := fileEvents(t, m)
	src := t.TempDir()
	sub := streamer.SubDirName("53", 1)
	files := localCopyRelay(t, m, src, sub, true)
	if len(files) < 3 {
		t.Fatalf("%d files", len(files))
	}
	ctx := testCtx(t)

	// eventIn returns the start offset and size of an event in the middle
	// of file.
	eventIn := func(file string) (start, size uint64) {
		var evs []evKey
		for _, k := range all {
			if k.File == file {
				evs = append(evs, k)
			}
		}
		k := evs[len(evs)/2]
		return k.End - uint64(len(k.Raw)), uint64(len(k.Raw))
	}
	clone := func(t *testing.T) string {
		dir := t.TempDir()
		localAddSubDir(t, dir, sub)
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(src, sub, f))
			if err != nil {
				t.Fatal(err)
			}
			localWriteFile(t, filepath.Join(dir, sub, f), data)
		}
		return dir
	}
	mutate := func(t *testing.T, path string, fn func([]byte) []byte) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		localWriteFile(t, path, fn(data))
	}
	// wantCorrupt reads until the error and checks it names file and
	// offset.
	wantCorrupt := func(t *testing.T, dir, file string, off uint64, follow bool, also error) {
		r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(follow), streamer.WithPollInterval(time.Millisecond))
		var err error
		n := 0
		for err == nil {
			_, err = r.GetEvent(ctx)
			n++
		}
		if !errors.Is(err, streamer.ErrRelayCorrupt) {
			t.Fatalf("after %d events: %v, want ErrRelayCorrupt", n, err)
		}
		if also != nil && !errors.Is(err, also) {
			t.Fatalf("%v does not wrap %v", err, also)
		}
		var re *streamer.RelayError
		if !errors.As(err, &re) {
			t.Fatalf("%v is not a *RelayError", err)
		}
		if want := filepath.Join(dir, sub, file); re.Path != want || re.Offset != int64(off) {
			t.Fatalf("error names %s at %d, want %s at %d", re.Path, re.Offset, want, off)
		}
		if !strings.Contains(err.Error(), filepath.Join(sub, file)) || !strings.Contains(err.Error(), fmt.Sprint(off)) {
			t.Fatalf("message %q does not name the file and offset", err)
		}
		var se *streamer.Error
		if !errors.As(err, &se) || se.Source != dir {
			t.Fatalf("%v is not a *streamer.Error naming the relay directory", err)
		}
		if _, err2 := r.GetEvent(ctx); !errors.Is(err2, streamer.ErrRelayCorrupt) {
			t.Fatalf("second GetEvent: %v", err2)
		}
	}

	t.Run("flipped byte in a finished file", func(t *testing.T) {
		dir := clone(t)
		start, size := eventIn(files[1])
		mutate(t, filepath.Join(dir, sub, files[1]), func(b []byte) []byte { b[start+size/2] ^= 0x40; return b })
		wantCorrupt(t, dir, files[1], start, false, streamer.ErrChecksum)
	})
	t.Run("flipped byte in the file being written", func(t *testing.T) {
		dir := clone(t)
		last := files[len(files)-1]
		start, size := eventIn(last)
		mutate(t, filepath.Join(dir, sub, last), func(b []byte) []byte { b[start+size/2] ^= 0x01; return b })
		wantCorrupt(t, dir, last, start, true, streamer.ErrChecksum)
	})
	t.Run("flipped size in a header", func(t *testing.T) {
		dir := clone(t)
		start, _ := eventIn(files[0])
		mutate(t, filepath.Join(dir, sub, files[0]), func(b []byte) []byte { b[start+11] ^= 0x7f; return b })
		wantCorrupt(t, dir, files[0], start, false, nil)
	})
	t.Run("truncated finished file", func(t *testing.T) {
		dir := clone(t)
		start, size := eventIn(files[1])
		mutate(t, filepath.Join(dir, sub, files[1]), func(b []byte) []byte { return b[:start+size-3] })
		wantCorrupt(t, dir, files[1], start, true, nil)
	})
	t.Run("torn tail of the last file is the end", func(t *testing.T) {
		dir := clone(t)
		last := files[len(files)-1]
		start, size := eventIn(last)
		mutate(t, filepath.Join(dir, sub, last), func(b []byte) []byte { return b[:start+size-3] })
		r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(false))
		got := localReadAll(ctx, t, r)
		if p := got[len(got)-1].Pos; p.Name != last || p.Offset != start {
			t.Fatalf("stream ends at %s, want %s:%d", p, last, start)
		}
	})
}

func TestLocalReaderStartErrors(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 54, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	workload(t, db, 0, 60)
	all := fileEvents(t, m)
	// dir: the relay of this server, then of another one whose file
	// names are the same. purged: this server's relay without its first
	// file.
	dir, purged := t.TempDir(), t.TempDir()
	sub := streamer.SubDirName("54", 1)
	files := localCopyRelay(t, m, dir, sub, true)
	localCopyRelay(t, m, purged, sub, true)
	if err := os.Remove(filepath.Join(purged, sub, files[0])); err != nil {
		t.Fatal(err)
	}
	other := localFinishedFile(t, 55, 3)
	sub2 := streamer.SubDirName("55", 2)
	localWriteFile(t, filepath.Join(dir, sub2, other.name), other.data)
	localAddSubDir(t, dir, sub2)
	ctx := testCtx(t)
	mariadb := func(s string) mysql.GTIDSet {
		g, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	x := localXIDEnd(t, all, 30)
	var finished evKey // the rotate that ends files[1]
	for _, k := range all {
		if k.File == files[1] && k.Type == replication.ROTATE_EVENT {
			finished = k
		}
	}
	dmGone, _ := streamer.DMPosition(7, files[2])

	cases := []struct {
		name  string
		dir   string
		start streamer.LocalStart
		want  error
	}{
		{"purged file", purged, streamer.StartAtPosition(streamer.Position{Name: files[0], Offset: 4}), streamer.ErrBinlogPurged},
		{"purged relay position", purged, streamer.StartAtRelayPos(streamer.RelayPos{SubDir: sub, Name: files[0], Offset: 4}, nil), streamer.ErrBinlogPurged},
		{"unknown subdirectory", dir, streamer.StartAtDMPos(dmGone, 4, nil), streamer.ErrBinlogPurged},
		{"purged GTIDs", purged, streamer.StartAtGTID(mariadb("0-54-1")), streamer.ErrGTIDNotServable},
		{"ambiguous name", dir, streamer.StartAtPosition(streamer.Position{Name: other.name, Offset: 4}), streamer.ErrBadPosition},
		{"past the end of a finished file", dir, streamer.StartAtPosition(streamer.Position{Name: files[1], Offset: finished.End + 100}), streamer.ErrBadPosition},
		{"not at an event boundary", purged, streamer.StartAtPosition(streamer.Position{Name: x.Name, Offset: x.Offset + 7}), streamer.ErrBadPosition},
		{"inside a transaction", purged, streamer.StartAtPosition(localAfterTableMap(t, all, x)), streamer.ErrBadPosition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newLocal(t, tc.dir, tc.start, streamer.WithFollow(false))
			var err error
			for err == nil {
				_, err = r.GetEvent(ctx)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var se *streamer.Error
			if !errors.As(err, &se) || se.Source != tc.dir {
				t.Fatalf("error %v is not a *streamer.Error naming the relay", err)
			}
		})
	}

	// The GTID set tells the two mysql-bin.000001 apart.
	t.Run("name and GTID set", func(t *testing.T) {
		set := mariadb("0-55-1")
		r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{Name: other.name, Offset: 4, Flavor: streamer.FlavorMariaDB, GTIDSet: set}), streamer.WithFollow(false))
		localReadAll(ctx, t, r)
		if r.SubDir() != sub2 {
			t.Fatalf("read %s, want %s", r.SubDir(), sub2)
		}
	})

	t.Run("bad arguments", func(t *testing.T) {
		for _, tc := range []struct {
			dir   string
			start streamer.LocalStart
			opts  []streamer.LocalOption
		}{
			{"", streamer.StartAtPosition(streamer.Position{}), nil},
			{dir, streamer.StartAtDMPos("mysql-bin.000001", 4, nil), nil},
			{dir, streamer.StartAtRelayPos(streamer.RelayPos{SubDir: "nodot", Name: "mysql-bin.000001"}, nil), nil},
			{dir, streamer.StartAtRelayPos(streamer.RelayPos{SubDir: sub}, nil), nil},
			{dir, streamer.StartAtPosition(streamer.Position{}), []streamer.LocalOption{streamer.WithPollInterval(0)}},
			{dir, streamer.StartAtPosition(streamer.Position{}), []streamer.LocalOption{streamer.WithRelayRegistry(nil, "x")}},
			{dir, streamer.StartAtPosition(streamer.Position{}), []streamer.LocalOption{streamer.WithRelayRegistry(newFakeRegistry(), "")}},
			{dir, streamer.StartAtPosition(streamer.Position{}), []streamer.LocalOption{streamer.WithAutoAck(true)}},
		} {
			if _, err := streamer.NewLocalReader(tc.dir, tc.start, tc.opts...); err == nil {
				t.Errorf("NewLocalReader(%q, %s) accepted", tc.dir, tc.start)
			}
		}
	})
}

// localAfterTableMap is the position right after the first table map that
// follows p.
func localAfterTableMap(t testing.TB, all []evKey, p streamer.Position) streamer.Position {
	t.Helper()
	for _, k := range from(all, p) {
		if k.Type == replication.TABLE_MAP_EVENT {
			return streamer.Position{Name: k.File, Offset: k.End}
		}
	}
	t.Fatal("no table map")
	return streamer.Position{}
}

func TestLocalReaderContextAndClose(t *testing.T) {
	bl := localFinishedFile(t, 56, 5)
	dir := t.TempDir()
	sub := streamer.SubDirName("56", 1)
	x3 := localXIDEnd(t, bl.evs, 3)
	localWriteFile(t, filepath.Join(dir, sub, bl.name), bl.data[:x3.Offset])
	localAddSubDir(t, dir, sub)
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithPollInterval(time.Millisecond))
	ctx := testCtx(t)
	got := drain(ctx, t, r, x3, nil)

	// A context that ends leaves the reader usable.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := r.GetEvent(short)
	cancel()
	if err != context.DeadlineExceeded {
		t.Fatalf("GetEvent with an expiring context: %v, want context.DeadlineExceeded itself", err)
	}
	localWriteFile(t, filepath.Join(dir, sub, bl.name), bl.data)
	got = drain(ctx, t, r, streamer.Position{Name: bl.name, Offset: uint64(len(bl.data))}, got)
	equalEvents(t, keys(got), bl.evs)

	// Close wakes a waiting GetEvent.
	errc := make(chan error, 1)
	go func() {
		_, err := r.GetEvent(ctx)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block; either way it must return ErrClosed
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, streamer.ErrClosed) {
		t.Fatalf("GetEvent during Close: %v", err)
	}
	if _, err := r.GetEvent(ctx); !errors.Is(err, streamer.ErrClosed) {
		t.Fatalf("GetEvent after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// fakeRegistry is a RelayRegistry that records what readers tell it.
type fakeRegistry struct {
	mu       sync.Mutex
	pos      map[string]streamer.RelayPos
	log      []string
	released map[string]bool
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{pos: map[string]streamer.RelayPos{}, released: map[string]bool{}}
}

func (f *fakeRegistry) RegisterReader(name string, pos streamer.RelayPos) (streamer.ReaderLease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos[name] = pos
	f.log = append(f.log, "register "+pos.String())
	return &fakeLease{f: f, name: name}, nil
}

func (f *fakeRegistry) get(name string) (streamer.RelayPos, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos[name], f.released[name]
}

type fakeLease struct {
	f    *fakeRegistry
	name string
}

func (l *fakeLease) Advance(pos streamer.RelayPos) {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if pos.Compare(l.f.pos[l.name]) > 0 {
		l.f.pos[l.name] = pos
		l.f.log = append(l.f.log, "advance "+pos.String())
	}
}

func (l *fakeLease) Release() {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	l.f.released[l.name] = true
}

func TestLocalReaderWatermark(t *testing.T) {
	dir := t.TempDir()
	sub := streamer.SubDirName("3e11fa47-71ca-11e1-9e33-c80aa9429562", 1)
	files := writeMySQLRelay(t, dir, sub, mysqlRelayLayout)
	ctx := testCtx(t)

	t.Run("Ack", func(t *testing.T) {
		reg := newFakeRegistry()
		r := newLocal(t, dir, streamer.StartAtRelayPos(streamer.RelayPos{SubDir: sub, Name: files[1], Offset: 4}, nil),
			streamer.WithRelayRegistry(reg, "task-1"), streamer.WithFollow(false))
		if _, err := r.GetEvent(ctx); err != nil {
			t.Fatal(err)
		}
		if reg.log[0] != "register "+(streamer.RelayPos{SubDir: sub, Name: files[0], Offset: 4}).String() {
			t.Fatalf("first registration %v: want the oldest file while the start is looked for", reg.log)
		}
		if p, _ := reg.get("task-1"); p != (streamer.RelayPos{SubDir: sub, Name: files[1], Offset: 4}) {
			t.Fatalf("registered at %s, want the start", p)
		}
		var mid streamer.RelayPos
		for {
			ev, err := r.GetEvent(ctx)
			if errors.Is(err, streamer.ErrEndOfStream) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.TxnEnd && r.RelayPos().Name == files[2] && mid.IsZero() {
				mid = r.RelayPos()
			}
		}
		if p, _ := reg.get("task-1"); p.Name != files[1] {
			t.Fatalf("the watermark moved to %s without an Ack", p)
		}
		r.Ack(mid)
		if p, _ := reg.get("task-1"); p != mid {
			t.Fatalf("watermark %s after Ack(%s)", p, mid)
		}
		r.Close()
		if _, released := reg.get("task-1"); !released {
			t.Fatal("Close did not release the registration")
		}
	})

	t.Run("auto", func(t *testing.T) {
		reg := newFakeRegistry()
		r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}),
			streamer.WithRelayRegistry(reg, "task-2"), streamer.WithAutoAck(true), streamer.WithFollow(false))
		localReadAll(ctx, t, r)
		p, _ := reg.get("task-2")
		if p.Name != files[len(files)-1] {
			t.Fatalf("auto-acked up to %s, want into the last file", p)
		}
		if n := len(reg.log); n > 2+len(files) {
			t.Fatalf("%d registry calls for %d files: want one advance a file\n%s", n, len(files), strings.Join(reg.log, "\n"))
		}
	})
}

// MySQL-flavour relay files, built event by event: MariaDB is the only
// server the tests run, and MySQL's GTID sets (UUID intervals, contained in
// each other in ways MariaDB's per-domain sets are not) choose the start
// file differently.

const (
	mysqlUUIDA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	mysqlUUIDB = "8f2a9c10-0000-11ef-8000-0242ac120002"
)

// mysqlRelayLayout is three files: each lists the GTIDs of its
// transactions; each file's previous-GTIDs is everything before it.
var mysqlRelayLayout = [][]string{
	{mysqlUUIDA + ":1", mysqlUUIDA + ":2", mysqlUUIDA + ":3", mysqlUUIDA + ":4", mysqlUUIDA + ":5"},
	{mysqlUUIDA + ":6", mysqlUUIDA + ":7", mysqlUUIDA + ":8", mysqlUUIDA + ":9", mysqlUUIDA + ":10", mysqlUUIDB + ":1", mysqlUUIDB + ":2"},
	{mysqlUUIDA + ":11", "DDL " + mysqlUUIDA + ":12"},
}

// mysqlEventWriter appends MySQL 8.0 binlog events with CRC32 checksums.
type mysqlEventWriter struct{ b []byte }

func (w *mysqlEventWriter) event(t replication.EventType, body []byte) {
	size := 19 + len(body) + 4
	end := len(w.b) + size
	h := make([]byte, 19)
	binary.LittleEndian.PutUint32(h[0:], 1700000000)
	h[4] = byte(t)
	binary.LittleEndian.PutUint32(h[5:], 8)
	binary.LittleEndian.PutUint32(h[9:], uint32(size))
	binary.LittleEndian.PutUint32(h[13:], uint32(end))
	ev := append(h, body...)
	ev = binary.LittleEndian.AppendUint32(ev, crc32.ChecksumIEEE(ev))
	w.b = append(w.b, ev...)
}

func mysqlFDEBody() []byte {
	b := binary.LittleEndian.AppendUint16(nil, 4)
	v := make([]byte, 50)
	copy(v, "8.0.36")
	b = append(b, v...)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, 19)
	lengths := make([]byte, 41)
	lengths[replication.QUERY_EVENT-1] = 13
	lengths[replication.ROTATE_EVENT-1] = 8
	lengths[replication.TABLE_MAP_EVENT-1] = 8
	lengths[replication.GTID_EVENT-1] = 42
	b = append(b, lengths...)
	return append(b, byte(replication.BINLOG_CHECKSUM_ALG_CRC32))
}

func mysqlQueryBody(q string) []byte {
	b := make([]byte, 13)
	b = append(b, 0) // empty schema, NUL-terminated
	return append(b, q...)
}

// writeMySQLRelay writes the layout as files mysql-bin.000001... of dir/sub
// and adds sub to the index.
func writeMySQLRelay(t testing.TB, dir, sub string, layout [][]string) []string {
	t.Helper()
	executed, err := mysql.ParseMysqlGTIDSet("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, txns := range layout {
		name := fmt.Sprintf("mysql-bin.%06d", i+1)
		w := &mysqlEventWriter{b: []byte("\xfebin")}
		w.event(replication.FORMAT_DESCRIPTION_EVENT, mysqlFDEBody())
		w.event(replication.PREVIOUS_GTIDS_EVENT, executed.(*mysql.MysqlGTIDSet).Encode())
		for _, g := range txns {
			ddl := strings.HasPrefix(g, "DDL ")
			g = strings.TrimPrefix(g, "DDL ")
			sid, gno, _ := strings.Cut(g, ":")
			var n int64
			fmt.Sscan(gno, &n)
			u := uuid.MustParse(sid)
			body := append([]byte{1}, u[:]...)
			body = binary.LittleEndian.AppendUint64(body, uint64(n))
			body = append(body, replication.LogicalTimestampTypeCode)
			body = append(body, make([]byte, 16)...)
			w.event(replication.GTID_EVENT, body)
			if ddl {
				w.event(replication.QUERY_EVENT, mysqlQueryBody("CREATE TABLE t (a INT)"))
			} else {
				w.event(replication.QUERY_EVENT, mysqlQueryBody("BEGIN"))
				w.event(replication.XID_EVENT, binary.LittleEndian.AppendUint64(nil, uint64(n)))
			}
			if err := executed.Update(g); err != nil {
				t.Fatal(err)
			}
		}
		if i < len(layout)-1 {
			next := fmt.Sprintf("mysql-bin.%06d", i+2)
			w.event(replication.ROTATE_EVENT, append(binary.LittleEndian.AppendUint64(nil, 4), next...))
		}
		localWriteFile(t, filepath.Join(dir, sub, name), w.b)
		names = append(names, name)
	}
	localAddSubDir(t, dir, sub)
	return names
}

func TestLocalReaderMySQLGTIDStart(t *testing.T) {
	dir := t.TempDir()
	sub := streamer.SubDirName(mysqlUUIDA, 1)
	files := writeMySQLRelay(t, dir, sub, mysqlRelayLayout)
	ctx := testCtx(t)
	set := func(s string) mysql.GTIDSet {
		g, err := streamer.NewGTIDSet(streamer.FlavorMySQL, s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := mysqlUUIDA, mysqlUUIDB
	cases := []struct {
		start     string
		wantFile  string   // where the stream starts
		wantGTIDs []string // the transactions delivered
	}{
		{"", files[0], []string{a + ":1", a + ":2", a + ":3", a + ":4", a + ":5", a + ":6", a + ":7", a + ":8", a + ":9", a + ":10", b + ":1", b + ":2", a + ":11", a + ":12"}},
		{a + ":1-3", files[0], []string{a + ":4", a + ":5", a + ":6", a + ":7", a + ":8", a + ":9", a + ":10", b + ":1", b + ":2", a + ":11", a + ":12"}},
		{a + ":1-7", files[1], []string{a + ":8", a + ":9", a + ":10", b + ":1", b + ":2", a + ":11", a + ":12"}},
		// Holes are filled in, wherever they are.
		{a + ":1-5:7-8", files[1], []string{a + ":6", a + ":9", a + ":10", b + ":1", b + ":2", a + ":11", a + ":12"}},
		{a + ":1-10," + b + ":1-2", files[2], []string{a + ":11", a + ":12"}},
		// A set without a's GTIDs: only the first file starts within it.
		{b + ":1-2", files[0], []string{a + ":1", a + ":2", a + ":3", a + ":4", a + ":5", a + ":6", a + ":7", a + ":8", a + ":9", a + ":10", a + ":11", a + ":12"}},
	}
	for _, tc := range cases {
		t.Run(tc.start, func(t *testing.T) {
			start := set(tc.start)
			r := newLocal(t, dir, streamer.StartAtGTID(start), streamer.WithFollow(false))
			evs := localReadAll(ctx, t, r)
			if first := evs[0]; !first.Artificial() || first.Pos.Name != tc.wantFile || first.Pos.Offset != 4 {
				t.Fatalf("stream starts with %s at %s, want a fake rotate to %s:4", first.Header.EventType, first.Pos, tc.wantFile)
			}
			var gtids []string
			executed := start.Clone()
			for _, ev := range evs {
				if ev.TxnEnd {
					gtids = append(gtids, ev.GTID)
					if err := executed.Update(ev.GTID); err != nil {
						t.Fatal(err)
					}
					if !ev.Pos.GTIDSet.Equal(executed) {
						t.Fatalf("at %s: set %s, want %s", ev.Pos, ev.Pos.GTIDSet, executed)
					}
				}
			}
			if fmt.Sprint(gtids) != fmt.Sprint(tc.wantGTIDs) {
				t.Fatalf("transactions %v\nwant %v", gtids, tc.wantGTIDs)
			}
		})
	}

	t.Run("not servable", func(t *testing.T) {
		dir := t.TempDir()
		files := writeMySQLRelay(t, dir, sub, mysqlRelayLayout)
		if err := os.Remove(filepath.Join(dir, sub, files[0])); err != nil {
			t.Fatal(err)
		}
		r := newLocal(t, dir, streamer.StartAtGTID(set(a+":1-3")), streamer.WithFollow(false))
		if _, err := r.GetEvent(ctx); !errors.Is(err, streamer.ErrGTIDNotServable) {
			t.Fatalf("error %v, want ErrGTIDNotServable", err)
		}
	})

	t.Run("position with set", func(t *testing.T) {
		r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{Name: files[1], Offset: 4, Flavor: streamer.FlavorMySQL, GTIDSet: set(a + ":1-5")}), streamer.WithFollow(false))
		evs := localReadAll(ctx, t, r)
		if got := evs[len(evs)-1].Pos.GTIDSet.String(); got != set(a+":1-12,"+b+":1-2").String() {
			t.Fatalf("final set %s", got)
		}
	})
}

// localSession is one connection of a server, for session variables.
type localSession struct{ c *sql.Conn }

func newLocalSession(t testing.TB, db *sql.DB) *localSession {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &localSession{c: c}
}

func (s *localSession) exec(t testing.TB, q string) {
	t.Helper()
	if _, err := s.c.ExecContext(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// localRelayEvents parses the relay files of dir/sub: what a reader of them
// must deliver.
func localRelayEvents(t testing.TB, dir, sub string) []evKey {
	t.Helper()
	names, err := streamer.RelayFiles(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var out []evKey
	for _, name := range names {
		p := replication.NewBinlogParser()
		p.SetFlavor(mysql.MariaDBFlavor)
		p.SetVerifyChecksum(true)
		err := p.ParseFile(filepath.Join(dir, sub, name), 4, func(e *replication.BinlogEvent) error {
			out = append(out, evKey{File: name, End: uint64(e.Header.LogPos), Type: e.Header.EventType, Raw: string(e.RawData)})
			return nil
		})
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
	}
	return out
}
