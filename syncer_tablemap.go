package dmworker

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/schema"
)

// MariaDB's COMPRESSED column types (field_comp.h), which go-mysql does
// not know: it reads their metadata as empty, and the metadata of every
// column after them, and then their values, from the wrong bytes.
const (
	typeBlobCompressed    = 140
	typeVarcharCompressed = 141
)

// checkTableMapColumns refuses, with ErrUnsupportedColumn, a table map
// whose columns go-mysql cannot decode: a COMPRESSED column, or a column
// metadata block of another length than the column types call for (a
// type whose metadata go-mysql reads as empty). raw is the event's bytes,
// header included.
func checkTableMapColumns(e *replication.TableMapEvent, raw []byte) error {
	want := 0
	for _, t := range e.ColumnType {
		switch t {
		case typeBlobCompressed, typeVarcharCompressed:
			return fmt.Errorf("%w: a MariaDB COMPRESSED column (type %d)", ErrUnsupportedColumn, t)
		case mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_VAR_STRING,
			mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BIT:
			want += 2
		case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_GEOMETRY,
			mysql.MYSQL_TYPE_VECTOR, mysql.MYSQL_TYPE_JSON, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_DATETIME2,
			mysql.MYSQL_TYPE_TIMESTAMP2:
			want++
		}
	}
	// The event: a 19-byte header, the table id (6 bytes) and flags (2),
	// the schema and table names (a length byte, the name, a NUL), the
	// column count, the column types, then the metadata's length.
	off := replication.EventHeaderSize + 8
	for _, name := range [][]byte{e.Schema, e.Table} {
		if off >= len(raw) || int(raw[off]) != len(name) || off+1+len(name) >= len(raw) || string(raw[off+1:off+1+len(name)]) != string(name) {
			return nil // not the layout above (an 8-byte table id?): nothing to check against
		}
		off += 1 + len(name) + 1
	}
	if off > len(raw) {
		return nil
	}
	count, _, n := mysql.LengthEncodedInt(raw[off:])
	if count != e.ColumnCount || off+n+int(count) > len(raw) {
		return nil
	}
	off += n + int(count)
	if off >= len(raw) {
		return nil
	}
	metaLen, _, _ := mysql.LengthEncodedInt(raw[off:])
	if metaLen != uint64(want) {
		return fmt.Errorf("%w: %d bytes of column metadata where the column types %v call for %d", ErrUnsupportedColumn, metaLen, e.ColumnType, want)
	}
	return nil
}

// checkOldTemporal refuses, with ErrUnsupportedColumn, a TIME, DATETIME or
// TIMESTAMP column with fractional seconds in MariaDB 5.3's format
// (mysql56_temporal_format=OFF, the default before MariaDB 10.1, kept by
// tables made then). The binlog logs it as the old type, with no metadata
// to tell its size, and go-mysql decodes it as the old type without
// fractions: zeros or another column's bytes, without an error.
func checkOldTemporal(e *replication.TableMapEvent, def *schema.TableDef) error {
	if len(def.Columns) != len(e.ColumnType) {
		return nil // a mismatch that the rows will report
	}
	for i, t := range e.ColumnType {
		switch t {
		case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP:
		default:
			continue
		}
		c := def.Columns[i]
		if _, fsp, ok := strings.Cut(c.Type, "("); ok && !strings.HasPrefix(fsp, "0)") {
			return fmt.Errorf("%w: column %s is %s in MariaDB 5.3's format (mysql56_temporal_format=OFF when it was made), which the binlog decoder cannot read: ALTER TABLE ... FORCE upstream rewrites it in the current one",
				ErrUnsupportedColumn, c.Name, c.Type)
		}
	}
	return nil
}
