package schema

import "strings"

// classifyText names a statement by its leading words, for statements the
// parser rejects (CREATE TRIGGER, CREATE FUNCTION, XA, ...) and for parsed
// statements that do not shape tables. ignorable is true for statements that
// never change a table's definition or rows in a ROW-format binlog; known is
// false when the leading words mean nothing to it. mode is the sql_mode the
// query was written under.
func classifyText(query string, mode SQLMode) (kind string, ignorable, known bool) {
	sig := significantTokens(lexMode(query, mode))
	if len(sig) == 0 {
		return "empty", true, true
	}
	word := func(i int) string {
		if i < len(sig) && sig[i].kind == tkWord {
			return sig[i].upper()
		}
		return ""
	}
	first := word(0)
	lower := strings.ToLower
	switch first {
	case "CREATE", "DROP", "ALTER":
		temporary := false
		// The object word comes after modifiers (OR REPLACE, DEFINER = u@h,
		// SQL SECURITY ..., ALGORITHM = ..., TEMPORARY, ONLINE, ...).
		for j := 1; j < len(sig) && j < 24; j++ {
			switch w := word(j); w {
			case "TEMPORARY":
				temporary = true
			case "TABLE":
				if temporary {
					return lower(first) + " temporary table", true, true
				}
				return lower(first) + " table", false, true
			case "DATABASE", "SCHEMA":
				return lower(first) + " database", false, true
			case "INDEX", "UNIQUE", "FULLTEXT", "SPATIAL":
				if first == "ALTER" {
					return "", false, false
				}
				return lower(first) + " index", false, true
			case "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "USER", "ROLE", "SERVER",
				"SEQUENCE", "TABLESPACE", "LOGFILE", "PACKAGE", "SYNONYM", "PLUGIN":
				return lower(first) + " " + lower(w), true, true
			}
		}
		return lower(first), false, false
	case "RENAME":
		switch word(1) {
		case "TABLE", "TABLES":
			return "rename table", false, true
		case "USER":
			return "rename user", true, true
		}
		return "rename", false, false
	case "TRUNCATE":
		return "truncate table", false, true
	case "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK", "CHECKSUM":
		return lower(first) + " table", true, true
	case "INSTALL", "UNINSTALL":
		return lower(first) + " " + lower(word(1)), true, true
	case "RELEASE":
		return "release savepoint", true, true
	case "START":
		return "begin", true, true
	case "SET":
		if word(1) != "STATEMENT" {
			return "set", true, true
		}
		// MariaDB's SET STATEMENT var=value[, ...] FOR <statement>: the
		// statement decides.
		for j := 2; j < len(sig); j++ {
			if word(j) == "FOR" {
				parts := make([]string, 0, len(sig)-j-1)
				for _, t := range sig[j+1:] {
					parts = append(parts, t.text)
				}
				rest := strings.Join(parts, " ")
				if k, ign, _ := classifyText(rest, mode); ign {
					return k, true, true
				}
				return "set statement", false, true
			}
		}
		return "set statement", false, false
	case "GRANT", "REVOKE", "FLUSH", "XA", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT",
		"RESET", "PURGE", "KILL", "SHOW", "USE", "DO", "LOCK", "UNLOCK", "HELP", "DESCRIBE",
		"DESC", "EXPLAIN", "SELECT", "BACKUP", "BINLOG", "SHUTDOWN", "CACHE":
		return lower(first), true, true
	case "INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "CALL", "HANDLER", "PREPARE",
		"EXECUTE", "DEALLOCATE", "WITH", "IMPORT":
		// Statement-based changes: rows the tracker and the syncer never
		// see as row events.
		return "statement-based " + lower(first), false, true
	}
	return lower(first), false, false
}
