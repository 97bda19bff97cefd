package mysqlsink

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/dmworker/dmworker"
	"github.com/go-sql-driver/mysql"
	perrors "github.com/pingcap/errors"
)

// ErrCommitUnknown is wrapped by the error of an Apply whose connection was
// lost while committing, when the sink could not tell whether the commit went
// through. The error is also retryable: apply the batch again in safe mode.
// (With a checkpoint in the batch the sink reads it back to tell, and returns
// this only when that fails or cannot decide.) It wraps
// dmworker.ErrOutcomeUnknown.
var ErrCommitUnknown = fmt.Errorf("mysqlsink: connection lost during commit; the batch may have been applied: %w", dmworker.ErrOutcomeUnknown)

// ErrInvalidBatch is wrapped by the error of an Apply whose batch breaks the
// dmworker.Change contract (no table, a row of the wrong length, a missing
// image, an unknown kind) or carries a checkpoint with an invalid position.
// Nothing is sent to the server.
var ErrInvalidBatch = errors.New("mysqlsink: invalid batch")

// Error is the error type of the sink's methods. It names what was being done
// and to which table, with the start of the statement (its placeholders, never
// the values). Errors a retry may cure are also wrapped with
// dmworker.Retryable; match with dmworker.IsRetryable, errors.Is and
// errors.As.
type Error struct {
	// Op is what failed: "insert", "replace", "update", "delete", "ddl",
	// "checkpoint", "connect", "session", "begin", "commit", "validate",
	// "schema" (reading a table's definition, ShowCreateTable), or "apply"
	// (a context done before anything was sent).
	Op string
	// Table is the table written ("schema.table"), when there is one.
	Table string
	// Rows is the number of rows the statement covers, 0 when not a row
	// statement.
	Rows int
	// Statement is the first 200 bytes of the statement's SQL text.
	Statement string
	// Err is the cause: the driver's error (a *mysql.MySQLError for
	// server errors), a context error, or one of this package's or
	// dmworker's sentinels.
	Err error

	noRetry bool // never mark retryable
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("mysqlsink: ")
	b.WriteString(e.Op)
	if e.Table != "" {
		b.WriteString(" ")
		b.WriteString(e.Table)
	}
	switch {
	case e.Rows == 1:
		b.WriteString(" (1 row)")
	case e.Rows > 1:
		fmt.Fprintf(&b, " (%d rows)", e.Rows)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Statement != "" {
		fmt.Fprintf(&b, " [statement %q]", e.Statement)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// statementPrefixLen is how much of a statement an error message shows.
const statementPrefixLen = 200

// shorten returns the start of stmt for an error message.
func shorten(stmt string) string {
	if len(stmt) <= statementPrefixLen {
		return stmt
	}
	cut := statementPrefixLen
	for cut > 0 && !utf8.RuneStart(stmt[cut]) {
		cut--
	}
	return stmt[:cut] + "..."
}

// MySQL and MariaDB error numbers that a retry may cure.
const (
	erConCount          = 1040 // ER_CON_COUNT_ERROR: too many connections
	erServerShutdown    = 1053 // ER_SERVER_SHUTDOWN
	erTooManyUserConns  = 1203 // ER_TOO_MANY_USER_CONNECTIONS
	erLockWaitTimeout   = 1205 // ER_LOCK_WAIT_TIMEOUT
	erLockDeadlock      = 1213 // ER_LOCK_DEADLOCK
	erQueryInterrupted  = 1317 // ER_QUERY_INTERRUPTED (KILL QUERY)
	erNeedReprepare     = 1615 // ER_NEED_REPREPARE
	erConnectionKilled  = 1927 // MariaDB ER_CONNECTION_KILLED (KILL CONNECTION)
	crServerGone        = 2006 // CR_SERVER_GONE_ERROR
	crServerLost        = 2013 // CR_SERVER_LOST
	erClientIdleTimeout = 4031 // MySQL 8 ER_CLIENT_INTERACTION_TIMEOUT
)

// isRetryable says whether err, from a call made with ctx, may be cured by
// trying again: a lost or broken connection, a deadlock, a lock wait
// timeout, too many connections, a killed query or connection. Nothing is
// retryable once ctx is done: the caller gave up.
func isRetryable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erLockDeadlock, erLockWaitTimeout, crServerGone, crServerLost,
			erConCount, erTooManyUserConns, erQueryInterrupted, erConnectionKilled,
			erServerShutdown, erNeedReprepare, erClientIdleTimeout:
			return true
		}
		return false
	}
	return isConnLost(err)
}

// isConnLost says whether err means the connection broke, so that the
// outcome of the statement in flight is unknown.
func isConnLost(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, mysql.ErrPktSync) || errors.Is(err, mysql.ErrPktSyncMul) ||
		errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case crServerGone, crServerLost, erConnectionKilled, erServerShutdown:
			return true
		}
	}
	return false
}

// fail finishes an error: the context's error joins the cause when ctx is
// done (so errors.Is(err, context.Canceled) holds whatever the driver
// said), a stack is recorded, and retryable errors are marked.
func fail(ctx context.Context, e *Error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(e.Err, cerr) {
		if e.Err == nil {
			e.Err = cerr
		} else {
			e.Err = fmt.Errorf("%w (%w)", cerr, e.Err)
		}
	}
	retry := !e.noRetry && isRetryable(ctx, e.Err)
	var err error = perrors.WithStack(e)
	if retry {
		err = dmworker.Retryable(err)
	}
	return err
}
