package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/goleak"

	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// workload runs n transactions of a few row events each, ids from `from`.
func workload(t *testing.T, db *sql.DB, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if _, err := tx.Exec("INSERT INTO wl.t VALUES (?, ?)", i*10+j, strings.Repeat("v", 300+j)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec("UPDATE wl.t SET v = 'u' WHERE id = ?", i*10); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

var progressLine = regexp.MustCompile(`^relayed (-|\S+/mysql-bin\.\d+:\d+)  behind (\?|\d+) bytes  \d+\.\d MB/s$`)

func TestRunRelaysUntilIdle(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 9, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	m.Exec(t, "CREATE DATABASE wl; CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(400))")
	workload(t, db, 0, 60) // several files before the relay starts

	dir := filepath.Join(t.TempDir(), "relay")
	from := fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())
	args := []string{"-from", from, "-dir", dir, "-start", "mysql-bin.000001:4", "-exit-when-idle", "1500ms", "-sync", "each-txn"}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := make(chan int, 1)
	hctx, release := cli.HoldIdle(ctx) // -exit-when-idle counts once the workload is written
	defer release()
	go func() { code <- run(hctx, args, &stdout, &stderr) }()
	workload(t, db, 60, 60) // and more while it runs, across more rotations
	release()
	if c := <-code; c != 0 {
		t.Fatalf("run: exit %d, stderr:\n%s", c, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatal("run returned only when the test's deadline ended it")
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr:\n%s", stderr.String())
	}

	// Output: progress lines in the documented form, then the summary.
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "done: relayed ") || !strings.Contains(last, "/mysql-bin.") {
		t.Errorf("last line %q: want the summary", last)
	}
	for _, l := range lines[:len(lines)-1] {
		if !progressLine.MatchString(l) {
			t.Errorf("progress line %q does not match %s", l, progressLine)
		}
	}

	// The relay directory: an index naming one subdirectory, which holds
	// relay.meta and the upstream's files, byte for byte.
	index, err := os.ReadFile(filepath.Join(dir, streamer.RelayIndexFile))
	if err != nil {
		t.Fatal(err)
	}
	subdirs := strings.Fields(string(index))
	if len(subdirs) != 1 || !strings.HasPrefix(subdirs[0], "0-9.") {
		t.Fatalf("%s lists %q: want one subdirectory for MariaDB identity 0-9", streamer.RelayIndexFile, subdirs)
	}
	sub := filepath.Join(dir, subdirs[0])
	meta, err := streamer.ReadRelayMeta(sub)
	if err != nil {
		t.Fatal(err)
	}

	paths, err := m.BinlogFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 4 {
		t.Fatalf("the upstream has %d binlog files: want several rotations", len(paths))
	}
	relayFiles, err := streamer.RelayFiles(sub)
	if err != nil {
		t.Fatal(err)
	}
	var upNames []string
	for _, p := range paths {
		upNames = append(upNames, filepath.Base(p))
	}
	if strings.Join(relayFiles, " ") != strings.Join(upNames, " ") {
		t.Fatalf("relay files %q, upstream files %q", relayFiles, upNames)
	}
	for i, p := range paths {
		name := upNames[i]
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(sub, name))
		if err != nil {
			t.Fatal(err)
		}
		if i < len(paths)-1 {
			if !bytes.Equal(got, want) {
				t.Errorf("relay %s (%d bytes) differs from the upstream's (%d bytes)", name, len(got), len(want))
			}
			continue
		}
		// The active file: the upstream has its in-use flag set, which
		// the server clears in what it sends; and it may have written a
		// binlog checkpoint since the relay caught up.
		if len(want) > 4+19 {
			want[4+17] &^= byte(replication.LOG_EVENT_BINLOG_IN_USE_F)
		}
		if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
			t.Errorf("relay %s (%d bytes) is not a prefix of the upstream's (%d bytes)", name, len(got), len(want))
		}
		if meta.BinlogName != name || meta.BinlogPos != uint64(len(got)) {
			t.Errorf("relay.meta says %s:%d, want %s:%d", meta.BinlogName, meta.BinlogPos, name, len(got))
		}
		if !strings.Contains(last, fmt.Sprintf("/%s:%d ", name, len(got))) {
			t.Errorf("summary %q: want it to end at %s:%d", last, name, len(got))
		}
	}
}

func TestRunBadPasswordExits1WithoutIt(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{})
	const secret = "not-the-password-4711"
	args := []string{"-from", m.User + ":" + secret + "@" + m.Addr(), "-dir", t.TempDir(), "-exit-when-idle", "1s"}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if c := run(ctx, args, &stdout, &stderr); c != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", c, stderr.String())
	}
	if !strings.Contains(stderr.String(), "relay:") {
		t.Errorf("stderr %q: want the error", stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), secret) {
		t.Errorf("the password appears in the output:\n%s%s", stdout.String(), stderr.String())
	}
}

func TestParseArgs(t *testing.T) {
	const from = "u:pw-secret@127.0.0.1:3306"
	for _, tc := range []struct {
		args []string
		err  string // "" for success
	}{
		{[]string{"-from", from, "-dir", "d"}, ""},
		{[]string{"-from", from, "-dir", "d", "-sync", "each-txn", "-exit-when-idle", "2s"}, ""},
		{[]string{"-from", from, "-dir", "d", "-sync", "interval=10ms", "-flavor", "mysql", "-server-id", "77"}, ""},
		{[]string{"-from", from, "-dir", "d", "-sync", "on-rotate"}, ""},
		{[]string{"-from", from, "-dir", "d", "-start", "mysql-bin.000003:4"}, ""},
		{[]string{"-dir", "d"}, "-from"},
		{[]string{"-from", from}, "-dir is required"},
		{[]string{"-from", "u:pw-secret", "-dir", "d"}, "want user[:password]@host:port"},
		{[]string{"-from", from, "-from-password-file", "/nonexistent", "-dir", "d"}, "password both"},
		{[]string{"-from", "u@127.0.0.1:3306", "-from-password-file", "/nonexistent/pw", "-dir", "d"}, "password file"},
		{[]string{"-from", from, "-dir", "d", "-sync", "sometimes"}, "-sync"},
		{[]string{"-from", from, "-dir", "d", "-sync", "interval=0s"}, "positive duration"},
		{[]string{"-from", from, "-dir", "d", "-sync", "on-rotate", "-exit-when-idle", "1s"}, "on-rotate"},
		{[]string{"-from", from, "-dir", "d", "-flavor", "oracle"}, "-flavor"},
		{[]string{"-from", from, "-dir", "d", "-start", "nonsense"}, "-start"},
		{[]string{"-from", from, "-dir", "d", "-server-id", "4294967296"}, "32 bits"},
		{[]string{"-from", from, "-dir", "d", "extra"}, "unexpected"},
	} {
		var stderr bytes.Buffer
		_, err := parseArgs(tc.args, &stderr)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one mentioning %q", tc.args, err, tc.err)
		case err != nil && strings.Contains(err.Error(), "pw-secret"):
			t.Errorf("%q: error %q shows the password", tc.args, err)
		}
	}
}

// TestRunRefusesDamagedIndex: a server-uuid.index that was emptied or
// overwritten with garbage is not written anew (which dropped the older
// subdirectories from the relay): the program prints the error, naming the
// index, and exits 1, leaving the index as it was.
func TestRunRefusesDamagedIndex(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 10})
	db := m.DB(t)
	m.Exec(t, "CREATE DATABASE wl; CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(400))")
	workload(t, db, 0, 10)
	from := fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())
	for _, garbage := range []string{"", "\n \n", "\x00\x01\x02\x03", "not-a-subdir\n"} {
		t.Run(fmt.Sprintf("%q", garbage), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "relay")
			args := []string{"-from", from, "-dir", dir, "-exit-when-idle", "500ms"}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			if c := run(ctx, args, &stdout, &stderr); c != 0 {
				t.Fatalf("first run: exit %d, stderr:\n%s", c, stderr.String())
			}
			index := filepath.Join(dir, streamer.RelayIndexFile)
			if err := os.WriteFile(index, []byte(garbage), 0o640); err != nil {
				t.Fatal(err)
			}
			stdout.Reset()
			stderr.Reset()
			c := run(ctx, args, &stdout, &stderr)
			if c != 1 || !strings.Contains(stderr.String(), index) || !strings.Contains(stderr.String(), "relay log corrupt") {
				t.Fatalf("exit %d: want 1 and an error naming %s\nstderr:\n%s", c, index, stderr.String())
			}
			if got, _ := os.ReadFile(index); string(got) != garbage {
				t.Fatalf("the index was rewritten: %q", got)
			}
		})
	}
}
