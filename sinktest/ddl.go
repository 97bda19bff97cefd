package sinktest

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ddlEffect is what a DDL statement does to MemSink's rows.
type ddlEffect struct {
	kind   ddlKind
	tables []tableKey // dropTables, truncateTable
	schema string     // dropSchema
}

type ddlKind uint8

const (
	ddlNone ddlKind = iota // no effect on rows
	ddlDropTables
	ddlTruncateTable
	ddlDropSchema
)

// parseDDLEffect reads just enough of a statement to see whether it drops or
// empties tables, with strings only (MemSink needs no SQL parser):
//
//	DROP [TEMPORARY] TABLE [IF EXISTS] name [, name] ... [RESTRICT | CASCADE]
//	TRUNCATE [TABLE] name
//	DROP {DATABASE | SCHEMA} [IF EXISTS] name
//
// A name is an identifier or a schema-qualified one, bare or in backquotes
// (a backquote inside doubled); an unqualified table name is in
// defaultSchema. Comments (/* */, -- and #) are skipped, including versioned
// /*! */ ones, whose contents are therefore ignored. Anything else, and
// anything it cannot read (one statement only, no ANSI_QUOTES "names"), has
// no effect: ALTER, RENAME and CREATE leave the rows alone, as the layout of
// MemSink's tables follows the Change.Table of the batches.
func parseDDLEffect(query, defaultSchema string) ddlEffect {
	toks, ok := tokenize(query)
	if !ok || len(toks) < 2 {
		return ddlEffect{}
	}
	p := &tokParser{toks: toks}
	switch {
	case p.keyword("DROP"):
		p.keyword("TEMPORARY")
		switch {
		case p.keyword("TABLE"), p.keyword("TABLES"):
			p.ifExists()
			var tables []tableKey
			for {
				k, ok := p.tableName(defaultSchema)
				if !ok {
					return ddlEffect{}
				}
				tables = append(tables, k)
				if !p.punct(",") {
					break
				}
			}
			p.keyword("RESTRICT")
			p.keyword("CASCADE")
			if !p.end() {
				return ddlEffect{}
			}
			return ddlEffect{kind: ddlDropTables, tables: tables}
		case p.keyword("DATABASE"), p.keyword("SCHEMA"):
			p.ifExists()
			name, ok := p.ident()
			if !ok || !p.end() {
				return ddlEffect{}
			}
			return ddlEffect{kind: ddlDropSchema, schema: name}
		}
	case p.keyword("TRUNCATE"):
		p.keyword("TABLE")
		k, ok := p.tableName(defaultSchema)
		if !ok || !p.end() {
			return ddlEffect{}
		}
		return ddlEffect{kind: ddlTruncateTable, tables: []tableKey{k}}
	}
	return ddlEffect{}
}

// token is a word (keyword or bare identifier), a quoted identifier, or one
// punctuation character.
type token struct {
	text   string
	quoted bool // a `quoted` identifier: never a keyword
}

func isWordRune(r rune) bool {
	return r == '_' || r == '$' || r >= utf8.RuneSelf || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// tokenize splits a statement into tokens, skipping whitespace and comments.
// It fails on an unterminated quote or comment.
func tokenize(s string) ([]token, bool) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || (c == '-' && strings.HasPrefix(s[i:], "-- ")) || (c == '-' && strings.HasPrefix(s[i:], "--\n")):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				i = len(s)
			} else {
				i += j + 1
			}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return nil, false
			}
			i += 2 + j + 2
		case c == '`':
			var b strings.Builder
			j := i + 1
			for {
				k := strings.IndexByte(s[j:], '`')
				if k < 0 {
					return nil, false
				}
				b.WriteString(s[j : j+k])
				j += k + 1
				if j < len(s) && s[j] == '`' {
					b.WriteByte('`')
					j++
					continue
				}
				break
			}
			toks = append(toks, token{text: b.String(), quoted: true})
			i = j
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if !isWordRune(r) {
				toks = append(toks, token{text: s[i : i+size]})
				i += size
				continue
			}
			j := i
			for j < len(s) {
				r, size := utf8.DecodeRuneInString(s[j:])
				if !isWordRune(r) {
					break
				}
				j += size
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks, true
}

type tokParser struct {
	toks []token
	i    int
}

// keyword consumes the next token if it is the unquoted word kw.
func (p *tokParser) keyword(kw string) bool {
	if p.i < len(p.toks) && !p.toks[p.i].quoted && strings.EqualFold(p.toks[p.i].text, kw) {
		p.i++
		return true
	}
	return false
}

func (p *tokParser) punct(s string) bool {
	if p.i < len(p.toks) && !p.toks[p.i].quoted && p.toks[p.i].text == s {
		p.i++
		return true
	}
	return false
}

func (p *tokParser) ifExists() {
	save := p.i
	if !(p.keyword("IF") && p.keyword("EXISTS")) {
		p.i = save
	}
}

// ident consumes an identifier: quoted, or a bare word.
func (p *tokParser) ident() (string, bool) {
	if p.i >= len(p.toks) {
		return "", false
	}
	t := p.toks[p.i]
	if !t.quoted {
		r, _ := utf8.DecodeRuneInString(t.text)
		if !isWordRune(r) {
			return "", false
		}
	}
	p.i++
	return t.text, true
}

func (p *tokParser) tableName(defaultSchema string) (tableKey, bool) {
	first, ok := p.ident()
	if !ok {
		return tableKey{}, false
	}
	if p.punct(".") {
		second, ok := p.ident()
		if !ok {
			return tableKey{}, false
		}
		return tableKey{schema: first, name: second}, true
	}
	return tableKey{schema: defaultSchema, name: first}, true
}

// end reports whether only an optional trailing semicolon is left.
func (p *tokParser) end() bool {
	p.punct(";")
	return p.i == len(p.toks)
}
