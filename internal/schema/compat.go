package schema

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
)

// MariaDB syntax the TiDB parser rejects.
//
// When the parser rejects a CREATE/ALTER/DROP/RENAME/TRUNCATE statement, the
// statement is rewritten at the token level into a form the parser accepts,
// with markers that keep what it means, and parsed again. Rendering maps the
// markers back, so the downstream receives the MariaDB form. Handled:
//
//   - column types GEOMETRY, POINT, LINESTRING, POLYGON, MULTIPOINT,
//     MULTILINESTRING, MULTIPOLYGON, GEOMETRYCOLLECTION, UUID, INET4, INET6
//     (parsed as ENUM('__dmworker_type_<name>__'));
//   - SPATIAL INDEX / SPATIAL KEY (an index named __dmworker_spatial__<name>);
//   - the column attributes INVISIBLE and COMPRESSED (a column COMMENT
//     marker), and MariaDB's executable comments /*M!NNNNNN ... */ whose
//     content MariaDB runs (SHOW CREATE TABLE prints COMPRESSED in one);
//   - PERSISTENT generated columns (rendered as STORED, MariaDB's synonym);
//   - CREATE OR REPLACE TABLE, ALTER ONLINE TABLE, ALTER IGNORE TABLE (which
//     the parser accepts but would not render), ALGORITHM=NOCOPY;
//   - NATIONAL CHAR / NCHAR types (which the parser accepts but reads
//     without their utf8mb3 character set);
//   - engine-defined table options, which SHOW CREATE TABLE prints quoted
//     (`PAGE_COMPRESSED`='1'): PAGE_COMPRESSED and PAGE_COMPRESSION_LEVEL are
//     kept, others (`ENCRYPTED`=YES, ...) dropped;
//   - the index attributes IGNORED / NOT IGNORED and the lock-wait clauses
//     WAIT n / NOWAIT are dropped (they do not change the schema; the
//     downstream does not receive them);
//   - the type qualifier mariadb_schema. (mariadb_schema.date is DATE in
//     every sql_mode);
//   - under sql_mode ORACLE, the types whose meaning the mode changes, in
//     MariaDB's mapping: VARCHAR2 is VARCHAR, NUMBER(p[,s]) DECIMAL(p[,s]),
//     NUMBER without a precision DOUBLE, RAW(n) VARBINARY(n), CLOB LONGTEXT,
//     BLOB without a length LONGBLOB, DATE DATETIME; the expressions whose
//     meaning the mode changes (||, CONCAT, LENGTH, SUBSTR, TRIM, LPAD,
//     REPLACE, DECODE, ...) are refused; under MAXDB, TIMESTAMP is
//     DATETIME;
//   - under EMPTY_STRING_IS_NULL, DEFAULT '' is DEFAULT NULL; an empty
//     string elsewhere in an expression (or an ENUM member) is refused, as
//     the token rewrite cannot tell what it means there.
//
// Anything else the parser rejects is ErrUnsupportedDDL.

const (
	typeMarkerPrefix    = "__dmworker_type_"
	attrMarkerPrefix    = "__dmworker_attr_"
	spatialMarkerPrefix = "__dmworker_spatial__"
	markerSuffix        = "__"
)

// compatFlags are the rewrites that the render step must undo.
type compatFlags struct {
	orReplace bool // CREATE OR REPLACE TABLE
	online    bool // ALTER ONLINE TABLE
	ignore    bool // ALTER IGNORE TABLE (the parser accepts IGNORE but drops it)
	nocopy    bool // ALGORITHM=NOCOPY
}

func typeMarker(elem string) (string, bool) {
	if !strings.HasPrefix(elem, typeMarkerPrefix) || !strings.HasSuffix(elem, markerSuffix) {
		return "", false
	}
	name := strings.TrimSuffix(strings.TrimPrefix(elem, typeMarkerPrefix), markerSuffix)
	_, ok := extraTypes[name]
	return name, ok
}

func attrMarker(e ast.ExprNode) (string, bool) {
	v, ok := e.(ast.ValueExpr)
	if !ok {
		return "", false
	}
	s := v.GetString()
	if !strings.HasPrefix(s, attrMarkerPrefix) || !strings.HasSuffix(s, markerSuffix) {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, attrMarkerPrefix), markerSuffix), true
}

// spatialName strips the spatial marker from an index name; ok is false for
// a name without it.
func spatialName(name string) (string, bool) {
	if !strings.HasPrefix(name, spatialMarkerPrefix) {
		return name, false
	}
	return strings.TrimPrefix(name, spatialMarkerPrefix), true
}

// reserved holds the parser's reserved words and the few unreserved ones
// that appear right before a column type in other roles; a word among them
// is not taken for a column name.
var reserved = func() map[string]bool {
	m := map[string]bool{"AFTER": true, "FIRST": true, "COMMENT": true, "MODIFY": true, "ALGORITHM": true, "LOCK": true, "ENGINE": true, "USING": true}
	for _, k := range parser.Keywords {
		if k.Reserved {
			m[k.Word] = true
		}
	}
	return m
}()

func isName(t token) bool {
	return t.kind == tkQuoted || (t.kind == tkWord && !reserved[t.upper()] && !isNumber(t.text))
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isPunct(t token, p string) bool { return t.kind == tkPunct && t.text == p }

// oracleTypes are the type names whose meaning sql_mode ORACLE changes.
var oracleTypes = map[string]bool{"VARCHAR2": true, "NUMBER": true, "RAW": true, "CLOB": true, "BLOB": true, "DATE": true}

// oracleFuncs are the functions sql_mode ORACLE gives another meaning
// (MariaDB runs concat_operator_oracle, replace_oracle, ... for them), which
// the parser cannot write back: an expression using them is refused.
var oracleFuncs = map[string]bool{"CONCAT": true, "LENGTH": true, "SUBSTR": true, "SUBSTRING": true, "TRIM": true,
	"LTRIM": true, "RTRIM": true, "LPAD": true, "RPAD": true, "REPLACE": true, "DECODE": true}

// checkOracle refuses, under sql_mode ORACLE, the expressions whose meaning
// the mode changes: || (MariaDB's NULL-skipping concat_operator_oracle) and
// the functions of oracleFuncs.
func checkOracle(toks []token) error {
	for i, t := range toks {
		if isPunct(t, "|") && i+1 < len(toks) && isPunct(toks[i+1], "|") {
			return fmt.Errorf("|| under sql_mode ORACLE skips NULLs (concat_operator_oracle), which cannot be written in another mode")
		}
		if t.kind != tkWord || !oracleFuncs[t.upper()] {
			continue
		}
		for _, n := range toks[i+1:] {
			if n.significant() {
				if isPunct(n, "(") {
					return fmt.Errorf("%s() has another meaning under sql_mode ORACLE, which cannot be written in another mode", t.upper())
				}
				break
			}
		}
	}
	return nil
}

// needsRewrite reports whether the query holds what the parser accepts but
// misreads: /*M!...*/, which it takes for a plain comment although MariaDB
// runs its content; NATIONAL / NCHAR types, whose utf8mb3 charset it drops;
// ALTER IGNORE TABLE, whose IGNORE it drops; the mariadb_schema qualifier;
// and the words whose meaning mode changes (see rewriteMariaDB).
func needsRewrite(toks []token, mode SQLMode) bool {
	sig := significantTokens(toks)
	if len(sig) > 2 && sig[0].isWord("ALTER") && sig[1].isWord("IGNORE") {
		return true
	}
	for _, t := range toks {
		if t.kind == tkExecOpen && strings.HasPrefix(t.text, "/*M!") || t.isWord("NATIONAL") || t.isWord("NCHAR") || t.isWord("MARIADB_SCHEMA") {
			return true
		}
		switch {
		case mode&ModeOracle != 0 && (t.kind == tkWord && (oracleTypes[t.upper()] || oracleFuncs[t.upper()]) || isPunct(t, "|")),
			mode&ModeMaxDB != 0 && t.isWord("TIMESTAMP"),
			mode&ModeEmptyStringIsNull != 0 && isEmptyString(t):
			return true
		}
	}
	return false
}

func isEmptyString(t token) bool { return t.kind == tkString && len(t.text) == 2 }

// rewriteMariaDB rewrites the MariaDB-only forms listed above, for a query
// written under mode. changed is false when there was nothing to rewrite;
// the error is for what the rewrite refuses.
func rewriteMariaDB(query string, mode SQLMode) (out string, flags compatFlags, changed bool, err error) {
	toks := lexMode(query, mode)
	// Unwrap MariaDB executable comments; leave MySQL's (/*!) to the
	// parser, which runs them itself.
	inM := false
	for i := range toks {
		switch toks[i].kind {
		case tkExecOpen:
			if strings.HasPrefix(toks[i].text, "/*M!") {
				toks[i] = token{tkSpace, " "}
				inM, changed = true, true
			}
		case tkExecClose:
			if inM {
				toks[i] = token{tkSpace, " "}
				inM = false
			}
		}
	}
	var idx []int // positions in toks of the significant tokens
	for i, t := range toks {
		if t.significant() {
			idx = append(idx, i)
		}
	}
	sig := func(i int) token {
		if i < 0 || i >= len(idx) {
			return token{}
		}
		return toks[idx[i]]
	}
	set := func(i int, text string) {
		if i >= 0 && i < len(idx) {
			toks[idx[i]].text = text
			changed = true
		}
	}
	if len(idx) < 2 {
		return query, flags, false, nil
	}
	switch {
	case sig(0).isWord("CREATE") && sig(1).isWord("OR") && sig(2).isWord("REPLACE") && sig(3).isWord("TABLE"):
		set(1, "")
		set(2, "")
		flags.orReplace = true
	case sig(0).isWord("ALTER") && sig(1).isWord("ONLINE") && sig(2).isWord("TABLE"):
		set(1, "")
		flags.online = true
	case sig(0).isWord("ALTER") && sig(1).isWord("IGNORE") && sig(2).isWord("TABLE"):
		set(1, "")
		flags.ignore = true
	}
	switch strings.ToUpper(sig(0).text) {
	case "CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE":
	default:
		return joinTokens(toks), flags, changed, nil
	}
	if mode&ModeOracle != 0 {
		if err := checkOracle(toks); err != nil {
			return "", flags, false, err
		}
	}
	if sig(0).isWord("CREATE") && sig(1).isWord("TABLE") || sig(3).isWord("TABLE") && flags.orReplace {
		// Engine-defined table options, which SHOW CREATE TABLE prints
		// quoted after the body: `PAGE_COMPRESSED`='1'.
		depth, body := 0, false
		for i := 0; i < len(idx); i++ {
			switch {
			case isPunct(sig(i), "("):
				depth++
			case isPunct(sig(i), ")"):
				depth--
				body = body || depth == 0
			case body && depth == 0 && sig(i).kind == tkQuoted && isPunct(sig(i+1), "="):
				name := strings.ToUpper(unquoteName(sig(i)))
				if name == "PAGE_COMPRESSED" || name == "PAGE_COMPRESSION_LEVEL" {
					set(i, name)
					v := sig(i + 2)
					if v.kind == tkString && len(v.text) > 2 {
						set(i+2, v.text[1:len(v.text)-1])
					}
				} else {
					set(i, "")
					set(i+1, "")
					set(i+2, "")
				}
				i += 2
			}
		}
	}
	for i := 0; i < len(idx); i++ {
		t := sig(i)
		if mode&ModeEmptyStringIsNull != 0 && isEmptyString(t) {
			switch {
			case sig(i - 1).isWord("DEFAULT"):
				set(i, "NULL")
			case sig(i - 1).isWord("COMMENT"), isPunct(sig(i-1), "=") && sig(i-2).isWord("COMMENT"):
				// A comment is text, not an expression.
			default:
				return "", flags, false, fmt.Errorf("the empty string %s means NULL under sql_mode EMPTY_STRING_IS_NULL; only DEFAULT %s is supported", t.text, t.text)
			}
			continue
		}
		if t.kind != tkWord {
			continue
		}
		w := t.upper()
		switch {
		case w == "MARIADB_SCHEMA" && isPunct(sig(i+1), ".") && typeContext(sig, i):
			// mariadb_schema.date: MariaDB's own type whatever the mode.
			set(i, "")
			set(i+1, "")
			i += 2
			continue
		case mode&ModeOracle != 0 && oracleTypes[w] && typeContext(sig, i):
			paren := isPunct(sig(i+1), "(")
			switch w {
			case "VARCHAR2":
				set(i, "VARCHAR")
			case "NUMBER":
				set(i, map[bool]string{true: "DECIMAL", false: "DOUBLE"}[paren])
			case "RAW":
				set(i, "VARBINARY")
			case "CLOB":
				set(i, "LONGTEXT")
			case "BLOB":
				if !paren {
					set(i, "LONGBLOB")
				}
			case "DATE":
				set(i, "DATETIME")
			}
			continue
		case mode&ModeMaxDB != 0 && w == "TIMESTAMP" && typeContext(sig, i):
			set(i, "DATETIME")
			continue
		case w == "ALGORITHM" && sig(i+1).text == "=" && sig(i+2).isWord("NOCOPY"):
			set(i+2, "INPLACE")
			flags.nocopy = true
		case w == "WAIT" && isNumber(sig(i+1).text) && isName(sig(i-1)):
			set(i, "")
			set(i+1, "")
		case w == "NOWAIT" && isName(sig(i-1)) && (sig(i-2).isWord("TABLE") || isPunct(sig(i-2), ".") || i == len(idx)-1):
			set(i, "")
		case w == "PERSISTENT" && isPunct(sig(i-1), ")"):
			set(i, "STORED")
		case (w == "INVISIBLE" || w == "COMPRESSED") && sig(i-1).text != "=" && sig(i+1).text != "=":
			set(i, "COMMENT '"+attrMarkerPrefix+w+markerSuffix+"'")
		case w == "IGNORED" && ignoredContext(sig(i-1)):
			set(i, "")
		case w == "NOT" && sig(i+1).isWord("IGNORED") && ignoredContext(sig(i-1)):
			set(i, "")
			set(i+1, "")
			i++
		case w == "SPATIAL":
			j := i + 1
			if sig(j).isWord("INDEX") || sig(j).isWord("KEY") {
				j++
			}
			name := ""
			if isName(sig(j)) && !sig(j).isWord("IF") && !sig(j).isWord("USING") {
				name = unquoteName(sig(j))
				set(j, "")
			}
			if j == i+1 { // SPATIAL (cols) without INDEX/KEY
				set(i, "INDEX "+quoteName(spatialMarkerPrefix+name))
			} else {
				set(i, "")
				set(i+1, "INDEX "+quoteName(spatialMarkerPrefix+name))
			}
		case (w == "NATIONAL" || w == "NCHAR") && typeContext(sig, i):
			// NATIONAL CHAR(n), NCHAR VARCHAR(n), ...: the type with
			// CHARACTER SET utf8mb3 after its length.
			j := i + 1
			if w == "NCHAR" && !sig(j).isWord("VARYING") {
				set(i, "")
			} else if w == "NATIONAL" {
				set(i, "")
			}
			for sig(j).isWord("CHAR") || sig(j).isWord("CHARACTER") || sig(j).isWord("VARCHAR") || sig(j).isWord("VARCHARACTER") || sig(j).isWord("VARYING") {
				j++
			}
			if j == i+1 && w == "NCHAR" {
				set(i, "CHAR")
			}
			if isPunct(sig(j), "(") {
				for j < len(idx) && !isPunct(sig(j), ")") {
					j++
				}
				j++
			}
			if j-1 < len(idx) {
				set(j-1, sig(j-1).text+" CHARACTER SET utf8mb3")
			}
		case extraTypes[strings.ToLower(w)] != 0 && typeContext(sig, i):
			set(i, "ENUM('"+typeMarkerPrefix+strings.ToLower(w)+markerSuffix+"')")
		}
	}
	return joinTokens(toks), flags, changed, nil
}

// typeContext reports whether the word at i stands where a column type does:
// right after a column name that follows "(", ",", ADD, COLUMN, MODIFY or IF
// [NOT] EXISTS, or after CHANGE's old and new names.
func typeContext(sig func(int) token, i int) bool {
	if !isName(sig(i - 1)) {
		return false
	}
	opener := func(t token) bool {
		return isPunct(t, "(") || isPunct(t, ",") || t.isWord("ADD") || t.isWord("COLUMN") || t.isWord("MODIFY") || t.isWord("EXISTS")
	}
	if opener(sig(i - 2)) {
		return true
	}
	return isName(sig(i-2)) && (sig(i-3).isWord("CHANGE") || sig(i-3).isWord("COLUMN") || sig(i-3).isWord("EXISTS"))
}

// ignoredContext reports whether IGNORED after t is an index attribute.
func ignoredContext(t token) bool {
	return isPunct(t, ")") || t.kind == tkString || t.isWord("BTREE") || t.isWord("HASH") || t.isWord("RTREE")
}

func unquoteName(t token) string {
	if t.kind == tkQuoted && len(t.text) >= 2 {
		q := t.text[:1] // ` or, under ANSI_QUOTES, "
		return strings.ReplaceAll(t.text[1:len(t.text)-1], q+q, q)
	}
	return t.text
}

var (
	typeMarkerRe    = regexp.MustCompile(`ENUM\('` + typeMarkerPrefix + `([a-z0-9]+)` + markerSuffix + `'\)`)
	attrMarkerRe    = regexp.MustCompile(`COMMENT '` + attrMarkerPrefix + `([A-Z_]+)` + markerSuffix + `'`)
	spatialMarkerRe = regexp.MustCompile("INDEX `" + spatialMarkerPrefix + "((?:[^`]|``)*)`")
)

// renderFix turns the parser's restored SQL into what MariaDB (and MySQL)
// run: it maps the compat markers back and fixes the forms the parser
// restores in TiDB/MySQL 8 syntax only.
func renderFix(sql string, flags compatFlags) string {
	sql = typeMarkerRe.ReplaceAllStringFunc(sql, func(m string) string {
		return strings.ToUpper(typeMarkerRe.FindStringSubmatch(m)[1])
	})
	sql = attrMarkerRe.ReplaceAllString(sql, "$1")
	sql = spatialMarkerRe.ReplaceAllStringFunc(sql, func(m string) string {
		name := spatialMarkerRe.FindStringSubmatch(m)[1]
		if name == "" {
			return "SPATIAL INDEX "
		}
		return "SPATIAL INDEX `" + name + "`"
	})
	if flags.orReplace {
		sql = replacePrefix(sql, "CREATE TABLE ", "CREATE OR REPLACE TABLE ")
	}
	if flags.online {
		sql = replacePrefix(sql, "ALTER TABLE ", "ALTER ONLINE TABLE ")
	}
	if flags.ignore {
		sql = replacePrefix(sql, "ALTER TABLE ", "ALTER IGNORE TABLE ")
	}
	if flags.nocopy {
		sql = strings.ReplaceAll(sql, "ALGORITHM = INPLACE", "ALGORITHM = NOCOPY")
	}
	return fixChecks(sql)
}

func replacePrefix(s, old, new string) string {
	if strings.HasPrefix(s, old) {
		return new + s[len(old):]
	}
	return s
}

// fixChecks drops the ENFORCED the parser writes after every CHECK (...)
// (MariaDB has no such keyword; enforced is the default everywhere), and
// turns DROP CHECK into DROP CONSTRAINT, which both MariaDB and MySQL 8.0.19+
// accept.
func fixChecks(sql string) string {
	if !strings.Contains(sql, "CHECK") {
		return sql
	}
	toks := lex(sql)
	var idx []int
	for i, t := range toks {
		if t.significant() {
			idx = append(idx, i)
		}
	}
	for k := 0; k < len(idx); k++ {
		t := toks[idx[k]]
		if !t.isWord("CHECK") {
			continue
		}
		if k > 0 && toks[idx[k-1]].isWord("DROP") {
			toks[idx[k]].text = "CONSTRAINT"
			continue
		}
		if k+1 >= len(idx) || !isPunct(toks[idx[k+1]], "(") {
			continue
		}
		depth, j := 0, k+1
		for ; j < len(idx); j++ {
			if isPunct(toks[idx[j]], "(") {
				depth++
			} else if isPunct(toks[idx[j]], ")") {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if j+1 < len(idx) && toks[idx[j+1]].isWord("ENFORCED") {
			// Drop the keyword and the space before it.
			for p := idx[j] + 1; p <= idx[j+1]; p++ {
				toks[p].text = ""
			}
		}
		k = j
	}
	return joinTokens(toks)
}
