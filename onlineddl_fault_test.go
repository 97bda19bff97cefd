package dmworker_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
)

// startTool starts an online schema change tool; the returned channel
// gets its result.
func startTool(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done
}

// TestOnlineDDLPtOSCCrash kills the syncer (a child process, SIGKILL) at
// random moments again and again while pt-online-schema-change copies rows
// under a sysbench load, and once at a random moment just after the tool
// starts swapping the tables (RENAME TABLE real TO old, new TO real); each
// run resumes from the checkpoint the last one stored. The allow list lets
// the tool's tables through (they stay upstream all the same). After a
// last run the downstream equals the upstream, definition and rows, holds
// only the real table, and ran the ALTER once (and once more for each kill
// that fell between the ALTER and the checkpoint past the swap: the
// replay runs it again, in safe mode).
func TestOnlineDDLPtOSCCrash(t *testing.T) {
	lookTool(t, "pt-online-schema-change", "apt-get install percona-toolkit")
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 11))
	const size = 20000
	p, start := onlineSetup(t, 960, size, "sbtest", "sbtest1")
	cfg := onlineConfig(p, "ptcrash", 1, start, "", "")
	cfg.Filter = dmworker.BlockAllowList{DoDBs: []string{"sbtest"}}
	stop := sysbenchLoad(t, p.up, size)
	before := comCounters(t, p.downdb)

	pt := ptOSC(t, p.up, "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5, MODIFY k BIGINT NOT NULL DEFAULT 0",
		"--chunk-size=200", "--sleep=0.05")
	var out syncBuffer
	pt.Stdout, pt.Stderr = &out, &out
	done := startTool(t, pt)

	duringCopy, atSwap, afterSwap := 0, false, 0
	deadline := time.Now().Add(3 * time.Minute)
	for finished := false; !finished; {
		if time.Now().After(deadline) {
			t.Fatalf("pt-online-schema-change did not finish:\n%s", out.String())
		}
		c := startOnlineChild(t, p, cfg)
		// Fault injection at a random moment, not a timing assertion:
		// a random time, or a random time after the swap begins.
		killAt := time.Now().Add(time.Duration(200+rnd.IntN(700)) * time.Millisecond)
		swapping := strings.Contains(out.String(), "Swapping tables")
		for time.Now().Before(killAt) {
			if !swapping && strings.Contains(out.String(), "Swapping tables") {
				swapping, atSwap = true, true
				killAt = time.Now().Add(time.Duration(rnd.IntN(400)) * time.Millisecond)
				t.Logf("the swap began: killing in %s", time.Until(killAt).Round(time.Millisecond))
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.kill(t)
		if swapping {
			afterSwap++
		}
		var n int
		if err := p.updb.QueryRow("SELECT COUNT(*) FROM sbtest._sbtest1_new").Scan(&n); err == nil && n > 0 && n < size {
			duringCopy++
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pt-online-schema-change: %v\n%s", err, out.String())
			}
			finished = true
		default:
		}
		t.Logf("syncer killed with %d rows in the new table", n)
	}
	if duringCopy == 0 || !atSwap {
		t.Fatalf("kills during the copy: %d, at the swap: %v; want both", duringCopy, atSwap)
	}
	// One more kill after the tool's clean-up (dropping the old table and
	// the triggers).
	c := startOnlineChild(t, p, cfg)
	time.Sleep(time.Duration(100+rnd.IntN(500)) * time.Millisecond)
	c.kill(t)
	afterSwap++
	stop()
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	after := comCounters(t, p.downdb)
	// Once, and again (in safe mode) by the replay after each kill that
	// fell between the ALTER downstream and the checkpoint past the swap.
	if d := after["com_alter_table"] - before["com_alter_table"]; d < 1 || d > int64(1+afterSwap) {
		t.Errorf("downstream ran %d ALTERs, want 1 and at most one more per kill after the swap began (%d)", d, afterSwap)
	}
	for _, name := range []string{"com_create_trigger", "com_rename_table", "com_insert_select"} {
		if d := after[name] - before[name]; d != 0 {
			t.Errorf("downstream answered %d %s", d, name)
		}
	}
	if got := tablesOf(t, p.downdb, "sbtest"); len(got) != 1 || got[0] != "sbtest1" {
		t.Fatalf("downstream sbtest holds %v, want only sbtest1", got)
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// cutDownstream cuts every connection through px at random intervals of
// 20 to 200ms (from rnd) until the returned function is called; that
// function waits for the cutter to end and returns how many cuts it made.
func cutDownstream(px *faultnet.Proxy, rnd *rand.Rand) func() int {
	stop, ended := make(chan struct{}), make(chan int)
	waits := make([]time.Duration, 512)
	for i := range waits {
		waits[i] = time.Duration(20+rnd.IntN(180)) * time.Millisecond
	}
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				ended <- n
				return
			case <-time.After(waits[n%len(waits)]):
				px.CutAll()
				n++
			}
		}
	}()
	return func() int {
		close(stop)
		return <-ended
	}
}

// TestOnlineDDLDownstreamCut cuts the subtask's downstream connections
// again and again while an online schema change cuts over: gh-ost's
// cut-over (the load paused over it: see TestOnlineDDLGhOst), and
// pt-online-schema-change's swap, under load. The subtask resumes by
// itself; the downstream ends equal to the upstream, definition and rows,
// with only the real table and one ALTER (and at most one more per cut: a
// cut-over a cut ended after its ALTER runs again, in safe mode).
func TestOnlineDDLDownstreamCut(t *testing.T) {
	for i, tool := range []string{"gh-ost", "pt-osc"} {
		t.Run(tool, func(t *testing.T) {
			if tool == "pt-osc" {
				lookTool(t, "pt-online-schema-change", "apt-get install percona-toolkit")
			}
			seed := faultSeed(t)
			rnd := rand.New(rand.NewPCG(seed, 12))
			const size = 10000
			p, start := onlineSetup(t, uint32(962+i), size, "sbtest", "sbtest1")
			px := faultProxy(t, p.down)
			st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "cut", Start: start,
				Filter: dmworker.BlockAllowList{DoDBs: []string{"sbtest"}}, SyncerTuning: dmworker.SyncerTuning{BatchSize: 7}},
				upstreamOf(p.up), sinkVia(t, p.down, px),
				dmworker.WithSinkTimeout(2*time.Second), dmworker.WithAutoResume(50*time.Millisecond, 500*time.Millisecond, 1000))
			if err != nil {
				t.Fatal(err)
			}
			runSubTask(t, st)
			stop := sysbenchLoad(t, p.up, size)
			waitUntil(t, "the subtask reading", func() bool { return st.Status().Syncer.Read.Name != "" })
			before := comCounters(t, p.downdb)
			const alter = "ADD COLUMN extra INT NOT NULL DEFAULT 5, MODIFY k BIGINT NOT NULL DEFAULT 0"
			var out syncBuffer
			var cuts int
			if tool == "gh-ost" {
				dir := t.TempDir()
				flag := filepath.Join(dir, "postpone")
				if err := os.WriteFile(flag, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				g := ghOst(t, p.up, dir, "sbtest", "sbtest1", alter, "--postpone-cut-over-flag-file="+flag, "--chunk-size=500")
				g.Stdout, g.Stderr = &out, &out
				done := startTool(t, g)
				waitRecorded(t, p.downdb, "cut", "_sbtest1_gho")
				stop()
				cutter := cutDownstream(px, rnd)
				releaseCutOver(t, flag)
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("gh-ost: %v\n%s", err, out.String())
					}
				case <-time.After(3 * time.Minute):
					t.Fatalf("gh-ost did not finish:\n%s", out.String())
				}
				// Cuts go on while the subtask applies the cut-over.
				time.Sleep(time.Duration(500+rnd.IntN(1000)) * time.Millisecond)
				cuts = cutter()
			} else {
				pt := ptOSC(t, p.up, "sbtest", "sbtest1", alter, "--chunk-size=500")
				pt.Stdout, pt.Stderr = &out, &out
				done := startTool(t, pt)
				waitUntil(t, "pt-online-schema-change swapping the tables", func() bool {
					return strings.Contains(out.String(), "Swapping tables")
				})
				cutter := cutDownstream(px, rnd)
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("pt-online-schema-change: %v\n%s", err, out.String())
					}
				case <-time.After(3 * time.Minute):
					t.Fatalf("pt-online-schema-change did not finish:\n%s", out.String())
				}
				time.Sleep(time.Duration(500+rnd.IntN(1000)) * time.Millisecond)
				cuts = cutter()
				stop()
			}
			t.Logf("%d cuts around the cut-over", cuts)
			waitSubTaskSynced(t, st.Status, p)
			sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
			after := comCounters(t, p.downdb)
			// Once, and again (in safe mode) by the run after each one a
			// cut ended between the ALTER and the checkpoint past the
			// cut-over (or whose answer a cut lost).
			if d := after["com_alter_table"] - before["com_alter_table"]; d < 1 || d > int64(1+cuts) {
				t.Errorf("downstream ran %d ALTERs, want 1 and at most one more per cut (%d)", d, cuts)
			}
			for _, name := range []string{"com_create_trigger", "com_rename_table", "com_insert_select", "com_create_table"} {
				if d := after[name] - before[name]; d != 0 {
					t.Errorf("downstream answered %d %s", d, name)
				}
			}
			if got := tablesOf(t, p.downdb, "sbtest"); len(got) != 1 || got[0] != "sbtest1" {
				t.Fatalf("downstream sbtest holds %v, want only sbtest1", got)
			}
		})
	}
}
