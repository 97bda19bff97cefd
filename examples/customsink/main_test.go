package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

func TestRunPrintsJSON(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 73})
	db := m.DB(t)
	from := fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE DATABASE other")
	m.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(10), b VARBINARY(4))")
	m.Exec(t, "CREATE TABLE other.x (id INT PRIMARY KEY)")
	var file string
	var offset uint64
	var a, b any
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &offset, &a, &b); err != nil {
		t.Fatal(err)
	}
	m.Exec(t, "INSERT INTO wl.t VALUES (1, 'a', 0x00ff), (2, NULL, NULL)")
	m.Exec(t, "INSERT INTO other.x VALUES (1)")
	m.Exec(t, "UPDATE wl.t SET v = 'z' WHERE id = 1")
	m.Exec(t, "DELETE FROM wl.t WHERE id = 2")

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := []string{"-from", from, "-tables", "wl.*", "-start", fmt.Sprintf("%s:%d", file, offset), "-exit-when-idle", "1s"}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), m.Password) {
		t.Error("output shows the password")
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		delete(v, "pos")
		n, _ := json.Marshal(v) // sorted keys
		got = append(got, string(n))
	}
	want := []string{
		`{"after":{"b":"AP8=","id":1,"v":"a"},"before":null,"kind":"insert","table":"wl.t"}`,
		`{"after":{"b":null,"id":2,"v":null},"before":null,"kind":"insert","table":"wl.t"}`,
		`{"after":{"b":"AP8=","id":1,"v":"z"},"before":{"b":"AP8=","id":1,"v":"a"},"kind":"update","table":"wl.t"}`,
		`{"after":null,"before":{"b":null,"id":2,"v":null},"kind":"delete","table":"wl.t"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
