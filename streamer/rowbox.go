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
	slabInt16
	slabUint16
	slabInt32
	slabUint32
	slabInt64
	slabUint64
	slabInt
	slabFloat32
	slabFloat64
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
	kindInt16:       slabInt16,
	kindUint16:      slabUint16,
	kindInt24:       slabInt32,
	kindUint24:      slabUint32,
	kindInt32:       slabInt32,
	kindUint32:      slabUint32,
	kindInt64:       slabInt64,
	kindUint64:      slabUint64,
	kindFloat:       slabFloat32,
	kindDouble:      slabFloat64,
	kindDecimal:     slabDecimal,
	kindYear:        slabInt,
	kindDate:        slabString,
	kindDatetime2:   slabString,
	kindTimestamp2:  slabString,
	kindEnum1:       noSlab,
	kindEnum2:       slabInt64,
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
	i16   []int16
	u16   []uint16
	i32   []int32
	u32   []uint32
	i64   []int64
	u64   []uint64
	ints  []int
	f32   []float32
	f64   []float64
	dec   []decimal.Decimal
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

// str boxes a string.
func (vs *valueSlabs) str(v string) any { return boxIn(&vs.strs, slabString, vs, typString, v) }
