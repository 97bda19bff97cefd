package rows

import (
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
)

// decoders maps MySQL/MariaDB character set names whose bytes are not UTF-8
// to their decoders. MySQL's latin1 is Windows-1252, not ISO 8859-1.
var decoders = map[string]encoding.Encoding{
	"latin1":   charmap.Windows1252,
	"latin2":   charmap.ISO8859_2,
	"latin5":   charmap.ISO8859_9,
	"latin7":   charmap.ISO8859_13,
	"cp1250":   charmap.Windows1250,
	"cp1251":   charmap.Windows1251,
	"cp1256":   charmap.Windows1256,
	"cp1257":   charmap.Windows1257,
	"cp850":    charmap.CodePage850,
	"cp852":    charmap.CodePage852,
	"cp866":    charmap.CodePage866,
	"greek":    charmap.ISO8859_7,
	"hebrew":   charmap.ISO8859_8,
	"koi8r":    charmap.KOI8R,
	"koi8u":    charmap.KOI8U,
	"macroman": charmap.Macintosh,
	"gbk":      simplifiedchinese.GBK,
	"gb2312":   simplifiedchinese.GBK, // EUC-CN is a subset of GBK
	"gb18030":  simplifiedchinese.GB18030,
	"big5":     traditionalchinese.Big5,
	"sjis":     japanese.ShiftJIS,
	"cp932":    japanese.ShiftJIS,
	"ujis":     japanese.EUCJP,
	"eucjpms":  japanese.EUCJP,
	"euckr":    korean.EUCKR,
	"ucs2":     unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM),
	"utf16":    unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM),
	"utf16le":  unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM),
	"utf32":    utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM),
}

// ToUTF8 decodes text stored in charset cs into UTF-8, which is what the
// Sink contract promises for text values. UTF-8 charsets, ascii, and
// unknown or empty names are returned as they are.
func ToUTF8(s, cs string) (string, error) {
	dec, ok := decoders[strings.ToLower(cs)]
	if !ok || s == "" {
		return s, nil
	}
	return dec.NewDecoder().String(s)
}

// FromUTF8 encodes UTF-8 text s into charset cs, the inverse of ToUTF8 (for
// tools that write binlog events). UTF-8 charsets, ascii, and unknown or
// empty names are returned as they are.
func FromUTF8(s, cs string) (string, error) {
	enc, ok := decoders[strings.ToLower(cs)]
	if !ok || s == "" {
		return s, nil
	}
	return enc.NewEncoder().String(s)
}
