package schema

import "strings"

// A small SQL lexer, enough to classify statements the TiDB parser rejects
// and to rewrite a few MariaDB-only forms before parsing (see compat.go). It
// never decides what a statement does to a table: that is always the
// parser's job.

type tokKind uint8

const (
	tkSpace     tokKind = iota // whitespace
	tkComment                  // -- ..., # ..., /* ... */ (not executable ones)
	tkWord                     // unquoted identifier, keyword or number
	tkQuoted                   // `identifier`, or "identifier" under ANSI_QUOTES
	tkString                   // '...', or "..." without ANSI_QUOTES
	tkPunct                    // any other single byte
	tkExecOpen                 // /*!NNNNN or /*M!NNNNNN: its content is SQL
	tkExecClose                // the */ closing an executable comment
)

type token struct {
	kind tokKind
	text string
}

// significant reports whether t carries meaning (not space or comment).
func (t token) significant() bool {
	return t.kind != tkSpace && t.kind != tkComment && t.kind != tkExecOpen && t.kind != tkExecClose
}

// upper is the token's text in upper case for words, as is for the rest.
func (t token) upper() string {
	if t.kind == tkWord {
		return strings.ToUpper(t.text)
	}
	return t.text
}

// isWord reports whether t is the unquoted word w (case-insensitive).
func (t token) isWord(w string) bool { return t.kind == tkWord && strings.EqualFold(t.text, w) }

// lex splits s into tokens whose texts concatenate back to s, in the default
// sql_mode. It never fails: an unterminated quote or comment runs to the end.
func lex(s string) []token { return lexMode(s, 0) }

// lexMode is lex under mode: with ANSI_QUOTES "..." is a quoted name, with
// NO_BACKSLASH_ESCAPES a backslash in a string escapes nothing.
func lexMode(s string, mode SQLMode) []token {
	ansiQuotes := mode&ModeANSIQuotes != 0
	backslash := mode&ModeNoBackslashEscapes == 0
	var toks []token
	inExec := false
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
				i++
			}
			toks = append(toks, token{tkSpace, s[start:i]})
		case c == '#' || (c == '-' && strings.HasPrefix(s[i:], "--") && (i+2 == len(s) || s[i+2] == ' ' || s[i+2] == '\t' || s[i+2] == '\n' || s[i+2] == '\r')):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			toks = append(toks, token{tkComment, s[start:i]})
		case inExec && c == '*' && strings.HasPrefix(s[i:], "*/"):
			i += 2
			inExec = false
			toks = append(toks, token{tkExecClose, s[start:i]})
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			if !inExec && (strings.HasPrefix(s[i:], "/*!") || strings.HasPrefix(s[i:], "/*M!")) {
				i += 3
				if s[i-1] != '!' {
					i++
				}
				for i < len(s) && s[i] >= '0' && s[i] <= '9' {
					i++
				}
				inExec = true
				toks = append(toks, token{tkExecOpen, s[start:i]})
				continue
			}
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				i = len(s)
			} else {
				i += 2 + end + 2
			}
			toks = append(toks, token{tkComment, s[start:i]})
		case c == '`' || c == '\'' || c == '"':
			i++
			for i < len(s) {
				if s[i] == '\\' && backslash && c != '`' && !(c == '"' && ansiQuotes) && i+1 < len(s) {
					i += 2
					continue
				}
				if s[i] == c {
					if i+1 < len(s) && s[i+1] == c { // doubled quote
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
			kind := tkString
			if c == '`' || c == '"' && ansiQuotes {
				kind = tkQuoted
			}
			toks = append(toks, token{kind, s[start:i]})
		case isWordByte(c):
			for i < len(s) && isWordByte(s[i]) {
				i++
			}
			toks = append(toks, token{tkWord, s[start:i]})
		default:
			i++
			toks = append(toks, token{tkPunct, s[start:i]})
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 ||
		(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// significantTokens returns the tokens that carry meaning, in order.
func significantTokens(toks []token) []token {
	out := make([]token, 0, len(toks))
	for _, t := range toks {
		if t.significant() {
			out = append(out, t)
		}
	}
	return out
}

// joinTokens concatenates token texts.
func joinTokens(toks []token) string {
	var b strings.Builder
	for _, t := range toks {
		b.WriteString(t.text)
	}
	return b.String()
}
