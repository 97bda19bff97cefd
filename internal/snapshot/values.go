package snapshot

import (
	"fmt"
	"strconv"
	"unsafe"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dmworker/dmworker/internal/schema"
)

// Value converts one value as go-sql-driver's binary protocol returns it
// (the connection's character set utf8mb4, its time zone UTC) into the Go
// type the Sink contract gives its column (see dmworker.Change): the same
// value the syncer produces from a row event for the same row.
func Value(v any, col *schema.ColumnDef) (any, error) {
	return value(v, col, false)
}

// valueOwned is Value for a v whose bytes the caller hands over: text
// values share them instead of copying.
func valueOwned(v any, col *schema.ColumnDef) (any, error) {
	return value(v, col, true)
}

// text returns b as a string: sharing its bytes when owned.
func text(b []byte, owned bool) string {
	if owned && len(b) > 0 {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

func value(v any, col *schema.ColumnDef, owned bool) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch col.TypeCode {
	case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong:
		return integer(v, col)
	case mysql.TypeYear:
		switch x := v.(type) {
		case int64:
			return x, nil
		case []byte:
			return strconv.ParseInt(string(x), 10, 64)
		}
	case mysql.TypeBit:
		if b, ok := v.([]byte); ok {
			if len(b) > 8 {
				return nil, fmt.Errorf("column %s: BIT value of %d bytes", col.Name, len(b))
			}
			var u uint64
			for _, c := range b {
				u = u<<8 | uint64(c)
			}
			return u, nil
		}
	case mysql.TypeFloat:
		switch x := v.(type) {
		case float32:
			return x, nil
		case float64:
			return float32(x), nil
		}
	case mysql.TypeDouble:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		}
	case mysql.TypeNewDecimal, mysql.TypeDate, mysql.TypeDatetime, mysql.TypeTimestamp, mysql.TypeDuration,
		mysql.TypeEnum, mysql.TypeSet, mysql.TypeJSON:
		if b, ok := v.([]byte); ok {
			return text(b, owned), nil
		}
	case mysql.TypeGeometry:
		if b, ok := v.([]byte); ok {
			return b, nil
		}
	case mysql.TypeString:
		if b, ok := v.([]byte); ok {
			if col.Binary {
				// BINARY(n): all n bytes, zero padding included, as the
				// syncer restores them (internal/rows): a value without
				// its padding is not equal to the stored one.
				return b, nil
			}
			return text(b, owned), nil
		}
	default:
		if b, ok := v.([]byte); ok {
			if col.Binary {
				return b, nil
			}
			return text(b, owned), nil
		}
	}
	if s, ok := v.(string); ok {
		return value([]byte(s), col, true)
	}
	return nil, fmt.Errorf("column %s (%s): unexpected value of type %T from the server", col.Name, col.Type, v)
}

func integer(v any, col *schema.ColumnDef) (any, error) {
	switch x := v.(type) {
	case int64:
		if col.Unsigned {
			if x < 0 {
				return nil, fmt.Errorf("column %s (%s): negative value %d", col.Name, col.Type, x)
			}
			return uint64(x), nil
		}
		return x, nil
	case []byte:
		// The driver sends unsigned BIGINT values above MaxInt64 as text.
		if col.Unsigned {
			return strconv.ParseUint(string(x), 10, 64)
		}
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return integer([]byte(x), col)
	}
	return nil, fmt.Errorf("column %s (%s): unexpected value of type %T from the server", col.Name, col.Type, v)
}

// Size is the number of bytes a converted value stands for, for progress.
func Size(v any) int {
	switch x := v.(type) {
	case nil:
		return 0
	case string:
		return len(x)
	case []byte:
		return len(x)
	case float32:
		return 4
	}
	return 8
}
