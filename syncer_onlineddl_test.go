package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// The online schema change tests run the real tools, pt-online-schema-change
// (Debian's percona-toolkit) and gh-ost (built from its Go module by
// scripts/build-gh-ost.sh), on a MariaDB upstream while sysbench writes to
// the table they change.

// lookTool finds an external tool, failing the test when it is missing and
// DMWORKER_REQUIRE_SERVERS=1, skipping it otherwise.
func lookTool(t *testing.T, name, hint string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if testserver.Required() {
			t.Fatalf("%s not found (%s, or make deps): %v", name, hint, err)
		}
		t.Skipf("%s not found: %s, or make deps", name, hint)
	}
	return bin
}

// ptOSC returns pt-online-schema-change running alter on db.table of m.
func ptOSC(t *testing.T, m *testserver.MariaDB, db, table, alter string, extra ...string) *exec.Cmd {
	t.Helper()
	bin := lookTool(t, "pt-online-schema-change", "apt-get install percona-toolkit")
	args := []string{"--alter", alter, fmt.Sprintf("D=%s,t=%s,h=127.0.0.1,P=%d,u=%s,p=%s", db, table, m.Port, m.User, m.Password),
		"--execute", "--recursion-method=none", "--no-check-replication-filters", "--chunk-size=500",
		"--set-vars=lock_wait_timeout=10", "--tries=swap_tables:30:0.5,create_triggers:30:0.5,drop_triggers:30:0.5,copy_rows:30:0.5"}
	return exec.Command(bin, append(args, extra...)...)
}

// ghostRuns numbers gh-ost runs: each reads the binlog under its own
// server id.
var ghostRuns atomic.Int64

var ghostOnce struct {
	sync.Once
	bin string
	err error
	out []byte
}

// ghOst returns gh-ost (v1.1.6, built and cached by scripts/build-gh-ost.sh)
// running alter on db.table of m, on the upstream itself
// (--allow-on-master), with its sockets and flag files in dir.
func ghOst(t *testing.T, m *testserver.MariaDB, dir, db, table, alter string, extra ...string) *exec.Cmd {
	t.Helper()
	ghostOnce.Do(func() {
		lookTool(t, "go", "a Go toolchain")
		cmd := exec.Command("bash", "scripts/build-gh-ost.sh")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		ghostOnce.bin, ghostOnce.err, ghostOnce.out = strings.TrimSpace(string(out)), err, stderr.Bytes()
	})
	if ghostOnce.err != nil {
		if testserver.Required() {
			t.Fatalf("building gh-ost: %v\n%s", ghostOnce.err, ghostOnce.out)
		}
		t.Skipf("cannot build gh-ost (scripts/build-gh-ost.sh): %v", ghostOnce.err)
	}
	args := []string{"--host=127.0.0.1", fmt.Sprintf("--port=%d", m.Port), "--user=" + m.User, "--password=" + m.Password,
		"--database=" + db, "--table=" + table, "--alter=" + alter,
		"--allow-on-master", "--execute", "--initially-drop-ghost-table", "--initially-drop-old-table", "--ok-to-drop-table",
		"--serve-socket-file=" + filepath.Join(dir, "gh-ost.sock"), "--throttle-additional-flag-file=" + filepath.Join(dir, "throttle"),
		"--default-retries=30", "--cut-over-lock-timeout-seconds=5", "--max-lag-millis=5000",
		fmt.Sprintf("--replica-server-id=%d", 90000+ghostRuns.Add(1))}
	return exec.Command(ghostOnce.bin, append(args, extra...)...)
}

// runTool runs an online schema change tool to its end.
func runTool(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(cmd.Path), err, out)
	}
}

// sysbenchLoad starts sysbench's oltp_write_only on sbtest.sbtest1 of m
// (prepared with size rows) at a bounded rate, and returns a function
// that stops it.
func sysbenchLoad(t *testing.T, m *testserver.MariaDB, size int) func() {
	t.Helper()
	cmd := sysbench(t, m, 1, size, "oltp_write_only", "--threads=2", "--rate=40", "--time=0", "--events=0",
		"--mysql-ignore-errors=all", "run")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// comCounters reads a server's statement counters (Com_...).
func comCounters(t *testing.T, db *sql.DB) map[string]int64 {
	t.Helper()
	rows, err := db.Query("SHOW GLOBAL STATUS LIKE 'Com\\_%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			t.Fatal(err)
		}
		out[strings.ToLower(name)] = v
	}
	return out
}

// definition returns a table's SHOW CREATE TABLE with its name and
// AUTO_INCREMENT left out.
func definition(t *testing.T, db *sql.DB, schema, name string) string {
	t.Helper()
	var n, q string
	if err := db.QueryRow("SHOW CREATE TABLE "+quoteName(schema, name)).Scan(&n, &q); err != nil {
		t.Fatal(err)
	}
	q = autoIncrement.ReplaceAllString(q, "")
	return strings.Replace(q, "CREATE TABLE `"+name+"`", "CREATE TABLE `T`", 1)
}

// sameTable checks that a downstream table has the upstream one's
// definition and rows.
func sameTable(t *testing.T, up, down *sql.DB, upSchema, upName, downSchema, downName string) {
	t.Helper()
	if a, b := definition(t, up, upSchema, upName), definition(t, down, downSchema, downName); a != b {
		t.Fatalf("%s.%s downstream:\n%s\nupstream %s.%s:\n%s", downSchema, downName, b, upSchema, upName, a)
	}
	checkEqual(t, up, down, quoteName(upSchema, upName), quoteName(downSchema, downName))
}

// tablesOf lists a schema's tables.
func tablesOf(t *testing.T, db *sql.DB, schema string) []string {
	t.Helper()
	rows, err := db.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// onlineSetup makes a pair with sbtest.sbtest1 (size rows, by sysbench)
// upstream and the same table and rows downstream in downSchema.downTable,
// and returns the upstream position after them, where a task starts.
func onlineSetup(t *testing.T, serverID uint32, size int, downSchema, downTable string) (*syncPair, streamer.Position) {
	t.Helper()
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: serverID})
	mustExec(t, p.updb, "CREATE DATABASE sbtest")
	mustExec(t, p.updb, "CREATE TABLE sbtest.other (id INT PRIMARY KEY, v INT)")
	if out, err := sysbench(t, p.up, 1, size, "oltp_write_only", "prepare").CombinedOutput(); err != nil {
		t.Fatalf("sysbench prepare: %v\n%s", err, out)
	}
	create := strings.Replace(definition(t, p.updb, "sbtest", "sbtest1"), "CREATE TABLE `T`", "CREATE TABLE "+quoteName(downSchema, downTable), 1)
	mustExec(t, p.downdb, "CREATE DATABASE IF NOT EXISTS `"+downSchema+"`")
	mustExec(t, p.downdb, create)
	copyRows(t, p.updb, p.downdb, "sbtest.sbtest1", quoteName(downSchema, downTable))
	return p, upstreamPos(t, p.updb)
}

// copyRows copies a table's rows in multi-row statements.
func copyRows(t *testing.T, from, to *sql.DB, fromTable, toTable string) {
	t.Helper()
	rows, err := from.Query("SELECT id, k, c, pad FROM " + fromTable)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var args []any
	flush := func() {
		if len(args) == 0 {
			return
		}
		marks := strings.TrimSuffix(strings.Repeat("(?,?,?,?),", len(args)/4), ",")
		mustExec(t, to, "INSERT INTO "+toTable+" (id, k, c, pad) VALUES "+marks, args...)
		args = args[:0]
	}
	for rows.Next() {
		var id, k int64
		var c, pad string
		if err := rows.Scan(&id, &k, &c, &pad); err != nil {
			t.Fatal(err)
		}
		if args = append(args, id, k, c, pad); len(args) >= 400 {
			flush()
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
}

// onlineConfig is a task replicating only sbtest.sbtest1 (the allow list
// names the real table alone), routed to target.table when target is set.
func onlineConfig(p *syncPair, task string, workers int, start streamer.Position, targetSchema, targetTable string) dmworker.SyncerConfig {
	cfg := dmworker.SyncerConfig{Task: task, Upstream: upstreamOf(p.up), Start: start,
		Filter:       dmworker.BlockAllowList{DoTables: []dmworker.TablePattern{{Schema: "sbtest", Name: "sbtest1"}}},
		SyncerTuning: dmworker.SyncerTuning{BatchSize: 7, Workers: workers}}
	if targetSchema != "" {
		cfg.Routes = []dmworker.RouteRule{{SchemaPattern: "sbtest", TablePattern: "sbtest1", TargetSchema: targetSchema, TargetTable: targetTable}}
	}
	return cfg
}

// TestOnlineDDLPtOSC changes a table three times with
// pt-online-schema-change (add a column, add an index, change a column's
// type) under a sysbench write load, the task's allow list naming only the
// real table: the downstream ends with the upstream's definition and rows,
// having run one ALTER per change and no row copy.
func TestOnlineDDLPtOSC(t *testing.T) {
	lookTool(t, "pt-online-schema-change", "apt-get install percona-toolkit")
	const size = 5000
	p, start := onlineSetup(t, 71, size, "sbtest", "sbtest1")
	s, err := dmworker.NewSyncer(onlineConfig(p, "ptosc", 1, start, "", ""), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	stop := sysbenchLoad(t, p.up, size)
	time.Sleep(time.Second)
	waitSynced(t, run, p.updb)
	before, rowsBefore := comCounters(t, p.downdb), s.Status().Rows
	for _, alter := range []string{
		"ADD COLUMN extra INT NOT NULL DEFAULT 5",
		"ADD INDEX idx_pad (pad(16))",
		"MODIFY k BIGINT NOT NULL DEFAULT 0",
	} {
		runTool(t, ptOSC(t, p.up, "sbtest", "sbtest1", alter))
	}
	time.Sleep(time.Second)
	stop()
	waitSynced(t, run, p.updb)
	after, st := comCounters(t, p.downdb), s.Status()
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	if got := tablesOf(t, p.downdb, "sbtest"); len(got) != 1 || got[0] != "sbtest1" {
		t.Fatalf("downstream sbtest holds %v, want only sbtest1", got)
	}
	for name, want := range map[string]int64{"com_alter_table": 3, "com_create_table": 0, "com_rename_table": 0, "com_insert_select": 0,
		"com_drop_table": 0, "com_create_trigger": 0} {
		if d := after[name] - before[name]; d != want {
			t.Errorf("downstream answered %d %s during the changes, want %d", d, name, want)
		}
	}
	// A row copy would write every row again; the load wrote a few.
	if n := st.Rows - rowsBefore; n >= size {
		t.Errorf("%d rows applied during the changes of a %d-row table: a row copy", n, size)
	}
	t.Logf("during the changes: %d rows applied, downstream Com_insert %d, Com_update %d, Com_delete %d, Com_alter_table %d",
		st.Rows-rowsBefore, after["com_insert"]-before["com_insert"], after["com_update"]-before["com_update"],
		after["com_delete"]-before["com_delete"], after["com_alter_table"]-before["com_alter_table"])
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOnlineDDLGhOst changes a table with gh-ost under a sysbench write
// load, the table routed to another name downstream, the allow list naming
// only the real table; a second gh-ost run changes another table at the
// same time. The serial syncer and one with 16 workers.
func TestOnlineDDLGhOst(t *testing.T) {
	for _, w := range []int{1, 16} {
		t.Run(fmt.Sprintf("workers=%d", w), func(t *testing.T) { onlineDDLGhOst(t, w) })
	}
}

func onlineDDLGhOst(t *testing.T, workers int) {
	const size = 5000
	p, start := onlineSetup(t, 72, size, "target", "sb_routed")
	// A second table, replicated too, changed by a concurrent run.
	mustExec(t, p.updb, "CREATE TABLE sbtest.second (id INT PRIMARY KEY, v VARCHAR(32))")
	mustExec(t, p.updb, "INSERT INTO sbtest.second VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	mustExec(t, p.downdb, "CREATE TABLE target.second (id INT PRIMARY KEY, v VARCHAR(32))")
	mustExec(t, p.downdb, "INSERT INTO target.second VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	start = upstreamPos(t, p.updb)
	cfg := onlineConfig(p, "ghost", workers, start, "target", "sb_routed")
	cfg.Filter.DoTables = append(cfg.Filter.DoTables, dmworker.TablePattern{Schema: "sbtest", Name: "second"})
	cfg.Routes = append(cfg.Routes, dmworker.RouteRule{SchemaPattern: "sbtest", TargetSchema: "target"})
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	stop := sysbenchLoad(t, p.up, size)
	time.Sleep(time.Second)
	waitSynced(t, run, p.updb)
	before := comCounters(t, p.downdb)

	// Both migrations wait before their cut-over until both have altered
	// their ghost tables: two online schema changes under way at once.
	dir1, dir2 := t.TempDir(), t.TempDir()
	flag1, flag2 := filepath.Join(dir1, "postpone"), filepath.Join(dir2, "postpone")
	for _, f := range []string{flag1, flag2} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g1 := ghOst(t, p.up, dir1, "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5, ADD INDEX idx_pad (pad(16)), MODIFY k BIGINT NOT NULL DEFAULT 0",
		"--postpone-cut-over-flag-file="+flag1, "--chunk-size=500")
	g2 := ghOst(t, p.up, dir2, "sbtest", "second", "ADD COLUMN w INT DEFAULT 9", "--postpone-cut-over-flag-file="+flag2)
	errs := make(chan error, 2)
	var outs [2]syncBuffer
	for i, g := range []*exec.Cmd{g1, g2} {
		out := &outs[i]
		g.Stdout, g.Stderr = out, out
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			err := g.Wait()
			if err != nil {
				err = fmt.Errorf("gh-ost: %v\n%s", err, out.String())
			}
			errs <- err
		}()
	}
	waitRecorded(t, p.downdb, "ghost", "_sbtest1_gho", "_second_gho")
	// The load pauses over the cut-over: gh-ost's cut-over on MariaDB
	// loses writes that come in meanwhile (a row updated in the binlog
	// before the RENAME, the update missing from the table swapped in), so
	// the upstream would not be what its binlog says.
	time.Sleep(time.Second)
	stop()
	releaseCutOver(t, flag1)
	releaseCutOver(t, flag2)
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("gh-ost did not finish:\n%s\n\n%s", outs[0].String(), outs[1].String())
		}
	}
	stop = sysbenchLoad(t, p.up, size)
	time.Sleep(2 * time.Second)
	stop()
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "target", "sb_routed")
	sameTable(t, p.updb, p.downdb, "sbtest", "second", "target", "second")
	after := comCounters(t, p.downdb)
	if d := after["com_alter_table"] - before["com_alter_table"]; d != 2 {
		t.Errorf("downstream ran %d ALTERs, want 2 (one per migration)", d)
	}
	for _, name := range []string{"com_create_table", "com_rename_table", "com_drop_table"} {
		if d := after[name] - before[name]; d != 0 {
			t.Errorf("downstream answered %d %s", d, name)
		}
	}
	if got := tablesOf(t, p.downdb, "target"); len(got) != 2 {
		t.Fatalf("downstream target holds %v, want sb_routed and second", got)
	}
	if blob := checkpointSchema(t, p.downdb, "ghost"); bytes.Contains(blob, []byte(`"online-ddl"`)) {
		t.Fatalf("records left after the cut-overs: %s", blob)
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// releaseCutOver lets gh-ost cut over: it removes its postpone flag file,
// and again every 100ms until the test ends, since gh-ost creates the file
// itself (when it is missing) as it starts migrating, which may be after
// the ALTER this test waited for.
func releaseCutOver(t *testing.T, flag string) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			os.Remove(flag)
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// checkpointSchema reads the schema stored with a task's checkpoint in
// mysqlsink's checkpoint table.
func checkpointSchema(t *testing.T, down *sql.DB, task string) []byte {
	t.Helper()
	var b []byte
	err := down.QueryRow("SELECT schema_json FROM dmworker_meta.checkpoint WHERE task = ?", task).Scan(&b)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return b
}

// waitRecorded waits until the checkpoint stored downstream carries a
// record of each shadow table.
func waitRecorded(t *testing.T, down *sql.DB, task string, shadows ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b := checkpointSchema(t, down, task)
		ok := bytes.Contains(b, []byte(`"online-ddl"`))
		for _, s := range shadows {
			ok = ok && bytes.Contains(b, []byte(`"table":"`+s+`"`))
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of %v in the stored checkpoint: %s", shadows, truncateBytes(b, 400))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// onlineChildEnv makes the test binary run a syncer (onlineChild) instead of
// the tests; its value is an onlineChildSpec in JSON.
const onlineChildEnv = "DMWORKER_TEST_ONLINEDDL_CHILD"

type onlineChildSpec struct {
	Config dmworker.SyncerConfig `json:"config"`
	Down   string                `json:"down"` // user:pass@host:port
}

func init() {
	if spec := os.Getenv(onlineChildEnv); spec != "" {
		os.Exit(onlineChild(spec))
	}
}

func onlineChild(spec string) int {
	var sp onlineChildSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := childDB(sp.Down)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sink, err := mysqlsink.New(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := dmworker.NewSyncer(sp.Config, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// onlineChildProc is a syncer running in a child process.
type onlineChildProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startOnlineChild(t *testing.T, p *syncPair, cfg dmworker.SyncerConfig) *onlineChildProc {
	t.Helper()
	spec, err := json.Marshal(onlineChildSpec{Config: cfg, Down: fmt.Sprintf("%s:%s@%s", p.down.User, p.down.Password, p.down.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	c := &onlineChildProc{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), onlineChildEnv+"="+string(spec))
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// kill kills the child with SIGKILL; it must not have ended on its own.
func (c *onlineChildProc) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("syncer child ended on its own (%v): %s", err, c.stderr.String())
	}
}

// TestOnlineDDLCrash kills the syncer (a child process, SIGKILL) again and
// again while gh-ost copies rows under a sysbench load, once right after
// the ALTER of the ghost table is stored with its checkpoint (the cut-over
// held back), and once at a random moment around the cut-over; after a last
// run the downstream equals the upstream, definition and rows, and ran the
// ALTER once. The allow list names the whole schema, gh-ost's tables
// included: none of them reaches the downstream.
func TestOnlineDDLCrash(t *testing.T) {
	const size = 20000
	p, start := onlineSetup(t, 73, size, "sbtest", "sbtest1")
	cfg := onlineConfig(p, "crash", 1, start, "", "")
	// The allow list lets gh-ost's tables through: they stay upstream
	// all the same.
	cfg.Filter = dmworker.BlockAllowList{DoDBs: []string{"sbtest"}}
	stop := sysbenchLoad(t, p.up, size)
	before := comCounters(t, p.downdb)
	rnd := rand.New(rand.NewPCG(73, 1))

	dir := t.TempDir()
	flag := filepath.Join(dir, "postpone")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := ghOst(t, p.up, dir, "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5, MODIFY k BIGINT NOT NULL DEFAULT 0",
		"--postpone-cut-over-flag-file="+flag, "--chunk-size=100", "--nice-ratio=3")
	var gout syncBuffer
	g.Stdout, g.Stderr = &gout, &gout
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	gdone := make(chan error, 1)
	go func() { gdone <- g.Wait() }()

	// During the copy: at least one kill must find the ghost table partly
	// filled.
	duringCopy := 0
	for range 8 {
		c := startOnlineChild(t, p, cfg)
		time.Sleep(time.Duration(300+rnd.IntN(500)) * time.Millisecond)
		c.kill(t)
		var n int
		if err := p.updb.QueryRow("SELECT COUNT(*) FROM sbtest._sbtest1_gho").Scan(&n); err == nil && n > 0 && n < size {
			duringCopy++
		}
		t.Logf("syncer killed with %d rows in the ghost table", n)
		if n >= size {
			break
		}
	}
	if duringCopy == 0 {
		t.Fatal("no kill fell during gh-ost's row copy")
	}
	// Between the ALTER and the cut-over: the record is stored.
	c := startOnlineChild(t, p, cfg)
	waitRecorded(t, p.downdb, "crash", "_sbtest1_gho")
	c.kill(t)
	// Around the cut-over (the load paused over it: see TestOnlineDDLGhOst).
	c = startOnlineChild(t, p, cfg)
	time.Sleep(time.Duration(200+rnd.IntN(400)) * time.Millisecond)
	stop()
	releaseCutOver(t, flag)
	time.Sleep(time.Duration(rnd.IntN(1500)) * time.Millisecond)
	c.kill(t)
	select {
	case err := <-gdone:
		if err != nil {
			t.Fatalf("gh-ost: %v\n%s", err, gout.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("gh-ost did not finish:\n%s", gout.String())
	}
	stop = sysbenchLoad(t, p.up, size)
	c = startOnlineChild(t, p, cfg)
	time.Sleep(time.Duration(500+rnd.IntN(1000)) * time.Millisecond)
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
	// Once, unless a kill fell between the ALTER downstream and the
	// checkpoint after it: then its replay runs it again, in safe mode.
	if d := after["com_alter_table"] - before["com_alter_table"]; d < 1 || d > 2 {
		t.Errorf("downstream ran %d ALTERs, want 1", d)
	}
	if got := tablesOf(t, p.downdb, "sbtest"); len(got) != 1 || got[0] != "sbtest1" {
		t.Fatalf("downstream sbtest holds %v, want only sbtest1", got)
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOnlineDDLAborted kills pt-online-schema-change (SIGKILL) during its
// copy, after the ALTER of its shadow table was recorded, and cleans up as
// a user would (drop its triggers and the shadow table); a gh-ost run is
// abandoned likewise. Nothing changes on the real table downstream, the
// records are discarded, and a later online schema change still applies
// once.
func TestOnlineDDLAborted(t *testing.T) {
	const size = 20000
	p, start := onlineSetup(t, 74, size, "sbtest", "sbtest1")
	s, err := dmworker.NewSyncer(onlineConfig(p, "aborted", 4, start, "", ""), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	stop := sysbenchLoad(t, p.up, size)
	waitSynced(t, run, p.updb)
	defBefore := definition(t, p.downdb, "sbtest", "sbtest1")
	before := comCounters(t, p.downdb)

	pt := ptOSC(t, p.up, "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5", "--chunk-size=100", "--sleep=0.05")
	var out bytes.Buffer
	pt.Stdout, pt.Stderr = &out, &out
	if err := pt.Start(); err != nil {
		t.Fatal(err)
	}
	waitRecorded(t, p.downdb, "aborted", "_sbtest1_new")
	time.Sleep(500 * time.Millisecond) // into the copy
	pt.Process.Signal(syscall.SIGKILL)
	pt.Wait()
	if strings.Contains(out.String(), "Successfully altered") {
		t.Fatalf("pt-online-schema-change finished before it was killed:\n%s", out.String())
	}
	for _, trg := range []string{"ins", "upd", "del"} {
		mustExec(t, p.updb, "DROP TRIGGER IF EXISTS sbtest.pt_osc_sbtest_sbtest1_"+trg)
	}
	mustExec(t, p.updb, "DROP TABLE sbtest._sbtest1_new")

	// gh-ost, killed while its cut-over is held back.
	dir := t.TempDir()
	flag := filepath.Join(dir, "postpone")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := ghOst(t, p.up, dir, "sbtest", "sbtest1", "ADD INDEX idx_pad (pad(16))", "--postpone-cut-over-flag-file="+flag)
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	waitRecorded(t, p.downdb, "aborted", "_sbtest1_gho")
	g.Process.Signal(syscall.SIGKILL)
	g.Wait()
	mustExec(t, p.updb, "DROP TABLE IF EXISTS sbtest._sbtest1_gho, sbtest._sbtest1_ghc")

	time.Sleep(time.Second)
	stop()
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	if d := definition(t, p.downdb, "sbtest", "sbtest1"); d != defBefore {
		t.Fatalf("the real table changed downstream:\n%s\nwas:\n%s", d, defBefore)
	}
	after := comCounters(t, p.downdb)
	for _, name := range []string{"com_alter_table", "com_create_table", "com_drop_table", "com_rename_table"} {
		if d := after[name] - before[name]; d != 0 {
			t.Errorf("downstream answered %d %s", d, name)
		}
	}
	if blob := checkpointSchema(t, p.downdb, "aborted"); bytes.Contains(blob, []byte(`"online-ddl"`)) {
		t.Fatalf("records left after the cleanup: %s", blob)
	}

	// A later change goes through, once.
	stop = sysbenchLoad(t, p.up, size)
	runTool(t, ptOSC(t, p.up, "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5"))
	time.Sleep(time.Second)
	stop()
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	if d := comCounters(t, p.downdb)["com_alter_table"] - after["com_alter_table"]; d != 1 {
		t.Errorf("downstream ran %d ALTERs for the last change, want 1", d)
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOnlineDDLOff replicates gh-ost's tables as any other when the
// handling is off and the allow list lets them through: the downstream
// redoes the row copy and ends equal.
func TestOnlineDDLOff(t *testing.T) {
	p, start := onlineSetup(t, 75, 1000, "sbtest", "sbtest1")
	cfg := onlineConfig(p, "off", 1, start, "", "")
	cfg.Filter = dmworker.BlockAllowList{DoDBs: []string{"sbtest"}}
	cfg.OnlineDDL = new(bool)
	mustExec(t, p.downdb, "CREATE TABLE sbtest.other (id INT PRIMARY KEY, v INT)")
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	before := comCounters(t, p.downdb)
	runTool(t, ghOst(t, p.up, t.TempDir(), "sbtest", "sbtest1", "ADD COLUMN extra INT NOT NULL DEFAULT 5"))
	waitSynced(t, run, p.updb)
	sameTable(t, p.updb, p.downdb, "sbtest", "sbtest1", "sbtest", "sbtest1")
	after := comCounters(t, p.downdb)
	if d := after["com_rename_table"] - before["com_rename_table"]; d < 1 {
		t.Errorf("downstream ran %d RENAMEs, want gh-ost's cut-over", d)
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOnlineDDLEtcdStoreRestart drives pt-online-schema-change's statement
// sequence by hand with the checkpoint in etcd (a store apart from the
// sink): the syncer stops between the ALTER of the shadow table and the
// cut-over, the record is in the stored checkpoint, and a new syncer on the
// same store applies the ALTER at the cut-over, once.
func TestOnlineDDLEtcdStoreRestart(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 76})
	for _, db := range []*sql.DB{p.updb, p.downdb} {
		mustExec(t, db, "CREATE DATABASE app")
		mustExec(t, db, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
		mustExec(t, db, "INSERT INTO app.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	}
	e := testserver.StartEtcd(t)
	store, err := dmworker.NewEtcdCheckpointStore(e.Client, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.config("etcd-online")
	cfg.Start = upstreamPos(t, p.updb)
	cfg.Filter = dmworker.BlockAllowList{DoTables: []dmworker.TablePattern{{Schema: "app", Name: "t"}}}
	before := comCounters(t, p.downdb)
	run := func() *syncRunner {
		s, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithCheckpointStore(store))
		if err != nil {
			t.Fatal(err)
		}
		return runSyncer(t, s)
	}
	r := run()
	for _, q := range []string{
		"CREATE TABLE app._t_new (id INT PRIMARY KEY, v VARCHAR(20))",
		"ALTER TABLE app._t_new ADD COLUMN w INT NOT NULL DEFAULT 7, ADD INDEX iv (v)",
		"INSERT LOW_PRIORITY IGNORE INTO app._t_new (id, v) SELECT id, v FROM app.t",
		"INSERT INTO app.t VALUES (4, 'd')",
		"INSERT INTO app._t_new (id, v) VALUES (4, 'd')", // the tool's trigger
	} {
		mustExec(t, p.updb, q)
	}
	waitSynced(t, r, p.updb)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	cp, ok, err := store.Load(context.Background(), cfg.Task, upstreamOf(p.up).SourceName())
	if err != nil || !ok || !bytes.Contains(cp.Schema, []byte(`"_t_new"`)) || !bytes.Contains(cp.Schema, []byte(`"online-ddl"`)) {
		t.Fatalf("stored checkpoint (%v %v) carries no record: %s", ok, err, truncateBytes(cp.Schema, 300))
	}
	r = run()
	mustExec(t, p.updb, "RENAME TABLE app.t TO app._t_old, app._t_new TO app.t")
	mustExec(t, p.updb, "DROP TABLE IF EXISTS app._t_old")
	mustExec(t, p.updb, "INSERT INTO app.t VALUES (5, 'e', 9)")
	waitSynced(t, r, p.updb)
	sameTable(t, p.updb, p.downdb, "app", "t", "app", "t")
	after := comCounters(t, p.downdb)
	if d := after["com_alter_table"] - before["com_alter_table"]; d != 1 {
		t.Errorf("downstream ran %d ALTERs, want 1", d)
	}
	if got := tablesOf(t, p.downdb, "app"); len(got) != 1 {
		t.Errorf("downstream app holds %v", got)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}
