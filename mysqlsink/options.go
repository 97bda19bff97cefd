package mysqlsink

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Option configures a Sink; pass options to New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Defaults of the options.
const (
	DefaultCheckpointSchema = "dmworker_meta"
	DefaultMaxStatementRows = 256
)

// maxPlaceholders is the most placeholders MySQL accepts in one prepared
// statement; a statement's rows are cut to stay under it.
const maxPlaceholders = 65535

// maxStatementBytes bounds the approximate size of the values of one
// multi-row statement, well under the servers' default max_allowed_packet
// (16 MiB for MariaDB, 64 MiB for MySQL). A statement always takes at least
// one row, however big.
const maxStatementBytes = 4 << 20

type config struct {
	checkpointSchema string
	maxStatementRows int
	exclusivePool    bool
	noBinlog         bool
	sessionIdle      time.Duration
}

func defaultConfig() config {
	return config{
		checkpointSchema: DefaultCheckpointSchema,
		maxStatementRows: DefaultMaxStatementRows,
		sessionIdle:      DefaultSessionIdleTimeout,
	}
}

func (c *config) validate() error {
	if c.sessionIdle < time.Second || c.sessionIdle > 365*24*time.Hour {
		return fmt.Errorf("mysqlsink: session idle timeout %s out of range [1s, 8760h]", c.sessionIdle)
	}
	if c.checkpointSchema == "" {
		return fmt.Errorf("mysqlsink: empty checkpoint schema name")
	}
	if utf8.RuneCountInString(c.checkpointSchema) > 64 || !utf8.ValidString(c.checkpointSchema) ||
		strings.ContainsRune(c.checkpointSchema, 0) || strings.HasSuffix(c.checkpointSchema, " ") {
		return fmt.Errorf("mysqlsink: checkpoint schema %q is not a valid database name (at most 64 characters, no NUL, no trailing space)", c.checkpointSchema)
	}
	if c.maxStatementRows < 1 || c.maxStatementRows > maxPlaceholders {
		return fmt.Errorf("mysqlsink: max statement rows %d out of range [1, %d]", c.maxStatementRows, maxPlaceholders)
	}
	return nil
}

// WithCheckpointSchema names the database that holds the checkpoint table,
// `checkpoint`. The database and the table are created on the first
// checkpoint read or write (CREATE ... IF NOT EXISTS). Default:
// DefaultCheckpointSchema, "dmworker_meta".
func WithCheckpointSchema(name string) Option {
	return optionFunc(func(c *config) { c.checkpointSchema = name })
}

// WithMaxStatementRows sets how many rows one multi-row INSERT, REPLACE or
// DELETE carries at most, between 1 and 65535; fewer when the values would
// exceed 65535 placeholders or about 4 MiB. Default: DefaultMaxStatementRows,
// 256.
func WithMaxStatementRows(n int) Option {
	return optionFunc(func(c *config) { c.maxStatementRows = n })
}

// WithExclusivePool tells the sink that the pool is its own: nothing else
// takes connections from it. The sink then sets its session variables
// (time zone, sql_mode, foreign_key_checks; see Apply) once per connection
// and leaves them set, instead of setting them before and restoring them
// after every Apply: two statements fewer per batch. Without it (the
// default) a connection goes back to the pool as it came.
func WithExclusivePool() Option {
	return optionFunc(func(c *config) { c.exclusivePool = true })
}

// DefaultSessionIdleTimeout is WithSessionIdleTimeout's default.
const DefaultSessionIdleTimeout = time.Minute

// WithSessionIdleTimeout sets the server's wait_timeout for the sessions
// the sink writes in, while it writes (with WithExclusivePool, for good):
// how long the server keeps a session whose client has gone silent. A
// connection that goes half-open in the middle of a batch (the client gave
// up on it, the server was never told) would otherwise keep its open
// transaction, and the row locks it holds on the data and the checkpoint
// row, for the server's wait_timeout (8 hours by default), blocking every
// later batch. The sink never leaves a session idle mid-batch, so a short
// bound is safe. Whole seconds, from 1s. Default DefaultSessionIdleTimeout
// (1 minute).
func WithSessionIdleTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sessionIdle = d })
}

// WithoutBinlog keeps the sink's writes (batches and DDL) out of the
// downstream's binary log: its session runs with sql_log_bin = 0, which
// needs the SUPER or BINLOG ADMIN privilege. For a downstream whose binlog
// feeds nothing (no replica, no change capture), where it saves the
// server writing every row twice, as myloader does by default. The
// checkpoint table's writes outside batches are still logged. Default: the
// writes are logged like any other.
func WithoutBinlog() Option {
	return optionFunc(func(c *config) { c.noBinlog = true })
}
