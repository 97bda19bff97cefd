package streamer

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"testing"

	"github.com/shopspring/decimal"
)

// TestBoxedValuesOutliveTheirEvent: values boxed in an event's slabs
// (rowbox.go) have the dynamic type and value a plain conversion gives,
// and keep them after everything else of the event is dropped and the
// collector has run with the heap churned, so that freed memory would be
// reused: the interfaces' data pointers keep the slabs alive.
func TestBoxedValuesOutliveTheirEvent(t *testing.T) {
	cols := []colLayout{
		{kind: kindInt16}, {kind: kindUint16}, {kind: kindInt24}, {kind: kindUint24},
		{kind: kindInt32}, {kind: kindUint32}, {kind: kindInt64}, {kind: kindUint64},
		{kind: kindFloat}, {kind: kindDouble}, {kind: kindDecimal, prec: 12, dec: 2},
		{kind: kindYear}, {kind: kindDate}, {kind: kindDatetime2, dec: 6}, {kind: kindTimestamp2, dec: 3},
		{kind: kindEnum2}, {kind: kindString1}, {kind: kindString2}, {kind: kindBlob, n: 2},
	}
	// image i holds values derived from i, all of them at least 256 (the
	// runtime boxes smaller integers without allocating).
	image := func(i int) ([]byte, []any) {
		b := make([]byte, 3) // no NULL among 19 columns
		v := 1000 + i
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
		b = binary.LittleEndian.AppendUint16(b, uint16(v+1))
		b = append(b, byte(v), byte(v>>8), 0)
		b = append(b, byte(v+2), byte((v+2)>>8), 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(v+3))
		b = binary.LittleEndian.AppendUint32(b, uint32(v+4))
		b = binary.LittleEndian.AppendUint64(b, uint64(v+5))
		b = binary.LittleEndian.AppendUint64(b, uint64(v+6))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)+0.5))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)+0.25))
		b = append(b, 0x80, 0, 0, byte(v>>8), byte(v), 7) // DECIMAL(12,2) v.07
		b = append(b, 124)                                // YEAR 2024
		b = append(b, 0x41, 0xd1, 0x0f)                   // DATE 2024-10-01
		ymd := uint64((2024*13+2)<<5 | 29)
		dt := ymd<<17 | uint64(i%24)<<12 + 0x8000000000
		b = append(b, byte(dt>>32), byte(dt>>24), byte(dt>>16), byte(dt>>8), byte(dt), 0, 0, byte(i))
		b = binary.BigEndian.AppendUint32(b, 1700000000+uint32(i))
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint16(b, uint16(v+7))
		s := string(rune('a' + i%26))
		b = append(b, 1, s[0])
		b = append(b, 2, 0, s[0], s[0])
		b = append(b, 3, 0, s[0], s[0], s[0])
		want := []any{int16(v), uint16(v + 1), int32(v), uint32(v + 2), int32(v + 3), uint32(v + 4),
			int64(v + 5), uint64(v + 6), float32(v) + 0.5, float64(v) + 0.25, decimal.New(int64(v)*100+7, -2),
			2024, "2024-10-01", "2024-02-29 " + twoDigits(i%24) + ":00:00.0000" + twoDigits(i%256%100),
			"2023-11-14 22:" + twoDigits(13+i/60) + ":" + twoDigits((20+i)%60) + ".000", int64(v + 7), s, s + s, []byte(s + s + s)}
		return b, want
	}
	bitmap := []byte{0xff, 0xff, 0x07}
	var counts [numSlabs]int
	for _, c := range cols {
		if k := slabOf[c.kind]; k != noSlab {
			counts[k]++
		}
	}
	const images = 40
	var kept []any
	var wantKept []any
	{
		vs := valueSlabs{counts: &counts, images: images}
		for i := range images {
			data, want := image(i)
			row := make([]any, len(cols))
			n, skips, ok := decodeImage(row, bitmap, cols, data, &vs)
			if !ok || n != len(data) || len(skips) != 0 {
				t.Fatalf("image %d: ok %v, took %d of %d bytes, skipped %v", i, ok, n, len(data), skips)
			}
			for j := range want {
				if !reflect.DeepEqual(row[j], want[j]) {
					t.Fatalf("image %d column %d: %#v (%T), want %#v (%T)", i, j, row[j], row[j], want[j], want[j])
				}
			}
			if i == images/2 {
				// One row kept; the rest of the event dropped.
				kept, wantKept = row, want
			}
		}
	}
	for range 3 {
		runtime.GC()
		junk := make([][]byte, 0, 4096)
		for range 4096 {
			junk = append(junk, []byte("0123456789abcdef0123456789abcdef"))
		}
		runtime.KeepAlive(junk)
	}
	for j := range wantKept {
		if !reflect.DeepEqual(kept[j], wantKept[j]) {
			t.Fatalf("after collections, column %d: %#v (%T), want %#v (%T)", j, kept[j], kept[j], wantKept[j], wantKept[j])
		}
	}
}

func twoDigits(v int) string { return string([]byte{byte('0' + v/10%10), byte('0' + v%10)}) }

// TestDecimalInPlace: decimals built with their coefficient in an event's
// arrays equal, field for field, those decimal.New builds (so that a new
// version of shopspring/decimal with other fields is noticed here, not
// only as a slower decoder), and arithmetic on them leaves them as they
// were.
func TestDecimalInPlace(t *testing.T) {
	if !decimalInPlace {
		t.Fatal("decimalFields does not mirror decimal.Decimal: decimals are built by decimal.New")
	}
	counts := [numSlabs]int{slabDecimal: 1}
	vs := valueSlabs{counts: &counts, images: 3}
	vals := []int64{0, 1, -1, 7, -250, 123456789012345678, -999999999999999999, math.MaxInt64, math.MinInt64}
	var got []decimal.Decimal
	for i, v := range vals {
		got = append(got, vs.decimal(v, int32(i)-4))
	}
	for i, v := range vals {
		want := decimal.New(v, int32(i)-4)
		if !reflect.DeepEqual(got[i], want) || got[i].String() != want.String() {
			t.Fatalf("%d: %#v (%s), want %#v (%s)", v, got[i], got[i], want, want)
		}
		sum := got[i].Add(decimal.New(1, 0)).Mul(decimal.New(-3, 2)).Round(1)
		wantSum := want.Add(decimal.New(1, 0)).Mul(decimal.New(-3, 2)).Round(1)
		if !sum.Equal(wantSum) || !reflect.DeepEqual(got[i], want) {
			t.Fatalf("%d: arithmetic gave %s (want %s) and left %s", v, sum, wantSum, got[i])
		}
	}
}

// TestAppendPadded: appendPadded writes what fmt's %0*d writes.
func TestAppendPadded(t *testing.T) {
	for _, w := range []int{0, 1, 2, 4, 6, 9, 12} {
		for _, v := range []uint64{0, 1, 9, 10, 99, 100, 12345, 999999, 1000000, 123456789, 1<<64 - 1} {
			got := string(appendPadded([]byte("x"), v, w))
			want := "x" + fmt.Sprintf("%0*d", w, v)
			if got != want {
				t.Fatalf("%d %d: %q want %q", v, w, got, want)
			}
		}
	}
}
