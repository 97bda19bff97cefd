package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// TestRelayFileModes: the relay creates its binlog files, meta, index and
// lock 0640 and its directories 0750 (they hold the upstream's statements,
// passwords included); RelayConfig.FileMode and DirMode widen them.
func TestRelayFileModes(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 26})
	relayWorkload(t, m.DB(t), 0, 5)
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	for _, tc := range []struct {
		name      string
		cfg       dmworker.RelayConfig
		file, dir os.FileMode
	}{
		{"default", dmworker.RelayConfig{}, 0o640, 0o750},
		{"widened", dmworker.RelayConfig{FileMode: 0o644, DirMode: 0o755}, 0o644, 0o755},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "relay")
			relayOnce(t, m, dir, tc.cfg)
			sub := onlySubdir(t, dir)
			files, err := streamer.RelayFiles(sub)
			if err != nil || len(files) == 0 {
				t.Fatalf("relay files %v: %v", files, err)
			}
			want := map[string]os.FileMode{dir: tc.dir, sub: tc.dir,
				filepath.Join(dir, streamer.RelayIndexFile): tc.file, filepath.Join(dir, ".lock"): tc.file,
				filepath.Join(sub, streamer.RelayMetaFile): tc.file}
			for _, f := range files {
				want[filepath.Join(sub, f)] = tc.file
			}
			for p, mode := range want {
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := st.Mode().Perm(); got != mode&^os.FileMode(umask) {
					t.Errorf("%s: mode %s, want %s", p, got, mode&^os.FileMode(umask))
				}
			}
		})
	}
	if _, err := dmworker.NewRelay(upstreamOf(m), t.TempDir(), dmworker.RelayConfig{FileMode: 0o440, DirMode: 0o750}); err == nil {
		t.Error("NewRelay took a file mode the owner cannot write")
	}
}

// TestSourceWorkerRelayFault: a relay that cannot start (garbage in its
// relay.meta) no longer leaves the subtasks waiting without a word: the
// worker's status carries the relay's error, the subtask is paused with an
// error wrapping ErrRelayStopped and the corruption (naming the file), and
// once the directory is repaired, ResumeRelay runs the relay again and the
// subtask resumes and catches up.
func TestSourceWorkerRelayFault(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 610, 611, testserver.MariaDBOptions{})
	up := upstreamOf(p.up)
	up.ServerID = 650
	base := t.TempDir()
	src := dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}
	newWorker := func() *dmworker.SourceWorker {
		w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb), dmworker.WithSource(src), dmworker.WithRelayDir(base))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	rnd := rand.New(rand.NewPCG(610, 1))
	w1 := newWorker()
	errc := make(chan error, 1)
	go func() { errc <- w1.Run(context.Background()) }()
	if err := w1.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "subtask a reading", func() bool { return taskStatus(w1, "a")().Syncer.Read.Name != "" })
	syncWorkload(t, p.updb, rnd, 40)
	waitSubTaskSynced(t, taskStatus(w1, "a"), p)
	w1.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	meta := filepath.Join(onlySubdir(t, filepath.Join(base, "src")), streamer.RelayMetaFile)
	if err := os.WriteFile(meta, []byte("binlog-name = \"mysql-bin.0\x00\x17\n[[["), 0o640); err != nil {
		t.Fatal(err)
	}
	w2 := newWorker()
	runWorker(t, w2)
	if err := w2.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	syncWorkload(t, p.updb, rnd, 40)
	var st dmworker.SubTaskStatus
	waitUntil(t, "subtask a paused by the relay's fault", func() bool {
		st = taskStatus(w2, "a")()
		return st.Stage == dmworker.SubTaskPaused && st.LastError != nil
	})
	var re *streamer.RelayError
	if !errors.Is(st.LastError, dmworker.ErrRelayStopped) || !errors.Is(st.LastError, streamer.ErrRelayCorrupt) ||
		!errors.As(st.LastError, &re) || re.Path != meta {
		t.Fatalf("subtask a paused with %v: want ErrRelayStopped and ErrRelayCorrupt naming %s", st.LastError, meta)
	}
	ws := w2.Status(context.Background())
	if ws.Relay == nil || ws.Relay.Stage != dmworker.RelayStopped || !errors.Is(ws.Relay.LastError, streamer.ErrRelayCorrupt) {
		t.Fatalf("worker status %+v relay %+v", ws, ws.Relay)
	}

	// Repaired (a missing meta is rebuilt from the files): the relay runs
	// again and the subtask goes on by itself.
	if err := os.Remove(meta); err != nil {
		t.Fatal(err)
	}
	if err := w2.ResumeRelay(); err != nil {
		t.Fatal(err)
	}
	waitStage(t, taskStatus(w2, "a"), dmworker.SubTaskRunning)
	syncWorkload(t, p.updb, rnd, 20)
	waitSubTaskSynced(t, taskStatus(w2, "a"), p)
	for _, tbl := range []string{"app.accounts", "app.events"} {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
	if rs := w2.Status(context.Background()).Relay; rs.LastError != nil || rs.Stage != dmworker.RelayRunning {
		t.Fatalf("relay after repair: %+v", rs)
	}
}

// TestSubTaskPausesOnRelayCorruption: a flipped byte in an older relay file
// that a subtask reads pauses it at once with ErrRelayCorrupt naming the
// file, instead of retrying what cannot succeed; the relay itself goes on.
func TestSubTaskPausesOnRelayCorruption(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 620, 621, testserver.MariaDBOptions{MaxBinlogSize: 16 << 10})
	relayWorkload(t, p.updb, 0, 1)
	name, off := masterPos(t, p.updb)
	relayWorkload(t, p.updb, 1, 150)
	base := t.TempDir()
	dir := filepath.Join(base, "src")
	relayOnce(t, p.up, dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
	sub := onlySubdir(t, dir)
	files, err := streamer.RelayFiles(sub)
	if err != nil || len(files) < 5 {
		t.Fatalf("relay files %v (%v): want several", files, err)
	}
	damaged := filepath.Join(sub, files[2])
	b := mustRead(t, damaged)
	b[len(b)/2] ^= 0x5a
	if err := os.WriteFile(damaged, b, 0o640); err != nil {
		t.Fatal(err)
	}

	// The rows before the damage apply (the task starts after the
	// table's creation): the one error is the damage, however far the
	// syncer gets before it reads it.
	mustExec(t, p.downdb, "CREATE DATABASE rl")
	mustExec(t, p.downdb, "CREATE TABLE rl.t (id INT PRIMARY KEY, v VARCHAR(300), n INT)")
	up := upstreamOf(p.up)
	w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb),
		dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}), dmworker.WithRelayDir(base))
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "c", Start: streamer.Position{Name: name, Offset: off}}); err != nil {
		t.Fatal(err)
	}
	st := waitStage(t, taskStatus(w, "c"), dmworker.SubTaskPaused)
	var re *streamer.RelayError
	if !errors.Is(st.LastError, streamer.ErrRelayCorrupt) || !errors.As(st.LastError, &re) || re.Path != damaged || re.Offset < 4 {
		t.Fatalf("subtask paused with %v: want ErrRelayCorrupt naming %s and an offset", st.LastError, damaged)
	}
	if st.Retries != 0 {
		t.Errorf("corruption was retried %d times", st.Retries)
	}
	if rs := w.Status(context.Background()).Relay; rs.Stage != dmworker.RelayRunning || rs.LastError != nil {
		t.Errorf("relay %+v: the damage in an old file must not stop it", rs)
	}
}

// messages counts the log records by message.
type messages struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[r.Message]++
	return nil
}
func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }
func (m *messages) count(msg string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[msg]
}

// TestSubTaskRetryCapAcrossResumes: a retryable fault that lasts (a row
// locked downstream, so every apply ends in a lock wait timeout) is resumed
// automatically as many times as WithAutoResume allows and then pauses the
// subtask; a Resume while the fault lasts gets one more try, not a new
// count. Once the lock is gone and the checkpoint moves, it catches up.
func TestSubTaskRetryCapAcrossResumes(t *testing.T) {
	p := newPair(t, 630, 631, testserver.MariaDBOptions{})
	p.down.Exec(t, "SET GLOBAL innodb_lock_wait_timeout = 1")
	sink, err := mysqlsink.New(p.down.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := &messages{n: map[string]int{}}
	const resumed = "subtask resumes after a retryable error"
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "cap"}, upstreamOf(p.up), sink,
		dmworker.WithAutoResume(20*time.Millisecond, 50*time.Millisecond, 2), dmworker.WithSinkRetry(time.Millisecond),
		dmworker.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the subtask reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	p.up.Exec(t, "CREATE DATABASE cap")
	p.up.Exec(t, "CREATE TABLE cap.t (id INT PRIMARY KEY, n INT)")
	p.up.Exec(t, "INSERT INTO cap.t VALUES (1, 0), (2, 0)")
	waitSubTaskSynced(t, st.Status, p)

	lock, err := p.downdb.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.Exec("SELECT * FROM cap.t WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	p.up.Exec(t, "UPDATE cap.t SET n = 1 WHERE id = 1")
	s := waitStage(t, st.Status, dmworker.SubTaskPaused)
	if !errors.Is(s.LastError, dmworker.ErrRetryable) || logs.count(resumed) != 2 {
		t.Fatalf("paused with %v after %d automatic resumes: want a retryable error after 2", s.LastError, logs.count(resumed))
	}
	for i := 0; i < 2; i++ {
		if err := st.Resume(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the subtask paused again", func() bool {
			s = st.Status()
			return s.Stage == dmworker.SubTaskPaused && s.LastError != nil
		})
		if n := logs.count(resumed); n != 2 {
			t.Fatalf("after Resume %d: %d automatic resumes in all, want still 2 (the fault lasts, nothing moved)", i+1, n)
		}
	}

	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := st.Resume(); err != nil {
		t.Fatal(err)
	}
	p.up.Exec(t, "UPDATE cap.t SET n = 2 WHERE id = 2")
	waitSubTaskSynced(t, st.Status, p)
	checkEqual(t, p.updb, p.downdb, "cap.t", "cap.t")
}

// TestRelayFetchesOlderFiles: with the relay on, a subtask that starts at a
// file older than the upstream's current one (where a fresh relay begins)
// makes the relay fetch the older files; so do subtasks added later with
// an old start, by file or GTID set, after the relay purged them; a subtask
// in mode all reads the same relay; and only when the upstream has purged the file too does a
// subtask fail with ErrBinlogPurged. With 1 and 16 workers, tables compared
// by content.
func TestRelayFetchesOlderFiles(t *testing.T) {
	for _, workers := range []int{1, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			noLeaks(t)
			id := uint32(640 + workers)
			p := newPair(t, id, id+100, testserver.MariaDBOptions{MaxBinlogSize: 16 << 10})
			rnd := rand.New(rand.NewPCG(640, uint64(workers)))
			syncWorkload(t, p.updb, rnd, 2) // the tables, altered, emptied
			p.up.Exec(t, "DELETE FROM app.accounts")
			p.up.Exec(t, "DELETE FROM app.events")
			for _, to := range []string{"app", "app_b", "app_e"} {
				copyTables(t, p.updb, p.downdb, "app", to, "accounts", "events")
			}
			file, off := masterPos(t, p.updb)
			start := streamer.Position{Name: file, Offset: off}
			var gtid string
			if err := p.updb.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
				t.Fatal(err)
			}
			gset, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, gtid)
			if err != nil {
				t.Fatal(err)
			}
			syncWorkload(t, p.updb, rnd, 120)
			p.up.Exec(t, "FLUSH BINARY LOGS")
			upFiles, err := p.up.BinlogFiles(context.Background())
			if err != nil || len(upFiles) < 4 {
				t.Fatalf("upstream binlog %v (%v): want several files", upFiles, err)
			}

			up := upstreamOf(p.up)
			up.ServerID = id + 300
			w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb),
				dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}),
				dmworker.WithRelayDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			runWorker(t, w)
			if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a", Start: start, SyncerTuning: dmworker.SyncerTuning{Workers: workers}}); err != nil {
				t.Fatal(err)
			}
			waitSubTaskSynced(t, taskStatus(w, "a"), p)
			for _, tbl := range []string{"app.accounts", "app.events"} {
				checkEqual(t, p.updb, p.downdb, tbl, tbl)
			}
			sub := onlySubdir(t, w.Status(context.Background()).Relay.Dir)
			if _, err := os.Stat(filepath.Join(sub, start.Name)); err != nil {
				t.Fatalf("the relay has not fetched %s: %v", start.Name, err)
			}

			// Purged from the relay; a subtask added now with the old start
			// makes it fetch the files again.
			purgeRelayPast(t, p, w, sub, start.Name)
			route := func(to string) []dmworker.RouteRule {
				return []dmworker.RouteRule{{SchemaPattern: "app", TargetSchema: to}}
			}
			if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "b", Start: start, Routes: route("app_b"), SyncerTuning: dmworker.SyncerTuning{Workers: workers}}); err != nil {
				t.Fatal(err)
			}
			if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "c", Mode: dmworker.ModeAll, Routes: route("app_c"), SyncerTuning: dmworker.SyncerTuning{Workers: workers}}); err != nil {
				t.Fatal(err)
			}
			syncWorkload(t, p.updb, rnd, 30)
			for _, n := range []string{"a", "b", "c"} {
				waitSubTaskSynced(t, taskStatus(w, n), p)
			}
			for _, tbl := range []string{"accounts", "events"} {
				for _, to := range []string{"app", "app_b", "app_c"} {
					checkEqual(t, p.updb, p.downdb, "app."+tbl, to+"."+tbl)
				}
			}

			// The same by GTID set: purged from the relay, fetched again
			// for a subtask that starts after the set.
			purgeRelayPast(t, p, w, sub, start.Name)
			if err := w.StartSubTask(dmworker.SubTaskConfig{
				Name:         "e",
				Routes:       route("app_e"),
				Start:        streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: gset},
				SyncerTuning: dmworker.SyncerTuning{Workers: workers},
			}); err != nil {
				t.Fatal(err)
			}
			waitSubTaskSynced(t, taskStatus(w, "e"), p)
			for _, tbl := range []string{"accounts", "events"} {
				checkEqual(t, p.updb, p.downdb, "app."+tbl, "app_e."+tbl)
			}

			// Gone upstream as well: now, and only now, purged.
			cur, _ := masterPos(t, p.updb)
			p.up.Exec(t, "PURGE BINARY LOGS TO '"+cur+"'")
			purgeRelayPast(t, p, w, sub, start.Name)
			if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "d", Start: start, Routes: route("app_d")}); err != nil {
				t.Fatal(err)
			}
			st := waitStage(t, taskStatus(w, "d"), dmworker.SubTaskPaused)
			if !errors.Is(st.LastError, streamer.ErrBinlogPurged) {
				t.Fatalf("subtask d paused with %v: want ErrBinlogPurged", st.LastError)
			}
			names, _ := streamer.RelayFiles(sub)
			if slices.Contains(names, start.Name) {
				t.Fatalf("the relay fetched %s, which the upstream has purged", start.Name)
			}
		})
	}
}

// copyTables creates the tables of schema from on up in schema to on down,
// as they are defined now.
func copyTables(t *testing.T, up, down *sql.DB, from, to string, tables ...string) {
	t.Helper()
	mustExec(t, down, "CREATE DATABASE IF NOT EXISTS "+to)
	for _, tbl := range tables {
		var name, def string
		if err := up.QueryRow("SHOW CREATE TABLE "+from+"."+tbl).Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		conn, err := down.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(context.Background(), "USE "+to); err == nil {
			_, err = conn.ExecContext(context.Background(), def)
		}
		conn.Close()
		if err != nil {
			t.Fatalf("create %s.%s: %v", to, tbl, err)
		}
	}
}

// purgeRelayPast purges w's relay until it no longer holds file. Subtasks
// acknowledge their checkpoints at transaction ends, at most once a second:
// the upstream gets a transaction now and then meanwhile.
func purgeRelayPast(t *testing.T, p *syncPair, w *dmworker.SourceWorker, sub, file string) {
	t.Helper()
	last := time.Time{}
	waitUntil(t, "the relay purged "+file, func() bool {
		if time.Since(last) < 200*time.Millisecond {
			return false
		}
		last = time.Now()
		p.up.Exec(t, "INSERT INTO app.events (account, kind, at, payload) VALUES (1, 'open', NOW(6), '{}')")
		if _, err := w.PurgeRelay(dmworker.RelayPurge{Before: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(filepath.Join(sub, file))
		return errors.Is(err, os.ErrNotExist)
	})
}
