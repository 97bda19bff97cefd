package dmworker

import (
	"bytes"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// TestPackValuesRoundTrip: every value a decoded row carries comes back
// from its packed form with its Go type and value (a DECIMAL with its
// trailing zeros); a type the packer does not know is refused, and the row
// is then held as it is.
func TestPackValuesRoundTrip(t *testing.T) {
	in := []any{
		nil, true, false,
		int8(-128), int16(math.MinInt16), int32(math.MaxInt32), int64(math.MinInt64), int64(0), 7,
		uint8(255), uint16(65535), uint32(math.MaxUint32), uint64(math.MaxUint64), uint(3),
		float32(-1.5), float32(math.Inf(1)), math.MaxFloat64, math.SmallestNonzeroFloat64, math.Copysign(0, -1),
		"", "héllo\x00", string(make([]byte, 300)),
		[]byte{}, []byte(nil), []byte{0, 0xff, 1},
		decimal.RequireFromString("1.50"), decimal.RequireFromString("-0.000000000000000000000000000001"),
		decimal.RequireFromString("12345678901234567890123456789012345.123456789012345678901234567890"),
		decimal.RequireFromString("0"), decimal.New(5, 3),
	}
	b, ok := packValues(nil, in)
	if !ok {
		t.Fatal("a known value refused")
	}
	out, err := unpackValues(b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		switch x := in[i].(type) {
		case decimal.Decimal:
			y, ok := out[i].(decimal.Decimal)
			if !ok || y.String() != x.String() || y.Exponent() != x.Exponent() || y.Coefficient().Cmp(x.Coefficient()) != 0 {
				t.Errorf("value %d: %v came back as %#v", i, x, out[i])
			}
		case float64:
			if y, ok := out[i].(float64); !ok || math.Float64bits(x) != math.Float64bits(y) {
				t.Errorf("value %d: %v came back as %#v", i, x, out[i])
			}
		case []byte:
			y, ok := out[i].([]byte)
			if !ok || !bytes.Equal(x, y) || (x == nil) != (y == nil) {
				t.Errorf("value %d: %#v came back as %#v", i, x, out[i])
			}
		default:
			if !reflect.DeepEqual(in[i], out[i]) {
				t.Errorf("value %d: %#v (%T) came back as %#v (%T)", i, in[i], in[i], out[i], out[i])
			}
		}
	}
	// The packed row shares nothing with the values it came from.
	src := []byte("abc")
	b, _ = packValues(nil, []any{src})
	src[0] = 'X'
	if out, _ := unpackValues(b, 1); string(out[0].([]byte)) != "abc" {
		t.Errorf("the packed bytes follow their source: %q", out[0])
	}
	// An unpacked []byte cannot grow into the packed bytes after it.
	b, _ = packValues(nil, []any{[]byte("ab"), "cd"})
	out, _ = unpackValues(b, 2)
	_ = append(out[0].([]byte), 'Z')
	if again, _ := unpackValues(b, 2); again[1] != "cd" {
		t.Errorf("an append to an unpacked []byte changed the next value: %q", again[1])
	}
	if _, ok := packValues(nil, []any{int64(1), time.Now()}); ok {
		t.Error("a time.Time was packed")
	}
	// Too few bytes, a bad tag, bytes left over: refused.
	good, _ := packValues(nil, []any{"abc", int64(300)})
	for _, bad := range [][]byte{good[:len(good)-1], good[:3], append(bytes.Clone(good), 0), {0xee}} {
		if _, err := unpackValues(bad, 2); err == nil {
			t.Errorf("unpack of %x: no error", bad)
		}
	}
}

// TestValidatorRowPacked: a held row is packed, unpacks to the change's
// values, owns its bytes, and one with a value that does not pack is held
// as it is.
func TestValidatorRowPacked(t *testing.T) {
	tb := &Table{Schema: "d", Name: "t", Columns: []Column{{Name: "id"}, {Name: "v"}, {Name: "w"}}, PrimaryKey: []int{0}}
	body := []byte("shared event bytes")
	after := []any{int64(1000), string(body[:6]), body[7:12]}
	r := newRow(tb, tb.PrimaryKey, after, nil)
	if r.packed == nil || r.odd != nil || r.deleted {
		t.Fatalf("row not packed: %+v", r)
	}
	copy(body, "XXXXXXXXXXXXXXXXXX")
	img, kv, err := r.unpack()
	if err != nil || !reflect.DeepEqual(img, []any{int64(1000), "shared", []byte("event")}) || !reflect.DeepEqual(kv, []any{int64(1000)}) {
		t.Fatalf("unpacked %#v %#v (%v)", img, kv, err)
	}
	if r.id != rowID(tb, []any{int64(1000)}) || r.bytes < int64(len(r.id)+len(r.packed)) {
		t.Fatalf("id %q bytes %d", r.id, r.bytes)
	}
	del := newRow(tb, tb.PrimaryKey, nil, []any{int64(5)})
	if img, kv, err := del.unpack(); err != nil || img != nil || !del.deleted || !reflect.DeepEqual(kv, []any{int64(5)}) {
		t.Fatalf("deleted row: %#v %#v (%v)", img, kv, err)
	}
	ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	odd := newRow(tb, tb.PrimaryKey, []any{int64(2), ts, nil}, nil)
	if odd.packed != nil || odd.odd == nil || odd.odd.vals == nil {
		t.Fatalf("a row with a time.Time: %+v", odd)
	}
	if img, kv, err := odd.unpack(); err != nil || !reflect.DeepEqual(img, []any{int64(2), ts, nil}) || !reflect.DeepEqual(kv, []any{int64(2)}) {
		t.Fatalf("unpacked %#v %#v (%v)", img, kv, err)
	}
}

// FuzzUnpackValues: unpacking any bytes returns values or an error, never
// panics, and what it returns packs to bytes that unpack to the same.
func FuzzUnpackValues(f *testing.F) {
	seed, _ := packValues(nil, []any{nil, int64(-5), "x", []byte{1}, decimal.RequireFromString("-1.20"), 2.5, float32(1), uint64(9)})
	f.Add(seed, 8)
	f.Add([]byte{packDecimal, 1, 0, 1, 5}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		vals, err := unpackValues(b, n)
		if err != nil {
			return
		}
		again, ok := packValues(nil, vals)
		if !ok {
			t.Fatalf("unpacked values do not pack: %#v", vals)
		}
		back, err := unpackValues(again, n)
		if err != nil {
			t.Fatalf("%#v packs to %x, which does not unpack: %v", vals, again, err)
		}
		// Compared packed: NaN is not equal to itself.
		if third, _ := packValues(nil, back); !bytes.Equal(third, again) {
			t.Fatalf("%#v packs to %x, which unpacks to %#v, which packs to %x", vals, again, back, third)
		}
	})
}

// BenchmarkValidatorRowBytes holds 100,000 sysbench rows as the validator
// does and reports what they take on the heap per row (runtime.MemStats,
// after a collection) beside what the validator counts for them
// (rowBytes, the figure MemoryBytes bounds):
//
//	go test -run X -bench ValidatorRowBytes -benchtime 3x .
func BenchmarkValidatorRowBytes(b *testing.B) {
	tb := &Table{Schema: "sbtest", Name: "sbtest1", Columns: []Column{{Name: "id"}, {Name: "k"}, {Name: "c"}, {Name: "pad"}}, PrimaryKey: []int{0}}
	c := strings.Repeat("12345678901-", 10)
	pad := strings.Repeat("1234567890-", 5) + "12345"
	const n = 100000
	for range b.N {
		v := newValidator(ValidationConfig{Mode: ValidationFull, MemoryBytes: 1 << 40}, "t", "s", nil, discardLogger())
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for i := range n {
			// Decoded values as the syncer hands them over: their own
			// strings, which the row must not keep.
			v.holdRows(heldRowsOf(&Change{Kind: Insert, Table: tb, After: []any{int64(i), int64(i * 7), strings.Clone(c), strings.Clone(pad)}}))
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "heap-B/row")
		v.mu.Lock()
		b.ReportMetric(float64(v.heldBytes)/n, "counted-B/row")
		v.mu.Unlock()
		runtime.KeepAlive(v)
	}
}
