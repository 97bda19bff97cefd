package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
)

func rowsOf(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rs, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var b strings.Builder
	for rs.Next() {
		var id int
		var v sql.NullString
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d=%v;", id, v)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func TestMigrateIncremental(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 71})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 72})
	upDB, downDB := up.DB(t), down.DB(t)
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE DATABASE other")
	up.Exec(t, "CREATE TABLE other.skipped (id INT PRIMARY KEY)")
	down.Exec(t, "CREATE DATABASE wl")

	var file string
	var offset uint64
	var skip1, skip2, skip3 any
	if err := upDB.QueryRow("SHOW MASTER STATUS").Scan(&file, &offset, &skip1, &skip2); err != nil {
		if err := upDB.QueryRow("SHOW MASTER STATUS").Scan(&file, &offset, &skip1, &skip2, &skip3); err != nil {
			t.Fatal(err)
		}
	}
	start := fmt.Sprintf("%s:%d", file, offset)
	args := []string{"-from", from, "-to", to, "-mode", "incremental", "-tables", "wl.*",
		"-route", "wl.t_*:wl.merged", "-exit-when-idle", "2s"}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	hctx, release := cli.HoldIdle(ctx)
	defer release()
	go func() { done <- run(hctx, append([]string{"-start", start}, args...), &stdout, &stderr) }()

	// Start the workload once migrate has read the upstream's tables (its
	// first progress line shows the start position).
	for deadline := time.Now().Add(time.Minute); !strings.Contains(stdout.String(), "pos="+start); {
		if time.Now().After(deadline) {
			t.Fatalf("no progress after a minute:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	up.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	// Shards merged by a route: a plain CREATE TABLE of the second shard
	// fails downstream (the merged table exists), see the report.
	up.Exec(t, "CREATE TABLE IF NOT EXISTS wl.t_1 (id INT PRIMARY KEY, v VARCHAR(64))")
	up.Exec(t, "CREATE TABLE IF NOT EXISTS wl.t_2 (id INT PRIMARY KEY, v VARCHAR(64))")
	for i := 0; i < 50; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("v", i))
		up.Exec(t, fmt.Sprintf("INSERT INTO wl.t_%d VALUES (?, ?)", 1+i%2), i, fmt.Sprint("s", i))
	}
	up.Exec(t, "UPDATE wl.t SET v = CONCAT(v, '!') WHERE id % 3 = 0; DELETE FROM wl.t WHERE id % 7 = 0; INSERT INTO wl.t VALUES (100, NULL)")
	up.Exec(t, "INSERT INTO other.skipped VALUES (1)")
	release()

	if code := <-done; code != 0 {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), up.Password) && up.Password != "" {
		t.Error("the output shows the password")
	}
	if !strings.Contains(stdout.String(), "pos=") || !strings.Contains(stdout.String(), "rows/s=") {
		t.Errorf("no progress line in:\n%s", stdout.String())
	}
	const q = "SELECT id, v FROM wl.t ORDER BY id"
	if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
		t.Fatalf("wl.t differs:\nup   %s\ndown %s", u, d)
	}
	merged := rowsOf(t, upDB, "SELECT id, v FROM (SELECT * FROM wl.t_1 UNION ALL SELECT * FROM wl.t_2) x ORDER BY id")
	if d := rowsOf(t, downDB, "SELECT id, v FROM wl.merged ORDER BY id"); d != merged {
		t.Fatalf("wl.merged differs:\nup   %s\ndown %s", merged, d)
	}
	var n int
	if err := downDB.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'other'").Scan(&n); err != nil || n != 0 {
		t.Errorf("other.* reached the downstream (%d tables, %v)", n, err)
	}

	// A second run continues from the checkpoint; the passwords come from
	// a file and the environment this time, off the command line.
	up.Exec(t, "INSERT INTO wl.t VALUES (200, 'later'), (201, 'later'); UPDATE wl.t SET v = 'x' WHERE id = 1")
	stdout.Reset()
	stderr.Reset()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(up.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envToPassword, down.Password)
	args = append([]string{"-from", up.User + "@" + up.Addr(), "-from-password-file", pwFile, "-to", down.User + "@" + down.Addr()}, args[4:]...)
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("second run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
		t.Fatalf("after the second run wl.t differs:\nup   %s\ndown %s", u, d)
	}
}

func TestParseArgs(t *testing.T) {
	base := []string{"-from", "u:secret@127.0.0.1:1", "-to", "u:secret@127.0.0.1:2"}
	for _, c := range []struct {
		args []string
		want string // substring of the error; "" for success
	}{
		{nil, ""},
		{[]string{"-mode", "full"}, ""},
		{[]string{"-mode", "all"}, ""},
		{[]string{"-mode", "fast"}, "want incremental, full or all"},
		{[]string{"-worker", "a/b"}, "no '/'"},
		{[]string{"-source", "a/b"}, "no '/'"},
		{[]string{"-source", "shop"}, ""},
		{[]string{"-data-dir", "/tmp/x", "-etcd", "127.0.0.1:2379,127.0.0.1:2380", "-worker", "w1"}, "-credential-key-file"},
		{[]string{"-workers", "4"}, ""},
		{[]string{"-workers", "-1"}, "between 1 and 1024"},
		{[]string{"-batch", "-1"}, "must not be negative"},
		{[]string{"-server-id", "4294967296"}, "32 bits"},
		{[]string{"-keepalive-ttl", "1500ms"}, "whole number of seconds"},
		{[]string{"-keepalive-ttl", "0s"}, "at least 1s"},
		{[]string{"-keepalive-ttl", "3s"}, ""},
		{[]string{"-start", "mysql-bin.000001:4", "-start-gtid", "0-1-1"}, "not both"},
		{[]string{"-start-gtid", "0-1-5"}, ""},
		{[]string{"-start-gtid", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}, ""},
		{[]string{"-start-gtid", ""}, "empty GTID set"},
		{[]string{"-tables", "db.*,other.t"}, ""},
		{[]string{"-tables", "db"}, "want db.table"},
		{[]string{"-route", "src.t_*:dst.t", "-route", "src_*:dst"}, ""},
		{[]string{"-route", "src.t:dst"}, "schema to a schema"},
		{[]string{"-stop-timeout", "0s"}, "must be positive"},
		{[]string{"-from-password-file", "/nonexistent/pw"}, "password both"},
		{[]string{"-etcd", "127.0.0.1:2379", "-credential-key-file", "/nonexistent/key"}, "no such file"},
	} {
		var stderr bytes.Buffer
		cfg, err := parseArgs(append(append([]string{}, base...), c.args...), &stderr)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
		case err == nil && strings.Contains(fmt.Sprint(cfg.up, cfg.down), "secret"):
			t.Errorf("%q: config prints the password", c.args)
		}
	}
	// Passwords from files and the environment, so that ps does not show
	// them; the credential key from a file or the environment.
	dir := t.TempDir()
	pwFile, keyFile := filepath.Join(dir, "pw"), filepath.Join(dir, "key")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
	for f, v := range map[string]string{pwFile: "file-pw\n", keyFile: key + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(envToPassword, "env-pw")
	cfg, err := parseArgs([]string{"-from", "u@127.0.0.1:1", "-from-password-file", pwFile, "-to", "u@127.0.0.1:2",
		"-etcd", "127.0.0.1:2379", "-credential-key-file", keyFile}, &bytes.Buffer{})
	if err != nil || cfg.up.Password != "file-pw" || cfg.down.Password != "env-pw" || len(cfg.key) != 32 {
		t.Fatalf("passwords from a file and the environment: %v; up %q down %q key %d bytes", err, cfg.up.Password, cfg.down.Password, len(cfg.key))
	}
	t.Setenv(envCredentialKey, key)
	if cfg, err = parseArgs(append(base, "-etcd", "127.0.0.1:2379,127.0.0.1:2380"), &bytes.Buffer{}); err != nil || len(cfg.key) != 32 || len(cfg.etcd) != 2 {
		t.Fatalf("credential key from the environment: %v, %d bytes, etcd %q", err, len(cfg.key), cfg.etcd)
	}
	t.Setenv(envCredentialKey, "c2hvcnQ=")
	if _, err = parseArgs(append(base, "-etcd", "127.0.0.1:2379"), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "want 16, 24 or 32") {
		t.Fatalf("a 5-byte credential key: %v", err)
	}

	cfg, err = parseArgs(append(base, "-batch", "50", "-compact", "-server-id", "4242", "-workers", "8"), &bytes.Buffer{})
	if err != nil || cfg.task.BatchSize != 50 || !cfg.task.Compact || cfg.task.Workers != 8 || cfg.up.ServerID != 4242 {
		t.Fatalf("-batch -compact -server-id -workers: %v, %+v, server id %d", err, cfg.task.SyncerTuning, cfg.up.ServerID)
	}
	cfg, err = parseArgs(append(base, "-compact=false"), &bytes.Buffer{})
	if err != nil || cfg.task.Compact || !cfg.task.NoCompact || cfg.task.Workers != 0 {
		t.Fatalf("-compact=false: %v, %+v", err, cfg.task.SyncerTuning)
	}
	cfg, err = parseArgs(append(base, "-route", "src.t_*:dst.t,src_*:dst", "-tables", "db.*,other.t"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.task.Routes
	if len(r) != 2 || r[0].SchemaPattern != "src" || r[0].TablePattern != "t_*" || r[0].TargetSchema != "dst" || r[0].TargetTable != "t" ||
		r[1].SchemaPattern != "src_*" || r[1].TablePattern != "" || r[1].TargetSchema != "dst" {
		t.Errorf("routes %+v", r)
	}
	if d := cfg.task.Filter.DoTables; len(d) != 2 || d[0].Schema != "db" || d[0].Name != "*" || d[1].Schema != "other" || d[1].Name != "t" {
		t.Errorf("do-tables %+v", d)
	}
	if !cfg.task.OnlineDDLEnabled() {
		t.Error("online DDL handling is off by default")
	}
	if cfg, err = parseArgs(append(base, "-online-ddl=false"), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	} else if cfg.task.OnlineDDLEnabled() {
		t.Error("-online-ddl=false: the handling is on")
	}
}

// TestMigrateRelayAndEtcd: with -data-dir the subtask replicates from a
// relay log kept under DIR/relay; with -etcd the same program runs as a
// worker of a cluster: two processes, one serves, the other takes over
// when it goes, and the downstream equals the upstream.
func TestMigrateRelayAndEtcd(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 410})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 411})
	e := testserver.StartEtcd(t)
	upDB, downDB := up.DB(t), down.DB(t)
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const q = "SELECT id, v FROM wl.t ORDER BY id"

	// Direct mode with a relay log.
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	down.Exec(t, "CREATE DATABASE wl")
	down.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	args := []string{"-from", from, "-to", to, "-data-dir", dir, "-exit-when-idle", "2s"}
	hctx, release := cli.HoldIdle(ctx)
	defer release()
	go func() { done <- run(hctx, args, &stdout, &stderr) }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(stdout.String(), "pos=mysql-bin"); {
		if time.Now().After(deadline) {
			t.Fatalf("no progress after a minute:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 40; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("v", i))
	}
	release()
	if code := <-done; code != 0 {
		t.Fatalf("relay run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
		t.Fatalf("wl.t differs after the relay run:\nup   %s\ndown %s", u, d)
	}
	if _, err := os.Stat(filepath.Join(dir, "relay", up.Addr(), "server-uuid.index")); err != nil {
		t.Fatalf("no relay log under -data-dir: %v", err)
	}

	// Cluster mode: two processes (run twice here) share etcd. The first
	// one's coordinator binds the source to w1; w2 stands by; when w1 goes,
	// its registration goes with it and the source is rebound to w2, which
	// continues from the checkpoint and exits once idle. The upstream's
	// password goes into etcd sealed with the key both are given.
	t.Setenv(envCredentialKey, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32)))
	up.Exec(t, "UPDATE wl.t SET v = 'etcd' WHERE id < 10")
	stdout.Reset()
	stderr.Reset()
	cluster := []string{"-from", from, "-to", to, "-etcd", strings.Join(e.Endpoints, ","), "-keepalive-ttl", "2s"}
	ctx1, stop1 := context.WithCancel(ctx)
	defer stop1()
	go func() {
		done <- run(ctx1, append([]string{"-worker", "w1", "-data-dir", dir, "-status-addr", "127.0.0.1:0"}, cluster...), &stdout, &stderr)
	}()
	waitOutput(t, &stdout, &stderr, "worker=w1 pos=mysql-bin")
	// In cluster mode the worker's registration and its coordinator report
	// into the same /metrics as the worker.
	addr := regexp.MustCompile(`serving http://(\S+)/status`).FindStringSubmatch(stderr.String())
	if addr == nil {
		t.Fatalf("no status address in:\n%s", stderr.String())
	}
	hresp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	for _, re := range []string{`(?m)^dmworker_keepalive_lease_held\{[^}]*worker="w1"[^}]*\} 1$`, `(?m)^dmworker_coordinator_leader\{[^}]*\} 1$`,
		`(?m)^dmworker_worker_alive\{[^}]*worker="w1"[^}]*\} 1$`} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("/metrics of w1 lacks %s:\n%s", re, metrics)
		}
	}
	var stdout2, stderr2 syncBuffer
	done2 := make(chan int, 1)
	hctx2, release2 := cli.HoldIdle(ctx)
	defer release2()
	go func() {
		done2 <- run(hctx2, append([]string{"-worker", "w2", "-data-dir", t.TempDir(), "-exit-when-idle", "2s"}, cluster...), &stdout2, &stderr2)
	}()
	waitOutput(t, &stdout2, &stderr2, "worker=w2 standby: source "+up.Addr()+" served by worker w1")
	for i := 40; i < 60; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("w1-", i))
	}
	stop1()
	if code := <-done; code != 0 {
		t.Fatalf("w1: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for i := 60; i < 80; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("w2-", i))
	}
	release2()
	if code := <-done2; code != 0 {
		t.Fatalf("w2: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout2.String(), stderr2.String())
	}
	if !strings.Contains(stdout2.String(), "worker=w2 pos=") {
		t.Fatalf("w2 never ran the task:\n%s", stdout2.String())
	}
	if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
		t.Fatalf("wl.t differs after the failover:\nup   %s\ndown %s", u, d)
	}
	all, err := e.Client.Get(ctx, "/dmworker/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		if strings.Contains(string(kv.Value), up.Password) {
			t.Errorf("etcd holds the upstream's password in plain text: %s = %s", kv.Key, kv.Value)
		}
	}
	resp, err := e.Client.Get(ctx, dmworker.NewEtcdKeys("").SubTaskStatus("w2", "migrate"))
	if err != nil || len(resp.Kvs) == 0 || !strings.Contains(string(resp.Kvs[0].Value), `"stage":"Stopped"`) {
		t.Fatalf("no final status of w2's subtask in etcd: %v %v", resp, err)
	}
	resp, err = e.Client.Get(ctx, dmworker.NewEtcdKeys("").RelayStatus("w1"))
	if err != nil || len(resp.Kvs) == 0 || !strings.Contains(string(resp.Kvs[0].Value), `"relayed":"0-410.000001/mysql-bin.000001:`) {
		t.Fatalf("no relay status of w1 in etcd: %v %v", resp, err)
	}
}

// waitOutput waits up to a minute for want in out.
func waitOutput(t *testing.T, out, errOut *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after a minute:\n%s\n%s", want, out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMigrateFailsFastOnBadUpstream: an upstream address nothing listens on,
// or a wrong password, ends the program with exit 1 within seconds and a
// message that says what to fix (a wrong port used to be retried for
// minutes, with a warning a second).
func TestMigrateFailsFastOnBadUpstream(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 74})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 75})
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	const badPassword = "not-the-Password-45"
	for _, tc := range []struct {
		name, from, want string
	}{
		{"wrong port", fmt.Sprintf("%s:%s@%s", up.User, up.Password, closed), "check the host and port of -from"},
		{"wrong password", fmt.Sprintf("%s:%s@%s", up.User, badPassword, up.Addr()), "check the user and password of -from"},
	} {
		for _, relay := range []bool{false, true} {
			var extra []string
			if relay {
				extra = []string{"-data-dir", t.TempDir()}
			}
			t.Run(fmt.Sprintf("%s relay=%v", tc.name, relay), func(t *testing.T) {
				// Retrying shows as this deadline passing (and exit 0).
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				var stdout, stderr syncBuffer
				code := run(ctx, append([]string{"-from", tc.from, "-to", to}, extra...), &stdout, &stderr)
				if code != 1 || ctx.Err() != nil {
					t.Fatalf("exit %d (context: %v)\nstdout:\n%s\nstderr:\n%s", code, ctx.Err(), stdout.String(), stderr.String())
				}
				if !strings.Contains(stderr.String(), tc.want) {
					t.Fatalf("stderr does not say %q:\n%s", tc.want, stderr.String())
				}
				for _, pw := range []string{up.Password, badPassword} {
					if strings.Contains(stdout.String()+stderr.String(), pw) {
						t.Fatalf("the output shows the password:\n%s\n%s", stdout.String(), stderr.String())
					}
				}
			})
		}
	}
}

// runAsNobody runs migrate with args in a child process as user nobody
// (for root, whom file permissions do not stop) and returns its exit status
// and output.
func runAsNobody(t *testing.T, args []string) (int, string, string) {
	t.Helper()
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.Atoi(u.Uid); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.Atoi(u.Gid); err == nil {
			gid = uint32(n)
		}
	}
	// The test binary lives in a directory only root may enter.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.MkdirTemp("", "migrate-test-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, "migrate.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The child runs the program (see TestMain); the deadline ends a
	// child that hangs instead of exiting.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), "DMWORKER_MIGRATE_MAIN=1")
	cmd.Dir = bin
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// copyTree copies the directory tree from into to.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateRelayCannotStart: with -data-dir, a relay that cannot start
// (its newest file truncated below what relay.meta says, garbage in
// relay.meta or in server-uuid.index, a read-only relay directory) makes
// migrate print the relay's error, naming the file, and exit 1, instead of
// printing progress forever.
func TestMigrateRelayCannotStart(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 420})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 421})
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	down.Exec(t, "CREATE DATABASE wl")
	down.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")

	// A relay to damage: one run that copies a few transactions.
	pristine := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	hctx, release := cli.HoldIdle(ctx)
	defer release()
	go func() {
		done <- run(hctx, []string{"-from", from, "-to", to, "-data-dir", pristine, "-exit-when-idle", "1s"}, &stdout, &stderr)
	}()
	waitOutput(t, &stdout, &stderr, "pos=mysql-bin")
	for i := 0; i < 20; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("v", i))
	}
	release()
	if code := <-done; code != 0 {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	relay := filepath.Join("relay", up.Addr())
	sub := filepath.Join(relay, "0-420.000001")

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string) string // returns the path the error names
	}{
		{"newest file truncated below relay.meta", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, sub, "mysql-bin.000001")
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(f, st.Size()-50); err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"garbage in relay.meta", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, sub, "relay.meta")
			if err := os.WriteFile(f, []byte("\x00\x01\x02 not toml [[["), 0o640); err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"garbage in server-uuid.index", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, relay, "server-uuid.index")
			if err := os.WriteFile(f, []byte("\x00\x01\x02\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"read-only relay directory", func(t *testing.T, dir string) string {
			// Read-only for the process: for root (whom permissions do not
			// stop) the child runs as nobody, who may read but not write.
			ro := func(m os.FileMode) os.FileMode { return m &^ 0o222 }
			if os.Geteuid() == 0 {
				ro = func(m os.FileMode) os.FileMode { return m | 0o444 | (m&0o100)>>3 | (m&0o100)>>6 }
			}
			filepath.Walk(filepath.Join(dir, "relay"), func(p string, info os.FileInfo, err error) error {
				if err == nil {
					err = os.Chmod(p, ro(info.Mode().Perm()))
				}
				return err
			})
			t.Cleanup(func() {
				filepath.Walk(filepath.Join(dir, "relay"), func(p string, info os.FileInfo, err error) error {
					if err == nil {
						err = os.Chmod(p, info.Mode().Perm()|0o200)
					}
					return err
				})
			})
			return filepath.Join(dir, relay)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asNobody := strings.HasPrefix(tc.name, "read-only") && os.Geteuid() == 0
			dir := t.TempDir()
			if asNobody {
				// Where nobody may go (t.TempDir's parents are root's).
				var err error
				if dir, err = os.MkdirTemp("", "migrate-ro"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				if err := os.Chmod(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			copyTree(t, pristine, dir)
			names := tc.damage(t, dir)
			up.Exec(t, "INSERT INTO wl.t VALUES (?, 'after') ON DUPLICATE KEY UPDATE v = 'after'", 100)
			args := []string{"-from", from, "-to", to, "-data-dir", dir}
			var code int
			var out, errOut string
			if asNobody {
				code, out, errOut = runAsNobody(t, args)
			} else {
				rctx, rcancel := context.WithTimeout(t.Context(), 2*time.Minute)
				var so, se syncBuffer
				code = run(rctx, args, &so, &se)
				if rctx.Err() != nil {
					t.Errorf("migrate ran until the test's deadline ended it")
				}
				rcancel()
				out, errOut = so.String(), se.String()
			}
			t.Logf("exit %d, stderr:\n%s", code, errOut)
			if code != 1 || !strings.Contains(errOut, "migrate: ") || !strings.Contains(errOut, names) || !strings.Contains(errOut, "relay") {
				t.Fatalf("exit %d: want 1 and the relay's error naming %s on stderr\nstdout:\n%s\nstderr:\n%s", code, names, out, errOut)
			}
		})
	}
}

// TestMigrateSourceThroughProxy: the first run (from the binlog's start)
// names the source by its
// address and stores that name with the checkpoint in the downstream; a
// later run through a proxy (another address) without -source finds the
// name there and continues from the checkpoint; a run with -source takes
// the checkpoint over under that name. Rows written between runs arrive
// each time (the old code keyed the checkpoint by the address it was
// given, so the run through the proxy started at the upstream's end).
func TestMigrateSourceThroughProxy(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 420})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 421})
	upDB, downDB := up.DB(t), down.DB(t)
	proxy, err := faultnet.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	via := fmt.Sprintf("%s:%s@%s", up.User, up.Password, proxy.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("v", i))
		}
		up.Exec(t, "UPDATE wl.t SET v = CONCAT(v, '+') WHERE id % 5 = 0")
	}
	write(0, 30)
	const q = "SELECT id, v FROM wl.t ORDER BY id"
	run1 := func(name string, args ...string) string {
		t.Helper()
		var stdout, stderr syncBuffer
		args = append([]string{"-to", to, "-tables", "wl.*", "-exit-when-idle", "2s"}, args...)
		if code := run(ctx, args, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", name, code, stdout.String(), stderr.String())
		}
		if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
			t.Fatalf("after %s wl.t differs:\nup   %s\ndown %s", name, u, d)
		}
		return stderr.String()
	}
	sources := func() string {
		rows := rowsOf(t, downDB, "SELECT 0, source FROM dmworker_meta.checkpoint WHERE task = 'migrate' AND pos IS NOT NULL ORDER BY source")
		return rows
	}
	run1("the first run", "-from", from, "-start", "mysql-bin.000001:4")
	if got, want := sources(), "0={"+up.Addr()+" true};"; got != want {
		t.Fatalf("checkpoint sources %q, want %q", got, want)
	}
	write(30, 30)
	run1("the run through the proxy", "-from", via)
	if proxy.Accepted() == 0 {
		t.Fatal("the second run did not go through the proxy")
	}
	write(60, 30)
	if out := run1("the named run", "-from", via, "-source", "shop"); !strings.Contains(out, "is source shop's now") {
		t.Errorf("the named run did not say it took the checkpoint over:\n%s", out)
	}
	if got := sources(); got != "0={shop true};" {
		t.Fatalf("checkpoint sources %q, want shop alone", got)
	}
	write(90, 10)
	run1("a second named run", "-from", from, "-source", "shop")
}

// TestMigrateStatusAddr: -status-addr serves /status, /healthz and
// /metrics while migrate runs.
func TestMigrateStatusAddr(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 75})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 76})
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-from", from, "-to", to, "-status-addr", "127.0.0.1:0", "-health-max-lag", "1m"}, &stdout, &stderr)
	}()
	waitOutput(t, &stdout, &stderr, "pos=")
	m := regexp.MustCompile(`serving http://(\S+)/status`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no status address in:\n%s", stderr.String())
	}
	up.Exec(t, "CREATE DATABASE s")
	up.Exec(t, "CREATE TABLE s.t (id INT PRIMARY KEY)")
	up.Exec(t, "INSERT INTO s.t VALUES (1), (2)")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	insertsRe := regexp.MustCompile(`(?m)^dmworker_syncer_row_changes_total\{kind="insert"[^}]*task="migrate"[^}]*\} 2$`)
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := get("/metrics")
		if code == http.StatusOK && insertsRe.MatchString(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed the 2 inserts: %d\n%s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get("/status")
	var st dmworker.StatusJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status: %d %v\n%s", code, err, body)
	}
	if len(st.SubTasks) != 1 || st.SubTasks[0].Name != "migrate" || st.SubTasks[0].Stage != "Running" || st.SubTasks[0].Syncer.Rows < 2 {
		t.Fatalf("/status: %s", body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
}
