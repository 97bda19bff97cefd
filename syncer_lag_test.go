package dmworker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
)

// upstreamWriter inserts a row into lagdb.w every 100ms until stopped, so
// that the upstream keeps moving while the syncer is stalled.
type upstreamWriter struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startWriter(t *testing.T, p *syncPair, from int) *upstreamWriter {
	w := &upstreamWriter{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := from; ; i++ {
			if _, err := p.updb.Exec("INSERT INTO lagdb.w VALUES (?)", i); err != nil {
				t.Errorf("upstream writer: %v", err)
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func (w *upstreamWriter) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// waitFor waits until d has passed since from, reading the status meanwhile
// (a stall is measured by the clock, not slept through blind).
func waitFor(s *dmworker.Syncer, from time.Time, d time.Duration) dmworker.SyncerStatus {
	for {
		st := s.Status()
		if time.Since(from) >= d {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// caughtUp waits until the syncer reports a lag of 0 with nothing new.
func caughtUp(t *testing.T, s *dmworker.Syncer, what string) {
	t.Helper()
	var st dmworker.SyncerStatus
	deadline := time.Now().Add(time.Minute)
	for st = s.Status(); st.LagSeconds != 0; st = s.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: lag %.1fs after a minute; status %+v", what, st.LagSeconds, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSyncerLagUnderDownstreamLock: while a downstream row lock holds the
// syncer up and the upstream keeps writing, the lag grows with the stall
// (it used to read the lag of the last event read, well under a second),
// the serial syncer's rates fall to 0 and its LastProgress stays put; once
// the lock goes, it catches up and an idle, caught-up syncer reads 0.
func TestSyncerLagUnderDownstreamLock(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: uint32(80 + workers)})
			p.workers = workers
			s, err := dmworker.NewSyncer(p.config("lag"), p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			mustExec(t, p.updb, "CREATE DATABASE lagdb")
			mustExec(t, p.updb, "CREATE TABLE lagdb.t (id INT PRIMARY KEY, v INT)")
			mustExec(t, p.updb, "CREATE TABLE lagdb.w (id INT PRIMARY KEY)")
			mustExec(t, p.updb, "INSERT INTO lagdb.t VALUES (1, 0), (2, 0)")
			waitSynced(t, run, p.updb)
			caughtUp(t, s, "idle before the stall")

			// Hold row 1 downstream from a connection of our own.
			ctx := context.Background()
			conn, err := p.downdb.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var v int
			if err := tx.QueryRow("SELECT v FROM lagdb.t WHERE id = 1 FOR UPDATE").Scan(&v); err != nil {
				t.Fatal(err)
			}
			mustExec(t, p.updb, "UPDATE lagdb.t SET v = v + 1 WHERE id = 1")
			stalled := time.Now()
			w := startWriter(t, p, 0)

			st := waitFor(s, stalled, 4*time.Second)
			if st.LagSeconds <= 2 {
				t.Fatalf("lag %.1fs after a stall of %s; status %+v", st.LagSeconds, time.Since(stalled).Round(time.Millisecond), st)
			}
			if workers == 1 {
				// Nothing is applied behind the lock: the last progress
				// was before it, and the rates fall to 0 over their window.
				if st.LastProgress.IsZero() || st.LastProgress.After(stalled) {
					t.Fatalf("last progress %s, the stall began at %s", st.LastProgress, stalled)
				}
				deadline := time.Now().Add(time.Minute)
				for st = s.Status(); st.RowsPerSecond != 0 || st.EventsPerSecond != 0; st = s.Status() {
					if time.Now().After(deadline) {
						t.Fatalf("rates %.2f rows/s %.2f events/s while nothing moves for %s",
							st.RowsPerSecond, st.EventsPerSecond, time.Since(stalled).Round(time.Second))
					}
					time.Sleep(100 * time.Millisecond)
				}
				if st.LastProgress.After(stalled) {
					t.Fatalf("last progress %s moved during the stall (began %s)", st.LastProgress, stalled)
				}
			}
			// Still growing: the lag counts from the stall, not from the
			// last look.
			st = waitFor(s, stalled, time.Since(stalled)+2*time.Second)
			if min := time.Since(stalled).Seconds() - 2; st.LagSeconds < min {
				t.Fatalf("lag %.1fs after a stall of %.1fs", st.LagSeconds, time.Since(stalled).Seconds())
			}

			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			w.Stop()
			waitSynced(t, run, p.updb)
			caughtUp(t, s, "after the stall")
			if st := s.Status(); !st.LastProgress.After(stalled) {
				t.Fatalf("last progress %s not after the stall", st.LastProgress)
			}
			checkEqual(t, p.updb, p.downdb, "lagdb.t", "lagdb.t")
			checkEqual(t, p.updb, p.downdb, "lagdb.w", "lagdb.w")
		})
	}
}

// TestSyncerLagUpstreamOutOfSight: when the network to the upstream stalls
// (every connection, old and new, holds its bytes), the syncer cannot tell
// what the upstream writes meanwhile: the lag grows from the last time it
// saw the upstream (it used to stay at its last value, under a second);
// when the network comes back it catches up and reads 0.
func TestSyncerLagUpstreamOutOfSight(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 86})
	px, err := faultnet.New(p.up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	cfg := p.config("outage")
	cfg.Upstream.Port = uint16(px.Port())
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	mustExec(t, p.updb, "CREATE DATABASE lagdb")
	mustExec(t, p.updb, "CREATE TABLE lagdb.w (id INT PRIMARY KEY)")
	waitSynced(t, run, p.updb)
	caughtUp(t, s, "idle before the outage")

	px.Stall(true)
	cut := time.Now()
	w := startWriter(t, p, 0)
	st := waitFor(s, cut, 8*time.Second)
	if st.LagSeconds <= 2 {
		t.Fatalf("lag %.1fs with the upstream out of sight for %s; status %+v", st.LagSeconds, time.Since(cut).Round(time.Millisecond), st)
	}
	px.Stall(false)
	w.Stop()
	waitSynced(t, run, p.updb)
	caughtUp(t, s, "after the outage")
	checkEqual(t, p.updb, p.downdb, "lagdb.w", "lagdb.w")
}
