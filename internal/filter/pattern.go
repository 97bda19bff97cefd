package filter

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
)

// pattern is a compiled schema or table pattern (syntax in doc.go).
type pattern struct {
	src   string
	elems []elem         // glob form
	re    *regexp.Regexp // ~regex form
}

// elem is one element of a glob: a star, or a set of bytes that one byte of
// the name must belong to.
type elem struct {
	star bool
	set  *[256]bool
	lit  bool // the set is a single literal byte
}

func compilePattern(src string, caseSensitive, allowRegex bool) (*pattern, error) {
	if src == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if strings.HasPrefix(src, "~") {
		if !allowRegex {
			return nil, fmt.Errorf("pattern %q: regular expressions (~...) are only supported in block/allow lists", src)
		}
		expr := src[1:]
		if !caseSensitive {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", src, err)
		}
		return &pattern{src: src, re: re}, nil
	}
	s := src
	if !caseSensitive {
		s = strings.ToLower(s)
	}
	p := &pattern{src: src}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*':
			if n := len(p.elems); n > 0 && p.elems[n-1].star {
				continue // ** is *
			}
			p.elems = append(p.elems, elem{star: true})
		case '?':
			var set [256]bool
			for b := range set {
				set[b] = true
			}
			p.elems = append(p.elems, elem{set: &set})
		case '[':
			end := strings.IndexByte(s[i+1:], ']')
			if end < 0 {
				p.elems = append(p.elems, literal('['))
				continue
			}
			p.elems = append(p.elems, class(s[i+1:i+1+end]))
			i += end + 1
		default:
			p.elems = append(p.elems, literal(c))
		}
	}
	return p, nil
}

// matchesAll reports whether the pattern is the glob "*", which matches
// every name.
func (p *pattern) matchesAll() bool {
	return p.re == nil && len(p.elems) == 1 && p.elems[0].star
}

func literal(c byte) elem {
	var set [256]bool
	set[c] = true
	return elem{set: &set, lit: true}
}

// class builds [...]'s set from its inside.
func class(body string) elem {
	var set [256]bool
	neg := strings.HasPrefix(body, "!")
	if neg {
		body = body[1:]
	}
	for i := 0; i < len(body); i++ {
		if i+2 < len(body) && body[i+1] == '-' {
			lo, hi := body[i], body[i+2]
			for b := int(lo); b <= int(hi); b++ {
				set[b] = true
			}
			i += 2
			continue
		}
		set[body[i]] = true
	}
	if neg {
		for b := range set {
			set[b] = !set[b]
		}
	}
	return elem{set: &set}
}

// match reports whether name (already lower-cased when case-insensitive)
// matches the pattern.
func (p *pattern) match(name string) bool {
	if p.re != nil {
		return p.re.MatchString(name)
	}
	// Iterative glob matching with backtracking to the last star: linear
	// in practice, O(len(p)*len(name)) at worst.
	pi, ni := 0, 0
	starP, starN := -1, 0
	for ni < len(name) {
		switch {
		case pi < len(p.elems) && p.elems[pi].star:
			starP, starN = pi, ni
			pi++
		case pi < len(p.elems) && p.elems[pi].set[name[ni]]:
			pi++
			ni++
		case starP >= 0:
			starN++
			pi, ni = starP+1, starN
		default:
			return false
		}
	}
	for pi < len(p.elems) && p.elems[pi].star {
		pi++
	}
	return pi == len(p.elems)
}

// specificity orders patterns from the most general to the most exact: a
// name without wildcards beats any pattern; then more literal bytes win,
// then more single-byte wildcards, then fewer stars.
type specificity struct {
	exact, literals, singles, stars int
}

func (p *pattern) specificity() specificity {
	var s specificity
	for _, e := range p.elems {
		switch {
		case e.star:
			s.stars++
		case e.lit:
			s.literals++
		default:
			s.singles++
		}
	}
	if s.stars == 0 && s.singles == 0 {
		s.exact = 1
	}
	return s
}

func compareSpecificity(a, b specificity) int {
	return cmp.Or(cmp.Compare(a.exact, b.exact), cmp.Compare(a.literals, b.literals),
		cmp.Compare(a.singles, b.singles), cmp.Compare(b.stars, a.stars))
}

// overlaps reports whether some name matches both glob patterns.
func overlaps(a, b *pattern) bool {
	type state struct{ i, j int }
	seen := map[state]bool{}
	var walk func(i, j int) bool
	walk = func(i, j int) bool {
		st := state{i, j}
		if seen[st] {
			return false
		}
		seen[st] = true
		ae, be := i < len(a.elems), j < len(b.elems)
		if !ae && !be {
			return true
		}
		if ae && a.elems[i].star && (walk(i+1, j) || (be && walk(i, j+1))) {
			return true
		}
		if be && b.elems[j].star && (walk(i, j+1) || (ae && walk(i+1, j))) {
			return true
		}
		if ae && be && !a.elems[i].star && !b.elems[j].star && intersect(a.elems[i].set, b.elems[j].set) {
			return walk(i+1, j+1)
		}
		return false
	}
	return walk(0, 0)
}

func intersect(x, y *[256]bool) bool {
	for i := range x {
		if x[i] && y[i] {
			return true
		}
	}
	return false
}

// systemSchemas are never replicated.
var systemSchemas = []string{"mysql", "information_schema", "performance_schema", "sys"}

// IsSystemSchema reports whether schema is one of the server's own
// (compared case-insensitively, as DM does).
func IsSystemSchema(schema string) bool {
	for _, s := range systemSchemas {
		if strings.EqualFold(schema, s) {
			return true
		}
	}
	return false
}
