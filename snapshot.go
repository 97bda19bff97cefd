package dmworker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/snapshot"
	"github.com/dmworker/dmworker/streamer"
)

// SnapshotConfig is how modes full and all copy the existing data of the
// selected tables before (mode all) the syncer takes over.
//
// The copy reads every table at one consistent point of the upstream: on
// MariaDB, Concurrency connections each open START TRANSACTION WITH
// CONSISTENT SNAPSHOT and must report the same binlog_snapshot_file and
// binlog_snapshot_position. Without writes they agree at once and no lock
// is taken; when commits keep landing in between (three tries), BACKUP
// STAGE BLOCK_COMMIT is held while the connections open again: upstream
// commits then wait for as long as Concurrency START TRANSACTION statements
// and a few status reads take (SnapshotStatus.Blocked reports it): a few
// milliseconds on an idle server, 40 to 80 ms measured with 4 connections
// under sysbench writes on a 2-core machine at load average 15. A user
// without the privilege for BACKUP STAGE (RELOAD) reads with one connection. On MySQL, FLUSH TABLES WITH READ LOCK is held for the
// same moment. The GTID set at the point is the server's @@gtid_binlog_pos
// read while the binlog's end equalled the point, or, when writes never
// pause, the GTID set read from the binlog at the point.
//
// Tables with a single-column integer key are cut into key ranges of about
// ChunkRows rows, read in parallel; tables with another key are read in
// pages of ChunkRows rows in key order (tables in parallel); a table without
// a key is one chunk. The connections read different tables while as many
// are left (loads into one table with an AUTO_INCREMENT key would wait for
// each other's AUTO-INC lock), and each connection reads its next batch
// while a goroutine of its own writes the last one. Rows go to the sink
// in batches of BatchRows: plain inserts on the first run, in safe mode
// (insert-or-replace) on a resumed run and for a batch sent again after an
// error, so a chunk copied again
// after a crash is harmless; a table without a key is emptied downstream (TRUNCATE) before
// each attempt at it, so several upstream tables without a key must not be
// routed into one downstream table. Progress is saved in the checkpoint
// (Checkpoint.Snapshot) after each chunk; a copy stopped halfway resumes
// with the chunks not done, read at a new consistent point, and the
// checkpoint it leaves asks the syncer to replay in safe mode from the first
// point to the last one (for a table without a key that replay matches rows
// by value: exact when its rows are distinct, as for the syncer's own
// replays). No DDL may change the copied tables while the copy runs: a
// resumed copy checks that the unfinished tables' definitions are unchanged
// and stops with ErrSnapshotSchemaChanged otherwise. A DDL that comes
// during the copy waits for the snapshot transactions that read its table;
// a connection that would read the table after it gives up after a minute
// of lock wait (error 1205, naming the table) rather than wait for ever,
// and the copy stops. Tables of engines without transactions (MyISAM,
// Aria) are read as they are when read, not at the snapshot's point: the
// checkpoint then asks the syncer to replay in safe mode up to where the
// binlog ended when the copy did.
type SnapshotConfig struct {
	// Concurrency is how many connections read in parallel, all in one
	// consistent snapshot (and how many goroutines write, when the sink is
	// a ConcurrentSink). Default 4.
	Concurrency int `json:"concurrency,omitempty" toml:"concurrency"`
	// ChunkRows is the target number of rows in a chunk: one key range or
	// one page, the unit of progress. Default 200000.
	ChunkRows int `json:"chunk-rows,omitempty" toml:"chunk-rows"`
	// BatchRows is how many rows one sink call carries at most (fewer when
	// their values pass 8 MiB): with mysqlsink, one LOAD DATA statement and
	// one transaction. Default 10000.
	BatchRows int `json:"batch-rows,omitempty" toml:"batch-rows"`
	// IndexesFirst creates each table downstream with all its indexes.
	// By default a table the copy creates gets its plain secondary indexes
	// (KEY, not PRIMARY, UNIQUE, FULLTEXT or SPATIAL) after its rows are
	// in, built in one sorted pass instead of row by row, while the next
	// tables are copied; not for tables with a foreign key or referenced
	// by one, nor for several upstream tables routed into one.
	IndexesFirst bool `json:"indexes-first,omitempty" toml:"indexes-first"`
}

// snapshotBatchBytes bounds the values of one snapshot batch.
const snapshotBatchBytes = 8 << 20

func (c *SnapshotConfig) adjust() error {
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.ChunkRows == 0 {
		c.ChunkRows = 200000
	}
	if c.BatchRows == 0 {
		c.BatchRows = 10000
	}
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("snapshot concurrency %d must be positive", c.Concurrency)
	case c.ChunkRows < 1:
		return fmt.Errorf("snapshot chunk rows %d must be positive", c.ChunkRows)
	case c.BatchRows < 1:
		return fmt.Errorf("snapshot batch rows %d must be positive", c.BatchRows)
	}
	return nil
}

// SnapshotStage is where the copy of existing data is: New until it
// starts, Copying, Done once every table is copied, Failed when an error
// stopped it (SnapshotStatus.LastError).
type SnapshotStage string

// Snapshot stages.
const (
	SnapshotNew     SnapshotStage = "New"
	SnapshotCopying SnapshotStage = "Copying"
	SnapshotDone    SnapshotStage = "Done"
	SnapshotFailed  SnapshotStage = "Failed"
)

// String returns the stage's word.
func (s SnapshotStage) String() string { return string(s) }

// MarshalText writes the stage's word.
func (s SnapshotStage) MarshalText() ([]byte, error) { return []byte(s), nil }

// SnapshotStatus is a snapshot unit's progress.
type SnapshotStatus struct {
	// Stage is SnapshotNew, SnapshotCopying, SnapshotDone or SnapshotFailed.
	Stage SnapshotStage
	// Pos is the consistent point the copy reads at (zero until known);
	// the syncer of mode all starts there.
	Pos streamer.Position
	// SafeUntil, after a resumed copy, is the last point chunks were read
	// at: the syncer replays up to it in safe mode.
	SafeUntil streamer.Position
	// Done is true once every table is copied.
	Done bool
	// Method says how the connections reached one point ("no-lock",
	// "backup-stage", "flush-tables", "single") and Blocked how long
	// upstream commits waited for it, in this run.
	Method  string
	Blocked time.Duration
	// ReadersWaited and WritersWaited say, once the rows are copied, which
	// side held the copy back, summed over the connections: how long the
	// readers waited for the writers to take a batch (the sink was the
	// slower), and how long the writers waited for a batch to write (the
	// upstream, or the reading, was).
	ReadersWaited, WritersWaited time.Duration
	// Tables is each table's progress, in copy order.
	Tables []SnapshotTableStatus
	// Totals over Tables.
	Rows, EstRows, Bytes, EstBytes int64
	// LastError is the error that stopped the copy, nil while it runs.
	LastError error
}

// SnapshotTableStatus is one table's copy progress. Rows and Bytes count
// what has been written; EstRows and EstBytes are the upstream's estimates
// (information_schema.TABLES: row count, and on-disk data size, which is
// not the size of the values copied) taken when the copy began.
type SnapshotTableStatus struct {
	Schema, Name             string // upstream name
	TargetSchema, TargetName string // downstream name, after routing
	Chunks, ChunksDone       int
	Rows, EstRows            int64
	Bytes, EstBytes          int64
	Done                     bool
}

// ErrSnapshotSchemaChanged means a table's definition upstream changed
// while its copy was unfinished: the copy must start over (drop the
// checkpoint and the copied tables).
var ErrSnapshotSchemaChanged = errors.New("dmworker: a table changed while the snapshot copied it")

// SnapshotError names where a snapshot stopped.
type SnapshotError struct {
	Task, Source string
	Pos          streamer.Position // the consistent point (zero before it is known)
	Table        string            // upstream schema.table, when one is concerned
	Op           string
	// Statement is the statement concerned, when one is: for a table's
	// definition the tracker cannot take, the whole definition.
	Statement string
	Err       error
}

func (e *SnapshotError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dmworker: snapshot of task %s source %s", e.Task, e.Source)
	if !e.Pos.IsZero() {
		fmt.Fprintf(&b, " at %s", e.Pos)
	}
	if e.Table != "" {
		fmt.Fprintf(&b, " table %s", e.Table)
	}
	if e.Op != "" {
		fmt.Fprintf(&b, " (%s)", e.Op)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the cause.
func (e *SnapshotError) Unwrap() error { return e.Err }

// snapshotProgress is what Checkpoint.Snapshot holds while a copy runs
// (JSON). Version 1.
type snapshotProgress struct {
	Version   int                   `json:"version"`
	Pos       streamer.Position     `json:"pos"`
	SafeUntil streamer.Position     `json:"safe-until,omitzero"`
	Tables    []*snapshot.TablePlan `json:"tables"`
}

const snapshotProgressVersion = 1

// snapshotUnit copies the selected tables of one source for one task.
type snapshotUnit struct {
	cfg   SyncerConfig
	sc    SnapshotConfig
	sink  Sink
	store CheckpointStore
	// sinkTimeout bounds each batch the copy applies (WithSinkTimeout; 0:
	// no bound). Set by the subtask.
	sinkTimeout time.Duration
	epoch       int64
	log         *slog.Logger
	rules       *rules

	mu sync.Mutex
	st SnapshotStatus
}

// newSnapshotUnit returns a unit copying cfg's tables into sink, keeping
// progress in store, writing under epoch (0: unfenced).
func newSnapshotUnit(cfg SyncerConfig, sc SnapshotConfig, sink Sink, store CheckpointStore, epoch int64, logger *slog.Logger) (*snapshotUnit, error) {
	if err := cfg.adjust(false); err != nil {
		return nil, fmt.Errorf("dmworker: snapshot for task %q: %w", cfg.Task, err)
	}
	if err := sc.adjust(); err != nil {
		return nil, fmt.Errorf("dmworker: snapshot for task %s: %w", cfg.Task, err)
	}
	if sink == nil || store == nil {
		return nil, fmt.Errorf("dmworker: snapshot for task %s: a sink and a checkpoint store are required", cfg.Task)
	}
	rs, err := newRules(cfg)
	if err != nil {
		return nil, fmt.Errorf("dmworker: snapshot for task %s: %w", cfg.Task, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u := &snapshotUnit{cfg: cfg, sc: sc, sink: sink, store: store, epoch: epoch, rules: rs,
		log: logger.With(slog.String("component", "snapshot"), slog.String("task", cfg.Task), slog.String("source", cfg.Source))}
	u.st.Stage = SnapshotNew
	return u, nil
}

// status reports the unit's progress.
func (u *snapshotUnit) status() SnapshotStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	st.Pos, st.SafeUntil = st.Pos.Clone(), st.SafeUntil.Clone()
	st.Tables = slices.Clone(st.Tables)
	return st
}

func (u *snapshotUnit) wrap(pos streamer.Position, table, op string, err error) error {
	return u.wrapStmt(pos, table, op, "", err)
}

// wrapStmt is wrap with the statement concerned.
func (u *snapshotUnit) wrapStmt(pos streamer.Position, table, op, stmt string, err error) error {
	var se *SnapshotError
	if err == nil || errors.As(err, &se) {
		return withStack(err)
	}
	return withStack(&SnapshotError{Task: u.cfg.Task, Source: u.cfg.Source, Pos: pos, Table: table, Op: op, Statement: stmt, Err: err})
}

// run copies the selected tables and returns the consistent position; see
// SnapshotConfig for how.
func (u *snapshotUnit) run(ctx context.Context) (pos streamer.Position, err error) {
	defer func() {
		err = withStack(err)
		u.mu.Lock()
		if err != nil {
			u.st.Stage, u.st.LastError = SnapshotFailed, err
		}
		u.mu.Unlock()
		if err != nil {
			u.log.Error("snapshot stopped", errAttr(err))
		}
	}()
	cp, found, err := u.store.Load(ctx, u.cfg.Task, u.cfg.Source)
	if err != nil {
		return pos, u.wrap(pos, "", "load checkpoint", err)
	}
	if found && cp.Epoch > u.epoch {
		return pos, u.wrap(cp.Pos, "", "", fmt.Errorf("%w: the stored checkpoint is from epoch %d, this snapshot writes under %d",
			ErrStaleEpoch, cp.Epoch, u.epoch))
	}
	if found && len(cp.Snapshot) == 0 {
		u.mu.Lock()
		u.st.Stage, u.st.Done, u.st.Pos = SnapshotDone, true, cp.Pos.Clone()
		u.mu.Unlock()
		return cp.Pos, nil
	}
	var prog *snapshotProgress
	var tracker *schema.Tracker
	if found {
		prog = &snapshotProgress{}
		if err := json.Unmarshal(cp.Snapshot, prog); err != nil {
			return pos, u.wrap(cp.Pos, "", "read progress", err)
		}
		if prog.Version != snapshotProgressVersion {
			return pos, u.wrap(cp.Pos, "", "read progress", fmt.Errorf("progress format version %d, want %d", prog.Version, snapshotProgressVersion))
		}
		if tracker, err = schema.Unmarshal(cp.Schema); err != nil {
			return pos, u.wrap(cp.Pos, "", "read progress", fmt.Errorf("the checkpoint's schema: %w", err))
		}
	}

	// An upstream that a copy in progress has reached before and that
	// is away now (restarting after a crash) is waited for: the error is
	// retryable. At a first start it is a configuration mistake.
	upErr := func(err error) error {
		if found && ctx.Err() == nil && upstreamConnLost(err) {
			return Retryable(err)
		}
		return err
	}
	db, err := openUpstreamDB(u.cfg.Upstream)
	if err != nil {
		return pos, u.wrap(pos, "", "connect upstream", upErr(err))
	}
	defer db.Close()
	db.SetMaxOpenConns(u.sc.Concurrency + 1)
	mariadb, err := u.isMariaDB(ctx, db)
	if err != nil {
		return pos, u.wrap(pos, "", "connect upstream", upErr(err))
	}
	snap, err := snapshot.Open(ctx, db, u.sc.Concurrency, mariadb, u.gtidAt)
	if err != nil {
		return pos, u.wrap(pos, "", "open consistent snapshot", upErr(err))
	}
	defer snap.Close()
	point, err := u.position(snap.Point, mariadb)
	if err != nil {
		return pos, u.wrap(pos, "", "open consistent snapshot", err)
	}
	u.log.Info("consistent snapshot open", slog.String("pos", point.String()), slog.String("method", snap.Point.Method),
		slog.Duration("blocked", snap.Point.Blocked), slog.Int("connections", len(snap.Conns)), slog.Bool("resumed", found))

	if prog == nil {
		if tracker, err = seedTracker(ctx, snap.Conns[0], u.rules); err != nil {
			object, create := definitionOf(err)
			return pos, u.wrapStmt(point, object, "read table definitions", create, err)
		}
		prog = &snapshotProgress{Version: snapshotProgressVersion, Pos: point}
		for _, n := range tracker.Tables() {
			def, _ := tracker.Table(n.Schema, n.Name)
			p, err := snapshot.Plan(ctx, snap.Conns[0], def, u.sc.ChunkRows)
			if err != nil {
				return pos, u.wrap(point, n.Schema+"."+n.Name, "plan chunks", err)
			}
			if skip, err := u.rules.skipDML(n.Schema, n.Name, Insert); err != nil {
				return pos, u.wrap(point, n.Schema+"."+n.Name, "event filter", err)
			} else if skip {
				// Inserts into it are filtered out: its rows are too.
				p.Finished = true
			}
			prog.Tables = append(prog.Tables, p)
		}
	} else {
		if err := u.checkUnchanged(ctx, snap.Conns[0], tracker, prog); err != nil {
			return pos, u.wrap(prog.Pos, "", "resume", err)
		}
		if point.Compare(prog.SafeUntil) > 0 {
			prog.SafeUntil = point
		}
	}
	u.initStatus(prog, snap.Point)
	schemaJSON, err := tracker.Marshal()
	if err != nil {
		return pos, u.wrap(prog.Pos, "", "save progress", err)
	}
	c := &snapshotCopy{u: u, prog: prog, tracker: tracker, tables: map[string]*Table{}, resumed: found}
	if err := c.save(ctx, schemaJSON); err != nil {
		return pos, err
	}
	if err := c.prepare(ctx, snap.Conns[0]); err != nil {
		return pos, err
	}
	if err := c.copy(ctx, snap.Conns); err != nil {
		return pos, err
	}
	snap.Close()
	// A non-transactional table (MyISAM, Aria, MEMORY) is read as it is
	// when read, not at the snapshot's point: rows written since that
	// point may be in the copy already. The syncer replays in safe mode up
	// to where the upstream's binlog ends now.
	if end, err := u.nonTransactionalEnd(ctx, db, prog); err != nil {
		return pos, u.wrap(prog.Pos, "", "read table engines", err)
	} else if end.Compare(prog.SafeUntil) > 0 && end.Compare(prog.Pos) > 0 {
		prog.SafeUntil = end
		u.mu.Lock()
		u.st.SafeUntil = end.Clone()
		u.mu.Unlock()
	}

	final := Checkpoint{Task: u.cfg.Task, Source: u.cfg.Source, Pos: prog.Pos, Schema: schemaJSON, Epoch: u.epoch}
	if prog.SafeUntil.Compare(prog.Pos) > 0 {
		final.SafeUntil = prog.SafeUntil
	}
	if err := c.retry(ctx, func() error { return u.store.Save(ctx, final) }); err != nil {
		return pos, u.wrap(prog.Pos, "", "save checkpoint", err)
	}
	u.mu.Lock()
	u.st.Stage, u.st.Done = SnapshotDone, true
	u.mu.Unlock()
	u.log.Info("snapshot done", slog.String("pos", prog.Pos.String()), slog.Int64("rows", u.status().Rows))
	return prog.Pos, nil
}

// nonTransactionalEnd returns the upstream's binlog end when some table
// the snapshot copied has an engine without transactions, else a zero
// position.
func (u *snapshotUnit) nonTransactionalEnd(ctx context.Context, db *sql.DB, prog *snapshotProgress) (streamer.Position, error) {
	rows, err := db.QueryContext(ctx, `SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t
		JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE
		WHERE t.TABLE_TYPE = 'BASE TABLE' AND e.TRANSACTIONS <> 'YES'
		AND t.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')`)
	if err != nil {
		return streamer.Position{}, err
	}
	nontx := map[[2]string]bool{}
	for rows.Next() {
		var s, n string
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return streamer.Position{}, err
		}
		nontx[[2]string{s, n}] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return streamer.Position{}, err
	}
	found := false
	for _, t := range prog.Tables {
		if nontx[[2]string{t.Schema, t.Name}] {
			found = true
			break
		}
	}
	if !found {
		return streamer.Position{}, nil
	}
	st, err := streamer.QueryUpstream(ctx, u.cfg.Upstream)
	if err != nil {
		return streamer.Position{}, err
	}
	return streamer.Position{Name: st.Master.Name, Offset: st.Master.Offset}, nil
}

func (u *snapshotUnit) isMariaDB(ctx context.Context, db *sql.DB) (bool, error) {
	switch u.cfg.Upstream.Flavor {
	case streamer.FlavorMariaDB:
		return true, nil
	case streamer.FlavorMySQL:
		return false, nil
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return false, err
	}
	return strings.Contains(strings.ToLower(v), "mariadb"), nil
}

// position turns the snapshot's point into a Position with its GTID set.
func (u *snapshotUnit) position(p snapshot.Point, mariadb bool) (streamer.Position, error) {
	pos := streamer.Position{Name: p.File, Offset: p.Offset}
	flavor := streamer.FlavorMySQL
	if mariadb {
		flavor = streamer.FlavorMariaDB
	}
	set, err := streamer.NewGTIDSet(flavor, p.GTID)
	if err != nil {
		return pos, fmt.Errorf("GTID set %q at %s:%d: %w", p.GTID, p.File, p.Offset, err)
	}
	pos.Flavor, pos.GTIDSet = flavor, set
	return pos, pos.Validate()
}

// gtidAt reads the upstream's binlog from the start of file up to offset
// and returns the GTID set executed there.
func (u *snapshotUnit) gtidAt(ctx context.Context, file string, offset uint64) (string, error) {
	r, err := streamer.NewRemoteReader(u.cfg.Upstream, streamer.Position{Name: file, Offset: 4}, streamer.WithoutRowValues())
	if err != nil {
		return "", err
	}
	defer r.Close()
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			return "", err
		}
		if ev.Artificial() || ev.Pos.Name != file || ev.Pos.Offset < offset {
			if ev.Pos.Name != file && ev.Pos.Name != "" && !ev.Artificial() {
				return "", fmt.Errorf("the binlog went past %s without reaching offset %d", file, offset)
			}
			continue
		}
		if ev.Pos.Offset != offset {
			return "", fmt.Errorf("no event ends at %s:%d (next ends at %d)", file, offset, ev.Pos.Offset)
		}
		if ev.Pos.GTIDSet == nil {
			return "", nil
		}
		return ev.Pos.GTIDSet.String(), nil
	}
}

// checkUnchanged checks, when resuming, that the unfinished tables'
// definitions upstream are the ones the copy began with.
func (u *snapshotUnit) checkUnchanged(ctx context.Context, conn *sql.Conn, tracker *schema.Tracker, prog *snapshotProgress) error {
	now, err := seedTracker(ctx, conn, u.rules)
	if err != nil {
		return err
	}
	for _, p := range prog.Tables {
		if p.Finished {
			continue
		}
		was, _ := tracker.Table(p.Schema, p.Name)
		is, ok := now.Table(p.Schema, p.Name)
		if !ok {
			return &SnapshotError{Task: u.cfg.Task, Source: u.cfg.Source, Pos: prog.Pos, Table: p.QualifiedName(), Op: "resume",
				Err: fmt.Errorf("%w: the table is gone", ErrSnapshotSchemaChanged)}
		}
		a, _ := json.Marshal(was)
		b, _ := json.Marshal(is)
		if string(a) != string(b) {
			return &SnapshotError{Task: u.cfg.Task, Source: u.cfg.Source, Pos: prog.Pos, Table: p.QualifiedName(), Op: "resume",
				Err: fmt.Errorf("%w: its definition differs from the one the copy began with", ErrSnapshotSchemaChanged)}
		}
	}
	return nil
}

func (u *snapshotUnit) initStatus(prog *snapshotProgress, p snapshot.Point) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.Stage = SnapshotCopying
	u.st.Pos, u.st.SafeUntil = prog.Pos.Clone(), prog.SafeUntil.Clone()
	u.st.Method, u.st.Blocked = p.Method, p.Blocked
	u.st.ReadersWaited, u.st.WritersWaited = 0, 0
	u.st.Tables = nil
	u.st.Rows, u.st.Bytes, u.st.EstRows, u.st.EstBytes = 0, 0, 0, 0
	for _, t := range prog.Tables {
		ts, tn := u.rules.route(t.Schema, t.Name)
		done := strings.Count(t.Done, "1")
		if t.Mode != snapshot.ModeRange && t.Finished {
			done = 1
		}
		u.st.Tables = append(u.st.Tables, SnapshotTableStatus{Schema: t.Schema, Name: t.Name, TargetSchema: ts, TargetName: tn,
			Chunks: t.Chunks(), ChunksDone: done, Rows: t.Rows, EstRows: t.EstRows, Bytes: t.Bytes, EstBytes: t.EstBytes, Done: t.Finished})
		u.st.Rows += t.Rows
		u.st.Bytes += t.Bytes
		u.st.EstRows += t.EstRows
		u.st.EstBytes += t.EstBytes
	}
}

// queryer is what seedTracker reads through: a pool, a connection or a
// transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// seedTracker reads the definitions of the tables rs allows (SHOW CREATE
// DATABASE and SHOW CREATE TABLE) into a new tracker. Syncer.seedSchema does
// the same on a pool of its own; it could call this.
func seedTracker(ctx context.Context, q queryer, rs *rules) (*schema.Tracker, error) {
	rows, err := q.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')")
	if err != nil {
		return nil, err
	}
	var names []schema.TableName
	for rows.Next() {
		var n schema.TableName
		if err := rows.Scan(&n.Schema, &n.Name); err != nil {
			rows.Close()
			return nil, err
		}
		if rs.allowed(n.Schema, n.Name) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	t := schema.New()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n.Schema] {
			continue
		}
		seen[n.Schema] = true
		var name, create string
		if err := q.QueryRowContext(ctx, "SHOW CREATE DATABASE "+quoteIdent(n.Schema)).Scan(&name, &create); err != nil {
			return nil, fmt.Errorf("SHOW CREATE DATABASE %s: %w", n.Schema, err)
		}
		if err := t.CreateFromSQL(n.Schema, create); err != nil {
			return nil, &definitionError{object: n.Schema, create: create, err: err}
		}
	}
	for _, n := range names {
		var name, create string
		if err := q.QueryRowContext(ctx, "SHOW CREATE TABLE "+quoteIdent(n.Schema)+"."+quoteIdent(n.Name)).Scan(&name, &create); err != nil {
			return nil, fmt.Errorf("SHOW CREATE TABLE %s: %w", n, err)
		}
		if err := t.CreateFromSQL(n.Schema, create); err != nil {
			return nil, &definitionError{object: n.String(), create: create, err: err}
		}
	}
	return t, nil
}

// definitionError is seedTracker's error for a definition read from the
// upstream (SHOW CREATE DATABASE or TABLE) that the tracker cannot take.
type definitionError struct {
	object string // schema or schema.table
	create string // the whole definition
	err    error
}

func (e *definitionError) Error() string {
	return fmt.Sprintf("the definition of %s read from the upstream: %v", e.object, e.err)
}

func (e *definitionError) Unwrap() error { return e.err }

// definitionOf returns the object and definition err is about, when it is
// a definitionError.
func definitionOf(err error) (object, create string) {
	var de *definitionError
	if errors.As(err, &de) {
		return de.object, de.create
	}
	return "", ""
}

// sinkTableOf builds the Table handed to the sink for a definition (what
// Syncer.sinkTable does; it could call this).
func sinkTableOf(rs *rules, def *schema.TableDef) *Table {
	ts, tn := rs.route(def.Schema, def.Name)
	t := &Table{Schema: ts, Name: tn, SourceSchema: def.Schema, SourceName: def.Name,
		PrimaryKey: def.PrimaryKey, UniqueKeys: def.UniqueKeys, pkPrefix: def.PrimaryKeyPrefix, ukPrefixes: def.UniqueKeyPrefixes}
	for _, c := range def.Columns {
		t.Columns = append(t.Columns, Column{Name: c.Name, Type: c.Type, Unsigned: c.Unsigned, Nullable: c.Nullable,
			Binary: c.Binary, Generated: c.Generated})
	}
	return t
}
