package schema

import (
	"encoding/binary"

	"golang.org/x/text/encoding/charmap"
)

// latin1Collations are the collation ids of MySQL's and MariaDB's latin1
// (MariaDB's NO PAD ones included).
var latin1Collations = map[uint16]bool{5: true, 8: true, 15: true, 31: true, 47: true, 48: true, 49: true, 94: true, 1032: true, 1071: true}

// QueryText returns a query event's statement as UTF-8. The server logs
// the statement in the bytes its client sent, in the client's character
// set, which the event's status variables record (Q_CHARSET_CODE); names
// in rows events and on the server are UTF-8. A statement in latin1
// (MySQL's latin1 is Windows-1252) is converted, so that a table named
// with a byte above 0x7F there is the table its rows events name. Other
// character sets come back as they are: the ASCII of their names is the
// same in UTF-8.
func QueryText(vars, query []byte) string {
	v, found, err := statusVar(vars, qCharsetCode)
	if err != nil || !found || !hasHigh(query) {
		return string(query)
	}
	if !latin1Collations[binary.LittleEndian.Uint16(v)] {
		return string(query)
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(query)
	if err != nil {
		return string(query)
	}
	return string(out)
}

// hasHigh reports whether b holds a byte above 0x7F.
func hasHigh(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
