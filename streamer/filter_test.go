package streamer_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// filterWorkload writes transactions that change rows of the kept tables
// (keep.a, keep.b) and of the dropped ones (drop.a, keep.skipped), several
// tables in one transaction and in one statement, with types whose decoding
// matters.
func filterWorkload(t testing.TB, m *testserver.MariaDB, txns int) {
	t.Helper()
	db := m.DB(t)
	mustExec(t, db, "CREATE DATABASE keep")
	mustExec(t, db, "CREATE DATABASE `drop`")
	for _, tbl := range []string{"keep.a", "keep.b", "`drop`.a", "keep.skipped"} {
		mustExec(t, db, "CREATE TABLE "+tbl+` (id INT PRIMARY KEY, d DECIMAL(10,2), dt DATETIME(3), ts TIMESTAMP(6) NULL,
			j JSON, v VARCHAR(200) CHARACTER SET utf8mb4, u INT UNSIGNED, f DOUBLE)`)
	}
	for i := range txns {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for _, tbl := range []string{"keep.a", "`drop`.a", "keep.b", "keep.skipped"} {
			for j := range 3 {
				id := i*10 + j
				if _, err := tx.Exec("INSERT INTO "+tbl+" VALUES (?, ?, ?, ?, ?, ?, ?, ?)", id, fmt.Sprintf("%d.%02d", id, j),
					"2024-02-29 10:11:12.345", "2024-01-01 00:00:00.5", fmt.Sprintf(`{"k":[%d,2]}`, id), fmt.Sprintf("Grüße %d %0*d", id, 100+j, 0),
					uint32(4000000000)+uint32(id), float64(id)/3); err != nil {
					t.Fatal(err)
				}
			}
		}
		// One statement changing a kept and a dropped table.
		if _, err := tx.Exec("UPDATE keep.a, `drop`.a SET keep.a.u = keep.a.u + 1, `drop`.a.f = `drop`.a.f * 2 WHERE keep.a.id = ? AND `drop`.a.id = ?", i*10, i*10); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("DELETE FROM keep.b WHERE id = ?", i*10+1); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("DELETE FROM `drop`.a WHERE id = ?", i*10+2); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// filterKeep keeps the schema keep but its table skipped, and counts its
// calls per table.
type filterKeep struct {
	mu    sync.Mutex
	calls map[string]int
}

func (f *filterKeep) keep(schema, table string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[schema+"."+table]++
	return schema == "keep" && table != "skipped"
}

// TestTableFilterReaders: with WithTableFilter, both readers deliver the
// stream they deliver without it (same events, positions, GTIDs,
// transaction ends, bytes), with the rows of the kept tables decoded as
// without the filter (the remote reader decodes them on GetEvent's
// goroutine, the local reader in its parser: they must agree), and the rows
// of the dropped tables left undecoded, header and table map still there.
// The filter is asked once per table. Also with MariaDB's compressed rows
// events.
func TestTableFilterReaders(t *testing.T) {
	for _, tc := range []struct {
		name     string
		serverID uint32
		args     []string
	}{
		{"plain", 81, nil},
		{"compressed", 82, []string{"--log-bin-compress=ON", "--log-bin-compress-min-len=10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: tc.serverID, MaxBinlogSize: 64 << 10, ExtraArgs: tc.args})
			filterWorkload(t, m, 40)
			ctx := testCtx(t)
			dir := t.TempDir()
			files := localCopyRelay(t, m, dir, streamer.SubDirName(fmt.Sprint(tc.serverID), 1), true)
			if len(files) < 2 {
				t.Fatalf("%d binlog files, want a rotation", len(files))
			}
			start := streamer.Position{Name: files[0], Offset: 4}

			local := localReadAll(ctx, t, newLocal(t, dir, streamer.StartAtPosition(start), streamer.WithFollow(false)))
			var lk filterKeep
			localF := localReadAll(ctx, t, newLocal(t, dir, streamer.StartAtPosition(start), streamer.WithFollow(false),
				streamer.WithTableFilter(lk.keep)))
			var lsk filterKeep
			lr := newLocal(t, dir, streamer.StartAtPosition(start), streamer.WithFollow(false))
			var tf streamer.TableFilterer = lr // (through the interface, as the syncer does)
			tf.SetTableFilter(lsk.keep)
			localSet := localReadAll(ctx, t, lr)
			end := local[len(local)-1].Pos
			remoteRead := func(keep func(schema, table string) bool, opts ...streamer.RemoteOption) []*streamer.Event {
				rr, err := streamer.NewRemoteReader(upstreamOf(m), start, append(opts, streamer.WithHeartbeat(time.Second))...)
				if err != nil {
					t.Fatal(err)
				}
				closeReader(t, rr)
				if keep != nil {
					rr.SetTableFilter(keep)
				}
				return drain(ctx, t, rr, end, nil)
			}
			remote := remoteRead(nil)
			var rk, rsk filterKeep
			remoteF := remoteRead(nil, streamer.WithTableFilter(rk.keep))
			remoteSet := remoteRead(rsk.keep)

			want := realKeys(local)
			all := map[string][]*streamer.Event{"filtered local": localF, "remote": remote, "filtered remote": remoteF,
				"filtered local (set)": localSet, "filtered remote (set)": remoteSet}
			for name, evs := range all {
				t.Logf("%s: %d events", name, len(evs))
				equalStreams(t, realKeys(evs), want)
			}
			rowsOf := func(evs []*streamer.Event) []*replication.RowsEvent {
				var out []*replication.RowsEvent
				for _, e := range evs {
					if re, ok := e.Event.(*replication.RowsEvent); ok && !e.Artificial() {
						out = append(out, re)
					}
				}
				return out
			}
			ref, kept, dropped := rowsOf(local), 0, 0
			for name, evs := range all {
				got, filtered := rowsOf(evs), name != "remote"
				if len(got) != len(ref) {
					t.Fatalf("%s: %d rows events, want %d", name, len(got), len(ref))
				}
				for i, re := range got {
					w := ref[i]
					if re.Table == nil || string(re.Table.Schema) != string(w.Table.Schema) || string(re.Table.Table) != string(w.Table.Table) ||
						re.ColumnCount != w.ColumnCount || re.Flags != w.Flags || re.TableID != w.TableID {
						t.Fatalf("%s: rows event %d: header %+v, want %+v", name, i, re, w)
					}
					if len(w.Rows) == 0 {
						t.Fatalf("rows event %d of %s.%s without rows", i, w.Table.Schema, w.Table.Table)
					}
					keep := string(w.Table.Schema) == "keep" && string(w.Table.Table) != "skipped"
					if filtered && !keep {
						if re.Rows != nil {
							t.Fatalf("%s: rows event %d of %s.%s decoded: %v", name, i, w.Table.Schema, w.Table.Table, re.Rows)
						}
						dropped++
						continue
					}
					if !reflect.DeepEqual(re.Rows, w.Rows) || !reflect.DeepEqual(re.SkippedColumns, w.SkippedColumns) {
						t.Fatalf("%s: rows event %d of %s.%s: rows\n%v\nwant\n%v", name, i, w.Table.Schema, w.Table.Table, re.Rows, w.Rows)
					}
					kept++
				}
			}
			if kept == 0 || dropped == 0 {
				t.Fatalf("%d rows events kept, %d dropped: want both", kept, dropped)
			}
			for name, k := range map[string]*filterKeep{"local": &lk, "remote": &rk, "local (set)": &lsk, "remote (set)": &rsk} {
				if len(k.calls) != 4 {
					t.Errorf("%s filter asked about %v, want the 4 tables", name, k.calls)
				}
				for tbl, n := range k.calls {
					if n != 1 {
						t.Errorf("%s filter asked %d times about %s, want once", name, n, tbl)
					}
				}
			}
		})
	}
}

// deferredSeeds are binlog files whose rows events DeferredRowsAgree
// checks: a MariaDB file with many column types, and MySQL 8 files with
// compressed transactions.
func deferredSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{localFuzzSeed(tb)}
	for _, f := range mysql8Files(tb) {
		seeds = append(seeds, f.Data)
	}
	return seeds
}

// TestDeferredRowsAgree: decoding the row images after the header (as the
// remote reader does on GetEvent's goroutine) gives what go-mysql's parser
// gives decoding them at once, also for the events a Transaction_payload
// holds.
func TestDeferredRowsAgree(t *testing.T) {
	for i, data := range deferredSeeds(t) {
		n, err := streamer.DeferredRowsAgree(data)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if n == 0 {
			t.Fatalf("seed %d: no rows event compared", i)
		}
		t.Logf("seed %d: %d rows events agree", i, n)
	}
}

// FuzzDeferredRows feeds mutated binlog files to both ways of decoding row
// images (DeferredRowsAgree): the deferred one must fail where the parser
// fails and agree with it elsewhere, and neither may panic or hang.
func FuzzDeferredRows(f *testing.F) {
	for _, s := range deferredSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := streamer.DeferredRowsAgree(data); err != nil {
			t.Fatal(err)
		}
	})
}
