package compare

import (
	"math"
	"testing"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dmworker/dmworker/internal/schema"
)

func TestFloatEqual(t *testing.T) {
	for _, c := range []struct {
		a, b   float64
		digits int
		want   bool
	}{
		{1.5, 1.5, 6, true},
		{1.5, float64(float32(1.5000001)), 6, true}, // one FLOAT ulp
		{1.5, 1.5001, 6, false},
		{123.456, 123.457, 6, false},
		{float64(float32(123.456)), float64(float32(123.457)), 6, false},
		{1.000004, 1.000006, 6, true},  // either side of a boundary
		{1.000002, 1.000008, 6, false}, // 0.6 units, rounding apart
		{-0.1, -0.10000000000000002, 15, true},
		{-0.1, -0.1001, 15, false},
		{0, math.Copysign(0, -1), 15, true},
		{1.7976931348623157e308, 1.7976931348623155e308, 15, true},
		{1e-300, 2e-300, 15, false},
		{0, 1e-300, 15, false},
	} {
		if got := FloatEqual(c.a, c.b, c.digits); got != c.want {
			t.Errorf("FloatEqual(%v, %v, %d) = %v, want %v", c.a, c.b, c.digits, got, c.want)
		}
	}
}

func TestEqualJSON(t *testing.T) {
	col := Column{Kind: JSON}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{`{"a": 1, "b": [1, 2]}`, `{"b":[1,2],"a":1}`, true},
		{`1.0`, `1.0E0`, true},
		{`1`, `1.0`, true},
		{`[1, 2]`, `[2, 1]`, false},
		{`{"a": null}`, `{}`, false},
		{`"x"`, `"y"`, false},
		{`12345678901234567890`, `12345678901234567891`, false},
	} {
		if got := Equal(col, c.a, c.b); got != c.want {
			t.Errorf("Equal(JSON %s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	if Equal(Column{}, nil, "x") || !Equal(Column{}, nil, nil) {
		t.Error("NULL compares wrong")
	}
	if Equal(Column{}, []byte("a "), []byte("a")) {
		t.Error("binary values compare other than byte for byte")
	}
}

func TestSum(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"", "1:2", "1:2"},
		{"1:2", "3:4", "4:6"},
		{"18446744073709551615", "1", "18446744073709551616"},
		{"0", "0", "0"},
	} {
		if got := Sum(c.a, c.b); got != c.want {
			t.Errorf("Sum(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestLiteral(t *testing.T) {
	dec := &schema.ColumnDef{TypeCode: mysql.TypeNewDecimal}
	bit := &schema.ColumnDef{TypeCode: mysql.TypeBit}
	str := &schema.ColumnDef{TypeCode: mysql.TypeVarchar}
	for _, c := range []struct {
		col  *schema.ColumnDef
		v    any
		want string
	}{
		{str, nil, "NULL"},
		{str, int64(-5), "-5"},
		{str, uint64(18446744073709551615), "18446744073709551615"},
		{bit, uint64(5), "b'101'"},
		{str, float32(0.1), "0.1"},
		{str, 0.1, "0.1"},
		{dec, "-1.50", "-1.50"},
		{str, "it's \\ \n\x00", `'it\'s \\ \n\0'`},
		{str, []byte{0, 0xff}, "X'00FF'"},
	} {
		if got := Literal(c.col, c.v); got != c.want {
			t.Errorf("Literal(%v) = %s, want %s", c.v, got, c.want)
		}
	}
}

func TestRange(t *testing.T) {
	a := &schema.ColumnDef{Name: "a", TypeCode: mysql.TypeLong}
	b := &schema.ColumnDef{Name: "b", TypeCode: mysql.TypeNewDecimal}
	where, args := Range([]*schema.ColumnDef{a, b}, []any{1, "2"}, []any{3, "4"})
	want := "((`a` > ?) OR (`a` = ? AND `b` > CAST(? AS DECIMAL(65,30))) OR (`a` = ? AND `b` = CAST(? AS DECIMAL(65,30)))) AND ((`a` < ?) OR (`a` = ? AND `b` < CAST(? AS DECIMAL(65,30))))"
	if where != want || len(args) != 8 {
		t.Errorf("Range = %s %v\nwant %s", where, args, want)
	}
	if where, _ := Range([]*schema.ColumnDef{a}, nil, nil); where != "" {
		t.Errorf("unbounded Range = %q", where)
	}
}

func TestJSONColumns(t *testing.T) {
	got := JSONColumns("CREATE TABLE t (`j` longtext CHECK (json_valid(`j`)), `k``x` longtext CHECK (json_valid(`k``x`)), `v` text)")
	if !got["j"] || !got["k`x"] || got["v"] || len(got) != 2 {
		t.Errorf("JSONColumns = %v", got)
	}
}
