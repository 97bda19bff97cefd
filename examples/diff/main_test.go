package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMain runs the program itself when the test binary is started as a
// child, so that it can be killed as the command would be.
func TestMain(m *testing.M) {
	if os.Getenv("DMWORKER_DIFF_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func mustExec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// command is the program as a child process with args.
func command(ctx context.Context, up, down *testserver.MariaDB, args ...string) *exec.Cmd {
	all := append([]string{"-from", up.User + "@" + up.Addr(), "-to", down.User + "@" + down.Addr()}, args...)
	cmd := exec.CommandContext(ctx, os.Args[0], all...)
	cmd.Env = append(os.Environ(), "DMWORKER_DIFF_MAIN=1",
		"DMWORKER_FROM_PASSWORD="+up.Password, "DMWORKER_TO_PASSWORD="+down.Password)
	return cmd
}

// runDiff runs the program to its end: exit code and output.
func runDiff(t *testing.T, up, down *testserver.MariaDB, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := command(ctx, up, down, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// rowLines are the output's lines about tables and rows, without the
// snapshot line (its position and resumed count differ from run to run).
func rowLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "upstream snapshot at") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func setup(t *testing.T) (up, down *testserver.MariaDB, updb, downdb *sql.DB) {
	up = testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 391})
	down = testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 392})
	updb, downdb = up.DB(t), down.DB(t)
	for _, db := range []*sql.DB{updb, downdb} {
		mustExec(t, db, "CREATE DATABASE d")
		mustExec(t, db, "CREATE TABLE d.big (id INT PRIMARY KEY, a VARCHAR(64), b DOUBLE, c DATETIME(6))")
		mustExec(t, db, "INSERT INTO d.big SELECT seq, MD5(seq), seq / 7, '2024-01-01' + INTERVAL seq SECOND FROM mysql.seq_1_to_200000")
		mustExec(t, db, "CREATE TABLE d.nokey (a INT, b VARCHAR(10))")
		mustExec(t, db, "INSERT INTO d.nokey VALUES (1, 'x'), (1, 'x'), (2, NULL)")
		mustExec(t, db, "ANALYZE TABLE d.big")
	}
	return up, down, updb, downdb
}

func TestDiffExitCodesAndFixSQL(t *testing.T) {
	up, down, _, downdb := setup(t)
	if code, out, errOut := runDiff(t, up, down, "-tables", "d.*"); code != 0 {
		t.Fatalf("equal tables: exit %d, want 0\n%s%s", code, out, errOut)
	}
	mustExec(t, downdb, "DELETE FROM d.big WHERE id = 1000")
	mustExec(t, downdb, "UPDATE d.big SET a = 'changed' WHERE id = 150000")
	mustExec(t, downdb, "INSERT INTO d.big VALUES (300000, 'extra', 1, NULL)")
	mustExec(t, downdb, "DELETE FROM d.nokey WHERE b IS NULL")
	fix := filepath.Join(t.TempDir(), "fix.sql")
	code, out, errOut := runDiff(t, up, down, "-tables", "d.*", "-fix-sql", fix)
	if code != 1 {
		t.Fatalf("different tables: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"  missing id=1000\n", "  changed id=150000 columns a\n", "  extra id=300000\n", "  missing a=2,b=NULL\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	sqlText, err := os.ReadFile(fix)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := downdb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(sqlText), "\n") {
		if l != "" && !strings.HasPrefix(l, "--") {
			if _, err := conn.ExecContext(context.Background(), l); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
		}
	}
	conn.Close()
	if code, out, errOut := runDiff(t, up, down, "-tables", "d.*"); code != 0 {
		t.Fatalf("after -fix-sql: exit %d, want 0\n%s%s\nfix:\n%s", code, out, errOut, sqlText)
	}
	// Errors: bad flags, a server that does not answer.
	if code, _, _ := runDiff(t, up, down, "-tables", "nodot"); code != 2 {
		t.Errorf("bad -tables: exit %d, want 2", code)
	}
	if code, _, _ := runDiff(t, up, down, "-workers", "0"); code != 2 {
		t.Errorf("-workers 0: exit %d, want 2", code)
	}
	cmd := exec.Command(os.Args[0], "-from", "root@127.0.0.1:1", "-to", "root@127.0.0.1:1")
	cmd.Env = append(os.Environ(), "DMWORKER_DIFF_MAIN=1")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("unreachable servers: %v, want exit 2", err)
	}
}

// TestDiffKilledResumes kills the program (SIGKILL) mid-run and runs it
// again with the same progress file: it goes on from the chunks done and
// reports what an uninterrupted run reports.
func TestDiffKilledResumes(t *testing.T) {
	up, down, _, downdb := setup(t)
	mustExec(t, downdb, "DELETE FROM d.big WHERE id IN (17, 99999, 199999)")
	mustExec(t, downdb, "UPDATE d.big SET b = b + 1 WHERE id = 123456")
	mustExec(t, downdb, "INSERT INTO d.big VALUES (0, 'zero', 0, NULL)")
	args := []string{"-tables", "d.*", "-chunk-rows", "500", "-workers", "1"}
	code, whole, errOut := runDiff(t, up, down, args...)
	if code != 1 {
		t.Fatalf("uninterrupted: exit %d, want 1\n%s%s", code, whole, errOut)
	}
	progress := filepath.Join(t.TempDir(), "progress.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := command(ctx, up, down, append(args, "-progress", progress)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := regexp.MustCompile(`"done":true`)
	for {
		data, _ := os.ReadFile(progress)
		if n := len(done.FindAll(data, -1)); n >= 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the run ended before it was killed (%v): make it longer", err)
	}
	code, resumed, errOut := runDiff(t, up, down, append(args, "-progress", progress)...)
	if code != 1 {
		t.Fatalf("resumed: exit %d, want 1\n%s%s", code, resumed, errOut)
	}
	if !regexp.MustCompile(`, [0-9]+ chunks resumed from the progress file`).MatchString(resumed) {
		t.Errorf("resumed run resumed nothing:\n%s", resumed)
	}
	if rowLines(resumed) != rowLines(whole) {
		t.Fatalf("resumed run reports\n%s\nuninterrupted\n%s", resumed, whole)
	}
	for _, want := range []string{"missing id=17\n", "missing id=99999\n", "missing id=199999\n", "changed id=123456 columns b\n", "extra id=0\n"} {
		if !strings.Contains(resumed, want) {
			t.Errorf("resumed output lacks %q:\n%s", want, resumed)
		}
	}
}
