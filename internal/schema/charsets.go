package schema

import (
	_ "embed"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/charset"
)

// The TiDB parser accepts only the character sets and collations TiDB
// implements (utf8, utf8mb4, ascii, latin1, binary, gbk, gb18030 and some
// of their collations) and rejects the rest with "Unknown character set" or
// "Unknown collation", although a MariaDB table may use any of MariaDB's
// (cp1251, latin2, ucs2, utf16, utf32, sjis, ..., utf8mb4_uca1400_ai_ci,
// utf8mb4_unicode_520_nopad_ci, ...). The tracker only records the names
// (the row decoder converts by name, see internal/rows), so at start-up
// MariaDB's character sets and collations are registered with the parser:
// the character sets it knows but does not support, and the collations
// MariaDB 10.11 lists, with the uca1400 ones for each Unicode character set
// (MariaDB 11's defaults). The parser's tables are package-level maps; they
// are only written here, in init, before any parse.

//go:embed mariadb_collations.txt
var mariadbCollations string

// mariadbCharsets are MariaDB's character sets (information_schema
// .CHARACTER_SETS of 10.11); utf8mb3 is the parser's utf8.
var mariadbCharsets = []string{"armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb2312", "gbk", "geostd8", "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7", "macce", "macroman", "sjis", "swe7", "tis620", "ucs2", "ujis", "utf16", "utf16le", "utf32", "utf8", "utf8mb4"}

// ucaCharsets are the character sets the uca1400 collations apply to.
var ucaCharsets = []string{"utf8", "utf8mb3", "utf8mb4", "ucs2", "utf16", "utf32"}

func init() { registerMariaDBCharsets() }

func registerMariaDBCharsets() {
	for _, name := range mariadbCharsets {
		cs, err := charset.GetCharsetInfo(name)
		if err != nil && cs != nil {
			// Known to the parser, not supported by TiDB.
			charset.AddCharset(cs)
		}
	}
	id := 1 << 20 // ids no real collation has: the tracker uses names only
	add := func(name, cs string, isDefault bool) {
		if _, err := charset.GetCollationByName(name); err == nil {
			return
		}
		if cs == "utf8mb3" {
			cs = "utf8"
		}
		if _, err := charset.GetCharsetInfo(cs); err != nil {
			return
		}
		pad := charset.PadSpace
		if strings.Contains(name, "nopad") || strings.Contains(name, "uca1400") {
			pad = charset.PadNone
		}
		id++
		charset.AddCollation(&charset.Collation{ID: id, CharsetName: cs, Name: name, IsDefault: isDefault, Sortlen: 1, PadAttribute: pad})
	}
	for _, line := range strings.Split(mariadbCollations, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[1] == "-" {
			for _, cs := range ucaCharsets {
				add(cs+"_"+f[0], cs, false)
			}
			continue
		}
		add(f[0], f[1], f[2] == "Yes")
		if strings.HasPrefix(f[0], "utf8mb3_") {
			add("utf8_"+strings.TrimPrefix(f[0], "utf8mb3_"), "utf8", false)
		}
	}
}
