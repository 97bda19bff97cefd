package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/goleak"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// relayChildEnv makes the test binary run a relay instead of the tests: the
// crash test starts it as a child process and kills it with SIGKILL.
const relayChildEnv = "DMWORKER_TEST_RELAY_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(relayChildEnv); spec != "" {
		os.Exit(relayChild(spec))
	}
	if spec := os.Getenv(syncerChildEnv); spec != "" {
		os.Exit(syncerChild(spec))
	}
	if spec := os.Getenv(validatorChildEnv); spec != "" {
		os.Exit(validatorChild(spec))
	}
	if spec := os.Getenv(workerChildEnv); spec != "" {
		os.Exit(workerChild(spec))
	}
	goleak.VerifyTestMain(m)
}

// relayChild runs a relay described by "dir|user:pass@host:port" until killed.
func relayChild(spec string) int {
	dir, dsn, _ := strings.Cut(spec, "|")
	up, err := streamer.ParseUpstream(dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	up.Flavor = streamer.FlavorMariaDB
	r, err := dmworker.NewRelay(up, dir, dmworker.RelayConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := r.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func upstreamOf(m *testserver.MariaDB) streamer.UpstreamConfig {
	return streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port), User: m.User, Password: m.Password, Flavor: streamer.FlavorMariaDB}
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// relayWorkload runs n transactions of several row events each.
func relayWorkload(t testing.TB, db *sql.DB, from, n int) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS rl")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS rl.t (id INT PRIMARY KEY, v VARCHAR(300), n INT)")
	for i := from; i < from+n; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 4; j++ {
			if _, err := tx.Exec("INSERT INTO rl.t VALUES (?, ?, ?)", i*10+j, strings.Repeat("r", 200+j), i); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec("UPDATE rl.t SET n = n + 1 WHERE id = ?", i*10); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func masterPos(t testing.TB, db *sql.DB) (string, uint64) {
	t.Helper()
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
		t.Fatal("no master status")
	}
	if err := rows.Scan(vals...); err != nil {
		t.Fatal(err)
	}
	var pos uint64
	fmt.Sscan(string(*vals[1].(*sql.RawBytes)), &pos)
	return string(*vals[0].(*sql.RawBytes)), pos
}

// waitRelayed waits, on the relay's notification, until it has relayed
// everything the upstream holds now.
func waitRelayed(t testing.TB, r *dmworker.Relay, db *sql.DB, runErr <-chan error) {
	t.Helper()
	file, pos := masterPos(t, db)
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		got, ch := r.Relayed()
		if got.Name == file && got.Offset >= pos || (streamer.Position{Name: got.Name}).Compare(streamer.Position{Name: file}) > 0 {
			return
		}
		select {
		case <-ch:
		case err := <-runErr:
			t.Fatalf("relay stopped: %v", err)
		case <-deadline.C:
			t.Fatalf("relay at %s, upstream at %s:%d", got, file, pos)
		}
	}
}

// runRelay starts r.Run in a goroutine; the returned channel gets its result.
func runRelay(t testing.TB, r *dmworker.Relay) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		r.Close()
	})
	return errc
}

// upstreamFiles reads the upstream's binlog files with the in-use flag of
// the active file's format description cleared, as the server sends it.
func upstreamFiles(t testing.TB, m *testserver.MariaDB) map[string][]byte {
	t.Helper()
	paths, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4+19 && b[4+17]&byte(replication.LOG_EVENT_BINLOG_IN_USE_F) != 0 {
			b[4+17] &^= byte(replication.LOG_EVENT_BINLOG_IN_USE_F)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// checkRelayEqualsUpstream compares every relay file of the subdirectory with
// the upstream's file of the same name, byte for byte, up to the end of the
// relay's copy (the upstream may have written more), and checks the meta.
func checkRelayEqualsUpstream(t testing.TB, subdir string, up map[string][]byte, wantFiles []string) {
	t.Helper()
	files, err := streamer.RelayFiles(subdir)
	if err != nil {
		t.Fatal(err)
	}
	if wantFiles != nil && strings.Join(files, ",") != strings.Join(wantFiles, ",") {
		t.Fatalf("relay files %v, upstream files %v", files, wantFiles)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(subdir, f))
		if err != nil {
			t.Fatal(err)
		}
		want, ok := up[f]
		if !ok {
			t.Fatalf("relay file %s has no upstream counterpart", f)
		}
		if len(got) > len(want) {
			t.Fatalf("relay %s has %d bytes, upstream only %d", f, len(got), len(want))
		}
		if i := firstDiff(got, want[:len(got)]); i >= 0 {
			t.Fatalf("relay %s differs from upstream at offset %d", f, i)
		}
	}
	meta, err := streamer.ReadRelayMeta(subdir)
	if err != nil {
		t.Fatal(err)
	}
	last := files[len(files)-1]
	st, err := os.Stat(filepath.Join(subdir, last))
	if err != nil {
		t.Fatal(err)
	}
	if meta.BinlogName != last || meta.BinlogPos != uint64(st.Size()) {
		t.Fatalf("relay.meta says %s:%d, newest file %s has %d bytes", meta.BinlogName, meta.BinlogPos, last, st.Size())
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return len(a)
	}
	return -1
}

func onlySubdir(t testing.TB, dir string) string {
	t.Helper()
	names, err := streamer.ReadRelayIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 {
		t.Fatalf("index lists %v, want one subdirectory", names)
	}
	return filepath.Join(dir, names[0])
}

// TestRelayCopiesUpstreamFiles copies an upstream's binlog, across many
// rotations, with direct I/O (the default) and through the page cache
// (BufferedIO): the relay's files must equal the upstream's.
func TestRelayCopiesUpstreamFiles(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) { testRelayCopiesUpstreamFiles(t, buffered) })
	}
}

func testRelayCopiesUpstreamFiles(t *testing.T, buffered bool) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 21, MaxBinlogSize: 32 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 150)
	dir := t.TempDir()
	r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4},
		BufferedIO: buffered})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, db, errc)
	// More while it runs, across more rotations.
	relayWorkload(t, db, 150, 100)
	waitRelayed(t, r, db, errc)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	up := upstreamFiles(t, m)
	if len(up) < 4 {
		t.Fatalf("only %d upstream files: want several rotations", len(up))
	}
	sub := onlySubdir(t, dir)
	if !strings.HasPrefix(filepath.Base(sub), "0-21.") {
		t.Fatalf("subdirectory %s: want the MariaDB identity 0-21", sub)
	}
	var names []string
	for n := range up {
		names = append(names, n)
	}
	slicesSortNames(names)
	checkRelayEqualsUpstream(t, sub, up, names)

	// mariadb-binlog reads every relay file, and decodes the same events
	// as from the upstream's own file.
	// (The upstream may have appended a binlog checkpoint event since, so
	// its file is cut to the relay's length first.)
	for _, n := range names {
		relayPath := filepath.Join(sub, n)
		relayOut := mariadbBinlog(t, relayPath)
		upCopy := filepath.Join(t.TempDir(), n)
		if err := os.WriteFile(upCopy, up[n][:len(mustRead(t, relayPath))], 0o644); err != nil {
			t.Fatal(err)
		}
		upOut := mariadbBinlog(t, upCopy)
		if relayOut != upOut {
			t.Fatalf("mariadb-binlog decodes %s differently from the relay than from the upstream:\n%s", n, lineDiff(relayOut, upOut))
		}
	}
}

func slicesSortNames(names []string) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && (streamer.Position{Name: names[j]}).Compare(streamer.Position{Name: names[j-1]}) < 0; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

// mariadbBinlog decodes a binlog file, with the lines that name the file or
// its in-use state left out.
func mariadbBinlog(t testing.TB, path string) string {
	t.Helper()
	bin, err := exec.LookPath("mariadb-binlog")
	if err != nil {
		if testserver.Required() {
			t.Fatalf("mariadb-binlog not found (apt-get install mariadb-client): %v", err)
		}
		t.Skip("mariadb-binlog not found: apt-get install mariadb-client, or run make test")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--base64-output=DECODE-ROWS", "--verbose", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mariadb-binlog %s: %v\n%s", path, err, stderr.String())
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Warning: this binlog is either in use") || strings.Contains(l, "was not closed properly") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// TestRelayCrashRecovery kills a relay process with SIGKILL at many points of
// a busy workload; after each restart the relay repairs itself, and in the
// end its files equal the upstream's: no gap, no duplicate, meta consistent.
func TestRelayCrashRecovery(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 22, MaxBinlogSize: 64 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 10)
	dir := t.TempDir()
	dsn := fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())

	// A busy workload for the whole test.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wdb := m.DB(t)
		for i := 10; ; i += 5 {
			select {
			case <-stop:
				return
			default:
			}
			relayWorkload(t, wdb, i, 5)
		}
	}()

	rnd := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for round := 0; round < 8; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), relayChildEnv+"="+dir+"|"+dsn)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it relay a varying amount, then kill it mid-work.
		before := dirSize(dir)
		grow := int64(2<<10 + rnd.IntN(64<<10))
		deadline := time.Now().Add(time.Minute)
		for dirSize(dir) < before+grow && time.Now().Before(deadline) {
			if cmd.ProcessState != nil {
				break
			}
			time.Sleep(time.Duration(1+rnd.IntN(5)) * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("relay child ended on its own (%v): %s", err, stderr.String())
		}
		kills++
	}
	close(stop)
	wg.Wait()

	r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	// MariaDB may still append to its binlog after the workload (binlog
	// checkpoint events are written once InnoDB has flushed): wait until the
	// relay holds the upstream's end and the end stays there.
	var endFile string
	var endPos uint64
	for {
		waitRelayed(t, r, db, errc)
		file, pos := masterPos(t, db)
		if got, _ := r.Relayed(); got.Name == file && got.Offset == pos {
			endFile, endPos = file, uint64(pos)
			break
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	up := upstreamFiles(t, m)
	sub := onlySubdir(t, dir)
	checkRelayEqualsUpstream(t, sub, up, nil)
	// The relay started at the upstream's file at the first start and holds
	// every file from there on whole, and the last one to the end it
	// reported (the server may append binlog checkpoint events later).
	files, _ := streamer.RelayFiles(sub)
	last := files[len(files)-1]
	if got := len(mustRead(t, filepath.Join(sub, last))); last != endFile || uint64(got) != endPos {
		t.Fatalf("relay ends at %s:%d, it reported %s:%d", last, got, endFile, endPos)
	}
	for _, f := range files[:len(files)-1] {
		if got, want := len(mustRead(t, filepath.Join(sub, f))), len(up[f]); got != want {
			t.Fatalf("relay's %s has %d bytes, upstream %d", f, got, want)
		}
	}
	t.Logf("%d kills, %d relay files", kills, len(files))
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// lineDiff shows the first differing line of two texts.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n relay:    %s\n upstream: %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("relay has %d lines, upstream %d", len(al), len(bl))
}

// TestRelaySyncsWhenCaughtUp: with a sync interval far longer than the test,
// the relay still makes what it copied durable, and reports it relayed, once
// it has caught up with the upstream (reached where its binlog ended when
// the relay connected): it does not wait for the interval to end. (The
// sync when the reader finds nothing more to take is
// TestRawReaderOnCaughtUp's.)
func TestRelaySyncsWhenCaughtUp(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 27, MaxBinlogSize: 64 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 60)
	r, err := dmworker.NewRelay(upstreamOf(m), t.TempDir(), dmworker.RelayConfig{
		RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4},
		SyncPolicy: dmworker.SyncInterval(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	// waitRelayed gives up after two minutes.
	waitRelayed(t, r, db, errc)
	if st := r.Status(context.Background()); st.BytesBehind != 0 {
		t.Fatalf("relayed to the master position, but %d bytes behind", st.BytesBehind)
	}
}
