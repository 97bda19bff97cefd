package schema

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// SQLMode is a server's sql_mode as a set of flag bits, numbered as the
// binlog's query events record them (the Q_SQL_MODE_CODE status variable;
// MySQL and MariaDB agree on the bits used here). Only the modes that change
// how a statement parses or what a type means matter to Split:
//
//   - ANSI_QUOTES: "x" is an identifier, not a string;
//   - PIPES_AS_CONCAT: || is CONCAT, not OR;
//   - IGNORE_SPACE: a space may separate a function's name from its "(";
//   - NO_BACKSLASH_ESCAPES: a backslash in a string is a plain character;
//   - HIGH_NOT_PRECEDENCE: NOT a BETWEEN b AND c is (NOT a) BETWEEN b AND c;
//   - REAL_AS_FLOAT: REAL is FLOAT, not DOUBLE;
//   - ORACLE (MariaDB): the types VARCHAR2, NUMBER, RAW, CLOB, BLOB and DATE
//     mean VARCHAR, DECIMAL (DOUBLE without a precision), VARBINARY,
//     LONGTEXT, LONGBLOB and DATETIME; other Oracle-only syntax is refused;
//   - MAXDB: TIMESTAMP is DATETIME;
//   - EMPTY_STRING_IS_NULL (MariaDB): the literal ” is NULL.
//
// ANSI, DB2, MSSQL, POSTGRESQL and the other combinations are logged with
// the modes they stand for set too, so they need nothing of their own.
type SQLMode uint64

// The sql_mode flags Split reads.
const (
	ModeRealAsFloat   SQLMode = 1 << 0
	ModePipesAsConcat SQLMode = 1 << 1
	ModeANSIQuotes    SQLMode = 1 << 2
	ModeIgnoreSpace   SQLMode = 1 << 3
	ModeOracle        SQLMode = 1 << 9
	ModeMaxDB         SQLMode = 1 << 12
	// ModeNoAutoValueOnZero changes no parse but what a DDL does: without
	// it, an ALTER TABLE that makes a column AUTO_INCREMENT gives the rows
	// holding 0 there new values.
	ModeNoAutoValueOnZero  SQLMode = 1 << 19
	ModeNoBackslashEscapes SQLMode = 1 << 20
	ModeHighNotPrecedence  SQLMode = 1 << 29
	ModeEmptyStringIsNull  SQLMode = 1 << 32
)

// modeNames names the flags above, for String and ParseSQLMode.
var modeNames = []struct {
	mode SQLMode
	name string
}{
	{ModeRealAsFloat, "REAL_AS_FLOAT"},
	{ModePipesAsConcat, "PIPES_AS_CONCAT"},
	{ModeANSIQuotes, "ANSI_QUOTES"},
	{ModeIgnoreSpace, "IGNORE_SPACE"},
	{ModeOracle, "ORACLE"},
	{ModeMaxDB, "MAXDB"},
	{ModeNoAutoValueOnZero, "NO_AUTO_VALUE_ON_ZERO"},
	{ModeNoBackslashEscapes, "NO_BACKSLASH_ESCAPES"},
	{ModeHighNotPrecedence, "HIGH_NOT_PRECEDENCE"},
	{ModeEmptyStringIsNull, "EMPTY_STRING_IS_NULL"},
}

// relevantModes are the bits Split reads; the others are dropped.
const relevantModes = ModeRealAsFloat | ModePipesAsConcat | ModeANSIQuotes | ModeIgnoreSpace | ModeOracle | ModeMaxDB |
	ModeNoBackslashEscapes | ModeHighNotPrecedence | ModeEmptyStringIsNull | ModeNoAutoValueOnZero

// String lists the flags Split reads, as @@sql_mode spells them.
func (m SQLMode) String() string {
	var parts []string
	for _, n := range modeNames {
		if m&n.mode != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// ParseSQLMode reads an @@sql_mode value ("ANSI_QUOTES,STRICT_TRANS_TABLES")
// and keeps the flags Split reads; combinations (ANSI, ORACLE, ...) set the
// flags they stand for, as the server does. Unknown names are ignored: they
// are modes that change nothing here.
func ParseSQLMode(s string) SQLMode {
	var m SQLMode
	for _, part := range strings.Split(strings.ToUpper(s), ",") {
		part = strings.TrimSpace(part)
		for _, n := range modeNames {
			if n.name == part {
				m |= n.mode
			}
		}
		for _, sub := range mysql.CombinationSQLMode[part] {
			for _, n := range modeNames {
				if n.name == sub {
					m |= n.mode
				}
			}
		}
	}
	return m
}

// parserMode is the TiDB parser's SQLMode for m: the parser's flags carry the
// binlog's bit numbers for the modes it knows.
func (m SQLMode) parserMode() mysql.SQLMode {
	const known = ModeRealAsFloat | ModePipesAsConcat | ModeANSIQuotes | ModeIgnoreSpace | ModeNoBackslashEscapes | ModeHighNotPrecedence
	return mysql.SQLMode(m & known)
}

// Query event status variable codes (MySQL's log_event.h, MariaDB's
// log_event.h) and, for those of fixed size, their sizes.
const (
	qFlags2Code   = 0
	qSQLModeCode  = 1
	qCharsetCode  = 4
	qCatalogCode  = 2
	qCatalogNZ    = 6
	qTimeZoneCode = 5
	qInvoker      = 11
	qUpdatedDBs   = 12
	// qMaxDBsInEvent is Q_UPDATED_DB_NAMES's count when the names are
	// left out (OVER_MAX_DBS_IN_EVENT_MTS).
	qMaxDBsInEvent = 254
)

var statusVarSizes = map[byte]int{
	0:   4, // Q_FLAGS2_CODE
	1:   8, // Q_SQL_MODE_CODE
	3:   4, // Q_AUTO_INCREMENT
	4:   6, // Q_CHARSET_CODE
	7:   2, // Q_LC_TIME_NAMES_CODE
	8:   2, // Q_CHARSET_DATABASE_CODE
	9:   8, // Q_TABLE_MAP_FOR_UPDATE_CODE
	10:  4, // Q_MASTER_DATA_WRITTEN_CODE
	13:  3, // Q_MICROSECONDS
	16:  1, // Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP
	17:  8, // Q_DDL_LOGGED_WITH_XID
	18:  2, // Q_DEFAULT_COLLATION_FOR_UTF8MB4
	19:  1, // Q_SQL_REQUIRE_PRIMARY_KEY
	20:  1, // Q_DEFAULT_TABLE_ENCRYPTION
	128: 3, // MariaDB Q_HRNOW
	129: 8, // MariaDB Q_XID
	130: 1, // MariaDB Q_GTID_FLAGS3
}

// StatusVarsSQLMode returns the sql_mode a query event's status variables
// (go-mysql's QueryEvent.StatusVars) record, keeping the flags Split reads.
// found is false when they record none (servers always write it; an event
// from an old or foreign writer may not). The error is for status variables
// it cannot walk up to the sql_mode: corrupt, or an unknown variable before
// it.
func StatusVarsSQLMode(vars []byte) (mode SQLMode, found bool, err error) {
	v, found, err := statusVar(vars, qSQLModeCode)
	if err != nil || !found {
		return 0, false, err
	}
	return SQLMode(binary.LittleEndian.Uint64(v)) & relevantModes, true, nil
}

// statusVar returns the value of the status variable code (its bytes after
// the code), walking the variables before it.
func statusVar(vars []byte, want byte) (val []byte, found bool, err error) {
	for i := 0; i < len(vars); {
		code := vars[i]
		i++
		n, ok := statusVarSizes[code]
		switch {
		case ok:
		case code == qCatalogCode:
			// Length byte, string, NUL (5.0.0 to 5.0.3).
			if i >= len(vars) {
				return nil, false, errCutShort(code)
			}
			n = 1 + int(vars[i]) + 1
		case code == qTimeZoneCode || code == qCatalogNZ:
			if i >= len(vars) {
				return nil, false, errCutShort(code)
			}
			n = 1 + int(vars[i])
		case code == qInvoker:
			// User and host, each with a length byte.
			if i >= len(vars) {
				return nil, false, errCutShort(code)
			}
			u := 1 + int(vars[i])
			if i+u >= len(vars) {
				return nil, false, errCutShort(code)
			}
			n = u + 1 + int(vars[i+u])
		case code == qUpdatedDBs:
			// A count, then that many NUL-terminated names.
			if i >= len(vars) {
				return nil, false, errCutShort(code)
			}
			count := int(vars[i])
			n = 1
			if count != qMaxDBsInEvent {
				for range count {
					if i+n > len(vars) {
						return nil, false, errCutShort(code)
					}
					end := bytes.IndexByte(vars[i+n:], 0)
					if end < 0 {
						return nil, false, errCutShort(code)
					}
					n += end + 1
				}
			}
		default:
			return nil, false, fmt.Errorf("schema: query event status variables: unknown code %d before %s", code, statusVarNames[want])
		}
		if i+n > len(vars) {
			if code == want && code == qSQLModeCode {
				return nil, false, fmt.Errorf("schema: query event status variables: sql_mode cut short")
			}
			return nil, false, errCutShort(code)
		}
		if code == want {
			return vars[i : i+n], true, nil
		}
		i += n
	}
	return nil, false, nil
}

// statusVarNames name the variables statusVar is asked for, in its errors.
var statusVarNames = map[byte]string{qSQLModeCode: "sql_mode", qCharsetCode: "the character set"}

func errCutShort(code byte) error {
	return fmt.Errorf("schema: query event status variables: variable %d cut short", code)
}
