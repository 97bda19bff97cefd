package sinktest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/dmworker/dmworker"
)

// goType is the Go type the Sink contract gives a column's values.
type goType uint8

const (
	anyType goType = iota // a type the contract does not name: not checked
	int64Type
	uint64Type
	float32Type
	float64Type
	stringType
	bytesType
)

func (g goType) String() string {
	switch g {
	case int64Type:
		return "int64"
	case uint64Type:
		return "uint64"
	case float32Type:
		return "float32"
	case float64Type:
		return "float64"
	case stringType:
		return "string"
	case bytesType:
		return "[]byte"
	}
	return "any"
}

// baseType is the lower-case type name of a column, without length,
// precision, members or attributes: "bigint(20) unsigned" gives "bigint".
func baseType(colType string) string {
	t := strings.ToLower(strings.TrimSpace(colType))
	if i := strings.IndexAny(t, "( "); i >= 0 {
		t = t[:i]
	}
	return t
}

// contractType returns the Go type the contract gives values of col.
func contractType(col dmworker.Column) goType {
	switch baseType(col.Type) {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "bool", "boolean":
		if col.Unsigned || strings.Contains(strings.ToLower(col.Type), "unsigned") {
			return uint64Type
		}
		return int64Type
	case "year":
		return int64Type
	case "decimal", "numeric", "dec", "fixed":
		return stringType
	case "float":
		return float32Type
	case "double", "real":
		return float64Type
	case "bit":
		return uint64Type
	case "date", "time", "datetime", "timestamp", "enum", "set":
		return stringType
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json":
		if col.Binary {
			return bytesType
		}
		return stringType
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
		"geometry", "point", "linestring", "polygon", "multipoint",
		"multilinestring", "multipolygon", "geometrycollection", "geomcollection":
		return bytesType
	}
	return anyType
}

func typeOf(v any) goType {
	switch v.(type) {
	case int64:
		return int64Type
	case uint64:
		return uint64Type
	case float32:
		return float32Type
	case float64:
		return float64Type
	case string:
		return stringType
	case []byte:
		return bytesType
	}
	return anyType
}

// CheckRow reports whether row fits tbl under the Sink contract: one value
// per column, each nil or of the Go type the contract gives the column's
// type (int64, uint64, float32, float64, string or []byte). Columns of types
// the contract does not name accept any of those six types. The error names
// the column and the types, never the value.
func CheckRow(tbl *dmworker.Table, row []any) error {
	if len(row) != len(tbl.Columns) {
		return fmt.Errorf("%d values for the %d columns of %s", len(row), len(tbl.Columns), tbl.QualifiedName())
	}
	for i, v := range row {
		if v == nil {
			continue
		}
		got := typeOf(v)
		if got == anyType {
			return fmt.Errorf("column %s.%s: value of type %T, not one of the contract's types",
				tbl.QualifiedName(), tbl.Columns[i].Name, v)
		}
		if want := contractType(tbl.Columns[i]); want != anyType && got != want {
			return fmt.Errorf("column %s.%s (%s): value of type %s, want %s",
				tbl.QualifiedName(), tbl.Columns[i].Name, tbl.Columns[i].Type, got, want)
		}
	}
	return nil
}

// checkTable reports whether a table description is usable: named, with
// columns, and keys that point at columns.
func checkTable(tbl *dmworker.Table) error {
	if tbl == nil {
		return fmt.Errorf("change without a table")
	}
	if tbl.Name == "" || len(tbl.Columns) == 0 {
		return fmt.Errorf("table %q has no name or no columns", tbl.QualifiedName())
	}
	keys := append([][]int{tbl.PrimaryKey}, tbl.UniqueKeys...)
	for _, k := range keys {
		for _, i := range k {
			if i < 0 || i >= len(tbl.Columns) {
				return fmt.Errorf("table %s: key column index %d out of range", tbl.QualifiedName(), i)
			}
		}
	}
	return nil
}

// typeRank orders values of different Go types: nil first.
func typeRank(v any) int {
	if v == nil {
		return 0
	}
	switch v.(type) {
	case int64:
		return 1
	case uint64:
		return 2
	case float32:
		return 3
	case float64:
		return 4
	case string:
		return 5
	case []byte:
		return 6
	}
	return 7
}

// CompareValues orders two contract values: nil first, then by Go type
// (int64, uint64, float32, float64, string, []byte, anything else), then by
// value (bytes and strings bytewise). It returns -1, 0 or +1.
func CompareValues(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch x := a.(type) {
	case nil:
		return 0
	case int64:
		return cmp.Compare(x, b.(int64))
	case uint64:
		return cmp.Compare(x, b.(uint64))
	case float32:
		return cmp.Compare(x, b.(float32))
	case float64:
		return cmp.Compare(x, b.(float64))
	case string:
		return strings.Compare(x, b.(string))
	case []byte:
		return bytes.Compare(x, b.([]byte))
	}
	return strings.Compare(fmt.Sprintf("%T %v", a, a), fmt.Sprintf("%T %v", b, b))
}

// compareRows orders rows value by value with CompareValues, shorter rows
// first when one is a prefix of the other.
func compareRows(a, b []any) int {
	for i := range min(len(a), len(b)) {
		if c := CompareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// SortRows sorts rows in place in the canonical order of CompareValues, so
// that two tables holding the same rows compare equal element by element.
func SortRows(rows [][]any) {
	slices.SortStableFunc(rows, compareRows)
}

// valueEqual reports whether two contract values are equal: same Go type and
// same value ([]byte by content).
func valueEqual(a, b any) bool {
	return typeRank(a) == typeRank(b) && CompareValues(a, b) == 0
}

// cloneRow copies a row and the byte slices in it, so that stored rows share
// nothing with the caller.
func cloneRow(row []any) []any {
	out := make([]any, len(row))
	for i, v := range row {
		if b, ok := v.([]byte); ok {
			v = bytes.Clone(b)
			if v.([]byte) == nil {
				v = []byte{}
			}
		}
		out[i] = v
	}
	return out
}
