package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// identityWorkload writes rows from..from+n-1 of app.t, updating and
// deleting some older ones on the way.
func identityWorkload(t *testing.T, db *sql.DB, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		mustExec(t, db, "INSERT INTO app.t VALUES (?, ?)", i, fmt.Sprint("v", i))
		if i%3 == 0 {
			mustExec(t, db, "UPDATE app.t SET v = CONCAT(v, '+') WHERE id = ?", i/2)
		}
		if i%7 == 0 {
			mustExec(t, db, "DELETE FROM app.t WHERE id = ?", i-5)
		}
	}
}

// runIdentityPhase runs a subtask of task "idt" on up until it has
// replicated what the upstream holds, checks app.t by content, and stops it.
func runIdentityPhase(t *testing.T, p *syncPair, up streamer.UpstreamConfig, cfg dmworker.SubTaskConfig, during func()) {
	t.Helper()
	st, err := dmworker.NewSubTask(cfg, up, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	errc := runSubTask(t, st)
	waitUntil(t, "the syncer to choose its start", func() bool {
		s := st.Status()
		if s.Stage == dmworker.SubTaskPaused && s.LastError != nil {
			t.Fatalf("subtask paused: %v", s.LastError)
		}
		return s.Unit == "syncer" && !s.Syncer.Read.IsZero()
	})
	if during != nil {
		during()
	}
	waitSubTaskSynced(t, st.Status, p)
	checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
	st.Stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointFollowsSourceName: a task's checkpoint belongs to its source
// name, not to the address the upstream was reached through. A checkpoint
// stored under the upstream's address (the default name, and the only key
// before names) is taken over by the first run under a name; a later run
// through a proxy (another address) continues from it. Rows written while
// no subtask ran reach the downstream each time: on the old code, the named
// run found no checkpoint and started at the upstream's end.
func TestCheckpointFollowsSourceName(t *testing.T) {
	for _, mode := range []dmworker.Mode{dmworker.ModeIncremental, dmworker.ModeAll} {
		for _, workers := range []int{1, 16} {
			t.Run(fmt.Sprintf("%s/workers=%d", mode, workers), func(t *testing.T) {
				p := newPair(t, 611, 612, testserver.MariaDBOptions{})
				create := func() {
					mustExec(t, p.updb, "CREATE DATABASE app")
					mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32))")
					identityWorkload(t, p.updb, 0, 40)
				}
				cfg := dmworker.SubTaskConfig{
					Name:         "idt",
					Mode:         mode,
					Snapshot:     dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 10},
					SyncerTuning: dmworker.SyncerTuning{Workers: workers},
				}
				direct := upstreamOf(p.up)
				if mode == dmworker.ModeAll {
					create() // copied by the snapshot
					runIdentityPhase(t, p, direct, cfg, func() { identityWorkload(t, p.updb, 40, 40) })
				} else {
					runIdentityPhase(t, p, direct, cfg, func() { create(); identityWorkload(t, p.updb, 40, 40) })
				}
				sources := func() string {
					srcs, err := p.sink.CheckpointSources(t.Context(), "idt")
					if err != nil {
						t.Fatal(err)
					}
					return strings.Join(srcs, ",")
				}
				if got := sources(); got != p.up.Addr() {
					t.Fatalf("checkpoint sources %q, want the address %s", got, p.up.Addr())
				}

				// Named now (as a SourceWorker names it), same address.
				identityWorkload(t, p.updb, 80, 40)
				named := direct
				named.Name = "shop"
				runIdentityPhase(t, p, named, cfg, func() { identityWorkload(t, p.updb, 120, 20) })
				if got := sources(); got != "shop" {
					t.Fatalf("checkpoint sources %q, want shop alone", got)
				}

				// The same source through a proxy.
				identityWorkload(t, p.updb, 140, 40)
				proxy, err := faultnet.New(p.up.Addr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { proxy.Close() })
				via := named
				via.Host, via.Port = "127.0.0.1", uint16(proxy.Port())
				runIdentityPhase(t, p, via, cfg, func() { identityWorkload(t, p.updb, 180, 20) })
				if got := sources(); got != "shop" {
					t.Fatalf("checkpoint sources %q, want shop alone", got)
				}
				if proxy.Accepted() == 0 {
					t.Fatal("the last run did not go through the proxy")
				}
			})
		}
	}
}

// TestCheckpointOnAnotherServerRefused: a task's source name reaches a
// server with another identity whose binlog has the same shape up to the
// checkpoint (same statements, so the same offsets) but not the
// checkpoint's GTIDs. The subtask refuses with ErrCheckpointLineage and the
// downstream keeps A's rows; the old code went on reading the other
// server's binlog from the checkpoint's offset and copied rows A never had.
func TestCheckpointOnAnotherServerRefused(t *testing.T) {
	p := newPair(t, 621, 622, testserver.MariaDBOptions{})
	b := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 623, GTIDDomainID: 1})
	bdb := b.DB(t)
	cfg := dmworker.SubTaskConfig{Name: "idt", Start: streamer.Position{Name: "mysql-bin.000001", Offset: 4}}
	upA := upstreamOf(p.up)
	upA.Name = "shop"
	for _, db := range []*sql.DB{p.updb, bdb} {
		mustExec(t, db, "CREATE DATABASE app")
		mustExec(t, db, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32))")
		identityWorkload(t, db, 0, 30)
	}
	fa, oa := masterPos(t, p.updb)
	fb, ob := masterPos(t, bdb)
	if fa != fb || oa != ob {
		t.Fatalf("the two binlogs differ in shape: %s:%d and %s:%d", fa, oa, fb, ob)
	}
	runIdentityPhase(t, p, upA, cfg, nil)
	want := tableRows(t, p.downdb, "app.t")
	cpBefore := checkpointOf(t, p.downdb, "idt", "shop")
	identityWorkload(t, bdb, 1000, 10) // rows A never had

	upB := upstreamOf(b)
	upB.Name = "shop"
	st, err := dmworker.NewSubTask(cfg, upB, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	s := waitStage(t, st.Status, dmworker.SubTaskPaused)
	if !errors.Is(s.LastError, dmworker.ErrCheckpointLineage) {
		t.Fatalf("paused with %v, want ErrCheckpointLineage", s.LastError)
	}
	var se *dmworker.SyncError
	if !errors.As(s.LastError, &se) || se.Task != "idt" || se.Source != "shop" || !strings.Contains(se.Error(), "1-623") {
		t.Fatalf("the error does not name task, source and server: %v", s.LastError)
	}
	t.Log(s.LastError)
	if got := tableRows(t, p.downdb, "app.t"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the downstream changed: %d rows, had %d", len(got), len(want))
	}
	if cp := checkpointOf(t, p.downdb, "idt", "shop"); cp != cpBefore {
		t.Fatalf("the checkpoint moved from %s to %s", cpBefore, cp)
	}
}

// TestCheckpointFollowsPromotedReplica: B replicates A with GTIDs; the task
// stops, A takes more writes, B catches up and is promoted (takes writes of
// its own), and the task's source name now reaches B: the checkpoint,
// taken on A, is continued on B from its GTID set, and the downstream ends
// equal to B. (The old code read B's binlog from A's file offset.)
func TestCheckpointFollowsPromotedReplica(t *testing.T) {
	for _, workers := range []int{1, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p := newPair(t, 631, 632, testserver.MariaDBOptions{})
			b := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 633})
			bdb := b.DB(t)
			// B's binlog starts with transactions of its own (in a domain
			// of their own), so that its offsets are not A's.
			conn, err := bdb.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"SET SESSION gtid_domain_id = 5", "CREATE DATABASE bonly", "CREATE TABLE bonly.x (id INT PRIMARY KEY)",
				"INSERT INTO bonly.x VALUES (1), (2), (3)", "SET SESSION gtid_domain_id = 0"} {
				if _, err := conn.ExecContext(t.Context(), q); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
			mustExec(t, bdb, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos",
				p.up.Port, p.up.User, p.up.Password))
			mustExec(t, bdb, "START SLAVE")
			cfg := dmworker.SubTaskConfig{Name: "idt", SyncerTuning: dmworker.SyncerTuning{Workers: workers}}
			upA := upstreamOf(p.up)
			upA.Name = "shop"
			runIdentityPhase(t, p, upA, cfg, func() {
				mustExec(t, p.updb, "CREATE DATABASE app")
				mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32))")
				identityWorkload(t, p.updb, 0, 60)
			})
			identityWorkload(t, p.updb, 60, 40)
			promote(t, p.updb, bdb)
			identityWorkload(t, bdb, 100, 30)

			pb := &syncPair{up: b, down: p.down, updb: bdb, downdb: p.downdb, sink: p.sink}
			upB := upstreamOf(b)
			upB.Name = "shop"
			runIdentityPhase(t, pb, upB, cfg, func() { identityWorkload(t, bdb, 130, 20) })
			// B's own first transactions (a domain the checkpoint does not
			// know) were never applied: they come too.
			checkEqual(t, bdb, p.downdb, "bonly.x", "bonly.x")
			cp := checkpointOf(t, p.downdb, "idt", "shop")
			if !strings.Contains(cp, "0-633-") {
				t.Fatalf("checkpoint %s after the switch has none of B's GTIDs", cp)
			}
		})
	}
}

// TestEtcdCheckpointTakenOver: a checkpoint an EtcdCheckpointStore holds
// under the upstream's address is moved to the source's name by the first
// syncer run under that name, which continues from it.
func TestEtcdCheckpointTakenOver(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 641})
	e := testserver.StartEtcd(t)
	store, err := dmworker.NewEtcdCheckpointStore(e.Client, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.config("etcdidt")
	s, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithCheckpointStore(store))
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	mustExec(t, p.updb, "CREATE DATABASE app")
	mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32))")
	identityWorkload(t, p.updb, 0, 40)
	waitSynced(t, run, p.updb)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	identityWorkload(t, p.updb, 40, 40)

	cfg.Source = "shop"
	s2, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithCheckpointStore(store))
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, runSyncer(t, s2), p.updb)
	checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
	keys := func(k string) int64 {
		resp, err := e.Client.Get(t.Context(), k, clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	if keys("/dmworker/checkpoint/etcdidt/"+p.up.Addr()) != 0 || keys("/dmworker/checkpoint/etcdidt/shop") != 1 {
		t.Fatal("the checkpoint was not moved to the source's name in etcd")
	}
	cp, ok, err := store.Load(context.Background(), "etcdidt", "shop")
	if err != nil || !ok || cp.Server != "0-641" {
		t.Fatalf("checkpoint %+v %v %v: want the server's identity recorded", cp, ok, err)
	}
}
