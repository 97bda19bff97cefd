// Package schema tracks table definitions through DDL, so that the syncer
// decodes each row event with the columns its table had at that position,
// and splits, classifies and renames DDL statements for filtering, routing
// and the downstream.
//
// # Tracker
//
// A Tracker is seeded with CreateFromSQL (the upstream's SHOW CREATE TABLE
// and SHOW CREATE DATABASE output) and follows the binlog's query events
// with Apply. Its state goes with the syncer's checkpoint (Marshal,
// Unmarshal), so that a restart at an old position decodes old rows with the
// old columns. Definitions are immutable once handed out; a DDL replaces
// them. Column types are written as MariaDB 10.11's SHOW CREATE TABLE and
// information_schema.COLUMNS.COLUMN_TYPE print them (display widths on
// integers, JSON as longtext); TestTrackerMatchesServer checks the tracker
// against a real server statement by statement.
//
// Foreign keys: each table's foreign keys (ForeignKeyDef: columns,
// referenced table and columns, ON DELETE / ON UPDATE actions) are kept
// through CREATE TABLE (inline REFERENCES included), ALTER TABLE ADD / DROP
// FOREIGN KEY, column and table renames (the referencing keys follow the
// referenced table, as InnoDB's do), and CREATE TABLE ... LIKE (which copies
// none), with InnoDB's names for unnamed ones (<table>_ibfk_<n>). MariaDB
// quirk not followed: an ALTER TABLE that renames the table with the COPY
// algorithm loses its self-references there.
//
// Generated and invisible columns: MariaDB's row images (binlog_row_image
// FULL) carry a value for every column, VIRTUAL and STORED/PERSISTENT
// generated columns and INVISIBLE columns included, in table order
// (TestBinlogColumnsMatchTracker checks it). The tracker therefore keeps
// them in Columns, flagged Generated or Invisible; a sink must not write
// generated columns.
//
// # Statements
//
// Split parses a query with the TiDB parser and returns single-table
// statements with their kind and tables; Render writes a statement back with
// its tables renamed. Statements that do not shape tables (accounts, grants,
// FLUSH, views, triggers, routines, events, sequences, temporary tables,
// transaction control, ...) come back as Ignored, whether or not the parser
// can read them. A statement that may shape tables but that the tracker
// cannot parse or follow is ErrUnsupportedDDL, never a guess.
//
// MariaDB forms the parser rejects or misreads are handled by a token-level
// rewrite documented in compat.go (GEOMETRY/UUID/INET types, SPATIAL
// indexes, INVISIBLE and COMPRESSED columns, PERSISTENT, CREATE OR REPLACE
// TABLE, ALTER ONLINE/IGNORE TABLE, ALGORITHM=NOCOPY, WAIT/NOWAIT, IF [NOT]
// EXISTS clauses, NATIONAL types, /*M!...*/ comments, quoted engine
// options). Known ErrUnsupportedDDL cases (see forms_test.go): WITH SYSTEM
// VERSIONING, PERIOD FOR, partition changes in ALTER TABLE, CREATE TABLE ...
// SELECT, statement-based DML, REF_SYSTEM_ID, COMPRESSED=<method>, RENAME
// TABLE IF EXISTS, CREATE OR REPLACE INDEX, ALTER INDEX ... IGNORED, CONVERT
// TO CHARACTER SET binary. SET STATEMENT ... FOR <statement> is read as its
// statement.
//
// Names are case-sensitive (lower_case_table_names=0); column and index
// names compare case-insensitively, as on the server.
//
// # sql_mode
//
// Split reads a query in the default sql_mode; SplitMode in the mode a query
// event recorded (StatusVarsSQLMode decodes it from the event's status
// variables): double-quoted names under ANSI_QUOTES, || under
// PIPES_AS_CONCAT, REAL under REAL_AS_FLOAT, the types of MariaDB's ORACLE
// mode, and the others SQLMode lists. Render always writes the default
// mode's SQL with the same meaning (TestSQLModesMatchServer checks it
// against a real server mode by mode); what cannot be written so (ORACLE's
// ||, CONCAT, LENGTH, ...; an empty string under EMPTY_STRING_IS_NULL
// anywhere but as a DEFAULT) is ErrUnsupportedDDL. SHOW CREATE output given
// to CreateFromSQL must be read in a session without ANSI_QUOTES, ORACLE
// and the NO_*_OPTIONS modes.
//
// StatementDML recognises the row changes a binlog in STATEMENT or MIXED
// format logs as query events, and the tables they write.
package schema
