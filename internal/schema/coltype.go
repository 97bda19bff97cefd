package schema

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/parser/types"
)

// Type codes of the MariaDB types the TiDB parser does not know (compat.go
// parses them as marked ENUMs). Geometry types are MYSQL_TYPE_GEOMETRY on the
// wire; UUID, INET4 and INET6 travel as fixed-length binary strings.
var extraTypes = map[string]byte{
	"geometry":           mysql.TypeGeometry,
	"point":              mysql.TypeGeometry,
	"linestring":         mysql.TypeGeometry,
	"polygon":            mysql.TypeGeometry,
	"multipoint":         mysql.TypeGeometry,
	"multilinestring":    mysql.TypeGeometry,
	"multipolygon":       mysql.TypeGeometry,
	"geometrycollection": mysql.TypeGeometry,
	"geomcollection":     mysql.TypeGeometry,
	"uuid":               mysql.TypeString,
	"inet4":              mysql.TypeString,
	"inet6":              mysql.TypeString,
}

// BinlogType is the column's type code as a row event's table map carries it
// on MariaDB 10.3+ and MySQL 5.6+: ENUM and SET travel as MYSQL_TYPE_STRING,
// every BLOB and TEXT size as MYSQL_TYPE_BLOB, DATETIME, TIMESTAMP and TIME in
// their fractional-second formats (DATETIME2, TIMESTAMP2, TIME2).
func (c *ColumnDef) BinlogType() byte {
	switch c.TypeCode {
	case mysql.TypeEnum, mysql.TypeSet:
		return mysql.TypeString
	case mysql.TypeTinyBlob, mysql.TypeMediumBlob, mysql.TypeLongBlob, mysql.TypeBlob:
		return mysql.TypeBlob
	case mysql.TypeDatetime:
		return typeDatetime2
	case mysql.TypeTimestamp:
		return typeTimestamp2
	case mysql.TypeDuration:
		return typeTime2
	}
	return c.TypeCode
}

// Binlog-only type codes (MYSQL_TYPE_TIMESTAMP2, _DATETIME2, _TIME2).
const (
	typeTimestamp2 byte = 17
	typeDatetime2  byte = 18
	typeTime2      byte = 19
)

// defaultIntWidth is MariaDB's display width for an integer type declared
// without one.
func defaultIntWidth(tp byte, unsigned bool) int {
	var w int
	switch tp {
	case mysql.TypeTiny:
		w = 4
	case mysql.TypeShort:
		w = 6
	case mysql.TypeInt24:
		w = 9
	case mysql.TypeLong:
		w = 11
	case mysql.TypeLonglong:
		return 20
	}
	if unsigned {
		w--
	}
	return w
}

// mbMaxLen is the longest character, in bytes, of the character sets the
// tracker sizes TEXT(M) and BLOB(M) columns with; unknown ones count as 4.
func mbMaxLen(cs string) int {
	switch cs {
	case "binary", "latin1", "ascii", "latin2", "latin5", "latin7", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866", "dec8", "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "macce", "macroman", "swe7", "tis620", "armscii8", "geostd8":
		return 1
	case "big5", "gbk", "sjis", "cp932", "euckr", "gb2312", "ucs2", "utf16", "utf16le":
		return 2
	case "utf8", "utf8mb3", "ujis", "eucjpms":
		return 3
	}
	return 4
}

// tableContext is what a column definition inherits from its table.
type tableContext struct {
	charset string // the table's default charset, "" when unknown
}

// columnFromAST builds a ColumnDef from a parsed column definition. It
// returns the column-level key options (PRIMARY KEY, UNIQUE) as well, for the
// caller to turn into indexes.
func columnFromAST(cd *ast.ColumnDef, tc tableContext) (col ColumnDef, primary, unique bool, err error) {
	col.Name = cd.Name.Name.O
	col.Nullable = true
	ft := cd.Tp
	if ft == nil {
		return col, false, false, fmt.Errorf("column %s has no type", quoteName(col.Name))
	}
	collate := ft.GetCollate()
	for _, o := range cd.Options {
		switch o.Tp {
		case ast.ColumnOptionNotNull:
			col.Nullable = false
		case ast.ColumnOptionNull:
			col.Nullable = true
		case ast.ColumnOptionPrimaryKey:
			primary = true
		case ast.ColumnOptionUniqKey:
			unique = true
		case ast.ColumnOptionGenerated:
			col.Generated = true
		case ast.ColumnOptionDefaultValue:
			col.Default = exprText(o.Expr)
		case ast.ColumnOptionCollate:
			collate = o.StrValue
		case ast.ColumnOptionComment:
			if attr, ok := attrMarker(o.Expr); ok {
				switch attr {
				case "INVISIBLE":
					col.Invisible = true
				}
			}
		}
	}
	if primary {
		col.Nullable = false
	}
	if err := setType(&col, ft, collate, tc); err != nil {
		return col, false, false, fmt.Errorf("column %s: %w", quoteName(col.Name), err)
	}
	return col, primary, unique, nil
}

// setType fills col's type fields from the parsed field type.
func setType(col *ColumnDef, ft *types.FieldType, collate string, tc tableContext) error {
	tp := ft.GetType()
	flen, dec := ft.GetFlen(), ft.GetDecimal()
	flag := ft.GetFlag()
	unsigned := mysql.HasUnsignedFlag(flag) || mysql.HasZerofillFlag(flag)
	zerofill := mysql.HasZerofillFlag(flag)

	// The column's charset: explicit, implied by its collation, else the
	// table's.
	cs := normCharset(ft.GetCharset())
	if cs == "" && collate != "" {
		cs = charsetOfCollation(collate)
	}
	if cs == "" {
		cs = tc.charset
	}

	var b strings.Builder
	suffix := func() {
		if unsigned {
			b.WriteString(" unsigned")
		}
		if zerofill {
			b.WriteString(" zerofill")
		}
	}
	col.TypeCode = tp
	switch tp {
	case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong:
		if flen <= 0 {
			flen = defaultIntWidth(tp, unsigned)
		}
		fmt.Fprintf(&b, "%s(%d)", intName(tp), flen)
		suffix()
		col.Unsigned = unsigned
	case mysql.TypeNewDecimal:
		if flen <= 0 {
			flen = 10
		}
		if dec < 0 {
			dec = 0
		}
		fmt.Fprintf(&b, "decimal(%d,%d)", flen, dec)
		suffix()
		col.Unsigned = unsigned
	case mysql.TypeFloat, mysql.TypeDouble:
		name := "float"
		if tp == mysql.TypeDouble {
			name = "double"
		}
		b.WriteString(name)
		if flen > 0 && dec >= 0 {
			fmt.Fprintf(&b, "(%d,%d)", flen, dec)
		}
		suffix()
		col.Unsigned = unsigned
	case mysql.TypeBit:
		if flen <= 0 {
			flen = 1
		}
		fmt.Fprintf(&b, "bit(%d)", flen)
	case mysql.TypeYear:
		b.WriteString("year(4)")
	case mysql.TypeDate:
		b.WriteString("date")
	case mysql.TypeDuration, mysql.TypeDatetime, mysql.TypeTimestamp:
		b.WriteString(map[byte]string{mysql.TypeDuration: "time", mysql.TypeDatetime: "datetime", mysql.TypeTimestamp: "timestamp"}[tp])
		if dec > 0 {
			fmt.Fprintf(&b, "(%d)", dec)
		}
	case mysql.TypeString, mysql.TypeVarchar, mysql.TypeVarString:
		if tc.charset == "binary" && ft.GetCharset() == "" && collate == "" {
			cs = "binary"
		}
		bin := cs == "binary"
		if tp == mysql.TypeVarString {
			tp = mysql.TypeVarchar
			col.TypeCode = tp
		}
		if tp == mysql.TypeString {
			if flen < 0 {
				flen = 1
			}
			b.WriteString(map[bool]string{false: "char", true: "binary"}[bin])
		} else {
			if flen < 0 {
				return fmt.Errorf("varchar without a length")
			}
			b.WriteString(map[bool]string{false: "varchar", true: "varbinary"}[bin])
		}
		fmt.Fprintf(&b, "(%d)", flen)
		col.Binary = bin
		if !bin {
			col.Charset = cs
		}
	case mysql.TypeTinyBlob, mysql.TypeBlob, mysql.TypeMediumBlob, mysql.TypeLongBlob:
		if tc.charset == "binary" && ft.GetCharset() == "" && collate == "" {
			cs = "binary"
		}
		bin := cs == "binary"
		if tp == mysql.TypeBlob && flen > 0 {
			// TEXT(M) / BLOB(M): the smallest type that holds M characters.
			n := flen
			if !bin {
				n *= mbMaxLen(cs)
			}
			switch {
			case n < 1<<8:
				tp = mysql.TypeTinyBlob
			case n < 1<<16:
				tp = mysql.TypeBlob
			case n < 1<<24:
				tp = mysql.TypeMediumBlob
			default:
				tp = mysql.TypeLongBlob
			}
		}
		col.TypeCode = tp
		prefix := map[byte]string{mysql.TypeTinyBlob: "tiny", mysql.TypeBlob: "", mysql.TypeMediumBlob: "medium", mysql.TypeLongBlob: "long"}[tp]
		b.WriteString(prefix + map[bool]string{false: "text", true: "blob"}[bin])
		col.Binary = bin
		if !bin {
			col.Charset = cs
		}
	case mysql.TypeJSON:
		// MariaDB's JSON is an alias of LONGTEXT (with a JSON_VALID check)
		// in utf8mb4_bin.
		col.TypeCode = mysql.TypeLongBlob
		b.WriteString("longtext")
		col.Charset = "utf8mb4"
	case mysql.TypeEnum, mysql.TypeSet:
		elems := ft.GetElems()
		if tp == mysql.TypeEnum && len(elems) == 1 {
			if name, ok := typeMarker(elems[0]); ok {
				col.TypeCode = extraTypes[name]
				col.Binary = col.TypeCode == mysql.TypeString
				b.WriteString(name)
				break
			}
		}
		if tp == mysql.TypeEnum {
			b.WriteString("enum(")
			col.EnumValues = append([]string(nil), elems...)
		} else {
			b.WriteString("set(")
			col.SetValues = append([]string(nil), elems...)
		}
		for i, e := range elems {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(quoteString(e))
		}
		b.WriteByte(')')
		col.Charset = cs
	default:
		return fmt.Errorf("unsupported column type %s", ft.String())
	}
	col.Type = b.String()
	return nil
}

func intName(tp byte) string {
	switch tp {
	case mysql.TypeTiny:
		return "tinyint"
	case mysql.TypeShort:
		return "smallint"
	case mysql.TypeInt24:
		return "mediumint"
	case mysql.TypeLong:
		return "int"
	}
	return "bigint"
}

// quoteString quotes s as MariaDB prints ENUM and SET members: in single
// quotes, with quotes doubled and backslashes escaped.
func quoteString(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// charsetOfCollation is the character set a collation name belongs to
// (collations are named charset_...); "" when it cannot tell.
func charsetOfCollation(collate string) string {
	collate = strings.ToLower(collate)
	if collate == "binary" {
		return "binary"
	}
	for _, cs := range []string{"utf8mb4", "utf8mb3", "utf8", "utf16le", "utf16", "utf32", "ucs2", "latin1", "latin2", "latin5", "latin7", "ascii", "binary", "big5", "gbk", "gb2312", "sjis", "cp932", "ujis", "eucjpms", "euckr", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866", "koi8r", "koi8u", "greek", "hebrew", "tis620", "swe7", "dec8", "hp8", "keybcs2", "macce", "macroman", "armscii8", "geostd8"} {
		if strings.HasPrefix(collate, cs+"_") {
			if cs == "utf8" {
				return "utf8mb3"
			}
			return cs
		}
	}
	return ""
}

// normCharset maps charset aliases to the names MariaDB reports.
func normCharset(cs string) string {
	cs = strings.ToLower(cs)
	if cs == "utf8" {
		return "utf8mb3"
	}
	return cs
}
