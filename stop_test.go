package dmworker_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
)

// closeWithin closes w and fails the test unless Close returns within the
// stop bound and a margin.
func closeWithin(t *testing.T, w *dmworker.SourceWorker) {
	t.Helper()
	within := dmworker.DefaultStopTimeout + 4*time.Second
	done := make(chan struct{})
	start := time.Now()
	go func() {
		w.Close()
		close(done)
	}()
	select {
	case <-done:
		t.Logf("Close returned after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(within):
		t.Fatalf("Close still waiting after %s (the stop bound is %s)", within, dmworker.DefaultStopTimeout)
		<-done
	}
}

// waitLockWait waits until a transaction of the downstream waits for a lock.
func waitLockWait(t *testing.T, db *sql.DB) {
	t.Helper()
	testserver.WaitInnoDBTrx(t, db, "batch waiting for the row lock", "trx_state = 'LOCK WAIT'", func(n int) bool { return n > 0 }, nil)
}

// TestSourceWorkerCloseStalledDownstream: with the serial syncer's batch
// stalled on a downstream row lock, Close returns within the stop bound;
// the batch cut short rolls back (its checkpoint with it), and a new worker
// brings the downstream level with the upstream from the checkpoint left.
func TestSourceWorkerCloseStalledDownstream(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 430, 431, testserver.MariaDBOptions{})
	src := dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(p.up)}
	task := dmworker.SubTaskConfig{Name: "t", SyncerTuning: dmworker.SyncerTuning{Workers: 1}}
	start := func() *dmworker.SourceWorker {
		w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithSource(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(task); err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		waitUntil(t, "t reading", func() bool { return taskStatus(w, "t")().Syncer.Read.Name != "" })
		return w
	}
	w := start()
	rnd := rand.New(rand.NewPCG(430, 1))
	syncWorkload(t, p.updb, rnd, 30)
	waitSubTaskSynced(t, taskStatus(w, "t"), p)

	tx, err := p.downdb.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var id int
	if err := tx.QueryRow("SELECT id FROM app.accounts ORDER BY id LIMIT 1 FOR UPDATE").Scan(&id); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, "UPDATE app.accounts SET note = 'stalled' WHERE id = ?", id)
	defer func() {
		if t.Failed() {
			t.Logf("subtask status: %+v", taskStatus(w, "t")())
		}
	}()
	waitLockWait(t, p.downdb)
	closeWithin(t, w)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	testserver.WaitInnoDBTrx(t, p.downdb, "end of the batch cut short", "", func(n int) bool { return n == 0 }, nil)
	var note sql.NullString
	if err := p.downdb.QueryRow("SELECT note FROM app.accounts WHERE id = ?", id).Scan(&note); err != nil || note.String == "stalled" {
		t.Fatalf("row %d note %v (%v): the batch cut short committed", id, note, err)
	}

	w = start()
	syncWorkload(t, p.updb, rnd, 10)
	waitSubTaskSynced(t, taskStatus(w, "t"), p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
}

// TestSourceWorkerCloseEtcdDown: a worker in etcd mode whose etcd is gone
// closes within the stop bound (its last status report is abandoned), and
// its subtask's last checkpoint is the one stored downstream.
func TestSourceWorkerCloseEtcdDown(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 432, 433, testserver.MariaDBOptions{})
	e := testserver.StartEtcd(t)
	cli := e.NewClient(t)
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
		dmworker.WithCredentialKey(testCredentialKey), dmworker.WithStatusInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	putSourceConfig(t, cli, dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(p.up)})
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t"})
	bindSource(t, cli, "w1", "src")
	runWorker(t, w)
	st := taskStatus(w, "t")
	waitUntil(t, "t reading", func() bool { return st().Syncer.Read.Name != "" })
	rnd := rand.New(rand.NewPCG(432, 1))
	syncWorkload(t, p.updb, rnd, 20)
	waitSubTaskSynced(t, st, p)

	e.Stop()
	syncWorkload(t, p.updb, rnd, 10)
	waitSubTaskSynced(t, st, p) // the worker goes on without etcd
	closeWithin(t, w)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	final := st()
	cp, found, err := p.sink.LoadCheckpoint(context.Background(), "t", "src")
	if err != nil || !found || !cp.Pos.Equal(final.Syncer.Checkpoint) || final.Stage != dmworker.SubTaskStopped {
		t.Fatalf("after Close: status %s at %s, stored %s (%v, %v)", final.Stage, final.Syncer.Checkpoint, cp.Pos, found, err)
	}
}

// TestSourceWorkerCloseStalledUpstream: with the upstream's network stalled
// (nothing flows, nothing is closed), Close returns within the stop bound,
// relay on and off.
func TestSourceWorkerCloseStalledUpstream(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 434, 435, testserver.MariaDBOptions{})
	for _, relay := range []bool{false, true} {
		t.Run(fmt.Sprintf("relay=%v", relay), func(t *testing.T) {
			proxy, err := faultnet.New(p.up.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			up := upstreamOf(p.up)
			up.Host, up.Port = "127.0.0.1", uint16(proxy.Port())
			name := fmt.Sprintf("relay-%v", relay)
			w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb),
				dmworker.WithSource(dmworker.SourceConfig{Name: name, Upstream: up, EnableRelay: relay}), dmworker.WithRelayDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "t"}); err != nil {
				t.Fatal(err)
			}
			runWorker(t, w)
			st := taskStatus(w, "t")
			waitUntil(t, "t reading", func() bool { return st().Syncer.Read.Name != "" })
			rnd := rand.New(rand.NewPCG(434, 1))
			syncWorkload(t, p.updb, rnd, 10)
			waitSubTaskSynced(t, st, p)
			proxy.Stall(true)
			syncWorkload(t, p.updb, rnd, 10)
			closeWithin(t, w)
		})
	}
}
