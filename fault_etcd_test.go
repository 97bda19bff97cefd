package dmworker_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestSourceWorkerEtcdFaults: an etcd-driven SourceWorker (relay on) whose
// etcd connection is cut, stalled for a while, or left half-open for good
// at random moments (seed logged) while its subtask replicates a concurrent
// workload. The data path does not go through etcd: the subtask ends equal
// to the upstream; and the control path comes back: after the faults a
// stage written to etcd pauses and resumes the subtask, and its status in
// etcd moves again. The worker's client has keepalives (1s), as a host's
// must for a half-open connection to be noticed at all.
func TestSourceWorkerEtcdFaults(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 810, 811, testserver.MariaDBOptions{MaxBinlogSize: 32 << 10})
	e := testserver.StartEtcd(t)
	px, err := faultnet.New(strings.TrimPrefix(e.Endpoints[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{px.Addr()}, DialTimeout: 2 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	host := e.Client

	up := upstreamOf(p.up)
	up.ServerID = 812
	putSourceConfig(t, host, dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true})
	bindSource(t, host, "w1", "src")
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
		dmworker.WithCredentialKey(testCredentialKey), dmworker.WithRelayDir(t.TempDir()), dmworker.WithStatusInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	putSubTask(t, host, "src", dmworker.SubTaskConfig{Name: "t1", SyncerTuning: dmworker.SyncerTuning{Workers: 4}})
	st := taskStatus(w, "t1")
	waitUntil(t, "t1 reading", func() bool { return st().Syncer.Read.Name != "" })

	fw := startFaultWriter(t, p.updb, seed, 3)
	for round := range 5 {
		fw.waitCommitted(t, int64(20+rnd.IntN(150)))
		switch rnd.IntN(3) {
		case 0:
			t.Logf("round %d: etcd cut", round)
			px.CutAll()
		case 1:
			n := int64(20 + rnd.IntN(150))
			t.Logf("round %d: etcd stalled for %d upstream commits", round, n)
			px.Stall(true)
			fw.waitCommitted(t, n)
			px.Stall(false)
		case 2:
			t.Logf("round %d: etcd half-open", round)
			px.StallOpen()
		}
	}
	fw.waitCommitted(t, 50)
	fw.Stop()
	waitSubTaskSynced(t, st, p)
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}

	// The control path is back: stages written to etcd are obeyed, and
	// the status reported there follows.
	statusKey := testKeys.SubTaskStatus("w1", "t1")
	putStage(t, host, "src", "t1", dmworker.SubTaskPaused)
	waitStage(t, st, dmworker.SubTaskPaused)
	waitUntil(t, "Paused in etcd", func() bool { return reportOf(t, host, statusKey).Stage == dmworker.SubTaskPaused })
	putStage(t, host, "src", "t1", dmworker.SubTaskRunning)
	waitStage(t, st, dmworker.SubTaskRunning)
	mustExec(t, p.updb, "INSERT INTO fw.nokey VALUES (-1, 'after the faults')")
	waitSubTaskSynced(t, st, p)
	waitUntil(t, "Running in etcd", func() bool { return reportOf(t, host, statusKey).Stage == dmworker.SubTaskRunning })
	for _, tbl := range faultTables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}
