package causality

import (
	"hash/maphash"
	"testing"
)

func TestFold(t *testing.T) {
	for _, tc := range [][2]string{
		{"abc", "abc"}, {"ABC", "abc"}, {"abc  ", "abc"}, {"Élan", "elan"}, {"ÉLAN ", "elan"}, {"straße", "straße"}, {"Ǆ", "ǆ"},
	} {
		if got := Fold(tc[0]); got != tc[1] {
			t.Errorf("Fold(%q) = %q, want %q", tc[0], got, tc[1])
		}
	}
}

func TestKeys(t *testing.T) {
	h := NewHasher(maphash.MakeSeed())
	pk := KeyDef{Columns: []int{0}}
	uk := KeyDef{Columns: []int{1}, Fold: []bool{true}}
	ukBin := KeyDef{Columns: []int{2}, Fold: []bool{false}}
	keys := func(row ...any) []uint64 { return h.AppendKeys(nil, "s.t", []KeyDef{pk, uk, ukBin}, row) }

	a := keys(int64(1), "Alice", []byte("x"))
	b := keys(int64(2), "alice ", []byte("X"))
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("keys %v %v", a, b)
	}
	if a[0] == b[0] {
		t.Error("different primary keys share a key")
	}
	if a[1] != b[1] {
		t.Error("values a case-insensitive collation calls equal have different keys")
	}
	if a[2] == b[2] {
		t.Error("different binary values share a key")
	}
	// NULL in a unique key: no key for it.
	if got := keys(int64(1), nil, []byte("x")); len(got) != 2 {
		t.Errorf("row with a NULL unique value: %d keys, want 2", len(got))
	}
	// The same values in another table or another key are other keys.
	other := h.AppendKeys(nil, "s.u", []KeyDef{pk}, []any{int64(1)})
	if other[0] == a[0] {
		t.Error("another table shares a key")
	}
	if x, y := h.AppendKeys(nil, "s.t", []KeyDef{pk}, []any{int64(1)}), h.AppendKeys(nil, "s.t", []KeyDef{pk}, []any{uint64(1)}); x[0] == y[0] {
		t.Error("int64 and uint64 share an encoding")
	}
}

func TestTracker(t *testing.T) {
	applied := []uint64{0, 0, 0}
	tr := NewTracker(func(w int) uint64 { return applied[w] })
	tr.Take(1, 5, []uint64{100, 101})
	tr.Take(2, 6, []uint64{102})
	h := tr.Holders(nil, []uint64{100, 102, 103})
	if len(h) != 2 || h[0] != (Hold{1, 5}) || h[1] != (Hold{2, 6}) {
		t.Fatalf("holders %v", h)
	}
	applied[1] = 5
	if h := tr.Holders(nil, []uint64{100, 101}); len(h) != 0 {
		t.Fatalf("holders after apply: %v", h)
	}
	// Sweeping forgets applied keys only.
	tr.limit = 1
	tr.Take(0, 7, []uint64{104})
	if tr.Len() != 2 {
		t.Fatalf("%d keys after a sweep, want 2 (102 and 104)", tr.Len())
	}
}

// TestPrefixKeys: values that agree on a prefix key's prefix share its key
// (a unique prefix key makes them collide), for text and binary values.
func TestPrefixKeys(t *testing.T) {
	h := NewHasher(maphash.MakeSeed())
	key := func(k KeyDef, v any) uint64 { return h.AppendKeys(nil, "t", []KeyDef{k}, []any{v})[0] }
	p := KeyDef{Columns: []int{0}, Fold: []bool{true}, Prefix: []int{3}}
	if key(p, "🥝bc-one") != key(p, "🥝BC-two") {
		t.Error("text agreeing on 3 characters: different keys")
	}
	if key(p, "abc") == key(p, "abd") {
		t.Error("different prefixes: one key")
	}
	b := KeyDef{Columns: []int{0}, Fold: []bool{false}, Prefix: []int{2}}
	if key(b, []byte{1, 2, 3}) != key(b, []byte{1, 2, 4}) {
		t.Error("bytes agreeing on 2 bytes: different keys")
	}
	whole := KeyDef{Columns: []int{0}, Fold: []bool{true}}
	if key(whole, "abc-one") == key(whole, "abc-two") {
		t.Error("a whole-value key cut")
	}
	if string(AppendKey(nil, p, []any{"ABCD"})) != string(AppendKey(nil, p, []any{"abcx"})) {
		t.Error("AppendKey differs from AppendKeys")
	}
}
