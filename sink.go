package dmworker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmworker/dmworker/streamer"
)

// Sink is the downstream the host supplies: where the syncer writes row
// changes and DDL, after filtering and routing.
//
// Contract:
//   - Calls come from one goroutine per sink unless the sink also implements
//     ConcurrentSink and says yes; a call returns only when its effect is
//     durable.
//   - Apply writes one batch atomically: every change or none. Within a batch,
//     changes are in upstream order; changes to the same row are never
//     reordered across batches.
//   - ExecDDL is called only after every batch before the DDL has been
//     applied, and before any batch after it.
//   - With Batch.SafeMode set the batch may repeat changes the sink has
//     already applied (a replay after a crash): the sink must then make
//     inserts idempotent (insert-or-replace) and apply an update as a delete
//     of the old row followed by an insert-or-replace of the new one; on a
//     table with CheckForeignKeys, without deleting rows that exist (see
//     Table.CheckForeignKeys).
//   - The upstream's binlog does not carry what its foreign keys' ON DELETE
//     and ON UPDATE actions did (rows a CASCADE deleted or changed, columns
//     a SET NULL cleared): for a table with CheckForeignKeys the sink must
//     have them done again, as a downstream with the same foreign keys does
//     when it checks them.
//   - Every call takes a context and must return promptly when it ends.
//   - An error wrapping ErrRetryable (see Retryable) means the call had no
//     effect and may be retried as is (lost connection, deadlock, lock wait
//     timeout); any other error stops the syncer, with nothing of the call
//     applied.
type Sink interface {
	Apply(ctx context.Context, b *Batch) error
	ExecDDL(ctx context.Context, ddl *DDL) error
}

// ConcurrentSink is a Sink whose Apply may run on several goroutines at once,
// each call its own transaction: the syncer's parallel workers and the
// snapshot's readers then write in parallel. Concurrent reports whether
// that is safe (a wrapper may say no). ExecDDL and checkpoint calls still
// come one at a time, with no Apply running, with one exception: the
// snapshot adds the secondary indexes of a table it has finished copying
// (ALTER TABLE ... ADD KEY) while Apply calls write other tables.
type ConcurrentSink interface {
	Sink
	Concurrent() bool
}

// CheckpointSink is a Sink that stores the syncer's checkpoint in the same
// transaction as the data it covers, so that data and position can never
// disagree. Apply then stores b.Checkpoint (when not nil) with the batch.
type CheckpointSink interface {
	Sink
	// LoadCheckpoint returns the checkpoint stored for the task and
	// source, and false when there is none.
	LoadCheckpoint(ctx context.Context, task, source string) (Checkpoint, bool, error)
	// SaveCheckpoint stores a checkpoint on its own, with no data (after a
	// DDL, or a stretch of filtered events).
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
}

// ChangeKind is the kind of a row change.
type ChangeKind uint8

// Row change kinds.
const (
	Insert ChangeKind = iota + 1
	Update
	Delete
)

func (k ChangeKind) String() string {
	switch k {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one row change.
//
// Values are in column order, one per Table.Columns entry, as these Go types:
// nil for NULL; int64 for signed and uint64 for unsigned integer columns
// (YEAR as int64); string for DECIMAL (exact text), for DATE, TIME,
// DATETIME and TIMESTAMP (MySQL's text form, TIMESTAMP in UTC, zero dates
// as "0000-00-00..."), for ENUM and SET (the member names, SET members
// comma-separated), for CHAR, VARCHAR, TEXT and JSON (JSON as MySQL's text);
// float32 for FLOAT and float64 for DOUBLE; uint64 for BIT; []byte for
// BINARY, VARBINARY, BLOB and GEOMETRY (MySQL's internal format: SRID then
// WKB). Values are shared and must not be modified.
type Change struct {
	Kind   ChangeKind
	Table  *Table
	Before []any // the row before the change; nil for Insert
	After  []any // the row after the change; nil for Delete
	// NoForeignKeyChecks is set when the upstream made the change with
	// foreign_key_checks off: its foreign keys were neither checked nor
	// acted on there, so they must not be downstream either.
	NoForeignKeyChecks bool
	// TxnPos is where the upstream transaction the change belongs to
	// begins in the binlog: the position after the transaction (or other
	// event) before it, with the GTID set executed before it, which is a
	// checkpoint a replay may start from. TxnIndex is the change's place
	// among the changes of that transaction the syncer delivers (0 for the
	// first). After a restart the syncer gives again whole transactions
	// from its checkpoint on, each change with the same TxnPos and
	// TxnIndex as before (on the same upstream server, with the same
	// filters and routes; where parallel workers compact their batches,
	// the default unless SyncerConfig.NoCompact, a merged change carries
	// the last merged one's), so a sink that appends changes to a log can
	// de-duplicate a replay by them: changes compare by TxnPos
	// (streamer.Position.Compare), then TxnIndex, in the order the syncer
	// reads them. Zero in changes the snapshot copies. TxnPos.GTIDSet is
	// shared and must not be modified.
	TxnPos   streamer.Position
	TxnIndex int
}

// Table describes a table as the sink sees it: its name after routing and its
// columns as they were at the change's position. Tables are shared and must
// not be modified.
type Table struct {
	Schema, Name string // downstream name, after routing
	// SourceSchema and SourceName are the upstream names.
	SourceSchema, SourceName string
	Columns                  []Column
	// PrimaryKey holds the indexes in Columns of the primary key's columns,
	// empty when the table has none.
	PrimaryKey []int
	// UniqueKeys holds the indexes of each unique key's columns (primary
	// key excluded), for tables matched by a unique key when they lack a
	// primary key.
	UniqueKeys [][]int
	// ForeignKeys are the table's foreign keys that reference a table the
	// task replicates (possibly this one), by downstream names.
	ForeignKeys []ForeignKey
	// CheckForeignKeys is set when the table is joined by foreign keys
	// (its own or others', through any number of tables) to a foreign key
	// with an ON DELETE or ON UPDATE action (CASCADE, SET NULL) between
	// replicated tables, and every foreign key of its own references a
	// replicated table. The binlog does not carry what those actions did
	// upstream; a downstream that has the foreign keys does it again when
	// the sink writes the table's changes with its foreign key checks on
	// (except changes with NoForeignKeyChecks), and in safe mode without
	// deleting a row that exists (a REPLACE or a delete-and-insert would
	// cascade), and applying a change only where its row is as the
	// upstream found it. The syncer applies the changes of all tables
	// joined that way in upstream order, in batches that carry their
	// checkpoint (never ahead of it: a replay does not repeat them, except
	// within a transaction of more than MaxBatchRows of them, or when the
	// checkpoint is not stored by the sink). Without it, foreign keys need
	// nothing: their checks may be off, changes of related tables arrive in
	// parallel.
	CheckForeignKeys bool

	// fkGroup names, for the syncer's parallel apply, the group of tables
	// joined by foreign keys with actions ("" when none): its changes are
	// applied in order.
	fkGroup string
	// pkPrefix and ukPrefixes are the prefix lengths of the parts of
	// PrimaryKey and UniqueKeys (nil for a key of whole values): rows
	// agreeing on a key's prefixes collide in it (schema.TableDef).
	pkPrefix   []int
	ukPrefixes [][]int
}

// ForeignKey is a foreign key of a Table: Columns reference RefColumns, in
// the same order, of RefSchema.RefTable.
type ForeignKey struct {
	Name string
	// Columns holds the indexes in Table.Columns of the referencing
	// columns.
	Columns []int
	// RefSchema and RefTable name the referenced table downstream (after
	// routing); RefColumns are its column names.
	RefSchema, RefTable string
	RefColumns          []string
	// OnDelete and OnUpdate say what deleting the referenced row, or
	// changing its referenced columns, does to referencing rows.
	OnDelete, OnUpdate FKAction
}

// FKAction is a foreign key's referential action.
type FKAction uint8

// Referential actions.
const (
	// FKRestrict: the change of the referenced row is refused while rows
	// reference it (RESTRICT, NO ACTION, or none given).
	FKRestrict FKAction = iota
	// FKCascade: referencing rows are deleted, or their columns changed,
	// with the referenced row.
	FKCascade
	// FKSetNull: the referencing columns are set to NULL.
	FKSetNull
	// FKSetDefault: the referencing columns are set to their default
	// (parsed; InnoDB refuses it).
	FKSetDefault
)

func (a FKAction) String() string {
	switch a {
	case FKRestrict:
		return "RESTRICT"
	case FKCascade:
		return "CASCADE"
	case FKSetNull:
		return "SET NULL"
	case FKSetDefault:
		return "SET DEFAULT"
	}
	return fmt.Sprintf("FKAction(%d)", uint8(a))
}

// QualifiedName is "schema.name".
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Column is one column of a Table.
type Column struct {
	Name string
	// Type is the column type as SHOW CREATE TABLE prints it, lower case:
	// "int(11)", "bigint(20) unsigned", "decimal(10,2)", "enum('a','b')",
	// "varchar(64)", "datetime(6)".
	Type     string
	Unsigned bool
	Nullable bool
	// Binary is true for BINARY, VARBINARY, BLOB types and for character
	// types with the binary charset: their values are []byte.
	Binary bool
	// Generated is true for generated (virtual or stored) columns: their
	// values are delivered but must not be written.
	Generated bool
}

// Batch is a group of row changes to apply atomically.
type Batch struct {
	Changes []Change
	// SafeMode asks for idempotent writes: the batch may repeat changes
	// already applied.
	SafeMode bool
	// Checkpoint is the position the syncer will have reached once the
	// batch is applied. A CheckpointSink stores it in the batch's
	// transaction; other sinks ignore it.
	Checkpoint *Checkpoint
	// Fence, when Checkpoint is nil, names who writes the batch: a
	// CheckpointSink that fences refuses the batch with ErrStaleEpoch when
	// the checkpoint stored for Fence.Task and Fence.Source is from a newer
	// epoch, checking it in the batch's own transaction. Zero: unfenced.
	Fence Fence
}

// Fence names a writer for fencing: the task and source whose stored
// checkpoint's epoch must not be newer than Epoch.
type Fence struct {
	Task, Source string
	Epoch        int64
}

// DDL is one schema change, after routing.
type DDL struct {
	// Schema and Table name the (routed) table the statement changes;
	// Table is empty for schema-level statements (among them the CREATE
	// DATABASE IF NOT EXISTS the syncer and the snapshot run for a schema
	// that routed tables go to).
	Schema, Table string
	// Query is the statement to run downstream, with table names routed,
	// written for the default sql_mode whatever the upstream's was
	// (backquoted names, CONCAT for ||, FLOAT for REAL under
	// REAL_AS_FLOAT, ...): run it in a session whose sql_mode has none of
	// ANSI_QUOTES, PIPES_AS_CONCAT, NO_BACKSLASH_ESCAPES,
	// HIGH_NOT_PRECEDENCE, REAL_AS_FLOAT, ORACLE, MAXDB and
	// EMPTY_STRING_IS_NULL, as mysqlsink does.
	Query string
	// SourceQuery is the statement as the upstream logged it.
	SourceQuery string
	// ZeroGetsAutoValue is set when the upstream ran the statement without
	// NO_AUTO_VALUE_ON_ZERO in its sql_mode: there, an ALTER TABLE that
	// makes a column AUTO_INCREMENT gave the rows holding 0 in it new
	// values, and it must do the same downstream (mysqlsink then runs it
	// without that mode, which it otherwise sets). False for DDL not read
	// from the binlog (a snapshot's CREATE TABLE).
	ZeroGetsAutoValue bool
	// Pos is the upstream position right after the statement.
	Pos streamer.Position
	// SafeMode says the statement may have been applied already (a replay
	// after a crash): errors that say so (table or column exists, unknown
	// table, duplicate key name, ...) are then success.
	SafeMode bool
	// Checkpoint, for a CheckpointSink, is stored once the DDL is done.
	Checkpoint *Checkpoint
}

// Checkpoint is how far a task has replicated from one source: every change
// up to Pos is applied downstream.
type Checkpoint struct {
	Task   string
	Source string
	// Pos is the end of the last upstream transaction applied.
	Pos streamer.Position
	// SafeUntil is the furthest position that may already have been applied
	// when the checkpoint was written: after a restart, changes up to it are
	// replayed in safe mode. Zero when Pos is exact.
	SafeUntil streamer.Position
	// Schema is the serialised tracked schema at Pos (opaque to sinks); nil
	// means unchanged since the last checkpoint stored: keep the stored one.
	Schema []byte
	// Epoch fences writers: a sink refuses a checkpoint (and its batch)
	// from an epoch older than the one it has stored. Zero when unfenced.
	Epoch int64
	// Snapshot is the snapshot unit's progress while modes full and all
	// copy existing data (opaque to sinks). Unlike Schema it is stored as
	// given: nil clears it, which marks the copy finished.
	Snapshot []byte
	// Server is the identity of the upstream server whose binlog Pos is a
	// place in (streamer.UpstreamState.Identity: @@server_uuid on MySQL,
	// "<gtid_domain_id>-<server_id>" on MariaDB), stored as given; "" when
	// unknown (checkpoints written before it was recorded, and the
	// snapshot's). The syncer checks it when it starts (see
	// ErrCheckpointLineage).
	Server string
}

// ErrRetryable marks sink errors that may be retried as they are. Wrap with
// Retryable.
var ErrRetryable = errors.New("dmworker: retryable")

// ErrSinkTimeout is wrapped by the error a syncer stops with when a sink
// call gave no answer within WithSinkTimeout: the call was abandoned, its
// outcome unknown; the error is retryable, and a run resumed from the stored
// checkpoint replays what the call may or may not have applied.
var ErrSinkTimeout = errors.New("dmworker: the sink gave no answer in time")

// ErrOutcomeUnknown is wrapped by a sink's retryable error when the sink
// cannot tell whether the call took effect (mysqlsink: the connection was
// lost during the commit, and the batch carried no checkpoint to read
// back). The syncer then applies the batch again in safe mode, which meets
// its own earlier effect; a snapshot copy into a table without a key does
// not retry such a batch in place (its rows would be there twice) but stops,
// and the resumed copy starts that table again.
var ErrOutcomeUnknown = errors.New("dmworker: the sink cannot tell whether the call took effect")

// ErrStaleEpoch is returned by a fenced sink for a write from an epoch older
// than the one it has stored.
var ErrStaleEpoch = errors.New("dmworker: write from a stale epoch refused")

// Retryable wraps err so that errors.Is(err, ErrRetryable) holds.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string   { return e.err.Error() }
func (e *retryableError) Unwrap() []error { return []error{ErrRetryable, e.err} }

// IsRetryable reports whether err says the sink call may be retried.
func IsRetryable(err error) bool { return errors.Is(err, ErrRetryable) }

// String describes a change for logs and errors, without its values.
func (c Change) String() string {
	var b strings.Builder
	b.WriteString(c.Kind.String())
	if c.Table != nil {
		b.WriteString(" on ")
		b.WriteString(c.Table.QualifiedName())
	}
	return b.String()
}

// TableDefiner is a Sink that can tell how a downstream table is defined
// now. It is optional, found by type assertion: in optimistic shard mode a
// run that starts reads the shard tables' downstream table through it, so
// that the schema the group joins the shards' into holds what only the
// downstream still has (a column some shards dropped and others not yet,
// after a restart). mysqlsink.Sink implements it.
type TableDefiner interface {
	// ShowCreateTable returns the downstream table's CREATE TABLE
	// statement, as MySQL's SHOW CREATE TABLE prints it (the table's name
	// without its schema), and "" with a nil error when the table does not
	// exist. It only reads, and may be called concurrently with the sink's
	// other methods.
	ShowCreateTable(ctx context.Context, schema, table string) (string, error)
}
