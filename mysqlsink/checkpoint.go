package mysqlsink

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
	"github.com/go-sql-driver/mysql"
)

// checkpointTable is the name of the checkpoint table in the checkpoint
// schema.
const checkpointTable = "checkpoint"

// checkpointDDL creates the checkpoint table; %s is its quoted name. One row
// per task and source; pos and safe_until hold streamer.Position text
// (ParsePosition reads them back), schema_json the opaque tracked schema,
// epoch the fencing epoch, snapshot the snapshot unit's opaque progress
// (NULL when none), server the identity of the upstream server pos is a
// place of (NULL when unknown). A row whose pos is NULL holds no checkpoint
// yet (a placeholder a transaction inserts to lock).
const checkpointDDL = "CREATE TABLE IF NOT EXISTS %s (\n" +
	"  task VARCHAR(255) NOT NULL,\n" +
	"  source VARCHAR(255) NOT NULL,\n" +
	"  pos TEXT NULL,\n" +
	"  safe_until TEXT NULL,\n" +
	"  schema_json LONGBLOB NULL,\n" +
	"  epoch BIGINT NOT NULL DEFAULT 0,\n" +
	"  snapshot LONGBLOB NULL,\n" +
	"  server VARCHAR(255) NULL,\n" +
	"  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),\n" +
	"  PRIMARY KEY (task, source)\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

// lateColumns are the columns added to the checkpoint table after its first
// version, in the order they came, with their definitions: a table created
// before one existed gets it added (ALTER TABLE ... ADD COLUMN).
var lateColumns = [][2]string{
	{"snapshot", "LONGBLOB NULL"},
	{"server", "VARCHAR(255) NULL"},
}

// erBadDB is ER_BAD_DB_ERROR, unknown database; erBadField is
// ER_BAD_FIELD_ERROR, unknown column; erDupEntry ER_DUP_ENTRY.
const (
	erBadDB    = 1049
	erBadField = 1054
	erDupEntry = 1062
)

// cpRow is a checkpoint as stored.
type cpRow struct {
	task, source   string
	pos, safeUntil sql.NullString
	schema         []byte
	epoch          int64
	snapshot       []byte
	server         sql.NullString
}

// sameAs reports whether two stored checkpoints are equal (NULL and empty
// schema alike).
func (r *cpRow) sameAs(o *cpRow) bool {
	return r.pos == o.pos && r.safeUntil == o.safeUntil && bytes.Equal(r.schema, o.schema) && r.epoch == o.epoch &&
		bytes.Equal(r.snapshot, o.snapshot) && r.server == o.server
}

func encodeCheckpoint(cp dmworker.Checkpoint) (*cpRow, error) {
	for _, s := range []string{cp.Task, cp.Source, cp.Server} {
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 255 {
			return nil, fmt.Errorf("%w: checkpoint task, source and server must be valid UTF-8 of at most 255 characters: %q, %q, %q",
				ErrInvalidBatch, cp.Task, cp.Source, cp.Server)
		}
	}
	if err := cp.Pos.Validate(); err != nil {
		return nil, fmt.Errorf("%w: checkpoint position: %w", ErrInvalidBatch, err)
	}
	if err := cp.SafeUntil.Validate(); err != nil {
		return nil, fmt.Errorf("%w: checkpoint safe-until position: %w", ErrInvalidBatch, err)
	}
	return &cpRow{
		task: cp.Task, source: cp.Source,
		pos:       sql.NullString{String: cp.Pos.String(), Valid: true},
		safeUntil: sql.NullString{String: cp.SafeUntil.String(), Valid: true},
		schema:    cp.Schema,
		epoch:     cp.Epoch,
		snapshot:  cp.Snapshot,
		server:    sql.NullString{String: cp.Server, Valid: cp.Server != ""},
	}, nil
}

func (r *cpRow) decode() (dmworker.Checkpoint, error) {
	cp := dmworker.Checkpoint{Task: r.task, Source: r.source, Schema: r.schema, Epoch: r.epoch, Snapshot: r.snapshot, Server: r.server.String}
	var err error
	if cp.Pos, err = streamer.ParsePosition(r.pos.String); err != nil {
		return cp, fmt.Errorf("stored position: %w", err)
	}
	if r.safeUntil.Valid {
		if cp.SafeUntil, err = streamer.ParsePosition(r.safeUntil.String); err != nil {
			return cp, fmt.Errorf("stored safe-until position: %w", err)
		}
	}
	return cp, nil
}

func staleEpoch(cp *cpRow, stored int64) error {
	return fmt.Errorf("%w: checkpoint of task %q source %q from epoch %d, epoch %d stored",
		dmworker.ErrStaleEpoch, cp.task, cp.source, cp.epoch, stored)
}

// ensureCheckpointTable creates the checkpoint table (and its database) if
// it does not exist, once per Sink; it tries again after a failure.
func (s *Sink) ensureCheckpointTable(ctx context.Context) *Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpReady {
		return nil
	}
	create := fmt.Sprintf(checkpointDDL, s.cpTable)
	_, err := s.db.ExecContext(ctx, create)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == erBadDB {
		// Create the database only when missing: CREATE DATABASE IF NOT
		// EXISTS needs a privilege the user may lack even when it exists.
		createDB := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(s.cfg.checkpointSchema)
		if _, err := s.db.ExecContext(ctx, createDB); err != nil {
			return &Error{Op: "checkpoint", Table: s.cfg.checkpointSchema, Statement: createDB, Err: err}
		}
		_, err = s.db.ExecContext(ctx, create)
	}
	if err != nil {
		return &Error{Op: "checkpoint", Table: s.cpName, Statement: shorten(create), Err: err}
	}
	// A table created by an older version lacks the late columns: probe
	// each (cheaper than information_schema; MySQL lacks ADD COLUMN IF NOT
	// EXISTS) and add it when the server says it is unknown.
	for _, c := range lateColumns {
		probe := "SELECT " + c[0] + " FROM " + s.cpTable + " WHERE 1 = 0"
		rows, err := s.db.QueryContext(ctx, probe)
		if err == nil {
			err = rows.Close()
		}
		if errors.As(err, &me) && me.Number == erBadField {
			alter := "ALTER TABLE " + s.cpTable + " ADD COLUMN " + c[0] + " " + c[1]
			if _, err = s.db.ExecContext(ctx, alter); err != nil && isDupColumn(err) {
				err = nil
			}
			if err != nil {
				return &Error{Op: "checkpoint", Table: s.cpName, Statement: alter, Err: err}
			}
		} else if err != nil {
			return &Error{Op: "checkpoint", Table: s.cpName, Statement: probe, Err: err}
		}
	}
	s.cpReady = true
	return nil
}

// querier is what reads and writes checkpoints: a transaction or the pool.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readRow reads the checkpoint row of task and source, locking it with
// FOR UPDATE when lock is set; nil when there is none.
func (s *Sink) readRow(ctx context.Context, q querier, task, source string, lock bool) (*cpRow, *Error) {
	query := "SELECT pos, safe_until, schema_json, epoch, snapshot, server FROM " + s.cpTable + " WHERE task = ? AND source = ?"
	if lock {
		query += " FOR UPDATE"
	}
	r := &cpRow{task: task, source: source}
	err := q.QueryRowContext(ctx, query, task, source).Scan(&r.pos, &r.safeUntil, &r.schema, &r.epoch, &r.snapshot, &r.server)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{Op: "checkpoint", Table: s.cpName, Statement: query, Err: err}
	}
	return r, nil
}

// loadRow reads the stored checkpoint of task and source without a lock;
// nil when there is none (or only a placeholder).
func (s *Sink) loadRow(ctx context.Context, task, source string) (*cpRow, *Error) {
	r, e := s.readRow(ctx, s.db, task, source, false)
	if e != nil || r == nil || !r.pos.Valid {
		return nil, e
	}
	return r, nil
}

// lockCheckpoint locks the checkpoint row of cp's task and source in tx,
// inserting a placeholder row first when there is none so that concurrent
// writers queue on one row lock, and refuses cp when a newer epoch is
// stored. It returns the checkpoint stored before (a placeholder when none).
func (s *Sink) lockCheckpoint(ctx context.Context, tx *sql.Tx, cp *cpRow) (*cpRow, *Error) {
	prev, e := s.readRow(ctx, tx, cp.task, cp.source, true)
	if e != nil {
		return nil, e
	}
	if prev == nil {
		ins := "INSERT IGNORE INTO " + s.cpTable + " (task, source, epoch) VALUES (?, ?, 0)"
		if _, err := tx.ExecContext(ctx, ins, cp.task, cp.source); err != nil {
			return nil, &Error{Op: "checkpoint", Table: s.cpName, Statement: ins, Err: err}
		}
		if prev, e = s.readRow(ctx, tx, cp.task, cp.source, true); e != nil {
			return nil, e
		}
		if prev == nil {
			return nil, &Error{Op: "checkpoint", Table: s.cpName, Err: errors.New("checkpoint row vanished after insert")}
		}
	}
	if prev.epoch > cp.epoch {
		return nil, &Error{Op: "checkpoint", Table: s.cpName, Err: staleEpoch(cp, prev.epoch)}
	}
	return prev, nil
}

// checkFence refuses, in tx, a batch written under f when the checkpoint
// stored for f's task and source is from a newer epoch. The row is read
// under a shared lock held to the end of tx, so that a newer epoch's
// checkpoint (which locks the row exclusively) cannot commit while the batch
// is applied. With no stored row there is nothing to be fenced by.
func (s *Sink) checkFence(ctx context.Context, tx *sql.Tx, f dmworker.Fence) *Error {
	query := "SELECT epoch FROM " + s.cpTable + " WHERE task = ? AND source = ? LOCK IN SHARE MODE"
	var stored int64
	err := tx.QueryRowContext(ctx, query, f.Task, f.Source).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return &Error{Op: "checkpoint", Table: s.cpName, Statement: query, Err: err}
	}
	if stored > f.Epoch {
		return &Error{Op: "checkpoint", Table: s.cpName, Err: fmt.Errorf("%w: batch of task %q source %q from epoch %d, epoch %d stored",
			dmworker.ErrStaleEpoch, f.Task, f.Source, f.Epoch, stored)}
	}
	return nil
}

// writeCheckpoint stores cp in its row, locked by lockCheckpoint. A nil
// schema keeps the stored one (the contract's "unchanged"); the snapshot is
// stored as given (nil: NULL).
func (s *Sink) writeCheckpoint(ctx context.Context, tx *sql.Tx, cp *cpRow) *Error {
	upd := "UPDATE " + s.cpTable + " SET pos = ?, safe_until = ?, schema_json = COALESCE(?, schema_json), epoch = ?, " +
		"snapshot = ?, server = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE task = ? AND source = ?"
	var schema, snapshot any
	if cp.schema != nil {
		schema = cp.schema
	}
	if cp.snapshot != nil {
		snapshot = cp.snapshot
	}
	if _, err := tx.ExecContext(ctx, upd, cp.pos.String, cp.safeUntil.String, schema, cp.epoch, snapshot, cp.server, cp.task, cp.source); err != nil {
		return &Error{Op: "checkpoint", Table: s.cpName, Statement: upd, Err: err}
	}
	return nil
}

// stored returns the row writeCheckpoint leaves when prev was stored before.
func (r *cpRow) stored(prev *cpRow) *cpRow {
	out := *r
	if out.schema == nil && prev != nil {
		out.schema = prev.schema
	}
	return &out
}

// saveRow stores cp in a transaction of its own, fenced.
func (s *Sink) saveRow(ctx context.Context, cp *cpRow) *Error {
	if e := s.ensureCheckpointTable(ctx); e != nil {
		return e
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return &Error{Op: "begin", Err: err}
	}
	if _, e := s.lockCheckpoint(ctx, tx, cp); e != nil {
		_ = tx.Rollback()
		return e
	}
	if e := s.writeCheckpoint(ctx, tx, cp); e != nil {
		_ = tx.Rollback()
		return e
	}
	if err := commitTx(ctx, tx); err != nil {
		return &Error{Op: "commit", Table: s.cpName, Err: err}
	}
	return nil
}

// LoadCheckpoint returns the checkpoint stored for task and source, and
// false when there is none. It creates the checkpoint table if needed.
func (s *Sink) LoadCheckpoint(ctx context.Context, task, source string) (dmworker.Checkpoint, bool, error) {
	if err := ctx.Err(); err != nil {
		return dmworker.Checkpoint{}, false, fail(ctx, &Error{Op: "checkpoint", Err: err})
	}
	if e := s.ensureCheckpointTable(ctx); e != nil {
		return dmworker.Checkpoint{}, false, fail(ctx, e)
	}
	r, e := s.loadRow(ctx, task, source)
	if e != nil {
		return dmworker.Checkpoint{}, false, fail(ctx, e)
	}
	if r == nil {
		return dmworker.Checkpoint{}, false, nil
	}
	cp, err := r.decode()
	if err != nil {
		return dmworker.Checkpoint{}, false, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName,
			Err: fmt.Errorf("task %q source %q: %w", task, source, err)})
	}
	return cp, true, nil
}

// SaveCheckpoint stores cp in a transaction of its own, after locking its
// row: a checkpoint from an epoch older than the stored one is refused with
// dmworker.ErrStaleEpoch.
func (s *Sink) SaveCheckpoint(ctx context.Context, cp dmworker.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, &Error{Op: "checkpoint", Err: err})
	}
	row, err := encodeCheckpoint(cp)
	if err != nil {
		return fail(ctx, &Error{Op: "validate", Err: err})
	}
	if e := s.saveRow(ctx, row); e != nil {
		return fail(ctx, e)
	}
	return nil
}

var _ dmworker.CheckpointMover = (*Sink)(nil)

// MoveCheckpoint implements dmworker.CheckpointMover: in one transaction
// it gives the checkpoint row of task and from the source to (the primary
// key changes in place, the row keeps everything else), after removing a
// placeholder row of to. It reports false, changing nothing, when from has
// no checkpoint or to has one.
func (s *Sink) MoveCheckpoint(ctx context.Context, task, from, to string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fail(ctx, &Error{Op: "checkpoint", Err: err})
	}
	if _, err := encodeCheckpoint(dmworker.Checkpoint{Task: task, Source: to}); err != nil {
		return false, fail(ctx, &Error{Op: "validate", Err: err})
	}
	if e := s.ensureCheckpointTable(ctx); e != nil {
		return false, fail(ctx, e)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fail(ctx, &Error{Op: "begin", Err: err})
	}
	defer func() { _ = tx.Rollback() }()
	del := "DELETE FROM " + s.cpTable + " WHERE task = ? AND source = ? AND pos IS NULL"
	if _, err := tx.ExecContext(ctx, del, task, to); err != nil {
		return false, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName, Statement: del, Err: err})
	}
	upd := "UPDATE " + s.cpTable + " SET source = ? WHERE task = ? AND source = ? AND pos IS NOT NULL"
	res, err := tx.ExecContext(ctx, upd, to, task, from)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == erDupEntry {
		return false, nil // to has a checkpoint
	}
	if err != nil {
		return false, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName, Statement: upd, Err: err})
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, nil
	}
	if err := commitTx(ctx, tx); err != nil {
		return false, fail(ctx, &Error{Op: "commit", Table: s.cpName, Err: err})
	}
	return true, nil
}

// CheckpointSources lists, in order, the sources that have a checkpoint
// of task: a host that named a task's source by default (as
// examples/migrate does) finds here the name it chose at the first run.
// It creates the checkpoint table if needed.
func (s *Sink) CheckpointSources(ctx context.Context, task string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fail(ctx, &Error{Op: "checkpoint", Err: err})
	}
	if e := s.ensureCheckpointTable(ctx); e != nil {
		return nil, fail(ctx, e)
	}
	query := "SELECT source FROM " + s.cpTable + " WHERE task = ? AND pos IS NOT NULL ORDER BY source"
	rows, err := s.db.QueryContext(ctx, query, task)
	if err != nil {
		return nil, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName, Statement: query, Err: err})
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var src string
		if err := rows.Scan(&src); err != nil {
			return nil, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName, Statement: query, Err: err})
		}
		out = append(out, src)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(ctx, &Error{Op: "checkpoint", Table: s.cpName, Statement: query, Err: err})
	}
	return out, nil
}

// isDupColumn reports ER_DUP_FIELDNAME: another sink added the column first.
func isDupColumn(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1060
}
