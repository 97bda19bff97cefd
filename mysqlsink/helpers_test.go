package mysqlsink_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server starts a throwaway MariaDB for one test.
func server(t *testing.T, id uint32) *testserver.MariaDB {
	t.Helper()
	return testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: id})
}

// openDB opens a pool on m with cfg adjusted by edit, closed at the end of
// the test.
func openDB(t *testing.T, m *testserver.MariaDB, edit func(*mysql.Config)) *sql.DB {
	t.Helper()
	cfg := m.Config("")
	cfg.Logger = &mysql.NopLogger{}
	if edit != nil {
		edit(cfg)
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newSink(t *testing.T, db *sql.DB, opts ...mysqlsink.Option) *mysqlsink.Sink {
	t.Helper()
	s, err := mysqlsink.New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func quote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// createTable creates tbl in db (dropping any table of that name) from its
// columns, primary key and unique keys.
func createTable(t *testing.T, db *sql.DB, tbl *dmworker.Table) {
	t.Helper()
	exec(t, db, "CREATE DATABASE IF NOT EXISTS "+quote(tbl.Schema))
	name := quote(tbl.Schema) + "." + quote(tbl.Name)
	exec(t, db, "DROP TABLE IF EXISTS "+name)
	var defs []string
	for _, c := range tbl.Columns {
		null := " NOT NULL"
		if c.Nullable {
			null = " NULL"
		}
		defs = append(defs, quote(c.Name)+" "+c.Type+null)
	}
	keyCols := func(k []int) string {
		var cols []string
		for _, i := range k {
			cols = append(cols, quote(tbl.Columns[i].Name))
		}
		return "(" + strings.Join(cols, ",") + ")"
	}
	if len(tbl.PrimaryKey) > 0 {
		defs = append(defs, "PRIMARY KEY "+keyCols(tbl.PrimaryKey))
	}
	for i, uk := range tbl.UniqueKeys {
		defs = append(defs, fmt.Sprintf("UNIQUE KEY uk%d %s", i, keyCols(uk)))
	}
	exec(t, db, "CREATE TABLE "+name+" (\n  "+strings.Join(defs, ",\n  ")+"\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
}

// readRows reads schema.table through a prepared statement (the binary
// protocol carries FLOAT exactly, the text protocol rounds it to 6 digits)
// and converts each value to the Go type the dmworker.Change contract
// gives its column type.
func readRows(t *testing.T, db *sql.DB, schema, table string) [][]any {
	t.Helper()
	ctx := context.Background()
	st, err := db.PrepareContext(ctx, "SELECT * FROM "+quote(schema)+"."+quote(table))
	if err != nil {
		t.Fatalf("read %s.%s: %v", schema, table, err)
	}
	defer st.Close()
	rows, err := st.QueryContext(ctx)
	if err != nil {
		t.Fatalf("read %s.%s: %v", schema, table, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cts))
		ptrs := make([]any, len(cts))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			c, err := contractValue(cts[i].DatabaseTypeName(), v)
			if err != nil {
				t.Fatalf("read %s.%s column %s: %v", schema, table, cts[i].Name(), err)
			}
			vals[i] = c
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// contractValue converts a value scanned by go-sql-driver (binary protocol)
// into the contract's type for a column of the driver's type name.
func contractValue(typeName string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	text := func() string {
		switch x := v.(type) {
		case []byte:
			return string(x)
		case string:
			return x
		}
		return fmt.Sprint(v)
	}
	switch typeName {
	case "TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT", "YEAR":
		if x, ok := v.(int64); ok {
			return x, nil
		}
		return strconv.ParseInt(text(), 10, 64)
	case "UNSIGNED TINYINT", "UNSIGNED SMALLINT", "UNSIGNED MEDIUMINT", "UNSIGNED INT", "UNSIGNED BIGINT":
		switch x := v.(type) {
		case int64:
			return uint64(x), nil
		case uint64:
			return x, nil
		}
		return strconv.ParseUint(text(), 10, 64)
	case "FLOAT":
		switch x := v.(type) {
		case float32:
			return x, nil
		case float64:
			return float32(x), nil
		}
		f, err := strconv.ParseFloat(text(), 32)
		return float32(f), err
	case "DOUBLE":
		if x, ok := v.(float64); ok {
			return x, nil
		}
		return strconv.ParseFloat(text(), 64)
	case "BIT":
		b, ok := v.([]byte)
		if !ok || len(b) > 8 {
			return nil, fmt.Errorf("BIT value %T %v", v, v)
		}
		var buf [8]byte
		copy(buf[8-len(b):], b)
		return binary.BigEndian.Uint64(buf[:]), nil
	case "BINARY", "VARBINARY", "TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB", "GEOMETRY":
		b, ok := v.([]byte)
		if !ok {
			return nil, fmt.Errorf("%s value %T", typeName, v)
		}
		return append([]byte{}, b...), nil
	}
	// DECIMAL, temporal types, character types, ENUM, SET, JSON.
	return text(), nil
}

// harness runs the conformance suite against mysqlsink on db.
func harness(db *sql.DB, opts ...mysqlsink.Option) sinktest.Harness {
	return sinktest.Harness{
		New: func(t *testing.T) dmworker.Sink { return newSink(t, db, opts...) },
		Rows: func(t *testing.T, _ dmworker.Sink, schema, table string) [][]any {
			return readRows(t, db, schema, table)
		},
		Prepare: func(t *testing.T, _ dmworker.Sink, tbl *dmworker.Table) { createTable(t, db, tbl) },
	}
}

// col describes a column; "unsigned" in the type sets Unsigned.
func col(name, typ string, nullable bool) dmworker.Column {
	return dmworker.Column{Name: name, Type: typ, Nullable: nullable, Unsigned: strings.Contains(typ, "unsigned")}
}

func apply(t *testing.T, s dmworker.Sink, b *dmworker.Batch) {
	t.Helper()
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// openNowhere returns a pool whose connections all fail (nothing listens on
// port 1), for tests that must not reach a server.
func openNowhere(t *testing.T) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = "127.0.0.1:1"
	cfg.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
