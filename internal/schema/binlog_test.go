package schema

import (
	"context"
	"testing"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/go-mysql-org/go-mysql/replication"
)

// TestBinlogColumnsMatchTracker checks, against MariaDB's own row events,
// that the tracker's column list is the one row images carry: same count and
// order (generated VIRTUAL and STORED columns and INVISIBLE columns included),
// same names (binlog_row_metadata=FULL), and BinlogType equal to the table
// map's type codes.
func TestBinlogColumnsMatchTracker(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 203, RowMetadata: "FULL"})
	db := m.DB(t)
	m.Exec(t, "CREATE DATABASE bl")
	tables := map[string]string{
		"gen": "CREATE TABLE bl.gen (a int, v int as (a*10) virtual, s int as (a*100) persistent, i int invisible default 7, b int)",
		"types": `CREATE TABLE bl.types (id bigint unsigned primary key, t tinyint, sm smallint, md mediumint, it int, de decimal(20,6),
			f float, d double, bi bit(10), y year, dt date, tm time(3), dtm datetime(6), ts timestamp(2) null,
			c char(5), vc varchar(300), bn binary(4), vb varbinary(10), tt tinytext, tx text, mt mediumtext, lt longtext,
			tb tinyblob, bb blob, mb mediumblob, lb longblob, e enum('a','b'), st set('x','y'), j json,
			g geometry, p point, u uuid, i6 inet6, i4 inet4)`,
	}
	tr := New()
	ctx := context.Background()
	for name, q := range tables {
		m.Exec(t, q)
		var ct string
		if err := db.QueryRowContext(ctx, "SHOW CREATE TABLE bl."+name).Scan(new(string), &ct); err != nil {
			t.Fatal(err)
		}
		if err := tr.CreateFromSQL("bl", ct); err != nil {
			t.Fatalf("seed %s: %v", name, err)
		}
	}
	m.Exec(t, "INSERT INTO bl.gen (a, b) VALUES (1, 2)")
	m.Exec(t, "INSERT INTO bl.types (id) VALUES (1)")

	files, err := m.BinlogFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	p := replication.NewBinlogParser()
	for _, f := range files {
		err := p.ParseFile(f, 4, func(e *replication.BinlogEvent) error {
			tm, ok := e.Event.(*replication.TableMapEvent)
			if !ok || string(tm.Schema) != "bl" {
				return nil
			}
			name := string(tm.Table)
			seen[name] = true
			d, ok := tr.Table("bl", name)
			if !ok {
				t.Errorf("table map for untracked %s", name)
				return nil
			}
			if int(tm.ColumnCount) != len(d.Columns) {
				t.Errorf("%s: binlog has %d columns, tracker %d", name, tm.ColumnCount, len(d.Columns))
				return nil
			}
			for i, c := range d.Columns {
				if i < len(tm.ColumnName) && string(tm.ColumnName[i]) != c.Name {
					t.Errorf("%s column %d: binlog name %q, tracker %q", name, i, tm.ColumnName[i], c.Name)
				}
				if tm.ColumnType[i] != c.BinlogType() {
					t.Errorf("%s.%s (%s): binlog type %d, BinlogType %d", name, c.Name, c.Type, tm.ColumnType[i], c.BinlogType())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name := range tables {
		if !seen[name] {
			t.Errorf("no table map event for %s", name)
		}
	}
}
