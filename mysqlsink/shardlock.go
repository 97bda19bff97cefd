package mysqlsink

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/dmworker/dmworker"
)

// shardLockTable is the table of shard DDL locks in the checkpoint schema.
const shardLockTable = "shard_lock"

// shardLockDDL creates the shard lock table; %s is its quoted name. One row
// per task and downstream table ("schema.table"); state is the
// ShardGroup's opaque state of that table's lock.
const shardLockDDL = "CREATE TABLE IF NOT EXISTS %s (\n" +
	"  task VARCHAR(255) NOT NULL,\n" +
	"  target VARCHAR(255) NOT NULL,\n" +
	"  state LONGBLOB NOT NULL,\n" +
	"  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),\n" +
	"  PRIMARY KEY (task, target)\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

var _ dmworker.ShardLockStore = (*Sink)(nil)

// ensureShardLockTable creates the shard lock table (and the checkpoint
// schema) if missing.
func (s *Sink) ensureShardLockTable(ctx context.Context) *Error {
	if e := s.ensureCheckpointTable(ctx); e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slReady {
		return nil
	}
	create := fmt.Sprintf(shardLockDDL, s.slTable())
	if _, err := s.db.ExecContext(ctx, create); err != nil {
		return &Error{Op: "shard lock", Table: s.cfg.checkpointSchema + "." + shardLockTable, Statement: shorten(create), Err: err}
	}
	s.slReady = true
	return nil
}

func (s *Sink) slTable() string { return quoteTable(s.cfg.checkpointSchema, shardLockTable) }

// LoadShardLocks implements dmworker.ShardLockStore: the rows of task in
// the table `shard_lock` of the checkpoint schema, created on first use.
func (s *Sink) LoadShardLocks(ctx context.Context, task string) (map[string][]byte, error) {
	if e := s.ensureShardLockTable(ctx); e != nil {
		return nil, fail(ctx, e)
	}
	query := "SELECT target, state FROM " + s.slTable() + " WHERE task = ?"
	rows, err := s.db.QueryContext(ctx, query, task)
	if err != nil {
		return nil, fail(ctx, &Error{Op: "shard lock", Statement: query, Err: err})
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var target string
		var state []byte
		if err := rows.Scan(&target, &state); err != nil {
			return nil, fail(ctx, &Error{Op: "shard lock", Statement: query, Err: err})
		}
		out[target] = state
	}
	if err := rows.Err(); err != nil {
		return nil, fail(ctx, &Error{Op: "shard lock", Statement: query, Err: err})
	}
	return out, nil
}

// SaveShardLock implements dmworker.ShardLockStore.
func (s *Sink) SaveShardLock(ctx context.Context, task, target string, state []byte) error {
	for _, x := range []string{task, target} {
		if !utf8.ValidString(x) || utf8.RuneCountInString(x) > 255 {
			return fail(ctx, &Error{Op: "validate", Err: fmt.Errorf("%w: shard lock task and target must be valid UTF-8 of at most 255 characters: %q, %q",
				ErrInvalidBatch, task, target)})
		}
	}
	if e := s.ensureShardLockTable(ctx); e != nil {
		return fail(ctx, e)
	}
	var query string
	var args []any
	if state == nil {
		query, args = "DELETE FROM "+s.slTable()+" WHERE task = ? AND target = ?", []any{task, target}
	} else {
		query = "INSERT INTO " + s.slTable() + " (task, target, state) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE state = VALUES(state)"
		args = []any{task, target, state}
	}
	if _, err := s.db.ExecContext(ctx, query, args...); err != nil {
		return fail(ctx, &Error{Op: "shard lock", Statement: query, Err: err})
	}
	return nil
}
