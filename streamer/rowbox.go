package streamer

// Boxing row values without an allocation each.
//
// A row's values are interfaces (go-mysql's [][]any), and boxing a value
// that is not pointer-shaped into an interface allocates a copy of it
// (runtime.convT64, convTstring, ...), but for single bytes and integers
// below 256. With the bench's rows (bench/remoteread) that was some ten
// allocations a row. The row decoder instead stores the values of one
// event's rows in arrays of their Go type, a few per event (valueSlabs),
// and makes each interface point at its value's element: an interface is a
// type pointer and a data pointer, and for a type that is not
// pointer-shaped the data pointer points at a copy of the value the
// interface owns; the copy here is the element, which nothing writes
// again once it has been boxed. The garbage collector follows the data
// pointer into the array as it follows any interior pointer, so an array
// lives as long as one of its values is referenced.
//
// The arrays hold the values of one event only: a row kept alone keeps its
// event's values alive (as it keeps its event's copy of the body, which its
// strings share), never another event's.

import (
	"math"
	"math/big"
	"math/bits"
	"reflect"
	"unsafe"

	"github.com/shopspring/decimal"
)

// eface is the layout of an empty interface: the dynamic type, and a
// pointer to the value (for the types boxed here, which are not
// pointer-shaped).
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// typeOf returns the type word of v's interface.
func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// The type words of the values boxed in slabs.
var (
	typInt16   = typeOf(int16(0))
	typUint16  = typeOf(uint16(0))
	typInt32   = typeOf(int32(0))
	typUint32  = typeOf(uint32(0))
	typInt64   = typeOf(int64(0))
	typUint64  = typeOf(uint64(0))
	typInt     = typeOf(int(0))
	typFloat32 = typeOf(float32(0))
	typFloat64 = typeOf(float64(0))
	typString  = typeOf("")
	typBytes   = typeOf([]byte(nil))
	typDecimal = typeOf(decimal.Decimal{})
)

// slabKind names a valueSlabs array.
type slabKind uint8

const (
	slabString slabKind = iota
	slabBytes
	slabNum // integers and floats, each in a word of its own
	slabDecimal
	numSlabs
	noSlab = numSlabs
)

// slabOf is the array each column kind's values are boxed in (most of
// them: YEAR 0, ENUM of one byte, TINYINT are boxed without allocation).
var slabOf = [...]slabKind{
	kindUnsupported: noSlab,
	kindInt8:        noSlab,
	kindUint8:       noSlab,
	kindInt16:       slabNum,
	kindUint16:      slabNum,
	kindInt24:       slabNum,
	kindUint24:      slabNum,
	kindInt32:       slabNum,
	kindUint32:      slabNum,
	kindInt64:       slabNum,
	kindUint64:      slabNum,
	kindFloat:       slabNum,
	kindDouble:      slabNum,
	kindDecimal:     slabDecimal,
	kindYear:        slabNum,
	kindDate:        slabString,
	kindDatetime2:   slabString,
	kindTimestamp2:  slabString,
	kindEnum1:       noSlab,
	kindEnum2:       slabNum,
	kindString1:     slabString,
	kindString2:     slabString,
	kindBlob:        slabBytes,
}

// valueSlabs holds the values of one event's rows (see the file comment),
// and the bytes of its formatted values (dates, times, long decimals).
type valueSlabs struct {
	arena []byte
	// counts is the values of each slab a row image holds (at most: a
	// NULL or a column left out takes none); images is how many images
	// the rest of the event is guessed to hold. Both size new arrays.
	counts *[numSlabs]int
	images int

	strs  []string
	bytes [][]byte
	dec   []decimal.Decimal
	// bigs and words hold the coefficients of the decimals (decimal).
	bigs  []big.Int
	words []big.Word
	// nums holds the numbers of every type, one a word: none holds a
	// pointer, none is larger than a word or aligned on more.
	nums []uint64
}

// boxIn appends v to *s (a new array when it is full, sized for the
// images guessed to remain) and returns it boxed, typ being its type word.
// The element is never written again.
func boxIn[T any](s *[]T, k slabKind, vs *valueSlabs, typ unsafe.Pointer, v T) any {
	if len(*s) == cap(*s) {
		*s = make([]T, 0, max(vs.counts[k]*vs.images, 4))
	}
	*s = append(*s, v)
	p := unsafe.Pointer(&(*s)[len(*s)-1])
	return *(*any)(unsafe.Pointer(&eface{typ: typ, data: p}))
}

// number is the types boxed in vs.nums.
type number interface {
	int16 | uint16 | int32 | uint32 | int64 | uint64 | int | float32 | float64
}

// boxNum boxes v, a number of at most a word, in a word of vs.nums.
func boxNum[T number](vs *valueSlabs, v T) any {
	s := &vs.nums
	if len(*s) == cap(*s) {
		*s = make([]uint64, 0, max(vs.counts[slabNum]*vs.images, 4))
	}
	*s = append(*s, 0)
	p := unsafe.Pointer(&(*s)[len(*s)-1])
	*(*T)(p) = v
	return *(*any)(unsafe.Pointer(&eface{typ: numType[T](), data: p}))
}

// numType is T's type word.
func numType[T number]() unsafe.Pointer {
	var z T
	switch any(z).(type) {
	case int16:
		return typInt16
	case uint16:
		return typUint16
	case int32:
		return typInt32
	case uint32:
		return typUint32
	case int64:
		return typInt64
	case uint64:
		return typUint64
	case int:
		return typInt
	case float32:
		return typFloat32
	default:
		return typFloat64
	}
}

// str boxes a string.
func (vs *valueSlabs) str(v string) any { return boxIn(&vs.strs, slabString, vs, typString, v) }

// decimal returns decimal.New(v, exp), its coefficient (a big.Int and its
// word) in vs's arrays rather than in two allocations of its own, where
// decimalInPlace allows.
func (vs *valueSlabs) decimal(v int64, exp int32) decimal.Decimal {
	u := uint64(v)
	if v < 0 {
		u = -u
	}
	if !decimalInPlace || bits.UintSize == 32 && u>>32 != 0 {
		return decimal.New(v, exp)
	}
	n := max(vs.counts[slabDecimal]*vs.images, 4)
	if len(vs.bigs) == cap(vs.bigs) {
		// A new array, never a grown one: a big.Int must not be
		// copied once in use.
		vs.bigs = make([]big.Int, 0, n)
	}
	vs.bigs = append(vs.bigs, big.Int{})
	coef := &vs.bigs[len(vs.bigs)-1]
	if v != 0 { // zero is a big.Int without words, as big.NewInt makes it
		if len(vs.words) == cap(vs.words) {
			vs.words = make([]big.Word, 0, n)
		}
		vs.words = append(vs.words, big.Word(u))
		k := len(vs.words)
		// Of capacity 1: nothing the coefficient does can reach the
		// next word.
		coef.SetBits(vs.words[k-1 : k : k])
		if v < 0 {
			coef.Neg(coef)
		}
	}
	return decimalOf(coef, exp)
}

// decimalFields mirrors the fields of shopspring/decimal's Decimal
// (v1.4.0): the coefficient, which no method of Decimal modifies, and the
// exponent. Nothing else of the package is assumed: decimalInPlace checks
// the mirror against decimal.New once, and decimals are built by
// decimal.New when it does not hold.
type decimalFields struct {
	value *big.Int
	exp   int32
}

// decimalOf is the Decimal coef * 10^exp, which keeps coef.
func decimalOf(coef *big.Int, exp int32) decimal.Decimal {
	var d decimal.Decimal
	*(*decimalFields)(unsafe.Pointer(&d)) = decimalFields{value: coef, exp: exp}
	return d
}

// decimalInPlace reports whether decimalOf builds the Decimal decimal.New
// builds: the same size, and the same values, strings, coefficients and
// exponents for a few values.
var decimalInPlace = func() bool {
	if unsafe.Sizeof(decimal.Decimal{}) != unsafe.Sizeof(decimalFields{}) {
		return false
	}
	for _, c := range []struct {
		v   int64
		exp int32
	}{{123456, -2}, {-7, 3}, {0, -4}, {math.MinInt64 + 1, 0}} {
		d, want := decimalOf(big.NewInt(c.v), c.exp), decimal.New(c.v, c.exp)
		if !d.Equal(want) || d.String() != want.String() || d.Exponent() != c.exp ||
			d.Coefficient().Int64() != c.v || !reflect.DeepEqual(d, want) {
			return false
		}
	}
	return true
}()
