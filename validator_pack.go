package dmworker

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"unsafe"

	"github.com/shopspring/decimal"
)

// The validator holds the rows it has yet to check packed: a row's values
// as one byte slice, with no pointers in it, instead of a []any of boxed
// values and strings. A packed row is one allocation the garbage collector
// does not scan, where a []any of the same row is one for the slice, one
// for each boxed number and one for each string, every one of them scanned
// at each collection; the validator holds tens of thousands of rows, so
// the difference is most of what it costs the process beside the syncer.

// Value tags of a packed row.
const (
	packNil byte = iota
	packFalse
	packTrue
	packInt8
	packInt16
	packInt32
	packInt64
	packInt
	packUint8
	packUint16
	packUint32
	packUint64
	packUint
	packFloat32
	packFloat64
	packString
	packBytes
	packNilBytes
	packDecimal
)

// packValues appends vals to dst packed, and reports whether it could: a
// value of a type it does not know (time.Time, say) leaves the row to be
// held as it is.
func packValues(dst []byte, vals []any) ([]byte, bool) {
	for _, x := range vals {
		var ok bool
		if dst, ok = packValue(dst, x); !ok {
			return dst, false
		}
	}
	return dst, true
}

// packValue appends x packed to dst, and reports whether it could.
func packValue(dst []byte, x any) ([]byte, bool) {
	switch x := x.(type) {
	case nil:
		dst = append(dst, packNil)
	case bool:
		if x {
			dst = append(dst, packTrue)
		} else {
			dst = append(dst, packFalse)
		}
	case int8:
		dst = binary.AppendVarint(append(dst, packInt8), int64(x))
	case int16:
		dst = binary.AppendVarint(append(dst, packInt16), int64(x))
	case int32:
		dst = binary.AppendVarint(append(dst, packInt32), int64(x))
	case int64:
		dst = binary.AppendVarint(append(dst, packInt64), x)
	case int:
		dst = binary.AppendVarint(append(dst, packInt), int64(x))
	case uint8:
		dst = binary.AppendUvarint(append(dst, packUint8), uint64(x))
	case uint16:
		dst = binary.AppendUvarint(append(dst, packUint16), uint64(x))
	case uint32:
		dst = binary.AppendUvarint(append(dst, packUint32), uint64(x))
	case uint64:
		dst = binary.AppendUvarint(append(dst, packUint64), x)
	case uint:
		dst = binary.AppendUvarint(append(dst, packUint), uint64(x))
	case float32:
		dst = binary.LittleEndian.AppendUint32(append(dst, packFloat32), math.Float32bits(x))
	case float64:
		dst = binary.LittleEndian.AppendUint64(append(dst, packFloat64), math.Float64bits(x))
	case string:
		dst = append(binary.AppendUvarint(append(dst, packString), uint64(len(x))), x...)
	case []byte:
		if x == nil {
			dst = append(dst, packNilBytes)
			break
		}
		dst = append(binary.AppendUvarint(append(dst, packBytes), uint64(len(x))), x...)
	case decimal.Decimal:
		// The coefficient and the exponent: the same digits back,
		// trailing zeros included.
		c := x.Coefficient()
		dst = binary.AppendVarint(append(dst, packDecimal), int64(x.Exponent()))
		dst = append(dst, byte(c.Sign()+1))
		mag := c.Bytes()
		dst = append(binary.AppendUvarint(dst, uint64(len(mag))), mag...)
	default:
		return dst, false
	}
	return dst, true
}

var errPacked = errors.New("validator: a packed row is damaged")

// unpackValues returns the n values packed in b. Strings and byte slices
// share b's bytes (a check reads many rows and keeps none): b must not
// change after (a held row's packed bytes never do), and what uses a
// []byte returned must not write to it.
func unpackValues(b []byte, n int) ([]any, error) {
	out := make([]any, n)
	for i := range out {
		if len(b) == 0 {
			return nil, errPacked
		}
		tag := b[0]
		b = b[1:]
		switch tag {
		case packNil:
		case packFalse:
			out[i] = false
		case packTrue:
			out[i] = true
		case packInt8, packInt16, packInt32, packInt64, packInt:
			v, k := binary.Varint(b)
			if k <= 0 {
				return nil, errPacked
			}
			b = b[k:]
			switch tag {
			case packInt8:
				out[i] = int8(v)
			case packInt16:
				out[i] = int16(v)
			case packInt32:
				out[i] = int32(v)
			case packInt64:
				out[i] = v
			default:
				out[i] = int(v)
			}
		case packUint8, packUint16, packUint32, packUint64, packUint:
			v, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, errPacked
			}
			b = b[k:]
			switch tag {
			case packUint8:
				out[i] = uint8(v)
			case packUint16:
				out[i] = uint16(v)
			case packUint32:
				out[i] = uint32(v)
			case packUint64:
				out[i] = v
			default:
				out[i] = uint(v)
			}
		case packFloat32:
			if len(b) < 4 {
				return nil, errPacked
			}
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b))
			b = b[4:]
		case packFloat64:
			if len(b) < 8 {
				return nil, errPacked
			}
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		case packString, packBytes:
			l, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < l {
				return nil, errPacked
			}
			s := b[k : k+int(l) : k+int(l)]
			b = b[k+int(l):]
			if tag == packString {
				out[i] = unsafe.String(unsafe.SliceData(s), len(s))
			} else {
				out[i] = s
			}
		case packNilBytes:
			out[i] = []byte(nil)
		case packDecimal:
			exp, k := binary.Varint(b)
			if k <= 0 || len(b) < k+1 || exp < math.MinInt32 || exp > math.MaxInt32 {
				return nil, errPacked
			}
			sign := int(b[k]) - 1
			b = b[k+1:]
			l, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < l || sign < -1 || sign > 1 {
				return nil, errPacked
			}
			c := new(big.Int).SetBytes(b[k : k+int(l)])
			b = b[k+int(l):]
			if sign < 0 {
				c.Neg(c)
			}
			out[i] = decimal.NewFromBigInt(c, int32(exp))
		default:
			return nil, errPacked
		}
	}
	if len(b) != 0 {
		return nil, errPacked
	}
	return out, nil
}
