// Package mysqlsink is a dmworker.Sink and dmworker.CheckpointSink that
// writes into a MySQL or MariaDB server through the host's *sql.DB
// (github.com/go-sql-driver/mysql).
//
// # Writes
//
// Each Apply is one transaction on one connection. The connection's session
// is set up first (time_zone '+00:00', since TIMESTAMP values are UTC text;
// a non-strict sql_mode that takes zero and invalid dates, the enum error
// value and 0 in AUTO_INCREMENT columns; foreign_key_checks off; a
// wait_timeout of WithSessionIdleTimeout, 1 minute, so that the server rolls
// back a batch whose connection went half-open instead of holding its locks
// for hours) and put back as it was before the connection returns to the
// pool. Consecutive
// changes of one kind to one table share multi-row statements
// (WithMaxStatementRows):
//
//	normal mode  INSERT INTO `s`.`t` (`a`,`b`) VALUES (?,?),(?,?)
//	             UPDATE `s`.`t` SET `b`=CASE WHEN `a`=? THEN ? WHEN `a`=? THEN ? END
//	               WHERE `a` IN (?,?)  -- updates that keep their key and move
//	                                   -- no other unique value; else one by one:
//	             UPDATE `s`.`t` SET `a`=?,`b`=? WHERE `a`=?
//	             DELETE FROM `s`.`t` WHERE (`k1`,`k2`) IN ((?,?),(?,?))
//	safe mode    REPLACE INTO ... for inserts; for updates DELETE of the old
//	             rows, then REPLACE of the new ones
//
// The snapshot's first-run copy goes through ApplyBulk (dmworker.BulkSink)
// instead: each batch of inserts into one table is one LOAD DATA LOCAL
// INFILE of rows streamed from memory (go-sql-driver's reader handlers; the
// pool needs no allowAllFiles), which costs the server about 30% less CPU
// than INSERT text (sysbench rows; see BENCHMARKS.md). Values go in the bytes the INSERT would store;
// where that cannot be promised (a table whose text columns are in another
// character set than the connection's, a warning from the load, the
// server's local_infile off) the batch is refused, nothing applied, and the
// snapshot writes it with Apply.
//
// Tables with dmworker.Table.CheckForeignKeys (joined to a foreign key that
// cascades or sets NULL) are written with foreign_key_checks on, so that the
// downstream's foreign keys do what the upstream's did without logging it
// (changes with NoForeignKeyChecks: off, as upstream); deletes of a
// self-referencing one go one row per statement, in the upstream's order.
// In safe mode such a table never has a row deleted to be written again
// (its ON DELETE action would run): an insert is INSERT IGNORE, an update
// UPDATE IGNORE ... WHERE every column equals the old row's (NULL-safe)
// LIMIT 1, a delete DELETE IGNORE of the row equal to the old one, and an
// update that moves a row to another key also deletes the old row when the
// new key is taken (a replayed insert brought it back). A change is thus
// applied where its row is as the upstream found it and skipped where the
// changes after it have already been (see the README's limits).
//
// A row is found by its primary key, else by the first unique key with no
// NULL in the row, else by all its columns compared NULL-safely with
// LIMIT 1, one row per statement. Generated columns are never written.
// Values go to the driver as placeholders, in the Go types of the
// dmworker.Change contract, and come out of the server equal: BIT from
// uint64, GEOMETRY in MySQL's internal format (SRID and WKB), JSON as text,
// zero dates, fractional seconds, TIME beyond 24 hours, FLOAT to the bit.
// DECIMAL values are compared through CAST(? AS DECIMAL(p,s)) so that close
// values are never taken for one another.
//
// Limits: character columns compare under their collation, so in a table
// without keys rows that differ only in letter case or trailing spaces are
// interchangeable; and in safe mode such a table replaces one equal row per
// insert, which converges only when no two of its rows were equal at any
// point of the replayed stretch (distinct final rows are not enough: rows
// that were duplicates for a while, then changed, can come out short).
//
// # DDL
//
// ExecDDL runs the statement on a connection of its own, after USE of
// DDL.Schema when the statement names a table, and closes that connection afterwards rather than
// return it to the pool with another default database. With DDL.SafeMode
// the errors a DDL that already ran meets (table or column exists, unknown
// table, duplicate key name, ...) are success. A DDL is not transactional:
// if its checkpoint cannot be stored once it ran, the error is not
// retryable.
//
// # Checkpoints
//
// Checkpoints live in the table `checkpoint` of the database named by
// WithCheckpointSchema (default "dmworker_meta"), created on first use
// (abridged):
//
//	CREATE TABLE `dmworker_meta`.`checkpoint` (
//	  task VARCHAR(255) NOT NULL,       -- Checkpoint.Task
//	  source VARCHAR(255) NOT NULL,     -- Checkpoint.Source
//	  pos TEXT NULL,                    -- Checkpoint.Pos, streamer.Position text
//	  safe_until TEXT NULL,             -- Checkpoint.SafeUntil, "(none)" when zero
//	  schema_json LONGBLOB NULL,        -- Checkpoint.Schema, opaque
//	  epoch BIGINT NOT NULL DEFAULT 0,  -- Checkpoint.Epoch
//	  snapshot LONGBLOB NULL,           -- Checkpoint.Snapshot, opaque
//	  server VARCHAR(255) NULL,         -- Checkpoint.Server, NULL when unknown
//	  updated_at TIMESTAMP(6) NOT NULL, -- time of the last write
//	  PRIMARY KEY (task, source)
//	)
//
// A table made by an older version gets the columns it lacks (snapshot,
// server) added on first use; its rows keep working (server NULL: unknown).
// MoveCheckpoint renames a row's source in place (dmworker.CheckpointMover);
// CheckpointSources lists the sources a task has checkpoints for.
//
// A row whose pos is NULL holds no checkpoint. A batch's checkpoint is
// written in the batch's transaction: the row is locked first (SELECT ...
// FOR UPDATE, after inserting it if missing), the batch is refused with
// dmworker.ErrStaleEpoch when the stored epoch is newer, and the row is
// updated last. Writers of one task and source therefore queue on one row
// lock, and an old writer cannot commit once a newer epoch is stored. A
// checkpoint with a nil Schema keeps the stored schema. A batch without a
// checkpoint but with a Fence (the syncer's parallel workers) reads the
// row's epoch first thing in its transaction under a shared lock (LOCK IN
// SHARE MODE): such batches run side by side, and a newer epoch's
// checkpoint waits for them, then refuses every later one.
//
// The Sink is a dmworker.ShardLockStore too: a ShardGroup's lock state
// (pessimistic shard mode) lives beside the checkpoints, in the table
// `shard_lock` of the same database, one row per task and downstream table
// (task, target "schema.table", state: the group's opaque state), created
// on first use.
//
// # Errors
//
// Every error is an *Error naming the operation, the table and the start of
// the statement (never the row values). Lost connections, deadlocks (1213),
// lock wait timeouts (1205), too many connections (1040, 1203), killed
// queries or connections (1317, 1927) and a server gone away (2006, 2013)
// are wrapped with dmworker.Retryable unless the call's context is done;
// nothing of the call was applied. A connection lost during the commit
// itself leaves the outcome unknown: with a checkpoint in the batch the sink
// reads it back to tell, otherwise the error also wraps ErrCommitUnknown
// and dmworker.ErrOutcomeUnknown (the syncer applies the batch again in
// safe mode; a snapshot copy into a table without a key starts that table
// again).
//
// # The host's pool
//
// The sink works with any go-sql-driver configuration. The connection
// character set must be utf8mb4 (the driver's default) for 4-byte
// characters. On a utf8mb4, utf8, latin1, ascii or binary connection the
// sink writes the batches' values into its statements as literals
// (backslash-escaped; its session's sql_mode keeps backslash escapes on):
// one round trip per statement whatever the driver's configuration. With
// another character set it sends placeholders, and interpolateParams=true
// then saves two round trips per statement (without it, each statement is
// prepared, run and closed). Apply may run on
// several goroutines at once (the syncer's parallel workers), each call on
// its own connection: keep at least as many idle connections as workers
// (db.SetMaxIdleConns; database/sql keeps 2 by default), or most calls open
// a new connection. A pool that serves only sinks (one or several) can be
// declared with WithExclusivePool: the session variables are then set once
// per connection rather than set and restored around every Apply. The user needs INSERT, UPDATE, DELETE and SELECT on the
// tables, the privileges the DDLs need, and CREATE on the checkpoint
// database unless it exists.
package mysqlsink
