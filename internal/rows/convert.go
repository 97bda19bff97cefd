// Package rows turns row images decoded by go-mysql into the values the Sink
// contract promises (see dmworker.Change), using the tracked column
// definitions: signedness, ENUM and SET members, binary or text, decimal
// scale.
package rows

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/shopspring/decimal"

	"github.com/dmworker/dmworker/internal/schema"
)

// Convert converts one decoded value of column col, whose binlog type code and
// metadata are tp and meta (from the table map event), in place of v. Text
// is decoded from the column's character set (col.Charset, else
// tableCharset) into UTF-8.
func Convert(v any, col *schema.ColumnDef, tableCharset string, tp byte, meta uint16) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch x := v.(type) {
	case int8:
		return signed(int64(x), col, 8), nil
	case int16:
		return signed(int64(x), col, 16), nil
	case int32:
		if tp == mysql.MYSQL_TYPE_INT24 {
			return signed(int64(x), col, 24), nil
		}
		return signed(int64(x), col, 32), nil
	case int64:
		switch {
		case len(col.EnumValues) > 0:
			return enumName(x, col)
		case len(col.SetValues) > 0:
			return setNames(x, col)
		case tp == mysql.MYSQL_TYPE_BIT:
			return uint64(x), nil
		}
		return signed(x, col, 64), nil
	case int:
		return int64(x), nil // YEAR
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case float32, float64:
		return x, nil
	case decimal.Decimal:
		// Keep the column's scale: 1.50 stays "1.50".
		return x.StringFixed(int32(meta & 0xff)), nil
	case string:
		if col.Binary {
			return padBinary([]byte(x), col), nil
		}
		return text(x, col, tableCharset)
	case []byte:
		if col.Binary || tp == mysql.MYSQL_TYPE_GEOMETRY {
			return x, nil
		}
		return text(string(x), col, tableCharset)
	}
	return nil, fmt.Errorf("column %s (%s): unexpected decoded value of type %T", col.Name, col.Type, v)
}

// padBinary restores the trailing zero bytes of a BINARY(n) value, which
// the binlog leaves out (as it leaves out CHAR's trailing spaces): a key
// 0x0102 in a BINARY(4) column is 0x01020000, and a WHERE clause with 0x0102
// would find nothing.
func padBinary(b []byte, col *schema.ColumnDef) []byte {
	if !strings.HasPrefix(col.Type, "binary(") {
		return b
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(col.Type, "binary("), ")"))
	if err != nil || len(b) >= n {
		return b
	}
	return append(b, make([]byte, n-len(b))...)
}

func text(s string, col *schema.ColumnDef, tableCharset string) (any, error) {
	cs := col.Charset
	if cs == "" {
		cs = tableCharset
	}
	if col.TypeCode == mysql.MYSQL_TYPE_JSON {
		return s, nil // JSON text is utf8mb4 whatever the table's charset
	}
	out, err := ToUTF8(s, cs)
	if err != nil {
		return nil, fmt.Errorf("column %s: decoding %s text: %w", col.Name, cs, err)
	}
	return out, nil
}

// signed returns v as int64, or as uint64 reinterpreting its bits when the
// column is unsigned (go-mysql decodes unsigned columns as signed when the
// binlog carries no signedness, as with binlog_row_metadata=MINIMAL).
func signed(v int64, col *schema.ColumnDef, bits uint) any {
	if !col.Unsigned {
		return v
	}
	if bits == 64 {
		return uint64(v)
	}
	return uint64(v) & (1<<bits - 1)
}

func enumName(idx int64, col *schema.ColumnDef) (any, error) {
	switch {
	case idx == 0:
		return "", nil // MySQL's error value for invalid enum input
	case idx < 0 || idx > int64(len(col.EnumValues)):
		return nil, fmt.Errorf("column %s: enum index %d out of %d members", col.Name, idx, len(col.EnumValues))
	}
	return col.EnumValues[idx-1], nil
}

func setNames(bits int64, col *schema.ColumnDef) (any, error) {
	if n := len(col.SetValues); n < 64 && uint64(bits)>>uint(n) != 0 {
		return nil, fmt.Errorf("column %s: set bits %#x beyond its %d members", col.Name, bits, n)
	}
	var names []string
	for i, name := range col.SetValues {
		if uint64(bits)&(1<<uint(i)) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ","), nil
}
