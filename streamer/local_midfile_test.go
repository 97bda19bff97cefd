package streamer_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// sixesOptions is a server whose row events are annotated with their
// statement (MariaDB's default, made explicit).
func sixesOptions(serverID uint32) testserver.MariaDBOptions {
	return testserver.MariaDBOptions{ServerID: serverID, ExtraArgs: []string{"--binlog-annotate-row-events=ON"}}
}

// sixesTable creates d.t, which sixesInsert fills.
func sixesTable(t testing.TB, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE d")
	mustExec(t, db, "CREATE TABLE d.t (v VARBINARY(2000))")
}

// sixesInsert inserts rows rows of size bytes into d.t in one transaction.
// The statement begins with a comment of 160 bytes 0x06, which its annotate
// event carries: in the binlog the transaction holds 0x06 from about its
// 64th byte (after the GTID event and the annotate event's header) to its
// 220th. A reader that took a 6 found there for the
// table map's post-header length (the old format's, with 4-byte table ids)
// reads the schema name's first letter as the table name's length and
// refuses the table map ("table map with 0 columns").
func sixesInsert(t testing.TB, db *sql.DB, rows, size int) {
	t.Helper()
	row := fmt.Sprintf("(REPEAT(X'06', %d))", size)
	mustExec(t, db, "/*"+strings.Repeat("\x06", 160)+"*/ INSERT INTO d.t VALUES "+strings.TrimSuffix(strings.Repeat(row+", ", rows), ", "))
}

// TestLocalReaderMidFileStartInBigFile: a reader started at any transaction
// boundary of a relay file much bigger than its read buffer delivers exactly
// the events the file holds from there. (A start in the middle of a file
// used to keep the file's format description as a slice of the read buffer:
// once the buffer was refilled from the start, the post-header lengths were
// whatever bytes of the relay lay there, and a table map was refused as
// corrupt when one of them read as 6.)
func TestLocalReaderMidFileStartInBigFile(t *testing.T) {
	m := testserver.StartMariaDB(t, sixesOptions(900))
	db := m.DB(t)
	sixesTable(t, db)
	for range 4 {
		sixesInsert(t, db, 45, 2000) // about 90 KiB a transaction
	}
	for i := range 12 {
		sixesInsert(t, db, 1, i+1)
	}
	dir := t.TempDir()
	sub := streamer.SubDirName("900", 1)
	files := localCopyRelay(t, m, dir, sub, true)
	if len(files) != 1 {
		t.Fatalf("%d binlog files, want 1", len(files))
	}
	st, err := os.Stat(filepath.Join(dir, sub, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 320<<10 {
		t.Fatalf("relay file of %d bytes; want more than the reader's buffer (256 KiB)", st.Size())
	}
	all := localRelayEvents(t, dir, sub)
	ctx := testCtx(t)
	starts := 0
	for i, k := range all {
		if k.Type != replication.XID_EVENT {
			continue
		}
		starts++
		start := streamer.Position{Name: k.File, Offset: k.End}
		t.Run(start.String(), func(t *testing.T) {
			r := newLocal(t, dir, streamer.StartAtPosition(start), streamer.WithFollow(false))
			var got []evKey
			for _, ev := range localReadAll(ctx, t, r) {
				if !ev.Artificial() {
					got = append(got, evKey{File: ev.Pos.Name, End: ev.Pos.Offset, Type: ev.Header.EventType, Raw: string(ev.RawData)})
				}
			}
			want := all[i+1:]
			if len(got) != len(want) {
				t.Fatalf("%d events from %s, the file holds %d", len(got), start, len(want))
			}
			for j := range want {
				if got[j] != want[j] {
					t.Fatalf("event %d: got %s, want %s", j, got[j], want[j])
				}
			}
		})
	}
	if starts != 16 {
		t.Fatalf("%d transactions, want 16", starts)
	}
}
