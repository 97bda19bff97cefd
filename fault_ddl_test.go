package dmworker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
)

// failDDLSink fails the first DDL holding word, before running it.
type failDDLSink struct {
	*mysqlsink.Sink
	word   string
	failed atomic.Bool
}

var errDDLRefused = errors.New("test: DDL refused once")

func (s *failDDLSink) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	if strings.Contains(d.Query, s.word) && s.failed.CompareAndSwap(false, true) {
		return errDDLRefused
	}
	return s.Sink.ExecDDL(ctx, d)
}

// TestSyncerDDLFailureKeepsSchema: a run with parallel workers fails on a
// DDL (the sink refuses it), right after rows it applied and had not
// checkpointed yet. The checkpoint the run's end stores (where the workers
// got, before the DDL) must carry the schema before the DDL, not the one
// the tracker held with the DDL's statement applied: the next run replays
// the DDL and goes on, and the downstream equals the upstream.
//
// The same for an online schema change's cut-over (a RENAME of the shadow
// table onto the real one, pt-online-schema-change's names) whose recorded
// ALTER the sink refuses: the next run must run the cut-over again, the
// record with it; a checkpoint with the record consumed and the tracker
// past the RENAME left the downstream table without the change for good.
func TestSyncerDDLFailureKeepsSchema(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		online  bool
	}{{"serial", 1, false}, {"parallel", 4, false}, {"online-cutover", 4, true}} {
		workers := tc.workers
		t.Run(tc.name, func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: uint32(1040 + workers + map[bool]int{true: 10}[tc.online])})
			start := upstreamPos(t, p.updb)
			mustExec(t, p.updb, "CREATE DATABASE app")
			mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
			cfg := p.config("ddlfail")
			cfg.Start, cfg.Workers = start, workers
			fs := &failDDLSink{Sink: p.sink, word: "ADD COLUMN"}
			s, err := dmworker.NewSyncer(cfg, fs)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			waitSynced(t, run, p.updb)
			tx, err := p.updb.Begin()
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if _, err := tx.Exec("INSERT INTO app.t VALUES (?, ?)", i, i); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if tc.online {
				mustExec(t, p.updb, "CREATE TABLE app._t_new LIKE app.t")
				mustExec(t, p.updb, "ALTER TABLE app._t_new ADD COLUMN w INT NOT NULL DEFAULT 7")
				mustExec(t, p.updb, "INSERT INTO app._t_new (id, v) SELECT id, v FROM app.t")
				mustExec(t, p.updb, "RENAME TABLE app.t TO app._t_old, app._t_new TO app.t")
				mustExec(t, p.updb, "DROP TABLE app._t_old")
			} else {
				mustExec(t, p.updb, "ALTER TABLE app.t ADD COLUMN w INT NOT NULL DEFAULT 7")
			}
			if err := run.Wait(t); !errors.Is(err, errDDLRefused) {
				t.Fatalf("the run ended with %v, want the refused DDL", err)
			}
			mustExec(t, p.updb, "INSERT INTO app.t VALUES (100, 100, 100)")
			s2, err := dmworker.NewSyncer(cfg, p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run2 := runSyncer(t, s2)
			waitSynced(t, run2, p.updb)
			checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
			if err := run2.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
