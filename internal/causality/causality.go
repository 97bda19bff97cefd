// Package causality decides which of a syncer's parallel workers may apply a
// row change: changes that touch the same row, or the same value of a unique
// key, must be applied in upstream order, on one worker; unrelated changes
// may go to any worker.
//
// A change is reduced to keys: one 64-bit hash per primary or unique key of
// its table, for its old and its new row. The Tracker remembers, for every key
// with a change still queued or being applied, the worker that took it and
// the change's sequence number. A change whose keys are held by one worker
// goes to that worker; one whose keys are held by none goes to the worker its
// first key hashes to; one whose keys are held by several must wait until all
// but one of them have applied what they hold.
//
// Hash collisions only make unrelated changes look related: they cost
// parallelism, never correctness.
package causality

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// KeyDef is one key of a table: the indexes of its columns and, per column,
// whether its values are text compared through a collation (then keys are
// folded so that values a case- or accent-insensitive collation calls equal
// share a key), and the length of the key part when the key keeps only a
// prefix of the values (characters of a string, bytes of a []byte; 0 or
// missing for whole values: values that share the prefix share a key).
type KeyDef struct {
	Columns []int
	Fold    []bool
	Prefix  []int
}

// Hasher computes keys. It is not safe for concurrent use.
type Hasher struct {
	h maphash.Hash
	b []byte
}

// NewHasher returns a Hasher with the given seed (one seed per run, so that
// keys compare within it).
func NewHasher(seed maphash.Seed) *Hasher {
	h := &Hasher{}
	h.h.SetSeed(seed)
	return h
}

// AppendKeys appends to dst the keys of row in table (an identifier of the
// table, e.g. its downstream name): one per key in keys whose values are all
// non-NULL (NULLs never collide in a unique key). It returns dst unchanged
// when none applies.
func (h *Hasher) AppendKeys(dst []uint64, table string, keys []KeyDef, row []any) []uint64 {
	for ki, k := range keys {
		if len(k.Columns) == 0 {
			continue
		}
		h.h.Reset()
		h.h.WriteString(table)
		h.h.WriteByte(0)
		h.h.WriteByte(byte(ki))
		null := false
		for ci, c := range k.Columns {
			if c < 0 || c >= len(row) || row[c] == nil {
				null = true
				break
			}
			v := row[c]
			if ci < len(k.Prefix) && k.Prefix[ci] > 0 {
				v = prefixOf(v, k.Prefix[ci])
			}
			h.b = appendValue(h.b[:0], v, ci < len(k.Fold) && k.Fold[ci])
			h.h.Write(h.b)
		}
		if !null {
			dst = append(dst, h.h.Sum64())
		}
	}
	return dst
}

// prefixOf returns the first n characters of a string, the first n bytes
// of a []byte, other values as they are.
func prefixOf(v any, n int) any {
	switch x := v.(type) {
	case string:
		for i := range x {
			if n == 0 {
				return x[:i]
			}
			n--
		}
	case []byte:
		if len(x) > n {
			return x[:n]
		}
	}
	return v
}

// TableKey is the key that stands for a whole table, for changes to rows
// that no key identifies.
func (h *Hasher) TableKey(table string) uint64 {
	h.h.Reset()
	h.h.WriteString(table)
	h.h.WriteByte(0xff)
	return h.h.Sum64()
}

// appendValue appends a self-delimiting encoding of a contract value.
func appendValue(b []byte, v any, fold bool) []byte {
	switch x := v.(type) {
	case int64:
		b = append(b, 'i')
		return binary.LittleEndian.AppendUint64(b, uint64(x))
	case uint64:
		b = append(b, 'u')
		return binary.LittleEndian.AppendUint64(b, x)
	case float64:
		b = append(b, 'f')
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	case float32:
		b = append(b, 'g')
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	case string:
		if fold {
			x = Fold(x)
		}
		b = append(b, 's')
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case []byte:
		b = append(b, 'b')
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case nil:
		return append(b, 'n')
	}
	// Not a contract type: every such value shares one key, which only
	// serialises.
	return append(b, '?')
}

// Fold maps s to a form shared by every string a case-, accent- and
// trailing-space-insensitive collation calls equal to it (it may merge more,
// which is harmless). ASCII without upper case or trailing spaces is
// returned as is.
func Fold(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || ('A' <= c && c <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return strings.TrimRight(s, " ")
	}
	var out strings.Builder
	out.Grow(len(s))
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue // accents
		}
		out.WriteRune(unicode.ToLower(unicode.ToUpper(r)))
	}
	return strings.TrimRight(out.String(), " ")
}

// Tracker remembers which worker holds which key. It is used by one
// goroutine (the dispatcher); Applied reports the workers' progress.
type Tracker struct {
	// Applied returns the highest sequence number worker w has applied
	// (everything it was given up to that number is applied).
	Applied func(w int) uint64
	owners  map[uint64]owner
	limit   int
}

type owner struct {
	w   int32
	seq uint64
}

// NewTracker returns a Tracker reading progress through applied.
func NewTracker(applied func(w int) uint64) *Tracker {
	return &Tracker{Applied: applied, owners: map[uint64]owner{}, limit: 1 << 16}
}

// Holders appends to dst, for each key still held (its change not yet
// applied), the holding worker and the sequence number it must reach, one
// entry per worker with the highest such number.
func (t *Tracker) Holders(dst []Hold, keys []uint64) []Hold {
	for _, k := range keys {
		o, ok := t.owners[k]
		if !ok || t.Applied(int(o.w)) >= o.seq {
			continue
		}
		found := false
		for i := range dst {
			if dst[i].Worker == int(o.w) {
				dst[i].Seq = max(dst[i].Seq, o.seq)
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, Hold{Worker: int(o.w), Seq: o.seq})
		}
	}
	return dst
}

// Hold says worker Worker holds a key until it has applied Seq.
type Hold struct {
	Worker int
	Seq    uint64
}

// Take records that worker w holds keys until it has applied seq. Now and
// then it forgets keys whose changes are applied.
func (t *Tracker) Take(w int, seq uint64, keys []uint64) {
	for _, k := range keys {
		t.owners[k] = owner{int32(w), seq}
	}
	if len(t.owners) > t.limit {
		for k, o := range t.owners {
			if t.Applied(int(o.w)) >= o.seq {
				delete(t.owners, k)
			}
		}
		// Keep sweeping rare: next time at twice what is still held.
		t.limit = max(1<<16, 2*len(t.owners))
	}
}

// Len returns how many keys are remembered.
func (t *Tracker) Len() int { return len(t.owners) }

// AppendKey appends an encoding of row's values in key k, prefixes cut and
// text folded as in AppendKeys, NULL encoded: rows that may be one row of a
// collation-compared or prefix key encode alike (as with AppendKeys, more
// may; never fewer).
func AppendKey(dst []byte, k KeyDef, row []any) []byte {
	for ci, c := range k.Columns {
		v := row[c]
		if ci < len(k.Prefix) && k.Prefix[ci] > 0 {
			v = prefixOf(v, k.Prefix[ci])
		}
		dst = appendValue(dst, v, ci < len(k.Fold) && k.Fold[ci])
	}
	return dst
}

// AppendExact appends an exact encoding of row's values in cols (no
// folding, NULL encoded): equal encodings mean equal values.
func AppendExact(dst []byte, cols []int, row []any) []byte {
	for _, c := range cols {
		dst = appendValue(dst, row[c], false)
	}
	return dst
}
