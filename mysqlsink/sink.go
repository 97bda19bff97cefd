package mysqlsink

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/go-sql-driver/mysql"
)

// Sink is a dmworker.Sink and dmworker.CheckpointSink that writes into a
// MySQL or MariaDB server through the host's *sql.DB. It is safe for
// concurrent use; it holds no connection between calls and never closes
// the pool.
type Sink struct {
	db      *sql.DB
	cfg     config
	cpTable string // `schema`.`checkpoint`
	cpName  string // schema.checkpoint, for errors
	// setup, restore and ddlSetup are sessionSetup, sessionRestore and
	// ddlSessionSetup, with sql_log_bin under WithoutBinlog.
	setup, restore, ddlSetup string

	mu      sync.Mutex
	cpReady bool // the checkpoint table exists
	slReady bool // the shard lock table exists
	flavor  serverFlavor
	// inline: 0 not asked yet, 1 values go into statements as literals,
	// 2 as placeholders (see canInline).
	inline uint8
	// ready holds, with WithExclusivePool, the driver connections whose
	// session is set up. Holding them keeps a closed one's address from
	// being reused by a new connection; the set is emptied when it grows
	// past maxReady (the connections then get set up again).
	ready map[any]struct{}
	// bulk is ApplyBulk's state (bulk.go).
	bulk bulkState

	// commit, when set by tests, replaces tx.Commit in Apply.
	commit func(ctx context.Context, tx *sql.Tx) error
}

type serverFlavor uint8

const (
	flavorUnknown serverFlavor = iota
	flavorMariaDB
	flavorMySQL
)

var (
	_ dmworker.CheckpointSink = (*Sink)(nil)
	_ dmworker.ConcurrentSink = (*Sink)(nil)
)

// Concurrent reports that Apply may run on several goroutines at once: each
// call takes its own connection and transaction.
func (s *Sink) Concurrent() bool { return true }

// New returns a Sink writing through db, which stays the host's: the sink
// takes connections from it for the length of a call and never closes it.
// New checks its options and does not touch the server; the checkpoint
// table is created on first use.
func New(db *sql.DB, opts ...Option) (*Sink, error) {
	if db == nil {
		return nil, errors.New("mysqlsink: nil *sql.DB")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		db: db, cfg: cfg,
		cpTable: quoteTable(cfg.checkpointSchema, checkpointTable),
		cpName:  cfg.checkpointSchema + "." + checkpointTable,
		setup:   sessionSetup, restore: sessionRestore, ddlSetup: ddlSessionSetup,
	}
	idle := strconv.Itoa(int(cfg.sessionIdle / time.Second))
	s.setup += ", @dmworker_wait_timeout = @@SESSION.wait_timeout, SESSION wait_timeout = " + idle
	s.restore += ", SESSION wait_timeout = @dmworker_wait_timeout, @dmworker_wait_timeout = NULL"
	if cfg.noBinlog {
		s.setup += ", @dmworker_sql_log_bin = @@SESSION.sql_log_bin, SESSION sql_log_bin = 0"
		s.restore += ", SESSION sql_log_bin = @dmworker_sql_log_bin, @dmworker_sql_log_bin = NULL"
		s.ddlSetup += ", SESSION sql_log_bin = 0"
	}
	return s, nil
}

// sessionSQLMode lets in every value an upstream may hold, whatever its own
// sql_mode was: zero dates and zeros in dates, invalid dates, the enum error
// value (the empty string), 0 in an AUTO_INCREMENT column. It is not strict:
// the values come from a server that accepted them. It holds none of the
// modes that change how SQL parses or what a type means (ANSI_QUOTES,
// PIPES_AS_CONCAT, NO_BACKSLASH_ESCAPES, REAL_AS_FLOAT, ORACLE, ...), so
// that DDL.Query, written for the default mode, and the sink's own
// statements mean the same whatever the downstream's global sql_mode.
const sessionSQLMode = "NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION"

// sessionSetup saves the session variables the sink changes in user
// variables, then sets them: TIMESTAMP values are UTC text, and foreign keys
// are not checked (the upstream checked them; batches may reach the
// downstream in another order than the upstream's statements), except
// around the statements of tables with dmworker.Table.CheckForeignKeys.
// On MariaDB (10.2.1 and later, in a comment MySQL skips) neither are CHECK
// constraints: the upstream checked them, or a session of it turned
// check_constraint_checks off, and its rows and DDL must go in all the
// same, as MariaDB's own replicas take them.
// sessionRestore puts them back before the connection returns to the host's
// pool.
const (
	sessionSetup = "SET @dmworker_time_zone = @@SESSION.time_zone, @dmworker_sql_mode = @@SESSION.sql_mode, " +
		"@dmworker_foreign_key_checks = @@SESSION.foreign_key_checks, " +
		"SESSION time_zone = '+00:00', SESSION sql_mode = '" + sessionSQLMode + "', SESSION foreign_key_checks = 0" +
		" /*M!100201 , @dmworker_check_constraint_checks = @@SESSION.check_constraint_checks, SESSION check_constraint_checks = 0 */"
	sessionRestore = "SET SESSION time_zone = @dmworker_time_zone, SESSION sql_mode = @dmworker_sql_mode, " +
		"SESSION foreign_key_checks = @dmworker_foreign_key_checks, " +
		"@dmworker_time_zone = NULL, @dmworker_sql_mode = NULL, @dmworker_foreign_key_checks = NULL" +
		" /*M!100201 , SESSION check_constraint_checks = @dmworker_check_constraint_checks, @dmworker_check_constraint_checks = NULL */"
	ddlSessionSetup = "SET SESSION time_zone = '+00:00', SESSION sql_mode = '" + sessionSQLMode + "', SESSION foreign_key_checks = 0" +
		" /*M!100201 , SESSION check_constraint_checks = 0 */"

	// fkChecksOn and fkChecksOff switch the checks around the statements
	// of tables with dmworker.Table.CheckForeignKeys.
	fkChecksOn  = "SET SESSION foreign_key_checks = 1"
	fkChecksOff = "SET SESSION foreign_key_checks = 0"
)

// discard closes conn for good instead of returning it to the pool: its
// session may be in a state the host must not inherit, or broken.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// maxReady bounds Sink.ready.
const maxReady = 1024

// driverConn returns conn's driver connection, which identifies it.
func driverConn(conn *sql.Conn) any {
	var dc any
	_ = conn.Raw(func(c any) error { dc = c; return nil })
	return dc
}

// withSession runs fn on a connection set up by sessionSetup and puts the
// session back afterwards; when that cannot be done the connection is
// discarded. With WithExclusivePool a connection is set up once and not
// put back.
func (s *Sink) withSession(ctx context.Context, fn func(*sql.Conn) error) error {
	var conn *sql.Conn
	var dc any
	// A connection the server dropped while idle fails on first use: try
	// one more.
	for attempt := 0; ; attempt++ {
		var err error
		conn, err = s.db.Conn(ctx)
		if err != nil {
			return fail(ctx, &Error{Op: "connect", Err: err})
		}
		if s.cfg.exclusivePool {
			dc = driverConn(conn)
			s.mu.Lock()
			_, ok := s.ready[dc]
			s.mu.Unlock()
			if ok {
				break
			}
		}
		_, err = conn.ExecContext(ctx, s.setup)
		if err == nil {
			if s.cfg.exclusivePool {
				s.mu.Lock()
				if s.ready == nil || len(s.ready) >= maxReady {
					s.ready = make(map[any]struct{})
				}
				s.ready[dc] = struct{}{}
				s.mu.Unlock()
			}
			break
		}
		discard(conn)
		if attempt > 0 || !isConnLost(err) || ctx.Err() != nil {
			return fail(ctx, &Error{Op: "session", Statement: shorten(s.setup), Err: err})
		}
	}
	err := fn(conn)
	if ctx.Err() != nil {
		s.forget(dc)
		discard(conn)
		return err
	}
	if s.cfg.exclusivePool {
		if isConnLost(err) {
			s.forget(dc)
		}
		_ = conn.Close()
		return err
	}
	if _, rerr := conn.ExecContext(ctx, s.restore); rerr != nil {
		discard(conn)
	} else {
		_ = conn.Close()
	}
	return err
}

// forget drops dc from the set-up connections.
func (s *Sink) forget(dc any) {
	if dc == nil {
		return
	}
	s.mu.Lock()
	delete(s.ready, dc)
	s.mu.Unlock()
}

// Apply writes the batch in one transaction on one connection: the changes
// in order, consecutive changes of one kind to one table as multi-row
// statements, and b.Checkpoint (when set) after locking its row and
// checking its epoch.
//
// In normal mode inserts are INSERT, updates UPDATE ... WHERE the old row's
// key (many rows in one UPDATE ... CASE when they keep their key and move no
// other unique value), deletes DELETE ... WHERE key IN (...). In safe mode inserts are
// REPLACE, updates a DELETE of the old row and a REPLACE of the new one,
// except on tables with CheckForeignKeys, which are written with
// foreign_key_checks on and in safe mode without deleting rows that exist
// (see the package doc). A row's key is the primary key, else the first
// unique key with no NULL in the row, else every column (NULL-safe, one row at a time, LIMIT 1; an
// insert-or-replace then deletes one equal row before inserting). Generated
// columns are never written.
//
// A batch from an epoch older than the stored checkpoint's fails with
// dmworker.ErrStaleEpoch, nothing applied. Without a checkpoint, b.Fence
// (when set) is checked instead, first thing in the transaction, under a
// shared lock on the checkpoint row: batches of one epoch run in parallel,
// and a checkpoint of a newer epoch waits for them and then refuses every
// later one. Errors a retry may cure are
// marked retryable and nothing of the batch is applied, except when the
// connection is lost during the commit itself: the sink then reads the
// checkpoint back to tell whether the commit happened (nil error if it
// did), or returns a retryable error wrapping ErrCommitUnknown when it
// cannot tell.
func (s *Sink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, &Error{Op: "apply", Err: err})
	}
	if b == nil || (len(b.Changes) == 0 && b.Checkpoint == nil) {
		return nil
	}
	if err := validateChanges(b.Changes); err != nil {
		return fail(ctx, &Error{Op: "validate", Err: fmt.Errorf("%w: %v", ErrInvalidBatch, err)})
	}
	var cp *cpRow
	fence := b.Fence
	if b.Checkpoint != nil {
		var err error
		if cp, err = encodeCheckpoint(*b.Checkpoint); err != nil {
			return fail(ctx, &Error{Op: "validate", Err: err})
		}
		fence = dmworker.Fence{}
	}
	if cp != nil || fence.Task != "" {
		if e := s.ensureCheckpointTable(ctx); e != nil {
			return fail(ctx, e)
		}
	}
	pl := planner{maxRows: s.cfg.maxStatementRows}
	if hasJSON(b.Changes) {
		f, e := s.serverFlavor(ctx)
		if e != nil {
			return fail(ctx, e)
		}
		pl.jsonCast = f == flavorMySQL
	}
	inline, e := s.canInline(ctx)
	if e != nil {
		return fail(ctx, e)
	}
	pl.inline = inline
	stmts := pl.plan(b.Changes, b.SafeMode)
	err := s.withSession(ctx, func(conn *sql.Conn) error {
		return s.applyTx(ctx, conn, stmts, cp, fence)
	})
	// Resolved once the connection is back: a pool of one would
	// otherwise wait for it.
	var lost *commitLost
	if errors.As(err, &lost) {
		return s.commitFailed(ctx, lost.err, cp, lost.prev)
	}
	return err
}

// commitLost is applyTx's error when the commit failed; Apply turns it into
// its error with commitFailed.
type commitLost struct {
	err  error
	prev *cpRow
}

func (c *commitLost) Error() string { return c.err.Error() }

func (s *Sink) applyTx(ctx context.Context, conn *sql.Conn, stmts []stmt, cp *cpRow, fence dmworker.Fence) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fail(ctx, &Error{Op: "begin", Err: err})
	}
	if fence.Task != "" {
		if e := s.checkFence(ctx, tx, fence); e != nil {
			_ = tx.Rollback()
			return fail(ctx, e)
		}
	}
	var prev *cpRow
	if cp != nil {
		var e *Error
		if prev, e = s.lockCheckpoint(ctx, tx, cp); e != nil {
			_ = tx.Rollback()
			return fail(ctx, e)
		}
	}
	// The session's foreign_key_checks is off (sessionSetup); statements
	// on tables with CheckForeignKeys turn it on, and it is off again
	// before the connection goes back (with WithExclusivePool no restore
	// follows).
	fkOn := false
	defer func() {
		if fkOn && s.cfg.exclusivePool && ctx.Err() == nil {
			if _, err := conn.ExecContext(ctx, fkChecksOff); err != nil {
				// The next Apply must not find checks on: close the
				// connection instead.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}
	}()
	for _, st := range stmts {
		if st.fkChecks != fkOn {
			q := fkChecksOff
			if st.fkChecks {
				q = fkChecksOn
			}
			if _, err := tx.ExecContext(ctx, q); err != nil {
				_ = tx.Rollback()
				return fail(ctx, &Error{Op: "session", Table: st.table, Statement: q, Err: err})
			}
			fkOn = st.fkChecks
		}
		if _, err := tx.ExecContext(ctx, st.sql, st.args...); err != nil {
			_ = tx.Rollback()
			return fail(ctx, &Error{Op: st.op, Table: st.table, Rows: st.rows, Statement: shorten(st.sql), Err: err})
		}
	}
	if cp != nil {
		if e := s.writeCheckpoint(ctx, tx, cp); e != nil {
			_ = tx.Rollback()
			return fail(ctx, e)
		}
	}
	if s.commit != nil {
		err = s.commit(ctx, tx)
	} else {
		err = commitTx(ctx, tx)
	}
	if err != nil {
		return &commitLost{err: err, prev: prev}
	}
	return nil
}

// commitTx commits tx within ctx. database/sql's Commit takes no context,
// and the driver's waits for the server's answer for ever: a connection
// gone half-open (a middlebox that still acknowledges, a frozen peer)
// during the commit held the caller past any bound, WithSinkTimeout's
// included. So the COMMIT statement goes through ExecContext, which ctx's
// end interrupts by closing the connection (the outcome is then unknown,
// as for any commit whose answer was lost); Commit then only releases the
// Tx, at the cost of one more round trip that the server answers at once.
func commitTx(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// commitFailed turns a failed commit into the error Apply returns. When the
// connection was lost (or ctx ended) the commit may have happened; with a
// checkpoint in the batch that differs from the one stored before, reading
// it back tells.
func (s *Sink) commitFailed(ctx context.Context, err error, cp, prev *cpRow) error {
	if !isConnLost(err) && ctx.Err() == nil {
		return fail(ctx, &Error{Op: "commit", Err: err}) // the server said no
	}
	if cp != nil && prev != nil && ctx.Err() == nil {
		want := cp.stored(prev)
		if !prev.sameAs(want) {
			got, lerr := s.loadRow(ctx, cp.task, cp.source)
			switch {
			case lerr != nil: // cannot tell
			case got != nil && got.sameAs(want):
				return nil // committed; only the acknowledgement was lost
			case got == nil && !prev.pos.Valid, got != nil && got.sameAs(prev):
				return fail(ctx, &Error{Op: "commit", Err: err}) // rolled back
			}
		}
	}
	return fail(ctx, &Error{Op: "commit", Err: fmt.Errorf("%w: %w", ErrCommitUnknown, err)})
}

// runDDL runs the DDL on a connection that it discards afterwards.
func (s *Sink) runDDL(ctx context.Context, ddl *dmworker.DDL, table string) *Error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return &Error{Op: "connect", Err: err}
	}
	defer discard(conn)
	if _, err := conn.ExecContext(ctx, s.ddlSetup); err != nil {
		return &Error{Op: "session", Statement: shorten(s.ddlSetup), Err: err}
	}
	if ddl.ZeroGetsAutoValue {
		// As upstream: an ALTER that makes a column AUTO_INCREMENT
		// numbers its zeros.
		const q = "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_AUTO_VALUE_ON_ZERO', '')"
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return &Error{Op: "session", Statement: q, Err: err}
		}
	}
	// Schema-level statements (Table empty) run without a default
	// database: CREATE DATABASE names one that does not exist yet.
	if ddl.Schema != "" && ddl.Table != "" {
		use := "USE " + quoteIdent(ddl.Schema)
		if _, err := conn.ExecContext(ctx, use); err != nil {
			return &Error{Op: "ddl", Table: table, Statement: shorten(use), Err: err}
		}
	}
	if _, err := conn.ExecContext(ctx, ddl.Query); err != nil && !(ddl.SafeMode && alreadyApplied(err)) {
		return &Error{Op: "ddl", Table: table, Statement: shorten(ddl.Query), Err: err}
	}
	return nil
}

// alreadyAppliedErrors are the server errors of a DDL that already ran:
// the object it creates exists, the one it drops or changes does not.
var alreadyAppliedErrors = map[uint16]bool{
	1007: true, // ER_DB_CREATE_EXISTS
	1008: true, // ER_DB_DROP_EXISTS
	1050: true, // ER_TABLE_EXISTS_ERROR (CREATE TABLE, CREATE VIEW, RENAME TO)
	1051: true, // ER_BAD_TABLE_ERROR (DROP TABLE, DROP VIEW)
	1054: true, // ER_BAD_FIELD_ERROR (CHANGE or RENAME of a renamed column)
	1060: true, // ER_DUP_FIELDNAME (ADD COLUMN)
	1061: true, // ER_DUP_KEYNAME (ADD INDEX)
	1068: true, // ER_MULTIPLE_PRI_KEY (ADD PRIMARY KEY)
	1091: true, // ER_CANT_DROP_FIELD_OR_KEY (DROP COLUMN, DROP INDEX)
	1146: true, // ER_NO_SUCH_TABLE (ALTER or RENAME of a table renamed or dropped since)
	1176: true, // ER_KEY_DOES_NOT_EXITS (RENAME INDEX of a renamed index)
	1826: true, // ER_FK_DUP_NAME (ADD FOREIGN KEY, ADD CONSTRAINT CHECK)
	4092: true, // MariaDB ER_UNKNOWN_VIEW (DROP VIEW)
}

// alreadyApplied reports whether a DDL's error says it ran before.
func alreadyApplied(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && alreadyAppliedErrors[me.Number]
}

// hasJSON reports whether some table of the changes has a JSON column.
func hasJSON(changes []dmworker.Change) bool {
	var last *dmworker.Table
	for _, c := range changes {
		if c.Table == nil || c.Table == last {
			continue
		}
		last = c.Table
		for _, col := range c.Table.Columns {
			if baseType(col.Type) == "json" {
				return true
			}
		}
	}
	return false
}

// inlineCharsets are the client character sets in which no multi-byte
// character holds the byte of a backslash or a quote, so that a value
// escaped byte by byte is a literal of the same value.
var inlineCharsets = map[string]bool{"utf8mb4": true, "utf8mb3": true, "utf8": true, "latin1": true, "ascii": true, "binary": true}

// canInline reports, asking the server once, whether statements may carry
// their values as literals: when the pool's client character set is one of
// inlineCharsets. The session's sql_mode (set by the sink) keeps
// backslash escapes on. Literals save the driver's interpolation (or, with
// interpolateParams off, a prepare and a close per statement); other
// character sets get placeholders.
func (s *Sink) canInline(ctx context.Context) (bool, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inline == 0 {
		var cs string
		if err := s.db.QueryRowContext(ctx, "SELECT @@SESSION.character_set_client").Scan(&cs); err != nil {
			return false, &Error{Op: "connect", Statement: "SELECT @@SESSION.character_set_client", Err: err}
		}
		s.inline = 2
		if inlineCharsets[strings.ToLower(cs)] {
			s.inline = 1
		}
	}
	return s.inline == 1, nil
}

// serverFlavor tells MySQL from MariaDB, asking the server once.
func (s *Sink) serverFlavor(ctx context.Context) (serverFlavor, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flavor != flavorUnknown {
		return s.flavor, nil
	}
	var version string
	if err := s.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return flavorUnknown, &Error{Op: "connect", Statement: "SELECT VERSION()", Err: err}
	}
	s.flavor = flavorMySQL
	if strings.Contains(strings.ToLower(version), "mariadb") {
		s.flavor = flavorMariaDB
	}
	return s.flavor, nil
}

// ExecDDL runs ddl.Query on a connection of its own, with ddl.Schema (when
// set) as the default database and the session set up as for Apply, then
// stores ddl.Checkpoint (when set). With ddl.SafeMode, the errors a DDL that
// already ran meets when run again count as success (see alreadyApplied). The connection is closed afterwards
// rather than returned to the pool, as USE cannot be undone. DDL is not
// transactional: when the checkpoint cannot be stored after the DDL ran,
// the error says so and the DDL stays. A checkpoint from an epoch older than
// the stored one is refused before the DDL runs (dmworker.ErrStaleEpoch).
// Creating the schema is the caller's business (CREATE DATABASE IF NOT
// EXISTS is a DDL like any other).
func (s *Sink) ExecDDL(ctx context.Context, ddl *dmworker.DDL) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, &Error{Op: "ddl", Err: err})
	}
	if ddl == nil {
		return fail(ctx, &Error{Op: "ddl", Err: fmt.Errorf("%w: nil DDL", ErrInvalidBatch)})
	}
	table := ddl.Schema
	if ddl.Table != "" {
		table = ddl.Schema + "." + ddl.Table
	}
	var cp *cpRow
	if ddl.Checkpoint != nil {
		var err error
		if cp, err = encodeCheckpoint(*ddl.Checkpoint); err != nil {
			return fail(ctx, &Error{Op: "validate", Table: table, Err: err})
		}
		if e := s.ensureCheckpointTable(ctx); e != nil {
			return fail(ctx, e)
		}
		stored, e := s.loadRow(ctx, cp.task, cp.source)
		if e != nil {
			return fail(ctx, e)
		}
		if stored != nil && stored.epoch > cp.epoch {
			return fail(ctx, &Error{Op: "checkpoint", Table: table, Err: staleEpoch(cp, stored.epoch)})
		}
	}
	if e := s.runDDL(ctx, ddl, table); e != nil {
		return fail(ctx, e)
	}
	if cp != nil {
		if e := s.saveRow(ctx, cp); e != nil {
			// Not retryable whatever the cause: the call had an effect,
			// the DDL. A replay from the stored checkpoint runs it again
			// in safe mode.
			e.Err = fmt.Errorf("DDL on %s done, its checkpoint not stored: %w", table, e.Err)
			e.noRetry = true
			return fail(ctx, e)
		}
	}
	return nil
}

// DB returns the pool the sink writes through (the host's): it makes the
// sink a dmworker.ValidatorSink, so that a subtask's continuous validator
// reads the downstream through it.
func (s *Sink) DB() *sql.DB { return s.db }
