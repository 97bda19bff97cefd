package dmworker_test

import (
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
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
// only the real table, and ran the ALTER once (twice at most: a kill
// between the ALTER and its checkpoint replays it).
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

	duringCopy, atSwap := 0, false
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
	stop()
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	after := comCounters(t, p.downdb)
	if d := after["com_alter_table"] - before["com_alter_table"]; d < 1 || d > 2 {
		t.Errorf("downstream ran %d ALTERs, want 1", d)
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
