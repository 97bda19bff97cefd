package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// validatorChildEnv makes the test binary run a subtask with a validator
// instead of the tests: "task|upstream user:pass@host:port|downstream
// user:pass@host:port|workers|row error delay[|memory bytes]".
const validatorChildEnv = "DMWORKER_TEST_VALIDATOR_CHILD"

func validatorChild(spec string) int {
	parts := strings.SplitN(spec, "|", 6)
	up, err := streamer.ParseUpstream(parts[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	down, err := streamer.ParseUpstream(parts[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/", down.User, down.Password, down.Addr()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sink, err := mysqlsink.New(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var workers int
	fmt.Sscan(parts[3], &workers)
	delay, err := time.ParseDuration(parts[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := validationConfig(parts[0], workers, delay)
	if len(parts) > 5 {
		fmt.Sscan(parts[5], &cfg.Validation.MemoryBytes)
	}
	st, err := dmworker.NewSubTask(cfg, up, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := st.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func validationConfig(task string, workers int, delay time.Duration) dmworker.SubTaskConfig {
	return dmworker.SubTaskConfig{
		Name:         task,
		SyncerTuning: dmworker.SyncerTuning{Workers: workers},
		Validation:   dmworker.ValidationConfig{Mode: dmworker.ValidationFull, RowErrorDelay: dmworker.Duration(delay)},
	}
}

// waitValidated waits until the subtask's syncer has applied everything
// the upstream has written now and its validator holds no row unchecked
// past it: every row is checked, and Pending holds only differing ones.
func waitValidated(t *testing.T, st *dmworker.SubTask, p *syncPair) dmworker.ValidatorStatus {
	t.Helper()
	waitSubTaskSynced(t, st.Status, p)
	want := st.Status().Syncer.Checkpoint
	var vs dmworker.ValidatorStatus
	defer func() {
		if t.Failed() {
			t.Logf("validator status: %+v", vs)
		}
	}()
	waitUntil(t, "the validator at "+want.String(), func() bool {
		vs = st.Status().Validator
		return vs.Validated.Compare(want) >= 0 && vs.Pending == vs.Differing
	})
	return vs
}

// errorKeys returns the validator's error rows of table as "schema.table key".
func errorKeys(t *testing.T, db *sql.DB, task string) []string {
	t.Helper()
	rows, err := db.Query("SELECT table_schema, table_name, row_key FROM dmworker_meta.validator_errors WHERE task = ?", task)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s, n, k string
		if err := rows.Scan(&s, &n, &k); err != nil {
			t.Fatal(err)
		}
		out = append(out, s+"."+n+" "+k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestValidatorNoFalseDifferences runs a subtask with the validator in full
// mode and 16 workers under a write load (syncWorkload, DDL included) and
// the type-family tables: it checks every row and records no error row.
func TestValidatorNoFalseDifferences(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 81})
	st, err := dmworker.NewSubTask(validationConfig("val", 16, 2*time.Second), upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitSubTaskSynced(t, st.Status, p)
	exec := fillTypeFamilies(t, p.updb)
	syncWorkload(t, p.updb, rand.New(rand.NewPCG(8, 1)), 300)
	exec("BEGIN")
	for _, q := range typeFamilyChanges[:len(typeFamilyChanges)/2] {
		exec(q)
	}
	exec("COMMIT")
	for _, q := range typeFamilyChanges[len(typeFamilyChanges)/2:] {
		exec(q)
	}
	vs := waitValidated(t, st, p)
	// Differences are recorded only after the delay: wait past it.
	time.Sleep(3 * time.Second)
	vs = waitValidated(t, st, p)
	if vs.Checked == 0 {
		t.Fatalf("the validator checked nothing: %+v", vs)
	}
	if keys := errorKeys(t, p.downdb, "val"); len(keys) != 0 || vs.ErrorRows != 0 || vs.Differing != 0 {
		t.Fatalf("false differences: error rows %v, status %+v", keys, vs)
	}
	if vs.Mode != dmworker.ValidationFull || !vs.Running {
		t.Fatalf("validator status %+v", vs)
	}
	// It took what the syncer read (the binlog was read once).
	if vs.Reading != dmworker.ValidatorReadsSyncer {
		t.Fatalf("the validator reads from %q", vs.Reading)
	}
}

// TestValidatorFindsDivergences makes divergences downstream on purpose and
// checks that the validator records each with its exact key after the
// delay, not a float changed within its precision, clears a row that
// converges, and after a kill -9 of a subtask process mid-run resumes from
// its checkpoint and reports the same.
func TestValidatorFindsDivergences(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 82})
	const delay = time.Second
	cfg := validationConfig("div", 4, delay)
	st := startSynced(t, cfg, p)
	mustExec(t, p.updb, "CREATE DATABASE d")
	mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY, a INT, j JSON, f FLOAT, g DOUBLE, s VARCHAR(20))")
	for i := 1; i <= 8; i++ {
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (?, ?, ?, ?, ?, ?)", i, i*10, fmt.Sprintf(`{"k": %d, "l": [1, 2]}`, i), 1.5, 2.25, fmt.Sprint("s", i))
	}
	waitValidated(t, st, p)
	st.Stop()
	if keys := errorKeys(t, p.downdb, "div"); len(keys) != 0 {
		t.Fatalf("error rows before any divergence: %v", keys)
	}

	// Upstream changes, applied by the task's syncer alone (the validator
	// does not run), then divergences downstream on the rows they changed.
	mustExec(t, p.updb, "UPDATE d.t SET s = CONCAT(s, '+') WHERE id IN (1, 2, 4, 5, 6, 7, 8)")
	mustExec(t, p.updb, "DELETE FROM d.t WHERE id = 3")
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "div", Upstream: upstreamOf(p.up), SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	r := runSyncer(t, s)
	waitSynced(t, r, p.updb)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.downdb, "DELETE FROM d.t WHERE id = 1")                                     // row deleted
	mustExec(t, p.downdb, "UPDATE d.t SET a = 999 WHERE id = 2")                              // column changed
	mustExec(t, p.downdb, "INSERT INTO d.t VALUES (3, 30, '{}', 1.5, 2.25, 's3')")            // extra row
	mustExec(t, p.downdb, `UPDATE d.t SET j = '{"k": 4, "l": [2, 1]}' WHERE id = 4`)          // JSON changed
	mustExec(t, p.downdb, "UPDATE d.t SET f = 1.51, g = 2.2500001 WHERE id = 5")              // floats past precision
	mustExec(t, p.downdb, "UPDATE d.t SET f = 1.5000001, g = 2.250000000000001 WHERE id = 6") // within precision
	mustExec(t, p.downdb, `UPDATE d.t SET j = '{"l": [1, 2.0], "k": 8}' WHERE id = 8`)        // same JSON value
	mustExec(t, p.downdb, "UPDATE d.t SET a = 555 WHERE id = 7")                              // converges later
	want := []string{"d.t [1]", "d.t [2]", "d.t [3]", "d.t [4]", "d.t [5]", "d.t [7]"}

	// A subtask process killed with SIGKILL mid-run.
	spec := fmt.Sprintf("div|%s:%s@%s|%s:%s@%s|4|%s", p.up.User, p.up.Password, p.up.Addr(), p.down.User, p.down.Password, p.down.Addr(), delay)
	cmd, stderr := startValidatorChild(t, spec)
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("validator child ended on its own (%v): %s", err, stderr.String())
	}

	// Resumed in this process: the same error rows, each with its key.
	var logs lockedBuffer
	st2, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink, dmworker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st2)
	var got []string
	defer func() {
		if t.Failed() {
			t.Logf("error rows %v; status %+v; logs:\n%s", got, st2.Status().Validator, logs.String())
		}
	}()
	waitUntil(t, "the error rows "+strings.Join(want, ", "), func() bool {
		got = errorKeys(t, p.downdb, "div")
		return strings.Join(got, ",") == strings.Join(want, ",")
	})
	vs := waitValidated(t, st2, p)
	if vs.Validated.IsZero() {
		t.Fatalf("validator status %+v", vs)
	}
	waitUntil(t, "the status's error rows", func() bool { return st2.Status().Validator.ErrorRows == len(want) })
	var up, down sql.NullString
	if err := p.downdb.QueryRow("SELECT upstream_row, downstream_row FROM dmworker_meta.validator_errors WHERE task = 'div' AND row_key = '[2]'").Scan(&up, &down); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(up.String, `"a":20`) || !strings.Contains(down.String, `"a":999`) {
		t.Fatalf("error row images: upstream %s, downstream %s", up.String, down.String)
	}
	if err := p.downdb.QueryRow("SELECT upstream_row, downstream_row FROM dmworker_meta.validator_errors WHERE task = 'div' AND row_key = '[1]'").Scan(&up, &down); err != nil {
		t.Fatal(err)
	}
	if !up.Valid || down.Valid {
		t.Fatalf("the missing row's images: upstream %v, downstream %v", up, down)
	}
	// Time past the delay changes nothing more.
	time.Sleep(2 * delay)
	if got = errorKeys(t, p.downdb, "div"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("error rows %v, want %v", got, want)
	}

	// A row that converges is cleared.
	mustExec(t, p.downdb, "UPDATE d.t SET a = 70 WHERE id = 7")
	waitUntil(t, "row 7 cleared", func() bool {
		got = errorKeys(t, p.downdb, "div")
		return strings.Join(got, ",") == strings.Join(want[:5], ",")
	})
	// Pause and resume: the validator stops and runs again with the subtask.
	if err := st2.Pause(); err != nil {
		t.Fatal(err)
	}
	if st2.Status().Validator.Running {
		t.Fatal("the validator runs while the subtask is paused")
	}
	if err := st2.Resume(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the validator running", func() bool { return st2.Status().Validator.Running })
}

// TestValidatorConfig: the mode is checked, and a sink that cannot give the
// downstream needs WithValidationDB.
func TestValidatorConfig(t *testing.T) {
	up := streamer.UpstreamConfig{Host: "127.0.0.1", Port: 3306, User: "root"}
	cfg := dmworker.SubTaskConfig{Name: "v", Validation: dmworker.ValidationConfig{Mode: "slow"}}
	if _, err := dmworker.NewSubTask(cfg, up, nopSink{}, dmworker.WithCheckpointStore(memStore{})); err == nil || !strings.Contains(err.Error(), "validation mode") {
		t.Fatalf("mode slow: %v", err)
	}
	cfg.Validation.Mode = dmworker.ValidationFast
	if _, err := dmworker.NewSubTask(cfg, up, nopSink{}, dmworker.WithCheckpointStore(memStore{})); err == nil || !strings.Contains(err.Error(), "WithValidationDB") {
		t.Fatalf("no downstream: %v", err)
	}
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := dmworker.NewSubTask(cfg, up, nopSink{}, dmworker.WithCheckpointStore(memStore{}), dmworker.WithValidationDB(db))
	if err != nil {
		t.Fatal(err)
	}
	got := st.Config().Validation
	if got.RowErrorDelay != dmworker.Duration(dmworker.DefaultRowErrorDelay) || got.MemoryBytes != dmworker.DefaultValidationMemory || got.MetaSchema != "dmworker_meta" {
		t.Fatalf("defaults: %+v", got)
	}
	if (dmworker.SubTaskConfig{Name: "v"}).Validation.Mode != "" {
		t.Fatal("validation is on by default")
	}
}

type nopSink struct{}

func (nopSink) Apply(context.Context, *dmworker.Batch) error { return nil }
func (nopSink) ExecDDL(context.Context, *dmworker.DDL) error { return nil }

type memStore struct{}

func (memStore) Load(context.Context, string, string) (dmworker.Checkpoint, bool, error) {
	return dmworker.Checkpoint{}, false, nil
}
func (memStore) Save(context.Context, dmworker.Checkpoint) error { return nil }

// TestValidatorFastMode: in mode fast the validator finds a row deleted
// downstream and an extra row, each with its exact key, and not a changed
// column (fast checks existence only).
func TestValidatorFastMode(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 83})
	cfg := validationConfig("fast", 4, time.Second)
	cfg.Validation.Mode = dmworker.ValidationFast
	st := startSynced(t, cfg, p)
	mustExec(t, p.updb, "CREATE DATABASE f")
	mustExec(t, p.updb, "CREATE TABLE f.t (id INT PRIMARY KEY, a INT, s VARCHAR(20))")
	for i := 1; i <= 6; i++ {
		mustExec(t, p.updb, "INSERT INTO f.t VALUES (?, ?, ?)", i, i*10, fmt.Sprint("s", i))
	}
	waitValidated(t, st, p)
	st.Stop()

	// Upstream changes applied by the task's syncer alone, then
	// divergences downstream on the rows they changed.
	mustExec(t, p.updb, "UPDATE f.t SET s = CONCAT(s, '+') WHERE id IN (1, 2, 4)")
	mustExec(t, p.updb, "DELETE FROM f.t WHERE id = 3")
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "fast", Upstream: upstreamOf(p.up), SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	r := runSyncer(t, s)
	waitSynced(t, r, p.updb)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.downdb, "DELETE FROM f.t WHERE id = 1")                 // row deleted
	mustExec(t, p.downdb, "UPDATE f.t SET a = 999, s = 'x' WHERE id = 2") // column changed: not seen in fast mode
	mustExec(t, p.downdb, "INSERT INTO f.t VALUES (3, 30, 's3')")         // extra row
	want := []string{"f.t [1]", "f.t [3]"}

	st2, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st2)
	var got []string
	waitUntil(t, "the error rows "+strings.Join(want, ", "), func() bool {
		got = errorKeys(t, p.downdb, "fast")
		return strings.Join(got, ",") == strings.Join(want, ",")
	})
	vs := waitValidated(t, st2, p)
	if vs.Mode != dmworker.ValidationFast || vs.Checked == 0 {
		t.Fatalf("validator status %+v", vs)
	}
	// Past the delay again: row 2 is still not an error row.
	time.Sleep(2 * time.Second)
	waitValidated(t, st2, p)
	if got = errorKeys(t, p.downdb, "fast"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("error rows %v, want %v", got, want)
	}
	var up, down sql.NullString
	if err := p.downdb.QueryRow("SELECT upstream_row, downstream_row FROM dmworker_meta.validator_errors WHERE task = 'fast' AND row_key = '[3]'").Scan(&up, &down); err != nil {
		t.Fatal(err)
	}
	if up.Valid || down.String != `{"id":3}` {
		t.Fatalf("the extra row's images: upstream %v, downstream %v", up, down)
	}
}

// TestValidatorStartsWithTheSyncersSchema: a validator added to a task
// whose syncer resumes from a checkpoint taken before DDLs starts there
// with the schema the syncer tracked at it, not with the upstream's schema
// of now (with which replaying the ADD COLUMN and CREATE INDEX failed, and
// the validator retried forever: the stall seen once in bench/validator.sh,
// where the validator started after sysbench's CREATE TABLE and before its
// CREATE INDEX).
func TestValidatorStartsWithTheSyncersSchema(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 84})
	cfg := validationConfig("late", 4, time.Second)
	cfg.Validation = dmworker.ValidationConfig{}
	st := startSynced(t, cfg, p)
	mustExec(t, p.updb, "CREATE DATABASE l")
	mustExec(t, p.updb, "CREATE TABLE l.t (id INT PRIMARY KEY, a INT)")
	mustExec(t, p.updb, "INSERT INTO l.t VALUES (1, 10), (2, 20)")
	waitSubTaskSynced(t, st.Status, p)
	st.Stop()

	// Changes the syncer has not read when the validator starts: enough
	// rows that it reaches the DDLs after the validator has started.
	for i := 3; i < 400; i++ {
		mustExec(t, p.updb, "INSERT INTO l.t VALUES (?, ?)", i, i*10)
	}
	mustExec(t, p.updb, "ALTER TABLE l.t ADD COLUMN b VARCHAR(10)")
	mustExec(t, p.updb, "CREATE INDEX ia ON l.t (a)")
	mustExec(t, p.updb, "UPDATE l.t SET b = 'x' WHERE id < 50")

	// The syncer applies nothing until the validator has started: its
	// stored checkpoint stays before the DDLs.
	held := heldSink{Sink: p.sink, release: make(chan struct{})}
	cfg = validationConfig("late", 4, time.Second)
	st2, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), held)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st2)
	waitUntil(t, "the validator started", func() bool { return !st2.Status().Validator.Validated.IsZero() })
	close(held.release)
	vs := waitValidated(t, st2, p)
	// Every row inserted before the DDLs, then the rows updated after.
	if vs.Checked < 397+49 || vs.LastError != nil {
		t.Fatalf("validator status %+v", vs)
	}
	if keys := errorKeys(t, p.downdb, "late"); len(keys) != 0 {
		t.Fatalf("error rows %v", keys)
	}
}

// heldSink is a mysqlsink whose Apply waits until release is closed.
type heldSink struct {
	*mysqlsink.Sink
	release chan struct{}
}

func (s heldSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Sink.Apply(ctx, b)
}

// TestValidatorMemoryBoundSpills: with a memory budget of a few rows and
// hundreds of rows that keep differing, the bytes held never pass the
// budget (the differing rows are spilled to the meta schema and checked
// again from there), and every row is still recorded as an error row with
// its key and images once it has differed past the delay.
func TestValidatorMemoryBoundSpills(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 85})
	const budget, n = 8192, 300
	cfg := validationConfig("mem", 4, 2*time.Second)
	cfg.Validation.MemoryBytes = budget
	st := startSynced(t, cfg, p)
	fillWide(t, p.updb, "m", n)
	vs := waitValidated(t, st, p)
	if vs.PeakBytes == 0 || vs.PeakBytes > budget {
		t.Fatalf("peak bytes held %d, budget %d", vs.PeakBytes, budget)
	}
	st.Stop()

	// Every row changed upstream (applied by the syncer alone), then
	// changed again downstream: n rows that keep differing.
	mustExec(t, p.updb, "UPDATE m.t SET s = CONCAT(s, 'y')")
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "mem", Upstream: upstreamOf(p.up), SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	r := runSyncer(t, s)
	waitSynced(t, r, p.updb)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.downdb, "UPDATE m.t SET a = a + 1")

	st2, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st2)
	spilled := 0
	waitUntil(t, fmt.Sprintf("%d error rows", n), func() bool {
		vs = st2.Status().Validator
		spilled = max(spilled, vs.Spilled)
		return len(errorKeys(t, p.downdb, "mem")) == n && vs.Spilled == 0
	})
	checkWideErrorRows(t, p.downdb, "mem", "m", n)
	vs = waitValidated(t, st2, p)
	if spilled == 0 {
		t.Fatal("no row was spilled")
	}
	if vs.PeakBytes == 0 || vs.PeakBytes > budget {
		t.Fatalf("peak bytes held %d, budget %d", vs.PeakBytes, budget)
	}
}

// startSynced starts a subtask of cfg from p's upstream to its sink and
// waits until it has synced.
func startSynced(t *testing.T, cfg dmworker.SubTaskConfig, p *syncPair) *dmworker.SubTask {
	t.Helper()
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitSubTaskSynced(t, st.Status, p)
	return st
}

// fillWide creates schema.t (id, a, s) upstream and inserts rows 1 to n
// (a = id*10, s 80 x's), 50 a statement.
func fillWide(t *testing.T, db *sql.DB, schema string, n int) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE "+schema)
	mustExec(t, db, "CREATE TABLE "+schema+".t (id INT PRIMARY KEY, a INT, s VARCHAR(100))")
	for i := 1; i <= n; i += 50 {
		var vals []string
		for j := i; j < min(i+50, n+1); j++ {
			vals = append(vals, fmt.Sprintf("(%d, %d, '%s')", j, j*10, strings.Repeat("x", 80)))
		}
		mustExec(t, db, "INSERT INTO "+schema+".t VALUES "+strings.Join(vals, ","))
	}
}

// checkWideErrorRows checks that task's error rows are those of every row
// of fillWide's schema.t, after s gained a 'y' upstream and a 1 downstream:
// the keys, and row 7's images.
func checkWideErrorRows(t *testing.T, downdb *sql.DB, task, schema string, n int) {
	t.Helper()
	got := errorKeys(t, downdb, task)
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("%s.t [%d]", schema, i+1)
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("error rows %v", got)
	}
	var up, down sql.NullString
	if err := downdb.QueryRow("SELECT upstream_row, downstream_row FROM dmworker_meta.validator_errors WHERE task = ? AND row_key = '[7]'", task).Scan(&up, &down); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(up.String, `"a":70`) || !strings.Contains(up.String, `xy"`) || !strings.Contains(down.String, `"a":71`) {
		t.Fatalf("error row images: upstream %s, downstream %s", up.String, down.String)
	}
}

// TestValidatorSpilledRowsSurviveKill: rows that differ and were spilled to
// <meta>.validator_pending (a memory budget of a few rows) by a subtask
// process killed with SIGKILL are still there after the restart: the
// restarted validator counts them as pending and differing, records each
// as an error row once it has differed past the delay (since it first
// differed, in the killed process), and clears them all when the
// downstream converges.
func TestValidatorSpilledRowsSurviveKill(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 86})
	const budget, n = 8192, 200
	cfg := validationConfig("kill", 4, time.Hour)
	cfg.Validation.MemoryBytes = budget
	st0 := startSynced(t, cfg, p)
	fillWide(t, p.updb, "k", n)
	waitValidated(t, st0, p)
	st0.Stop()

	// Every row changed upstream, applied by the task without validation,
	// then changed again downstream: n rows that differ.
	mustExec(t, p.updb, "UPDATE k.t SET s = CONCAT(s, 'y')")
	plain := cfg
	plain.Validation = dmworker.ValidationConfig{}
	startSynced(t, plain, p).Stop()
	mustExec(t, p.downdb, "UPDATE k.t SET a = a + 1")

	// A subtask process whose validator checks them with a budget of a
	// few rows and a delay that does not pass: it spills them, then is
	// killed.
	spec := fmt.Sprintf("kill|%s:%s@%s|%s:%s@%s|4|1h|%d", p.up.User, p.up.Password, p.up.Addr(), p.down.User, p.down.Password, p.down.Addr(), budget)
	cmd, stderr := startValidatorChild(t, spec)
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	// Every differing row stored: spilled, or pending in the stored
	// checkpoint.
	var spilled, inCheckpoint int
	waitUntil(t, fmt.Sprintf("%d differing rows stored, some spilled", n), func() bool {
		spilled, inCheckpoint = storedPending(t, p.downdb, "kill")
		return spilled > 0 && spilled+inCheckpoint == n
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	killed = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("validator child ended on its own (%v): %s", err, stderr.String())
	}
	if keys := errorKeys(t, p.downdb, "kill"); len(keys) != 0 {
		t.Fatalf("error rows before the delay passed: %v", keys)
	}

	// Restarted with a delay that has passed: every row is reported, from
	// the spilled ones too.
	cfg.Validation.RowErrorDelay = dmworker.Duration(2 * time.Second)
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	var vs dmworker.ValidatorStatus
	waitUntil(t, fmt.Sprintf("%d error rows", n), func() bool {
		vs = st.Status().Validator
		return len(errorKeys(t, p.downdb, "kill")) == n
	})
	checkWideErrorRows(t, p.downdb, "kill", "k", n)

	// The downstream converges: every error row is cleared, none is left
	// pending.
	mustExec(t, p.downdb, "UPDATE k.t SET a = a - 1")
	waitUntil(t, "every row cleared", func() bool {
		vs = st.Status().Validator
		sp, _ := storedPending(t, p.downdb, "kill")
		return len(errorKeys(t, p.downdb, "kill")) == 0 && sp == 0 && vs.Pending == 0 && vs.ErrorRows == 0
	})
	if vs.PeakBytes == 0 || vs.PeakBytes > budget {
		t.Fatalf("peak bytes held %d, budget %d", vs.PeakBytes, budget)
	}
}

// startValidatorChild starts this test binary as a subtask process of spec
// (see validatorChildEnv); what it writes to stderr is in the buffer.
func startValidatorChild(t *testing.T, spec string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), validatorChildEnv+"="+spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// storedPending returns how many rows of task are in validator_pending and
// how many pending rows its stored checkpoint holds.
func storedPending(t *testing.T, db *sql.DB, task string) (spilled, inCheckpoint int) {
	t.Helper()
	if err := db.QueryRow("SELECT COUNT(*) FROM dmworker_meta.validator_pending WHERE task = ?", task).Scan(&spilled); err != nil {
		if strings.Contains(err.Error(), "doesn't exist") {
			return 0, 0 // not created yet
		}
		t.Fatal(err)
	}
	var b []byte
	err := db.QueryRow("SELECT pending FROM dmworker_meta.validator_checkpoint WHERE task = ?", task).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return spilled, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var rows []json.RawMessage
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	return spilled, len(rows)
}

// TestValidatorFeedOverflow: when the changes the syncer hands over pass
// the validator's memory budget before the syncer has applied them (two
// rows events of one transaction, each larger than half the budget), the
// validator goes back to reading the binlog itself from its checkpoint,
// and still checks every row, those of the overflowing transaction and
// those after it.
func TestValidatorFeedOverflow(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 87})
	const budget = 8192
	cfg := validationConfig("over", 4, time.Second)
	cfg.Validation.MemoryBytes = budget
	st := startSynced(t, cfg, p)
	mustExec(t, p.updb, "CREATE DATABASE o")
	mustExec(t, p.updb, "CREATE TABLE o.t (id INT PRIMARY KEY, s VARCHAR(100))")
	vs := waitValidated(t, st, p)
	if vs.Reading != dmworker.ValidatorReadsSyncer {
		t.Fatalf("before the overflow the validator reads from %q", vs.Reading)
	}
	insert := func(from, n int) string {
		var vals []string
		for j := from; j < from+n; j++ {
			vals = append(vals, fmt.Sprintf("(%d, '%s')", j, strings.Repeat("x", 80)))
		}
		return "INSERT INTO o.t VALUES " + strings.Join(vals, ",")
	}
	tx, err := p.updb.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{insert(1, 60), insert(61, 60)} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, insert(121, 30))
	mustExec(t, p.updb, "UPDATE o.t SET s = 'y' WHERE id % 7 = 0")
	vs = waitValidated(t, st, p)
	if vs.Reading != dmworker.ValidatorReadsBinlog {
		t.Fatalf("after the overflow the validator reads from %q", vs.Reading)
	}
	if vs.Checked < 150 || vs.Differing != 0 || vs.ErrorRows != 0 || vs.LastError != nil {
		t.Fatalf("validator status %+v", vs)
	}
	if vs.PeakBytes == 0 || vs.PeakBytes > budget {
		t.Fatalf("peak bytes held %d, budget %d", vs.PeakBytes, budget)
	}
}

// TestValidatorDownstreamStalled stalls the validator's path to the
// downstream (the syncer's is direct): a pass gives up after the sink
// timeout with an error wrapping ErrSinkTimeout in the status, instead of
// stalling silently for ever, and once the path works again the
// validator checks what was written meanwhile and clears the error.
func TestValidatorDownstreamStalled(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 911})
	px := faultProxy(t, p.down)
	vcfg := p.down.Config("")
	vcfg.Addr = px.Addr()
	conn, err := mysql.NewConnector(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	vdb := sql.OpenDB(conn)
	t.Cleanup(func() { vdb.Close() })
	cfg := validationConfig("stall", 4, time.Second)
	cfg.Validation.CheckInterval = dmworker.Duration(200 * time.Millisecond)
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink,
		dmworker.WithValidationDB(vdb), dmworker.WithSinkTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitSubTaskSynced(t, st.Status, p)
	mustExec(t, p.updb, "CREATE DATABASE vs")
	mustExec(t, p.updb, "CREATE TABLE vs.t (id INT PRIMARY KEY, v VARCHAR(20))")
	mustExec(t, p.updb, "INSERT INTO vs.t VALUES (1, 'a'), (2, 'b')")
	before := waitValidated(t, st, p)

	px.Stall(true)
	mustExec(t, p.updb, "INSERT INTO vs.t VALUES (3, 'c'), (4, 'd')")
	waitSubTaskSynced(t, st.Status, p)
	var vs dmworker.ValidatorStatus
	waitUntil(t, "the validator's stall in its status", func() bool {
		vs = st.Status().Validator
		return errors.Is(vs.LastError, dmworker.ErrSinkTimeout)
	})
	if !strings.Contains(vs.LastError.Error(), "stall") {
		t.Fatalf("the error does not name the task: %v", vs.LastError)
	}
	if !vs.Running {
		t.Fatalf("the validator stopped: %+v", vs)
	}

	px.Stall(false)
	after := waitValidated(t, st, p)
	if after.Checked < before.Checked+2 {
		t.Fatalf("the rows written during the stall were not checked: before %+v, after %+v", before, after)
	}
	waitUntil(t, "the validator's error cleared", func() bool {
		return st.Status().Validator.LastError == nil
	})
	if vs := st.Status().Validator; vs.ErrorRows != 0 || vs.Differing != 0 {
		t.Fatalf("false differences after the stall: %+v", vs)
	}
}
