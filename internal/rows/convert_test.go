package rows

import (
	"bytes"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/shopspring/decimal"

	"github.com/dmworker/dmworker/internal/schema"
)

func TestConvert(t *testing.T) {
	u := &schema.ColumnDef{Name: "u", Unsigned: true}
	s := &schema.ColumnDef{Name: "s"}
	enum := &schema.ColumnDef{Name: "e", EnumValues: []string{"a", "b", "c"}}
	set := &schema.ColumnDef{Name: "st", SetValues: []string{"x", "y", "z"}}
	bin := &schema.ColumnDef{Name: "b", Binary: true}
	txt := &schema.ColumnDef{Name: "t"}
	cases := []struct {
		name string
		v    any
		col  *schema.ColumnDef
		tp   byte
		meta uint16
		want any
	}{
		{"null", nil, s, mysql.MYSQL_TYPE_LONG, 0, nil},
		{"tinyint", int8(-5), s, mysql.MYSQL_TYPE_TINY, 0, int64(-5)},
		{"tinyint unsigned decoded signed", int8(-1), u, mysql.MYSQL_TYPE_TINY, 0, uint64(255)},
		{"smallint unsigned", int16(-2), u, mysql.MYSQL_TYPE_SHORT, 0, uint64(65534)},
		{"mediumint unsigned", int32(-1), u, mysql.MYSQL_TYPE_INT24, 0, uint64(1<<24 - 1)},
		{"int unsigned", int32(-1), u, mysql.MYSQL_TYPE_LONG, 0, uint64(1<<32 - 1)},
		{"bigint unsigned max", int64(-1), u, mysql.MYSQL_TYPE_LONGLONG, 0, uint64(1<<64 - 1)},
		{"bigint min", int64(-1 << 63), s, mysql.MYSQL_TYPE_LONGLONG, 0, int64(-1 << 63)},
		{"already unsigned", uint32(7), u, mysql.MYSQL_TYPE_LONG, 0, uint64(7)},
		{"year", int(2024), s, mysql.MYSQL_TYPE_YEAR, 0, int64(2024)},
		{"decimal keeps scale", decimal.RequireFromString("1.5"), s, mysql.MYSQL_TYPE_NEWDECIMAL, 10<<8 | 2, "1.50"},
		{"decimal big", decimal.RequireFromString("-12345678901234567890.123456789"), s, mysql.MYSQL_TYPE_NEWDECIMAL, 65<<8 | 9, "-12345678901234567890.123456789"},
		{"bit", int64(5), s, mysql.MYSQL_TYPE_BIT, 0, uint64(5)},
		{"enum", int64(2), enum, mysql.MYSQL_TYPE_STRING, 0, "b"},
		{"enum error value", int64(0), enum, mysql.MYSQL_TYPE_STRING, 0, ""},
		{"set", int64(5), set, mysql.MYSQL_TYPE_STRING, 0, "x,z"},
		{"set empty", int64(0), set, mysql.MYSQL_TYPE_STRING, 0, ""},
		{"binary from string", "a\x00b", bin, mysql.MYSQL_TYPE_STRING, 0, []byte("a\x00b")},
		{"text from bytes", []byte("héllo 🥝"), txt, mysql.MYSQL_TYPE_BLOB, 0, "héllo 🥝"},
		{"blob stays bytes", []byte{0, 0xff}, bin, mysql.MYSQL_TYPE_BLOB, 0, []byte{0, 0xff}},
		{"geometry stays bytes", []byte{1, 2}, txt, mysql.MYSQL_TYPE_GEOMETRY, 0, []byte{1, 2}},
		{"datetime string", "2024-01-02 03:04:05.123456", txt, mysql.MYSQL_TYPE_DATETIME2, 6, "2024-01-02 03:04:05.123456"},
		{"float", float32(1.5), s, mysql.MYSQL_TYPE_FLOAT, 4, float32(1.5)},
	}
	for _, tc := range cases {
		got, err := Convert(tc.v, tc.col, "", tc.tp, tc.meta)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if gb, ok := got.([]byte); ok {
			if wb, ok := tc.want.([]byte); !ok || !bytes.Equal(gb, wb) {
				t.Fatalf("%s: got %q (%T), want %q", tc.name, got, got, tc.want)
			}
			continue
		}
		if got != tc.want {
			t.Fatalf("%s: got %v (%T), want %v (%T)", tc.name, got, got, tc.want, tc.want)
		}
	}
	for _, bad := range []struct {
		v   any
		col *schema.ColumnDef
	}{{int64(4), enum}, {int64(8), set}, {struct{}{}, s}} {
		if _, err := Convert(bad.v, bad.col, "", mysql.MYSQL_TYPE_STRING, 0); err == nil {
			t.Fatalf("%v: no error", bad.v)
		}
	}
}

func TestConvertCharsets(t *testing.T) {
	lat := &schema.ColumnDef{Name: "l", Charset: "latin1"}
	inherit := &schema.ColumnDef{Name: "i"}
	cases := []struct {
		v       any
		col     *schema.ColumnDef
		tableCS string
		want    string
	}{
		{"\xe9 \xf1 \xfc \x80", lat, "utf8mb4", "é ñ ü €"}, // MySQL's latin1 is cp1252
		{[]byte("caf\xe9"), inherit, "latin1", "café"},
		{"\xb0\xa1", &schema.ColumnDef{Name: "g", Charset: "gbk"}, "", "啊"},
		{"héllo 🥝", inherit, "utf8mb4", "héllo 🥝"},
		{"plain", inherit, "", "plain"},
	}
	for _, tc := range cases {
		got, err := Convert(tc.v, tc.col, tc.tableCS, mysql.MYSQL_TYPE_VARCHAR, 0)
		if err != nil || got != tc.want {
			t.Fatalf("%q in %s/%s: got %q, %v; want %q", tc.v, tc.col.Charset, tc.tableCS, got, err, tc.want)
		}
	}
}

// TestConvertRestoresBinaryPadding: the binlog leaves out a BINARY(n)
// value's trailing zero bytes; the value must be the column's n bytes, or a
// key ending in 0x00 is never found.
func TestConvertRestoresBinaryPadding(t *testing.T) {
	col := &schema.ColumnDef{Name: "id", Type: "binary(4)", Binary: true, TypeCode: mysql.MYSQL_TYPE_STRING}
	for _, tc := range []struct{ in, want string }{{"", "\x00\x00\x00\x00"}, {"\x01\x02", "\x01\x02\x00\x00"}, {"\x01\x02\x03\x04", "\x01\x02\x03\x04"}} {
		got, err := Convert(tc.in, col, "", mysql.MYSQL_TYPE_STRING, 0)
		if err != nil || !bytes.Equal(got.([]byte), []byte(tc.want)) {
			t.Errorf("BINARY(4) %x: %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
	vb := &schema.ColumnDef{Name: "v", Type: "varbinary(4)", Binary: true}
	if got, _ := Convert("\x01", vb, "", mysql.MYSQL_TYPE_VARCHAR, 0); !bytes.Equal(got.([]byte), []byte("\x01")) {
		t.Errorf("VARBINARY padded: %x", got)
	}
}

// TestToUTF8UTF32: utf32 text is decoded (it passed through as raw bytes).
func TestToUTF8UTF32(t *testing.T) {
	got, err := ToUTF8("\x00\x01\xf9\x5d\x00\x00\x00a", "utf32")
	if err != nil || got != "🥝a" {
		t.Fatalf("utf32: %q, %v", got, err)
	}
}
