package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// diffExtraTables add what the type-family tables lack: a text key (keyset
// chunks, collation), a composite key, a column generated downstream, and
// two shards merged into one table downstream.
var diffExtraTables = []string{
	`CREATE TABLE tf.skey (k VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE tf.ckey (a INT, b VARCHAR(10), v DOUBLE, PRIMARY KEY (a, b))`,
	`INSERT INTO tf.skey VALUES ('a', 1), ('B', 2), ('c', 3), ('é', 4), ('z z', 5), ('Zed', 6)`,
	`INSERT INTO tf.ckey VALUES (1, 'x', 0.5), (1, 'y', 1e-300), (2, 'x', -7), (3, '', NULL), (3, 'q', 1.25)`,
}

func diffSetup(t *testing.T) (updb, downdb *sql.DB) {
	t.Helper()
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 381})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 382})
	updb, downdb = up.DB(t), down.DB(t)
	for _, db := range []*sql.DB{updb, downdb} {
		exec := fillTypeFamilies(t, db)
		for _, q := range diffExtraTables {
			exec(q)
		}
		exec("CREATE DATABASE shard")
	}
	// A column the downstream computes, the upstream stores.
	mustExec(t, updb, "CREATE TABLE tf.gen (id INT PRIMARY KEY, a INT, g INT)")
	mustExec(t, updb, "INSERT INTO tf.gen VALUES (1, 1, 2), (2, 5, 10)")
	mustExec(t, downdb, "CREATE TABLE tf.gen (id INT PRIMARY KEY, a INT, g INT AS (a * 2) VIRTUAL)")
	mustExec(t, downdb, "INSERT INTO tf.gen (id, a) VALUES (1, 1), (2, 5)")
	// Shards shard.t1 and shard.t2, merged into shard.t downstream.
	mustExec(t, updb, "CREATE TABLE shard.t1 (id BIGINT PRIMARY KEY, v VARCHAR(10))")
	mustExec(t, updb, "CREATE TABLE shard.t2 (id BIGINT PRIMARY KEY, v VARCHAR(10))")
	mustExec(t, updb, "INSERT INTO shard.t1 SELECT seq, CONCAT('a', seq) FROM mysql.seq_1_to_50")
	mustExec(t, updb, "INSERT INTO shard.t2 SELECT seq, CONCAT('b', seq) FROM mysql.seq_51_to_90")
	mustExec(t, downdb, "CREATE TABLE shard.t (id BIGINT PRIMARY KEY, v VARCHAR(10))")
	mustExec(t, downdb, "INSERT INTO shard.t SELECT seq, CONCAT('a', seq) FROM mysql.seq_1_to_50")
	mustExec(t, downdb, "INSERT INTO shard.t SELECT seq, CONCAT('b', seq) FROM mysql.seq_51_to_90")
	return updb, downdb
}

var diffShardRoutes = []dmworker.RouteRule{{SchemaPattern: "shard", TablePattern: "t*", TargetSchema: "shard", TargetTable: "t"}}

func runDiff(t *testing.T, updb, downdb *sql.DB, opts ...dmworker.DiffOption) *dmworker.DiffResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts = append([]dmworker.DiffOption{dmworker.WithDiffRules(dmworker.BlockAllowList{}, diffShardRoutes)}, opts...)
	res, err := dmworker.Diff(ctx, updb, downdb, []dmworker.TablePattern{{Schema: "tf", Name: "*"}, {Schema: "shard", Name: "*"}}, opts...)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return res
}

// diffLines is every differing row as "table kind key [columns]".
func diffLines(res *dmworker.DiffResult) []string {
	var out []string
	for i := range res.Tables {
		tb := &res.Tables[i]
		if tb.NoTarget {
			out = append(out, tb.String()+" no target")
		}
		for _, r := range tb.Rows {
			k := strings.Join(r.Key, ",")
			if len(tb.Key) == 0 {
				k = strings.Join(append(r.Upstream, r.Downstream...), ",")
			}
			s := fmt.Sprintf("%s %s %s", tb, r.Kind, k)
			if r.Columns != nil {
				s += " " + strings.Join(r.Columns, ",")
			}
			out = append(out, s)
		}
	}
	return out
}

func TestDiffEqualTypeFamilies(t *testing.T) {
	updb, downdb := diffSetup(t)
	for _, rows := range []int{2, 20000} {
		res := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(rows), dmworker.WithDiffWorkers(16))
		if !res.Equal() {
			t.Fatalf("chunk rows %d: equal tables reported different: %q", rows, diffLines(res))
		}
		want := len(typeFamilyTables) + 3 /* skey, ckey, gen */ + 1 /* shard.t */
		if len(res.Tables) != want {
			t.Fatalf("%d tables compared, want %d: %+v", len(res.Tables), want, res.Tables)
		}
		for _, tb := range res.Tables {
			if tb.DifferingChunks != 0 {
				t.Errorf("%s: %d chunks differ by checksum in equal tables", tb.String(), tb.DifferingChunks)
			}
			if tb.UpstreamRows == 0 || tb.UpstreamRows != tb.DownstreamRows {
				t.Errorf("%s: %d rows upstream, %d downstream", tb.String(), tb.UpstreamRows, tb.DownstreamRows)
			}
			switch tb.String() {
			case "shard.t":
				if strings.Join(tb.Sources, ",") != "shard.t1,shard.t2" || tb.UpstreamRows != 90 {
					t.Errorf("shard.t: sources %q, %d rows; want shard.t1 and shard.t2, 90 rows", tb.Sources, tb.UpstreamRows)
				}
			case "tf.gen":
				if strings.Join(tb.Skipped, ",") != "g" {
					t.Errorf("tf.gen: skipped %q, want g (generated downstream)", tb.Skipped)
				}
			case "tf.skey", "tf.ckey":
				if rows == 2 && tb.Chunks < 2 {
					t.Errorf("%s: %d chunks with 2 rows a chunk", tb.String(), tb.Chunks)
				}
			}
		}
		if res.Position.Name == "" || res.Position.Offset == 0 {
			t.Errorf("position %v: want the snapshot's binlog point", res.Position)
		}
	}
	// A task's block-allow list leaves tables out.
	res := runDiff(t, updb, downdb, dmworker.WithDiffRules(dmworker.BlockAllowList{IgnoreTables: []dmworker.TablePattern{{Schema: "tf", Name: "nopk"}}}, diffShardRoutes))
	for _, tb := range res.Tables {
		if tb.String() == "tf.nopk" {
			t.Errorf("tf.nopk compared though the block-allow list ignores it")
		}
	}
	if len(res.Tables) != len(typeFamilyTables)+3 || !res.Equal() {
		t.Errorf("with tf.nopk ignored: %d tables, equal %v", len(res.Tables), res.Equal())
	}
}

// diffDivergences are made downstream on purpose; diffFound is what the
// diff must report for them, exactly.
var diffDivergences = []string{
	`DELETE FROM tf.ints WHERE id = 3`,
	`UPDATE tf.decs SET d = d - 0.000000000000000000000000000001 WHERE id = 3`,
	`INSERT INTO tf.strs VALUES (9, 'x', 'y', NULL, NULL, NULL)`,
	`UPDATE tf.jsons SET j = '{"a": 1}' WHERE id = 4`,
	`UPDATE tf.floats SET d = -0.1001 WHERE id = 4`,
	`UPDATE tf.floats SET f = 1.5001 WHERE id = 3`,
	`UPDATE tf.times SET dt = '2024-02-29 12:34:56.000002' WHERE id = 3`,
	`UPDATE tf.bins SET vb = x'C329FF80' WHERE id = 2`,
	`DELETE FROM tf.nopk WHERE a = 1 LIMIT 1`,
	`INSERT INTO tf.nopk VALUES (7, 'x', NULL)`,
	`DELETE FROM tf.skey WHERE k = 'é'`,
	"UPDATE tf.skey SET k = 'A' WHERE k = 'a'", // the same key under utf8mb4_general_ci
	`UPDATE tf.ckey SET v = 2 WHERE a = 3 AND b = 'q'`,
	`DELETE FROM shard.t WHERE id = 60`,
	`UPDATE tf.geos SET p = ST_GeomFromText('POINT(9 9)') WHERE id = 1`,
	`UPDATE tf.bits SET b64 = 5 WHERE id = 1`,
	`UPDATE tf.enums SET s = 'x,z' WHERE id = 1`,
	`DELETE FROM tf.times WHERE id = 5`,
	`DELETE FROM tf.strs WHERE id = 2`,
	`DELETE FROM tf.bins WHERE id = 4`,
	`DELETE FROM tf.jsons WHERE id = 7`,
	`DELETE FROM tf.decs WHERE id = 1`,
	`DELETE FROM tf.floats WHERE id = 2`,
	`UPDATE shard.t SET v = 'zz' WHERE id = 7`,
	// Within precision or equal by value: not differences.
	`UPDATE tf.floats SET f = -1.5000001 WHERE id = 4`,
	`UPDATE tf.floats SET d = 1.7976931348623155e308 WHERE id = 1`,
	`UPDATE tf.floats SET d = 2.225073858507202e-308 WHERE id = 3`,
	`UPDATE tf.floats SET d = 0 WHERE id = 5`,
	`UPDATE tf.jsons SET j = '1.0E0' WHERE id = 2`,
	`UPDATE tf.jsons SET j = '{"n": 1.0, "u": "é🥝\\u0000x", "a": {"e": false, "b": [1, 2, {"d": true, "c": null}]}}' WHERE id = 1`,
}

var diffFound = []string{
	"shard.t changed 7 v",
	"shard.t missing 60",
	"tf.ckey changed 3,'q' v",
	"tf.decs changed 3 d",
	"tf.floats changed 3 f",
	"tf.floats changed 4 d",
	"tf.ints missing 3",
	"tf.jsons changed 4 j",
	"tf.nopk missing 1,'a',1.5",
	"tf.nopk extra 7,'x',NULL",
	"tf.skey missing 'é'",
	"tf.skey changed 'a' k",
	"tf.strs extra 9",
	"tf.times changed 3 dt",
	"tf.bins changed 2 vb",
	"tf.geos changed 1 p",
	"tf.bits changed 1 b64",
	"tf.enums changed 1 s",
	"tf.times missing 5",
	"tf.strs missing 2",
	"tf.bins missing 4",
	"tf.jsons missing 7",
	"tf.decs missing 1",
	"tf.floats missing 2",
	"tf.only_up no target",
}

func sortedLines(l []string) string {
	c := append([]string(nil), l...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return strings.Join(c, "\n")
}

func TestDiffFindsDivergencesAndRepairs(t *testing.T) {
	updb, downdb := diffSetup(t)
	for _, q := range diffDivergences {
		mustExec(t, downdb, q)
	}
	mustExec(t, updb, "CREATE TABLE tf.only_up (id INT PRIMARY KEY)")
	for _, rows := range []int{3, 20000} {
		res := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(rows), dmworker.WithDiffWorkers(3))
		if got, want := sortedLines(diffLines(res)), sortedLines(diffFound); got != want {
			t.Fatalf("chunk rows %d: found\n%s\nwant\n%s", rows, got, want)
		}
		if res.Equal() {
			t.Fatal("Equal with differences")
		}
	}
	// The same with 64-bit row hashes in the chunk sums.
	res64 := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(3), dmworker.WithDiffHash64())
	if got, want := sortedLines(diffLines(res64)), sortedLines(diffFound); got != want {
		t.Fatalf("WithDiffHash64: found\n%s\nwant\n%s", got, want)
	}
	res := runDiff(t, updb, downdb)
	var fix bytes.Buffer
	if err := res.WriteFixSQL(&fix); err != nil {
		t.Fatal(err)
	}
	applyFixSQL(t, downdb, fix.String())
	if !strings.Contains(fix.String(), "-- `tf`.`only_up` does not exist downstream\n") {
		t.Errorf("the repair SQL does not say tf.only_up is missing:\n%s", fix.String())
	}
	mustExec(t, downdb, "CREATE TABLE tf.only_up (id INT PRIMARY KEY)")
	if res := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(3)); !res.Equal() {
		t.Fatalf("after the repair SQL:\n%s\nstill differs: %q", fix.String(), diffLines(res))
	}
}

// applyFixSQL runs the repair SQL, one statement a line, on one connection.
func applyFixSQL(t *testing.T, db *sql.DB, fix string) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, line := range strings.Split(fix, "\n") {
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		if _, err := conn.ExecContext(ctx, line); err != nil {
			t.Fatalf("repair SQL %s: %v", line, err)
		}
	}
}

func TestDiffProgressFileResumes(t *testing.T) {
	updb, downdb := diffSetup(t)
	for _, q := range diffDivergences {
		mustExec(t, downdb, q)
	}
	path := filepath.Join(t.TempDir(), "progress.json")
	first := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(3), dmworker.WithDiffProgressFile(path))
	if first.Resumed != 0 {
		t.Fatalf("first run resumed %d chunks", first.Resumed)
	}
	// A second run with the file takes every chunk from it: its rows are
	// the same though the downstream changed meanwhile.
	mustExec(t, downdb, "DELETE FROM tf.ints WHERE id = 1")
	second := runDiff(t, updb, downdb, dmworker.WithDiffChunkRows(3), dmworker.WithDiffProgressFile(path))
	total := 0
	for _, tb := range second.Tables {
		total += tb.Chunks
	}
	if second.Resumed != total {
		t.Fatalf("resumed %d chunks of %d", second.Resumed, total)
	}
	if got, want := sortedLines(diffLines(second)), sortedLines(diffLines(first)); got != want {
		t.Fatalf("resumed result\n%s\nwant\n%s", got, want)
	}
}

func TestDiffOptionsValidated(t *testing.T) {
	for _, o := range []dmworker.DiffOption{dmworker.WithDiffWorkers(0), dmworker.WithDiffChunkRows(0), dmworker.WithDiffMaxRows(-1)} {
		if _, err := dmworker.Diff(context.Background(), nil, nil, nil, o); err == nil {
			t.Errorf("option %v accepted", o)
		}
	}
}

// TestDiffUnderLoad compares while a parallel syncer (16 workers) applies
// a conflicting workload: Diff waits for the syncer's checkpoint to pass
// its snapshot's position and rechecks the rows that differ, and reports
// the tables equal; a row deleted downstream on purpose is still found.
func TestDiffUnderLoad(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 384})
	for _, db := range []*sql.DB{p.updb, p.downdb} {
		mustExec(t, db, "CREATE DATABASE app")
		mustExec(t, db, "CREATE TABLE app.hot (id INT PRIMARY KEY, v INT NOT NULL, u VARCHAR(16) NOT NULL, UNIQUE KEY (u)) DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_general_ci")
		mustExec(t, db, "CREATE TABLE app.big (id INT PRIMARY KEY, v DOUBLE, j JSON)")
		mustExec(t, db, "INSERT INTO app.big SELECT seq, seq / 3, JSON_OBJECT('n', seq) FROM mysql.seq_1_to_3000")
	}
	cfg := p.config("diffload")
	cfg.Workers, cfg.BatchSize = 16, 20
	cfg.CheckpointInterval = dmworker.Duration(50 * time.Millisecond)
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	defer func() {
		if err := run.Stop(); err != nil {
			t.Error(err)
		}
	}()
	wait := dmworker.WithDiffWait(func(ctx context.Context, pos dmworker.Position) error {
		for s.Status().Checkpoint.Compare(pos) < 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		return nil
	})
	type result struct {
		res []*dmworker.DiffResult
		err error
	}
	done := make(chan result, 1)
	stop := make(chan struct{})
	go func() {
		var r result
		defer func() { done <- r }()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			res, err := dmworker.Diff(ctx, p.updb, p.downdb, []dmworker.TablePattern{{Schema: "app", Name: "*"}},
				wait, dmworker.WithDiffRecheck(5, 100*time.Millisecond), dmworker.WithDiffWorkers(16), dmworker.WithDiffChunkRows(500))
			cancel()
			if err != nil {
				r.err = err
				return
			}
			r.res = append(r.res, res)
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	rnd := rand.New(rand.NewPCG(384, 1))
	for i := 0; i < 400; i++ {
		conflictWorkload(t, p.updb, rnd, 1)
		mustExec(t, p.updb, "UPDATE app.big SET v = v + 1, j = JSON_SET(j, '$.i', ?) WHERE id = ?", i, 1+rnd.IntN(3000))
	}
	close(stop)
	r := <-done
	if r.err != nil {
		t.Fatalf("Diff under load: %v", r.err)
	}
	for i, res := range r.res {
		if !res.Equal() {
			t.Errorf("Diff %d of %d under load: %q", i+1, len(r.res), diffLines(res))
		}
	}
	t.Logf("%d diffs during the workload", len(r.res))
	if len(r.res) == 0 {
		t.Error("no diff ran during the workload")
	}
	waitSynced(t, run, p.updb)
	mustExec(t, p.downdb, "DELETE FROM app.big WHERE id = 77")
	ctx := context.Background()
	res, err := dmworker.Diff(ctx, p.updb, p.downdb, []dmworker.TablePattern{{Schema: "app", Name: "*"}}, wait, dmworker.WithDiffRecheck(2, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(diffLines(res), ";"); got != "app.big missing 77" || res.Rechecks != 2 {
		t.Fatalf("after the load: %q, %d rechecks; want app.big missing 77, 2 rechecks", got, res.Rechecks)
	}
}
