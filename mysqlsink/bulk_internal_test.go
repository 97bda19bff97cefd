package mysqlsink

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestAppendLoadEscaped checks the word-at-a-time scan against escaping
// byte by byte, on strings of every length up to 40 made of bytes that need
// escaping and bytes close to them.
func TestAppendLoadEscaped(t *testing.T) {
	naive := func(s []byte) []byte {
		var out []byte
		for _, c := range s {
			switch c {
			case 0:
				out = append(out, '\\', '0')
			case '\t':
				out = append(out, '\\', 't')
			case '\n':
				out = append(out, '\\', 'n')
			case '\\':
				out = append(out, '\\', '\\')
			default:
				out = append(out, c)
			}
		}
		return out
	}
	alphabet := []byte{0, 1, '\t', '\n', 8, 11, '\\', '[', 'a', 0x80, 0xff, 0x5b, 0x0a ^ 0x80}
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 40; n++ {
		for range 200 {
			s := make([]byte, n)
			for i := range s {
				s[i] = alphabet[rnd.IntN(len(alphabet))]
				if rnd.IntN(3) > 0 {
					s[i] = 'x' // mostly plain, so the fast path runs
				}
			}
			want := naive(s)
			if got := appendLoadEscaped([]byte("p"), s); !bytes.Equal(got[1:], want) || got[0] != 'p' {
				t.Fatalf("%q: got %q, want %q", s, got[1:], want)
			}
			if got := appendLoadEscaped(nil, string(s)); !bytes.Equal(got, want) {
				t.Fatalf("string %q: got %q, want %q", s, got, want)
			}
		}
	}
}
