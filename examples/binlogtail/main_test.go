package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// line is one parsed output line.
type line struct {
	typ, pos, gtid, table string
	extra                 []string // rows=N, txn-end, artificial
}

func (l line) String() string {
	return strings.Join(append([]string{l.typ, l.pos, l.gtid, l.table}, l.extra...), "  ")
}

func parseLines(t *testing.T, out string) []line {
	t.Helper()
	var ls []line
	for _, s := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		f := strings.Split(s, "  ")
		if len(f) < 4 {
			t.Fatalf("line %q: want at least 4 fields", s)
		}
		ls = append(ls, line{typ: f[0], pos: f[1], gtid: f[2], table: f[3], extra: f[4:]})
	}
	return ls
}

// tailAll runs the program until the stream has been idle for a second.
func tailAll(t *testing.T, args ...string) []line {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args = append([]string{"-exit-when-idle", "1s"}, args...)
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("run %q: exit %d, stderr:\n%s", args, code, stderr.String())
	}
	return parseLines(t, stdout.String())
}

// txnLines returns the lines of the transaction gtid, without the
// MARIADB_ANNOTATE_ROWS_EVENT lines (their presence depends on the server's
// settings) and without positions.
func txnLines(ls []line, gtid string) []string {
	var out []string
	for _, l := range ls {
		if l.gtid != gtid || l.typ == "MARIADB_ANNOTATE_ROWS_EVENT" {
			continue
		}
		l.pos = ""
		out = append(out, l.String())
	}
	return out
}

func TestRunPrintsWorkload(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 7})
	db := m.DB(t)
	from := fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())

	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(100))")
	var before string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&before); err != nil {
		t.Fatal(err)
	}
	m.Exec(t, `BEGIN;
		INSERT INTO wl.t VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e');
		UPDATE wl.t SET v = 'x' WHERE id <= 3;
		DELETE FROM wl.t WHERE id >= 4;
		COMMIT`)
	var gtid, masterFile string
	var masterPos uint64
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	var ignore1, ignore2 any
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&masterFile, &masterPos, &ignore1, &ignore2); err != nil {
		t.Fatal(err)
	}
	if gtid != "0-7-3" {
		t.Fatalf("gtid_binlog_pos %q: want 0-7-3 (two DDLs, one transaction)", gtid)
	}
	wantTxn := []string{
		"MARIADB_GTID_EVENT    0-7-3  -",
		"TABLE_MAP_EVENT    0-7-3  wl.t",
		"WRITE_ROWS_EVENTv1    0-7-3  wl.t  rows=5",
		"TABLE_MAP_EVENT    0-7-3  wl.t",
		"UPDATE_ROWS_EVENTv1    0-7-3  wl.t  rows=3",
		"TABLE_MAP_EVENT    0-7-3  wl.t",
		"DELETE_ROWS_EVENTv1    0-7-3  wl.t  rows=2",
		"XID_EVENT    0-7-3  -  txn-end",
	}
	end := fmt.Sprintf("%s:%d", masterFile, masterPos)

	t.Run("from oldest binlog", func(t *testing.T) {
		ls := tailAll(t, "-from", from)
		if first := ls[0]; first.typ != "ROTATE_EVENT" || !slices.Contains(first.extra, "artificial") {
			t.Errorf("first line %q: want the artificial ROTATE_EVENT", first)
		}
		for _, g := range []string{"0-7-1", "0-7-2"} {
			want := []string{"MARIADB_GTID_EVENT    " + g + "  -", "QUERY_EVENT    " + g + "  -  txn-end"}
			if got := txnLines(ls, g); !slices.Equal(got, want) {
				t.Errorf("DDL %s: got\n%s\nwant\n%s", g, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		if got := txnLines(ls, gtid); !slices.Equal(got, wantTxn) {
			t.Errorf("transaction %s: got\n%s\nwant\n%s", gtid, strings.Join(got, "\n"), strings.Join(wantTxn, "\n"))
		}
		if last := ls[len(ls)-1]; last.pos != end {
			t.Errorf("last line %q: want position %s (SHOW MASTER STATUS)", last, end)
		}
	})

	t.Run("from GTID set", func(t *testing.T) {
		// No -flavor: "0-7-2" reads as a MariaDB set.
		ls := tailAll(t, "-from", from, "-gtid", before)
		var gtids []string
		for _, l := range ls {
			if l.gtid != "-" && !slices.Contains(gtids, l.gtid) {
				gtids = append(gtids, l.gtid)
			}
		}
		if !slices.Equal(gtids, []string{gtid}) {
			t.Errorf("transactions after %s: got %q, want only %s", before, gtids, gtid)
		}
		if got := txnLines(ls, gtid); !slices.Equal(got, wantTxn) {
			t.Errorf("transaction %s: got\n%s\nwant\n%s", gtid, strings.Join(got, "\n"), strings.Join(wantTxn, "\n"))
		}
	})

	t.Run("from position", func(t *testing.T) {
		// Start at the end of the second DDL, as printed by a first run.
		var startAt string
		for _, l := range tailAll(t, "-from", from) {
			if l.gtid == "0-7-2" && slices.Contains(l.extra, "txn-end") {
				startAt = l.pos
			}
		}
		ls := tailAll(t, "-from", from, "-pos", startAt, "-flavor", "mariadb", "-server-id", "4242")
		for _, l := range ls {
			if !slices.Contains(l.extra, "artificial") && l.gtid != gtid {
				t.Errorf("from %s: line %q is not part of %s", startAt, l, gtid)
			}
		}
		// Without the GTID list at the file's start the reader cannot
		// know the executed set, but it still knows each transaction's GTID.
		if got := txnLines(ls, gtid); !slices.Equal(got, wantTxn) {
			t.Errorf("transaction %s: got\n%s\nwant\n%s", gtid, strings.Join(got, "\n"), strings.Join(wantTxn, "\n"))
		}
	})

	t.Run("from a relay directory", func(t *testing.T) {
		dir := t.TempDir()
		up, err := streamer.ParseUpstream(from)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := dmworker.NewRelay(up, dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- rel.Run(t.Context()) }()
		deadline := time.After(time.Minute)
		for {
			pos, changed := rel.Relayed()
			if fmt.Sprintf("%s:%d", pos.Name, pos.Offset) == end {
				break
			}
			select {
			case <-changed:
			case err := <-errc:
				t.Fatalf("relay stopped: %v", err)
			case <-deadline:
				t.Fatalf("relay at %s, want %s", pos, end)
			}
		}
		real := func(ls []line) []string {
			var out []string
			for _, l := range ls {
				if !slices.Contains(l.extra, "artificial") {
					out = append(out, l.String())
				}
			}
			return out
		}
		want := real(tailAll(t, "-from", from))
		// Without -follow: everything the relay holds, then exit 0.
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), []string{"-relay-dir", dir}, &stdout, &stderr); code != 0 {
			t.Fatalf("relay tail: exit %d: %s", code, stderr.String())
		}
		if got := real(parseLines(t, stdout.String())); !slices.Equal(got, want) {
			t.Fatalf("relay tail differs from the upstream's:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// With -follow it waits for the relay to grow: one more
		// transaction shows up before it goes idle.
		m.Exec(t, "INSERT INTO wl.t VALUES (9, 'z')")
		ls := tailAll(t, "-relay-dir", dir, "-follow", "-gtid", gtid)
		var gtids []string
		for _, l := range ls {
			if l.gtid != "-" && !slices.Contains(gtids, l.gtid) {
				gtids = append(gtids, l.gtid)
			}
		}
		if !slices.Equal(gtids, []string{"0-7-4"}) {
			t.Fatalf("following the relay after %s: transactions %q, want 0-7-4", gtid, gtids)
		}
		if err := rel.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("errors hide the password", func(t *testing.T) {
		for _, args := range [][]string{
			{"-from", m.User + ":not-the-S3CRET@" + m.Addr()},
			{"-from", m.User + ":not-the-S3CRET@127.0.0.1:notaport"},
			{"-from", m.User + ":not-the-S3CRET@" + m.Addr(), "-pos", "mysql-bin.999999:4"},
		} {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append(args, "-max-retry", "1s"), &stdout, &stderr)
			if code == 0 {
				t.Errorf("run %q: exit 0, want an error", args[1:])
			}
			if stderr.Len() == 0 || strings.Contains(stderr.String(), "S3CRET") {
				t.Errorf("run %q: stderr %q: want an error without the password", args[1:], stderr.String())
			}
		}
	})
}

func TestParseArgsStart(t *testing.T) {
	const from = "u:p@127.0.0.1:3306"
	for _, tc := range []struct {
		args    []string
		want    string // start position as text, or "error"
		wantFla string // UpstreamConfig.Flavor
	}{
		{args: nil, want: "(none)"},
		{args: []string{"-pos", "mysql-bin.000002:120"}, want: "mysql-bin.000002:120"},
		{args: []string{"-gtid", "0-1-5,1-2-3"}, want: "mariadb-gtid=0-1-5,1-2-3"},
		{args: []string{"-gtid", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}, want: "mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"},
		{args: []string{"-gtid", "", "-flavor", "mysql"}, want: "mysql-gtid=", wantFla: "mysql"},
		{args: []string{"-gtid", ""}, want: "error"},
		{args: []string{"-gtid", "0-1-5", "-flavor", "mysql"}, want: "error"},
		{args: []string{"-gtid", "0-1-5", "-pos", "mysql-bin.000001:4"}, want: "error"},
		{args: []string{"-pos", "mysql-bin.000001:4 mariadb-gtid=0-1-5", "-flavor", "mysql"}, want: "error"},
		{args: []string{"-flavor", "oracle"}, want: "error"},
	} {
		var stderr bytes.Buffer
		cfg, err := parseArgs(append([]string{"-from", from}, tc.args...), &stderr)
		got := "error"
		if err == nil {
			got = cfg.start.String()
		}
		if got != tc.want || err == nil && cfg.up.Flavor != tc.wantFla {
			t.Errorf("%q: start %s flavor %q (err %v), want %s flavor %q", tc.args, got, cfg.up.Flavor, err, tc.want, tc.wantFla)
		}
	}
}
