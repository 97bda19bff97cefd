package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMigrateTaskFile: migrate replicates with the example DM task file
// (task.example.yaml: its block-allow list, route, event filter and syncer
// settings) and a DM source file, the downstream given by -to over the
// file's target-database.
func TestMigrateTaskFile(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 81})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 82})
	upDB, downDB := up.DB(t), down.DB(t)
	for _, q := range []string{"CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20))",
		"CREATE TABLE shop.history (id INT PRIMARY KEY, v INT)", "CREATE TABLE shop.orders_1 (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE shop.orders_2 (id INT PRIMARY KEY, v INT)", "CREATE TABLE shop.tmp_x (id INT PRIMARY KEY)"} {
		up.Exec(t, q)
	}
	for _, q := range []string{"CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20))",
		"CREATE TABLE shop.history (id INT PRIMARY KEY, v INT)", "CREATE TABLE shop.orders (id INT PRIMARY KEY, v INT)"} {
		down.Exec(t, q)
	}
	dir := t.TempDir()
	srcFile := filepath.Join(dir, "source.yaml")
	src := fmt.Sprintf("source-id: mysql-replica-01\nfrom:\n  host: %s\n  port: %d\n  user: %s\n", up.Host, up.Port, up.User)
	if err := os.WriteFile(srcFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envFromPassword, up.Password)
	t.Setenv(envToPassword, down.Password)
	args := []string{"-config", "task.example.yaml", "-source-config", srcFile, "-to", down.User + "@" + down.Addr(), "-exit-when-idle", "2s"}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
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
		up.Exec(t, "INSERT INTO shop.items VALUES (?, ?)", i, fmt.Sprint("v", i))
		up.Exec(t, fmt.Sprintf("INSERT INTO shop.orders_%d VALUES (?, ?)", 1+i%2), i, i)
		up.Exec(t, "INSERT INTO shop.history VALUES (?, ?)", i, i)
		up.Exec(t, "INSERT INTO shop.tmp_x VALUES (?)", i)
	}
	up.Exec(t, "UPDATE shop.items SET v = 'x' WHERE id % 3 = 0; DELETE FROM shop.items WHERE id % 5 = 0")
	up.Exec(t, "DELETE FROM shop.history WHERE id < 10") // filtered out: kept downstream
	release()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if u, d := rowsOf(t, upDB, "SELECT id, v FROM shop.items ORDER BY id"), rowsOf(t, downDB, "SELECT id, v FROM shop.items ORDER BY id"); u != d {
		t.Errorf("shop.items differs:\nup   %s\ndown %s", u, d)
	}
	merged := rowsOf(t, upDB, "SELECT id, v FROM (SELECT * FROM shop.orders_1 UNION ALL SELECT * FROM shop.orders_2) x ORDER BY id")
	if d := rowsOf(t, downDB, "SELECT id, v FROM shop.orders ORDER BY id"); d != merged {
		t.Errorf("shop.orders (the route's merge) differs:\nup   %s\ndown %s", merged, d)
	}
	var n int
	if err := downDB.QueryRow("SELECT COUNT(*) FROM shop.history").Scan(&n); err != nil || n != 40 {
		t.Errorf("shop.history downstream has %d rows (%v), want 40: the filter ignores deletes", n, err)
	}
	if err := downDB.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE 'tmp%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("shop.tmp_x reached the downstream (%d, %v): ignore-tables", n, err)
	}
	var source string
	if err := downDB.QueryRow("SELECT DISTINCT source FROM dmworker_meta.checkpoint WHERE task = 'shop'").Scan(&source); err != nil || source != "mysql-replica-01" {
		t.Errorf("checkpoint of task shop under source %q (%v), want the source file's source-id", source, err)
	}
}

// TestParseArgsFiles: flags override the files; a file holding a password
// that others may read is warned about; DM features are refused by name.
func TestParseArgsFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := write("source.yaml", "source-id: s1\nfrom: {host: 10.0.0.1, port: 3307, user: repl, password: secret}\nserver-id: 77\n", 0o644)
	var stderr bytes.Buffer
	cfg, err := parseArgs([]string{"-config", "task.example.yaml", "-source-config", src, "-to", "u:pw@127.0.0.1:2",
		"-source", "mysql-replica-01", "-workers", "4", "-mode", "all", "-tables", "db.t"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "readable by others (mode 0644)") {
		t.Errorf("no warning about the password file: %q", stderr.String())
	}
	if cfg.up.Host != "10.0.0.1" || cfg.up.Port != 3307 || cfg.up.Password != "secret" || cfg.up.ServerID != 77 || cfg.down.Port != 2 ||
		cfg.source.Name != "mysql-replica-01" || cfg.task.Name != "shop" || cfg.task.Mode != "all" || cfg.task.Workers != 4 ||
		cfg.task.BatchSize != 100 || len(cfg.task.Filter.DoDBs) != 0 || cfg.task.Filter.DoTables[0].Name != "t" || len(cfg.task.Routes) != 1 {
		t.Errorf("config %+v / %+v / %+v", cfg.up, cfg.source, cfg.task)
	}
	if err := os.Chmod(src, 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if _, err := parseArgs([]string{"-config", "task.example.yaml", "-source-config", src, "-to", "u:pw@127.0.0.1:2"}, &stderr); err == nil ||
		!strings.Contains(err.Error(), `no source "s1"`) {
		t.Errorf("the source file's source-id not in the task: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("a private file warned: %q", stderr.String())
	}
	bad := write("bad.yaml", "name: t\ntask-mode: all\nis-sharding: true\n", 0o600)
	if _, err := parseArgs([]string{"-config", bad, "-from", "u:pw@127.0.0.1:1", "-to", "u:pw@127.0.0.1:2"}, &stderr); err == nil ||
		!strings.Contains(err.Error(), `"is-sharding": a DM feature dmworker does not have`) {
		t.Errorf("is-sharding: %v", err)
	}
}
