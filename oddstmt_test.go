package dmworker_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestStatementBinlogHidden: in a session with binlog_format=STATEMENT
// some statements change a replicated table without naming it: a trigger
// on another table, a stored function called from SELECT, DO or SET, LOAD DATA
// (its file in the binlog, not its rows), a multi-table UPDATE. Their row changes are not in the binlog; the syncer
// stops at them with ErrStatementBinlog (and the downstream keeps what it
// had) rather than lose them; Skip passes over one.
func TestStatementBinlogHidden(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 84})
	mustExec(t, p.updb, "SET GLOBAL log_bin_trust_function_creators = 1")
	mysql.RegisterReaderHandler("oddstmt", func() io.Reader { return strings.NewReader("9\t7\n") })
	defer mysql.DeregisterReaderHandler("oddstmt")
	for _, tc := range []struct {
		name  string
		setup []string // in ROW format
		stmt  string   // in STATEMENT format
	}{
		{"trig", []string{
			"CREATE TABLE other_trig.src (id INT PRIMARY KEY)",
			"CREATE TRIGGER other_trig.fan AFTER INSERT ON other_trig.src FOR EACH ROW INSERT INTO trig.t VALUES (NEW.id, 7)",
		}, "INSERT INTO other_trig.src VALUES (9)"},
		{"select_function", []string{
			"CREATE FUNCTION select_function.f() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO select_function.t VALUES (9, 7); RETURN 1; END",
		}, "SELECT select_function.f()"},
		{"do_function", []string{
			"CREATE FUNCTION other_do_function.f() RETURNS INT MODIFIES SQL DATA BEGIN UPDATE do_function.t SET v = 8; RETURN 1; END",
		}, "DO other_do_function.f()"},
		{"set_function", []string{
			"CREATE FUNCTION set_function.f() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM set_function.t; RETURN 1; END",
		}, "SET @x = set_function.f()"},
		{"load_data", nil, "LOAD DATA LOCAL INFILE 'Reader::oddstmt' INTO TABLE load_data.t"},
		{"multi_update", []string{
			"CREATE TABLE other_multi_update.o (id INT PRIMARY KEY)",
			"INSERT INTO other_multi_update.o VALUES (1)",
		}, "UPDATE other_multi_update.o JOIN multi_update.t ON o.id = t.id SET t.v = 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.config(tc.name)
			cfg.Filter = dmworker.BlockAllowList{DoDBs: []string{tc.name}}
			s, err := dmworker.NewSyncer(cfg, p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			mustExec(t, p.updb, "CREATE DATABASE "+tc.name)
			mustExec(t, p.updb, "CREATE DATABASE IF NOT EXISTS other_"+tc.name)
			mustExec(t, p.updb, "CREATE TABLE "+tc.name+".t (id INT PRIMARY KEY, v INT)")
			mustExec(t, p.updb, "INSERT INTO "+tc.name+".t VALUES (1, 1), (2, 2)")
			for _, q := range tc.setup {
				mustExec(t, p.updb, q)
			}
			waitSynced(t, run, p.updb)
			table := tc.name + ".t"
			checkEqual(t, p.updb, p.downdb, table, table)
			before := tableRows(t, p.downdb, table)

			conn, err := p.updb.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, q := range []string{"SET SESSION binlog_format = 'STATEMENT'", tc.stmt, "SET SESSION binlog_format = 'ROW'"} {
				if _, err := conn.ExecContext(context.Background(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if strings.Join(tableRows(t, p.updb, table), ",") == strings.Join(before, ",") {
				t.Fatalf("%s did not change %s upstream", tc.stmt, table)
			}
			// It stops at the statement, or reads past it and goes on.
			end := upstreamPos(t, p.updb)
			waitUntil(t, "the syncer to stop or pass "+end.String(), func() bool {
				select {
				case <-run.done:
					return true
				default:
					return s.Status().Checkpoint.Compare(end) >= 0
				}
			})
			select {
			case <-run.done:
			default:
				t.Fatalf("the syncer passed %q (checkpoint %s); downstream %q, upstream %q", tc.stmt, s.Status().Checkpoint,
					tableRows(t, p.downdb, table), tableRows(t, p.updb, table))
			}
			err = run.Wait(t)
			var want []string
			var se *dmworker.SyncError
			if !errors.Is(err, dmworker.ErrStatementBinlog) || !errors.As(err, &se) || se.Start.Name == "" {
				t.Fatalf("Run: %v, want ErrStatementBinlog naming the event", err)
			}
			if got := tableRows(t, p.downdb, table); strings.Join(got, ",") != strings.Join(before, ",") {
				t.Fatalf("downstream %s %q, want the rows before the statement %q", table, got, before)
			}

			// Skip passes over it (its changes are the host's to bring
			// over): the task goes on.
			s.Skip(se.Start)
			run = runSyncer(t, s)
			mustExec(t, p.updb, "INSERT INTO "+table+" VALUES (100, 100)")
			waitSynced(t, run, p.updb)
			want = append(slices.Clone(before), `"100"|"100"`)
			sort.Strings(want)
			if got := tableRows(t, p.downdb, table); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("downstream %s %q after the skip, want %q", table, got, want)
			}
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
