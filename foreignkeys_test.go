package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
)

// fkSchema creates the foreign key tests' tables in schema fk: a cascade on
// the referenced key itself (the case of issue #20), a cascade delete and
// update through another column, SET NULL through a unique key, a
// three-level chain with a restricting leaf, a self-referencing table, a
// pair joined by a plain (RESTRICT) foreign key, a cascade to a column with
// a plain index (which the snapshot must create with the table, before the
// referencing one), and a pair whose foreign key comes and goes by ALTER
// TABLE (fkAlter).
var fkSchema = []string{
	"CREATE DATABASE fk",
	"CREATE TABLE fk.ip (id INT PRIMARY KEY)",
	"CREATE TABLE fk.ic (id INT PRIMARY KEY, FOREIGN KEY (id) REFERENCES fk.ip (id) ON DELETE CASCADE ON UPDATE CASCADE)",
	"CREATE TABLE fk.p (id INT PRIMARY KEY, v VARCHAR(16))",
	"CREATE TABLE fk.c (id INT PRIMARY KEY, pid INT, v VARCHAR(16), FOREIGN KEY (pid) REFERENCES fk.p (id) ON DELETE CASCADE ON UPDATE CASCADE)",
	"CREATE TABLE fk.sp (id INT PRIMARY KEY, code VARCHAR(16) UNIQUE)",
	"CREATE TABLE fk.sc (id INT PRIMARY KEY, code VARCHAR(16), v INT, CONSTRAINT sc_code FOREIGN KEY (code) REFERENCES fk.sp (code) ON DELETE SET NULL ON UPDATE SET NULL)",
	"CREATE TABLE fk.g (id INT PRIMARY KEY, v INT)",
	"CREATE TABLE fk.m (id INT PRIMARY KEY, gid INT NOT NULL, FOREIGN KEY (gid) REFERENCES fk.g (id) ON DELETE CASCADE ON UPDATE CASCADE)",
	"CREATE TABLE fk.l (id INT PRIMARY KEY, mid INT NOT NULL, v INT, FOREIGN KEY (mid) REFERENCES fk.m (id) ON DELETE CASCADE)",
	"CREATE TABLE fk.lr (id INT PRIMARY KEY, mid INT NOT NULL, FOREIGN KEY (mid) REFERENCES fk.m (id))",
	"CREATE TABLE fk.emp (id INT PRIMARY KEY, manager_id INT, name VARCHAR(16), FOREIGN KEY (manager_id) REFERENCES fk.emp (id) ON DELETE CASCADE)",
	"CREATE TABLE fk.rp (id INT PRIMARY KEY, v INT)",
	"CREATE TABLE fk.rc (id INT PRIMARY KEY, rpid INT NOT NULL, FOREIGN KEY (rpid) REFERENCES fk.rp (id))",
	"CREATE TABLE fk.kp (id INT PRIMARY KEY, grp INT, KEY (grp))",
	"CREATE TABLE fk.kz (id INT PRIMARY KEY, grp INT, FOREIGN KEY (grp) REFERENCES fk.kp (grp) ON DELETE CASCADE)",
	"CREATE TABLE fk.ap (id INT PRIMARY KEY)",
	"CREATE TABLE fk.ac (id INT PRIMARY KEY, pid INT, KEY (pid))",
}

var fkTables = []string{"ip", "ic", "p", "c", "sp", "sc", "g", "m", "l", "lr", "emp", "rp", "rc", "kp", "kz", "ap", "ac"}

// fkAlter gives fk.ac a cascading foreign key, deletes parents, drops the
// key and deletes parents again: the downstream cascades the first deletes
// and not the second.
var fkAlter = []string{
	"INSERT INTO fk.ap VALUES (1), (2), (3), (4)",
	"INSERT INTO fk.ac VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, NULL)",
	"ALTER TABLE fk.ac ADD CONSTRAINT ac_p FOREIGN KEY (pid) REFERENCES fk.ap (id) ON DELETE CASCADE",
	"DELETE FROM fk.ap WHERE id IN (1, 2)",
	"ALTER TABLE fk.ac DROP FOREIGN KEY ac_p",
	"DELETE FROM fk.ap WHERE id = 3",
}

// fkRepro is issue #20's case: upstream ic ends {18}.
var fkRepro = []string{
	"INSERT INTO fk.ip VALUES (7), (8)",
	"INSERT INTO fk.ic VALUES (7), (8)",
	"DELETE FROM fk.ip WHERE id = 7",
	"UPDATE fk.ip SET id = 18 WHERE id = 8",
}

// fkWorkload runs n random statements or small transactions on the fk
// tables. Statements the upstream refuses (a foreign key or a duplicate
// key) are part of the game and skipped. Keys are never reused: next hands
// out fresh ones. Now and then a session with foreign_key_checks off
// deletes a parent or inserts an orphan, which the downstream must not
// repair either.
func fkWorkload(db *sql.DB, rnd *rand.Rand, next *atomic.Int64, n int) error {
	fresh := func() int64 { return next.Add(1) }
	some := func() int64 { return 1 + rnd.Int64N(max(1, next.Load())) }
	var failed error
	run := func(stmts ...string) {
		if failed != nil {
			return
		}
		tx, err := db.Begin()
		if err != nil {
			failed = err
			return
		}
		for _, q := range stmts {
			if _, err := tx.Exec(q); err != nil {
				_ = tx.Rollback()
				var me *gomysql.MySQLError
				if !errors.As(err, &me) || (me.Number != 1451 && me.Number != 1452 && me.Number != 1062) {
					failed = fmt.Errorf("%s: %w", q, err)
				}
				return
			}
		}
		failed = tx.Commit()
	}
	for range n {
		switch rnd.IntN(27) {
		case 0, 1: // parent, then children
			id := fresh()
			run(fmt.Sprintf("INSERT INTO fk.p VALUES (%d, 'p')", id),
				fmt.Sprintf("INSERT INTO fk.c VALUES (%d, %d, 'c'), (%d, %d, 'c')", fresh(), id, fresh(), id))
		case 2:
			run(fmt.Sprintf("INSERT INTO fk.c VALUES (%d, %d, 'c')", fresh(), some()))
		case 3:
			run(fmt.Sprintf("DELETE FROM fk.p WHERE id = %d", some()))
		case 4: // the parent's key moves, its children follow
			run(fmt.Sprintf("UPDATE fk.p SET id = %d WHERE id = %d", fresh(), some()))
		case 5:
			run(fmt.Sprintf("UPDATE fk.c SET v = 'u%d', pid = %d WHERE id = %d", rnd.IntN(100), some(), some()))
		case 6:
			id := fresh()
			run(fmt.Sprintf("INSERT INTO fk.sp VALUES (%d, 'k%d')", id, id),
				fmt.Sprintf("INSERT INTO fk.sc VALUES (%d, 'k%d', 0)", fresh(), id))
		case 7:
			run(fmt.Sprintf("UPDATE fk.sp SET code = 'k%d' WHERE id = %d", fresh(), some()))
		case 8:
			run(fmt.Sprintf("DELETE FROM fk.sp WHERE id = %d", some()))
		case 9:
			run(fmt.Sprintf("UPDATE fk.sc SET v = v + 1, code = 'k%d' WHERE id = %d", some(), some()))
		case 10: // a grandparent, parents, children
			g, m := fresh(), fresh()
			run(fmt.Sprintf("INSERT INTO fk.g VALUES (%d, 0)", g),
				fmt.Sprintf("INSERT INTO fk.m VALUES (%d, %d)", m, g),
				fmt.Sprintf("INSERT INTO fk.l VALUES (%d, %d, 0), (%d, %d, 0)", fresh(), m, fresh(), m))
		case 11:
			run(fmt.Sprintf("INSERT INTO fk.lr VALUES (%d, %d)", fresh(), some()))
		case 12: // the restricting leaf first, then the grandparent
			g := some()
			run(fmt.Sprintf("DELETE FROM fk.lr WHERE mid IN (SELECT id FROM fk.m WHERE gid = %d)", g),
				fmt.Sprintf("DELETE FROM fk.g WHERE id = %d", g))
		case 13:
			run(fmt.Sprintf("UPDATE fk.g SET id = %d WHERE id = %d", fresh(), some()))
		case 14:
			run(fmt.Sprintf("DELETE FROM fk.m WHERE id = %d", some()))
		case 15:
			run(fmt.Sprintf("UPDATE fk.l SET v = v + 1, mid = %d WHERE id = %d", some(), some()))
		case 16, 17: // an employee under a random one (or none)
			mgr := "NULL"
			if rnd.IntN(4) > 0 {
				mgr = fmt.Sprint(some())
			}
			run(fmt.Sprintf("INSERT INTO fk.emp VALUES (%d, %s, 'e')", fresh(), mgr))
		case 18: // a subtree goes
			run(fmt.Sprintf("DELETE FROM fk.emp WHERE id = %d", some()))
		case 19:
			run(fmt.Sprintf("UPDATE fk.emp SET name = 'n%d', manager_id = %d WHERE id = %d", rnd.IntN(100), some(), some()))
		case 20: // restrict: the parent first, then its children
			id := fresh()
			run(fmt.Sprintf("INSERT INTO fk.rp VALUES (%d, 0)", id),
				fmt.Sprintf("INSERT INTO fk.rc VALUES (%d, %d), (%d, %d)", fresh(), id, fresh(), id))
		case 21: // restrict: the children first, then their parent
			id := some()
			run(fmt.Sprintf("DELETE FROM fk.rc WHERE rpid = %d", id), fmt.Sprintf("DELETE FROM fk.rp WHERE id = %d", id))
		case 22:
			run(fmt.Sprintf("UPDATE fk.rc SET rpid = %d WHERE id = %d", some(), some()),
				fmt.Sprintf("UPDATE fk.rp SET v = v + 1 WHERE id = %d", some()))
		case 24: // a cascade through a column with a plain index
			id := fresh()
			run(fmt.Sprintf("INSERT INTO fk.kp VALUES (%d, %d)", id, id),
				fmt.Sprintf("INSERT INTO fk.kz VALUES (%d, %d)", fresh(), id))
		case 25:
			run(fmt.Sprintf("DELETE FROM fk.kp WHERE id = %d", some()))
		case 26: // a child moves to a new parent, which goes with it: a
			// replay that repeated the insert would find its parent gone
			p1, p2, c := fresh(), fresh(), fresh()
			run(fmt.Sprintf("INSERT INTO fk.p VALUES (%d, 'p'), (%d, 'p')", p1, p2))
			run(fmt.Sprintf("INSERT INTO fk.c VALUES (%d, %d, 'c')", c, p1))
			run(fmt.Sprintf("UPDATE fk.c SET pid = %d WHERE id = %d", p2, c))
			run(fmt.Sprintf("DELETE FROM fk.p WHERE id = %d", p2))
		case 23: // checks off: no cascade upstream, none downstream (none
			// of these statements can fail, the session is put back)
			if rnd.IntN(3) == 0 {
				run("SET SESSION foreign_key_checks = 0",
					fmt.Sprintf("DELETE FROM fk.p WHERE id = %d", some()),
					fmt.Sprintf("INSERT INTO fk.c VALUES (%d, %d, 'orphan')", fresh(), 1_000_000+fresh()),
					"SET SESSION foreign_key_checks = 1")
			}
		}
	}
	return failed
}

// fkSink is mysqlsink checking that the changes of tables with
// CheckForeignKeys come in batches that carry their checkpoint: applied never
// ahead of it, they are never replayed over themselves after a crash.
type fkSink struct {
	*mysqlsink.Sink
	t       *testing.T
	checked atomic.Int64 // changes of such tables seen
}

func (s *fkSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	for _, c := range b.Changes {
		if c.Table.CheckForeignKeys {
			s.checked.Add(1)
			if b.Checkpoint == nil {
				s.t.Errorf("a change of %s (foreign key checks on) in a batch without a checkpoint", c.Table.QualifiedName())
			}
		}
	}
	return s.Sink.Apply(ctx, b)
}

// checkFKTables compares every fk table upstream with its copy in schema
// down downstream.
func checkFKTables(t *testing.T, up, down *sql.DB, schema string) {
	t.Helper()
	for _, tbl := range fkTables {
		checkEqual(t, up, down, "fk."+tbl, schema+"."+tbl)
	}
}

// TestForeignKeyCascades replicates tables whose foreign keys act (CASCADE
// and SET NULL on delete and on update, a chain, a self-reference) or only
// restrict, under a random workload, in modes incremental and all, with 1
// and 16 workers, in normal and in safe mode: the downstream ends equal.
// On the old code the cascades upstream never happened downstream.
func TestForeignKeyCascades(t *testing.T) {
	for i, mode := range []dmworker.Mode{dmworker.ModeIncremental, dmworker.ModeAll} {
		t.Run(string(mode), func(t *testing.T) {
			p := newPair(t, uint32(410+2*i), uint32(411+2*i), testserver.MariaDBOptions{})
			var next atomic.Int64
			next.Store(100)
			setup := func() {
				for _, q := range fkSchema {
					mustExec(t, p.updb, q)
				}
				for _, q := range fkRepro {
					mustExec(t, p.updb, q)
				}
				if err := fkWorkload(p.updb, rand.New(rand.NewPCG(20, uint64(i))), &next, 300); err != nil {
					t.Fatal(err)
				}
			}
			if mode == dmworker.ModeAll {
				setup() // the snapshot copies it
			}
			type variant struct {
				name    string
				workers int
				safe    bool
			}
			variants := []variant{{"w1", 1, false}, {"w16", 16, false}, {"s1", 1, true}, {"s16", 16, true}}
			var tasks []*dmworker.SubTask
			sink := &fkSink{Sink: p.sink, t: t}
			for _, v := range variants {
				cfg := dmworker.SubTaskConfig{Name: "fk-" + v.name, Mode: mode,
					SyncerTuning: dmworker.SyncerTuning{Workers: v.workers, SafeMode: v.safe},
					// Every variant into a schema of its own, through
					// routing: the routed DDL must route the references.
					Routes:   []dmworker.RouteRule{{SchemaPattern: "fk", TargetSchema: "fk_" + v.name}},
					Snapshot: dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 50}}
				st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), sink)
				if err != nil {
					t.Fatal(err)
				}
				runSubTask(t, st)
				tasks = append(tasks, st)
			}
			for _, st := range tasks {
				waitUntil(t, "the syncer of "+st.Status().Name, func() bool {
					s := st.Status()
					if s.Stage == dmworker.SubTaskPaused && s.LastError != nil {
						t.Fatalf("%s paused: %v", s.Name, s.LastError)
					}
					return s.Unit == "syncer" && s.Syncer.Read.Name != ""
				})
			}
			if mode == dmworker.ModeIncremental {
				setup() // the syncers create the tables
			}
			var wg sync.WaitGroup
			for w := range 2 {
				db := p.up.DB(t)
				wg.Go(func() {
					if err := fkWorkload(db, rand.New(rand.NewPCG(21, uint64(10*i+w))), &next, 600); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			for _, q := range fkAlter {
				mustExec(t, p.updb, q)
			}
			if got := tableRows(t, p.updb, "fk.ic"); len(got) != 1 || got[0] != `"18"` {
				t.Fatalf("upstream fk.ic = %v, want 18 alone", got)
			}
			for k, st := range tasks {
				waitSubTaskSynced(t, st.Status, p)
				checkFKTables(t, p.updb, p.downdb, "fk_"+variants[k].name)
			}
			if sink.checked.Load() == 0 {
				t.Fatal("no change of a table with foreign key checks reached the sink")
			}
		})
	}
}

// TestForeignKeyCrashReplay kills a syncer process with SIGKILL again and
// again while the foreign key workload runs; the replays after each restart
// (safe mode up to where the dead run may have got) must neither run an
// ON DELETE action twice nor miss one: after a last clean run the
// downstream equals the upstream.
func TestForeignKeyCrashReplay(t *testing.T) {
	for i, workers := range []int{1, 16} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: uint32(420 + i)})
			for _, db := range []*sql.DB{p.updb, p.downdb} {
				for _, q := range fkSchema {
					mustExec(t, db, q)
				}
			}
			file, pos := masterPos(t, p.updb)

			var next atomic.Int64
			next.Store(100)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			db := p.up.DB(t)
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(22, uint64(i)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := fkWorkload(db, rnd, &next, 20); err != nil {
						t.Error(err)
						return
					}
				}
			})
			killSyncerChildren(t, p, "fkcrash", workers, file, pos, 6, rand.New(rand.NewPCG(23, uint64(i))))
			close(stop)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}

			recoverSyncer(t, p, "fkcrash", workers, file, pos)
			checkFKTables(t, p.updb, p.downdb, "fk")
		})
	}
}
