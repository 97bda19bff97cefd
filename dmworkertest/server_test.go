package dmworkertest_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// firstTableMap returns the first table map event r delivers.
func firstTableMap(t *testing.T, r streamer.Reader) *replication.TableMapEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tm, ok := ev.Event.(*replication.TableMapEvent); ok {
			return tm
		}
	}
}

// TestTableMapAsMariaDB checks the table map built for the types table
// against the one a real MariaDB writes for it: column types, metadata and
// nullability.
func TestTableMapAsMariaDB(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 71, RowMetadata: "NO_LOG"})
	db := m.DB(t)
	for _, q := range []string{"CREATE DATABASE db", strings.Replace(typesTable, "CREATE TABLE types", "CREATE TABLE db.types", 1)} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var file, ignore string
	var pos uint64
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &ignore, &ignore); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO db.types (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	up := streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port), User: m.User, Password: m.Password, Flavor: streamer.FlavorMariaDB}
	rr, err := streamer.NewRemoteReader(up, streamer.Position{Name: file, Offset: pos})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	want := firstTableMap(t, rr)

	b := dmworkertest.NewBinlog()
	if err := b.Define("db", "CREATE DATABASE db", typesTable); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b.Begin().Insert("db", "types", typesRow(1, 0)))
	got := firstTableMap(t, b.NewReader(b.Start()))

	if got.ColumnCount != want.ColumnCount {
		t.Fatalf("%d columns, MariaDB's %d", got.ColumnCount, want.ColumnCount)
	}
	for i := range want.ColumnType {
		if got.ColumnType[i] != want.ColumnType[i] || got.ColumnMeta[i] != want.ColumnMeta[i] {
			t.Errorf("column %d: type %d meta %d, MariaDB's type %d meta %d", i+1, got.ColumnType[i], got.ColumnMeta[i], want.ColumnType[i], want.ColumnMeta[i])
		}
	}
	if !bytes.Equal(got.NullBitmap, want.NullBitmap) {
		t.Errorf("null bitmap %x, MariaDB's %x", got.NullBitmap, want.NullBitmap)
	}
	if !slices.Equal(got.Schema, want.Schema) || !slices.Equal(got.Table, want.Table) {
		t.Errorf("table %s.%s, MariaDB's %s.%s", got.Schema, got.Table, want.Schema, want.Table)
	}
}
