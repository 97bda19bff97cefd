package dmworker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmworker/dmworker/internal/onlineddl"
	"github.com/dmworker/dmworker/internal/rows"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// syncRun is one Run's reading half: it reads events, decodes them into
// changes and DDL with the tracked schema, and hands them to its applier
// (syncer_apply.go).
type syncRun struct {
	s       *Syncer
	w       *runWriter // checkpoints, shared with the applier
	tracker *schema.Tracker
	apply   applier
	// changes holds the changes decoded from the rows event at hand.
	changes     []Change
	lastTxnEnd  streamer.Position // end of the last whole transaction read
	txnChanges  int               // changes delivered of the open transaction (Change.TxnIndex)
	tables      map[*schema.TableDef]*Table
	fk          *fkGroups // the tables' foreign key groups; nil: to work out
	ignoredKind map[string]bool
	// ensured holds the downstream schemas created for routed tables in
	// this run (ensureTargetSchemas).
	ensured map[string]bool
	// modeWarned is set once a query event's sql_mode could not be read.
	modeWarned bool
	// sh is pessimistic shard mode's state (shardgroup_syncer.go); nil
	// without a ShardGroup.
	sh *shardRun
	// opt is optimistic shard mode's watch for drops due without a DDL
	// (shardgroup_optimistic.go); nil otherwise.
	opt *optWatch
	// xa is the XA transactions prepared and not yet resolved
	// (syncer_xa.go).
	xa xaState
	// triggers caches whether upstream tables have triggers, for
	// statement-logged changes (syncer_statement.go).
	triggers map[schema.TableName]bool
}

// Run replicates until ctx ends (it then returns nil after saving its
// checkpoint, within the stop timeout: see WithStopTimeout) or an error
// stops it. Retryable sink errors are retried with backoff; the reader
// retries its own connection faults.
func (s *Syncer) Run(ctx context.Context) (err error) {
	if !s.runMu.TryLock() {
		return ErrSyncerRunning
	}
	defer s.runMu.Unlock()
	ctx, release := stopBound(ctx, s.opts.stopTimeout)
	defer release()
	if s.opts.fenced && s.opts.fenceKey != "" {
		ctx = withShardFence(ctx, shardFence{key: s.opts.fenceKey, epoch: s.opts.epoch})
	}
	s.updateStatus(func(st *SyncerStatus) { st.Stage, st.LastError = SyncerRunning, nil })
	defer func() {
		err = withStack(err)
		s.updateStatus(func(st *SyncerStatus) { st.Stage, st.LastError = SyncerStopped, err })
		if err != nil {
			s.log.Error("syncer stopped", errAttr(err))
		}
	}()
	unregister, err := s.opts.metrics.register(newCollector(
		prometheus.Labels{"task": s.cfg.Task, "source": s.cfg.Source, "worker": ""}, syncerFamilies,
		func(e emitter) { emitSyncer(e, s.Status(), s.inst) }))
	if err != nil {
		return fmt.Errorf("dmworker: syncer for task %s source %s: %w", s.cfg.Task, s.cfg.Source, err)
	}
	defer unregister()

	r := &syncRun{s: s, w: &runWriter{s: s}, tables: map[*schema.TableDef]*Table{}, ignoredKind: map[string]bool{}}
	s.xaFloor.Store(nil) // the run starts at the stored checkpoint
	cp, found, err := loadCheckpoint(ctx, s.store, s.cfg.Task, s.cfg.Source, s.cfg.Upstream, s.log)
	if err != nil {
		return s.wrap(streamer.Position{}, "", "", err)
	}
	// Which server is reached now, and where its binlog is: a checkpoint
	// must be a place in it (checkLineage), and checkpoints record it.
	up, err := s.upstreamAtStart(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while the upstream was away
		}
		if binlogOff(err) {
			// Say what to set, as for the other binlog settings.
			if berr := s.checkBinlog(ctx); berr != nil {
				return s.wrap(cp.Pos, "", "", berr)
			}
		}
		return s.wrap(cp.Pos, "", "", err)
	}
	r.w.server = up.Identity
	start := cp.Pos
	r.w.epoch = cp.Epoch
	if s.opts.fenced {
		if found && cp.Epoch > s.opts.epoch {
			return s.wrap(cp.Pos, "", "", fmt.Errorf("%w: the stored checkpoint is from epoch %d, this syncer writes under %d",
				ErrStaleEpoch, cp.Epoch, s.opts.epoch))
		}
		r.w.epoch = s.opts.epoch
	}
	if found && len(cp.Snapshot) > 0 {
		return s.wrap(cp.Pos, "", "", errors.New("the snapshot of existing data is not finished: run the task in mode full or all first"))
	}
	if found {
		if err := s.checkBinlog(ctx); err != nil {
			return s.wrap(cp.Pos, "", "", err)
		}
		if len(cp.Schema) == 0 {
			return s.wrap(cp.Pos, "", "", errors.New("the checkpoint carries no schema"))
		}
		if r.tracker, err = schema.Unmarshal(cp.Schema); err != nil {
			return s.wrap(cp.Pos, "", "", fmt.Errorf("the checkpoint's schema: %w", err))
		}
		if r.w.online, err = onlineddl.Detach(cp.Schema); err != nil {
			return s.wrap(cp.Pos, "", "", fmt.Errorf("the checkpoint's schema: %w", err))
		}
		// Changes after the checkpoint may have been applied already: up
		// to SafeUntil when it is set; with a sink that stores the
		// checkpoint with its data, nothing else; with a separate store,
		// up to wherever the last run got, which is at most the
		// upstream's end now.
		r.w.safeUntil = cp.SafeUntil
		end := streamer.Position{Name: up.Master.Name, Offset: up.Master.Offset}
		res, err := s.lineage(cp, up)
		if err != nil {
			return s.wrap(cp.Pos, "", "", err)
		}
		if start = res.start; res.switched {
			// Another server: its file positions have nothing to do with
			// the checkpoint's. What may have been applied past the
			// checkpoint is bounded by this server's end, if it has
			// caught up with the old one.
			if !r.w.safeUntil.IsZero() {
				r.w.safeUntil = end
			}
			s.log.Warn("the checkpoint was taken on another server: resuming from its GTID set", slog.String("checkpoint", cp.Pos.String()),
				slog.String("checkpoint-server", cp.Server), slog.String("server", up.Identity))
		}
		if _, atomic := s.store.(sinkStore); !atomic && end.Compare(r.w.safeUntil) > 0 {
			// The data may be ahead of any checkpoint this store holds.
			r.w.safeUntil = end
		}
		s.log.Info("resuming from checkpoint", slog.String("pos", cp.Pos.String()), slog.String("safe-until", r.w.safeUntil.String()))
	} else {
		if err := s.checkBinlog(ctx); err != nil {
			return s.wrap(streamer.Position{}, "", "", err)
		}
		start = s.cfg.Start
		if start.IsZero() && !s.opts.hasStartSchema && !s.offline() {
			// At the binlog's end: the definitions read are checked
			// to be those at the position the run starts at.
			r.tracker, start, err = s.seedAtEnd(ctx, up.Master)
		} else {
			if start.IsZero() {
				start = up.Master
			}
			r.tracker, err = s.seedSchema(ctx)
		}
		if err != nil {
			// A definition the tracker cannot take: name it whole.
			table, create := definitionOf(err)
			return s.wrap(start, table, create, err)
		}
		r.w.schemaDirty = true
		s.log.Info("fresh start", slog.String("pos", start.String()), slog.Int("tables", len(r.tracker.Tables())))
	}
	r.w.tracker = r.tracker
	if err := r.optimisticStart(ctx); err != nil {
		return s.wrap(start, "", "", err)
	}
	if err := r.shardBegin(ctx); err != nil {
		return s.wrap(start, "", "", err)
	}
	defer r.shardEnd()
	if r.w.online == nil {
		r.w.online = &onlineddl.State{}
	}
	r.lastTxnEnd = start
	if f := s.feed.Load(); f != nil {
		f.begin(r.w.startCheckpoint(start))
	}
	if !found {
		// Record the start at once: a restart before the first change
		// must not move it to a later "current" position. The status
		// shows the start once it is recorded: until then a restart
		// starts afresh (at the binlog's end then).
		if err := r.w.saveCheckpoint(ctx, start); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before the start was stored
			}
			return err
		}
	}
	s.mu.Lock()
	s.status.Checkpoint, s.status.SafeUntil, s.status.Read = start, r.w.safeUntil, start
	s.prog.Begin(start, time.Now())
	s.mu.Unlock()
	defer s.watchUpstream(ctx)()

	reader, err := s.openReader(ctx, start)
	if err != nil {
		return s.wrap(start, "", "", err)
	}
	// A stop closes the reader at once, while the last batch is applied,
	// so that both fit in the stop bound.
	readerClosed := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		reader.Close()
		close(readerClosed)
	})
	defer func() {
		if unwatch() {
			reader.Close()
		} else {
			<-readerClosed
		}
	}()
	if s.cfg.Workers > 1 {
		r.apply = newParallelApplier(ctx, r.w, start)
	} else {
		r.apply = newSerialApplier(ctx, r.w, start)
	}
	return r.loop(ctx, reader)
}

// openReader opens the stream of events from start. The reader decodes the
// row images of the tables the task replicates only (its block and allow
// lists, online DDL tables excepted): the syncer skips the others' rows
// events without looking at their rows (rowsEvent).
func (s *Syncer) openReader(ctx context.Context, start streamer.Position) (streamer.Reader, error) {
	if s.opts.readerFactory != nil {
		r, err := s.opts.readerFactory(ctx, start)
		if f, ok := r.(streamer.TableFilterer); ok && err == nil {
			f.SetTableFilter(s.rules.allowed)
		}
		return r, err
	}
	opts := []streamer.RemoteOption{streamer.WithLogger(s.opts.logger), streamer.WithTableFilter(s.rules.allowed)}
	if s.reached.Load() {
		opts = append(opts, streamer.WithRetryFirstConnect())
	}
	opts = append(opts, s.opts.remoteOpts...)
	return streamer.NewRemoteReader(s.cfg.Upstream, start, opts...)
}

// queryUpstream asks the upstream for its state. Before the upstream has
// ever been reached, an unreachable upstream is a configuration to fix and
// stops Run for good; after, it is an outage, and the error is marked
// retryable (a SubTask resumes).
func (s *Syncer) queryUpstream(ctx context.Context) (streamer.UpstreamState, error) {
	st, err := streamer.QueryUpstream(ctx, s.cfg.Upstream)
	if err == nil {
		s.reached.Store(true)
		return st, nil
	}
	if s.reached.Load() && errors.Is(err, streamer.ErrUnreachable) {
		err = Retryable(err)
	}
	return st, err
}

// seedSchema reads the definitions of the tables the task replicates from
// the upstream (SHOW CREATE DATABASE and TABLE).
func (s *Syncer) seedSchema(ctx context.Context) (*schema.Tracker, error) {
	if s.opts.hasStartSchema {
		return startSchema(s.opts.startSchema)
	}
	db, err := openUpstreamDB(s.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return seedTracker(ctx, db, s.rules)
}

// openUpstreamDB opens a pool on the upstream for the library's own SQL
// (table definitions, snapshot reads, settings). Every connection runs with
// an empty sql_mode, whatever the server's global one: SHOW CREATE prints
// backquoted names and every table option (no ANSI_QUOTES, ORACLE,
// NO_TABLE_OPTIONS, ...), CHAR values come back unpadded (no
// PAD_CHAR_TO_FULL_LENGTH), and the library's statements mean what they say.
func openUpstreamDB(up streamer.UpstreamConfig) (*sql.DB, error) {
	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = up.User, up.Password, "tcp", up.Addr()
	c.Timeout = 10 * time.Second
	c.Params = map[string]string{"sql_mode": "''"}
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	return db, nil
}

// checkBinlog refuses an upstream whose binlog settings lose row changes
// (ErrBinlogFormat). When it cannot read them (the upstream away while a
// run resumes from a relay, say) it only warns: queryUpstream and the reader
// report an unreachable upstream, and statements logged in place of rows
// stop the run as they come (ErrStatementBinlog).
func (s *Syncer) checkBinlog(ctx context.Context) error {
	if s.opts.skipPrecheck || s.offline() {
		return nil
	}
	err := checkUpstreamBinlog(ctx, s.cfg.Upstream)
	if err == nil || errors.Is(err, ErrBinlogFormat) {
		return err
	}
	s.log.Warn("cannot check the upstream's binlog settings", errAttr(err))
	return nil
}

// checkUpstreamBinlog refuses an upstream whose binlog does not carry every
// row change in full (ErrBinlogFormat, saying what to set). Other errors are
// about reaching the upstream.
func checkUpstreamBinlog(ctx context.Context, up streamer.UpstreamConfig) error {
	db, err := openUpstreamDB(up)
	if err != nil {
		return err
	}
	defer db.Close()
	var format, image string
	var logBin int
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.log_bin").Scan(&format, &image, &logBin); err != nil {
		return fmt.Errorf("read binlog settings: %w", err)
	}
	if logBin != 1 {
		return fmt.Errorf("%w: on %s, the binlog is off: start the server with log_bin (log-bin=NAME in its configuration)", ErrBinlogFormat, up.Addr())
	}
	var bad []string
	if !strings.EqualFold(format, "ROW") {
		bad = append(bad, "binlog_format is "+format+": set binlog_format=ROW")
	}
	if !strings.EqualFold(image, "FULL") {
		bad = append(bad, "binlog_row_image is "+image+": set binlog_row_image=FULL")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: on %s, %s (SET GLOBAL and in the server's configuration; sessions opened before keep the old value)",
			ErrBinlogFormat, up.Addr(), strings.Join(bad, "; "))
	}
	return nil
}

// binlogOff reports whether err is the upstream's "You are not using binary
// logging" (ER_NO_BINARY_LOGGING, 1381).
func binlogOff(err error) bool {
	var me *mysql.MyError
	return errors.As(err, &me) && me.Code == 1381
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// loop reads events and hands them to the applier until ctx ends or an
// error.
func (r *syncRun) loop(ctx context.Context, reader streamer.Reader) (err error) {
	a := r.apply
	defer func() { err = a.close(ctx, err) }()
	actx := a.context()
	var deadline waitDeadline // what waits must be applied or saved by then
	defer deadline.stop()
	for {
		rctx := actx
		if sctx := r.shardCtx(actx); sctx != nil {
			rctx = sctx // also ends when a held shard DDL step may have changed
		}
		if at, ok := a.wakeAt(); ok {
			rctx = deadline.context(rctx, at)
		}
		ev, err := reader.GetEvent(rctx)
		if err != nil {
			if ferr := a.failed(); ferr != nil {
				return ferr
			}
			if ctx.Err() != nil {
				return nil // stopping: close applies what is read
			}
			if r.shardWoken(actx) {
				deadline.stop()
				if err := r.shardTick(actx); err != nil {
					return a.handleError(ctx, err)
				}
				continue
			}
			if rctx != actx && rctx.Err() != nil {
				deadline.stop()
				if err := a.pause(ctx); err != nil {
					return err
				}
				continue
			}
			return r.s.wrap(r.lastTxnEnd, "", "", err)
		}
		if err := r.handle(actx, ev); err != nil {
			if ferr := a.failed(); ferr != nil {
				return ferr
			}
			return a.handleError(ctx, err)
		}
		if a.settled() {
			deadline.stop()
		}
	}
}

// handle decodes one event and hands what it means to the applier.
func (r *syncRun) handle(ctx context.Context, ev *streamer.Event) error {
	s := r.s
	if !s.reached.Load() {
		s.reached.Store(true)
	}
	if !ev.Artificial() {
		now := time.Now()
		s.updateStatus(func(st *SyncerStatus) {
			st.Read = ev.Pos
			st.Events++
			s.prog.Read(ev.Pos, ev.Header.Timestamp, now)
		})
	} else if t := ev.Header.EventType; t == replication.HEARTBEAT_EVENT || t == replication.HEARTBEAT_LOG_EVENT_V2 {
		// The upstream sends one only when it has nothing more: its
		// binlog ends where the stream is.
		s.mu.Lock()
		s.prog.Look(ev.Pos, time.Now())
		s.mu.Unlock()
	}
	switch e := ev.Event.(type) {
	case *replication.TableMapEvent:
		if s.rules.allowed(string(e.Schema), string(e.Table)) {
			err := checkTableMapColumns(e, ev.RawData)
			if def, ok := r.tracker.Table(string(e.Schema), string(e.Table)); ok && err == nil {
				err = checkOldTemporal(e, def)
			}
			if err != nil {
				return r.wrapEvent(ev, string(e.Schema)+"."+string(e.Table), "table map", err)
			}
		}
	case *replication.RowsEvent:
		ok, err := r.rowsEvent(ev, e)
		if err != nil {
			return err
		}
		r.inTxn(!ev.TxnEnd)
		switch {
		case ok && r.xa.open != nil:
			r.xaRows() // applied at its XA COMMIT
		case ok:
			if err := r.applyChanges(ctx, ev, ev.TxnEnd); err != nil {
				return err
			}
		}
	case *replication.MariadbGTIDEvent:
		if e.Flags&mariadbFlPreparedXA != 0 {
			if err := r.xaBegin(); err != nil {
				return err
			}
		}
	case *replication.GenericEvent:
		if isXAPrepare(ev) {
			if err := r.xaPrepared(ctx, ev); err != nil {
				return err
			}
		}
		if ev.Header.EventType == replication.INCIDENT_EVENT {
			if err := r.incident(ev); err != nil {
				return err
			}
		}
	case *replication.QueryEvent:
		q := strings.TrimSpace(schema.QueryText(e.StatusVars, e.Query))
		if strings.EqualFold(q, "COMMIT") || strings.EqualFold(q, "BEGIN") {
			break
		}
		if isXAQuery(q) {
			// XA START (MySQL: MariaDB says it in the GTID event) and XA
			// END frame a prepared XA's rows; XA COMMIT and XA ROLLBACK
			// are its outcome. None of them is a DDL.
			if xaStart(q) && r.xa.open == nil {
				if err := r.xaBegin(); err != nil {
					return err
				}
			}
			if _, err := r.xaOutcome(ctx, ev, q); err != nil {
				return err
			}
			break
		}
		mode := r.sqlMode(e)
		if triggerDDL.MatchString(q) {
			clear(r.triggers) // a trigger came or went
		}
		if dml, err := r.statementDML(ctx, ev, mode, string(e.Schema), q); dml || err != nil {
			if err != nil {
				return err
			}
			break
		}
		if !ev.TxnEnd && !shapesTables(mode, string(e.Schema), q) {
			// SAVEPOINT and the like. A statement that shapes tables
			// inside a transaction is the CREATE TABLE of a CREATE TABLE
			// ... SELECT, which row format logs with the rows that fill
			// it after it, in one transaction: it is applied here, first.
			break
		}
		if err := r.apply.ddl(ctx, ev.Pos, func() error { return r.ddl(ctx, ev, string(e.Schema), q, mode) }); err != nil {
			return err
		}
	case *replication.ExecuteLoadQueryEvent:
		// LOAD DATA logged as a statement; the event does not say which
		// table in a form go-mysql decodes.
		if err := r.statementErr(ev, "", "LOAD DATA", fmt.Errorf("%w: LOAD DATA", ErrStatementBinlog)); err != nil {
			return err
		}
	}
	if !ev.TxnEnd && ev.Boundary && !ev.Artificial() {
		// A real event between transactions (a rotation's format
		// description, a GTID list, a binlog checkpoint): the checkpoint
		// may move past it, or it would stay behind a binlog that ends
		// with such events.
		r.lastTxnEnd = ev.Pos
		r.txnChanges = 0
		return r.apply.txnEnd(ctx, ev.Pos, false)
	}
	if ev.TxnEnd {
		r.lastTxnEnd = ev.Pos
		r.txnChanges = 0
		if s.inst != nil {
			s.inst.txns.Add(1)
		}
		if err := r.apply.txnEnd(ctx, ev.Pos, true); err != nil {
			return err
		}
		if r.opt != nil {
			r.opt.inTxn = false
		}
		if r.sh != nil {
			r.sh.inTxn = false
			if r.shardReady() {
				return r.shardTick(ctx)
			}
		}
		return nil
	}
	return nil
}

// inTxn tells the shard modes whether a transaction's rows are being read.
func (r *syncRun) inTxn(in bool) {
	if r.opt != nil {
		r.opt.inTxn = in
	}
	if r.sh != nil {
		r.sh.inTxn = in
	}
}

// applyChanges hands the changes in r.changes, read at ev, to the shard
// modes, the validator's feed and the applier, and empties r.changes.
// txnEnd says they end their transaction.
func (r *syncRun) applyChanges(ctx context.Context, ev *streamer.Event, txnEnd bool) error {
	s := r.s
	r.inTxn(!txnEnd)
	defer func() {
		clear(r.changes)
		r.changes = r.changes[:0]
	}()
	if r.sh != nil && r.shardRows(ev) {
		return nil // held for a shard DDL step, or applied before
	}
	if f := s.feed.Load(); f != nil {
		f.rows(r.changes, ev.Pos)
	}
	safe := s.cfg.SafeMode || (!r.w.safeUntil.IsZero() && ev.Pos.Compare(r.w.safeUntil) <= 0)
	return r.apply.rows(ctx, r.changes, ev.Pos, safe, txnEnd)
}

// rowsEvent turns a rows event into changes appended to r.changes. It
// reports whether the event concerns a table the task replicates (false
// for one filtered out or without a table).
func (r *syncRun) rowsEvent(ev *streamer.Event, e *replication.RowsEvent) (bool, error) {
	s := r.s
	if e.Table == nil {
		return false, nil
	}
	db, tbl := string(e.Table.Schema), string(e.Table.Table)
	if !s.rules.allowed(db, tbl) {
		return false, nil
	}
	var kind ChangeKind
	switch ev.Header.EventType {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2, replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		kind = Insert
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		kind = Update
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2, replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		kind = Delete
	default:
		return false, nil
	}
	skip, err := s.rules.skipDML(db, tbl, kind)
	if err != nil {
		return false, r.wrapEvent(ev, db+"."+tbl, kind.String(), err)
	}
	if skip {
		return false, nil
	}
	def, ok := r.tracker.Table(db, tbl)
	if !ok {
		return false, r.wrapEvent(ev, db+"."+tbl, kind.String(), ErrUnknownTable)
	}
	if !fullImage(e.ColumnBitmap1, e.ColumnCount) || kind == Update && !fullImage(e.ColumnBitmap2, e.ColumnCount) {
		// A session with binlog_row_image MINIMAL or NOBLOB: the columns
		// left out would be written as NULL or zero.
		return false, r.wrapEvent(ev, db+"."+tbl, kind.String(), fmt.Errorf("%w: an event of %s rows of %d columns carries only some of them (binlog_row_image is not FULL in the writing session)",
			ErrBinlogFormat, kind, e.ColumnCount))
	}
	t, order, err := r.table(def, e.Table)
	if err != nil {
		return false, r.wrapEvent(ev, db+"."+tbl, kind.String(), err)
	}
	conv := func(row []any) ([]any, error) {
		if len(row) != int(e.ColumnCount) || len(row) != len(def.Columns) {
			return nil, fmt.Errorf("%w: row has %d columns, the table %d", ErrSchemaMismatch, len(row), len(def.Columns))
		}
		out := make([]any, len(row))
		for i, v := range row {
			ci := order[i]
			c, err := rows.Convert(v, &def.Columns[ci], def.Charset, e.Table.ColumnType[i], e.Table.ColumnMeta[i])
			if err != nil {
				return nil, err
			}
			out[ci] = c
		}
		return out, nil
	}
	step := 1
	if kind == Update {
		step = 2
	}
	noFKChecks := e.Flags&replication.NO_FOREIGN_KEY_CHECKS_F != 0
	for i := 0; i+step <= len(e.Rows); i += step {
		ch := Change{Kind: kind, Table: t, NoForeignKeyChecks: noFKChecks, TxnPos: r.lastTxnEnd, TxnIndex: r.txnChanges}
		var err error
		switch kind {
		case Insert:
			ch.After, err = conv(e.Rows[i])
		case Delete:
			ch.Before, err = conv(e.Rows[i])
		case Update:
			if ch.Before, err = conv(e.Rows[i]); err == nil {
				ch.After, err = conv(e.Rows[i+1])
			}
		}
		if err != nil {
			return false, r.wrapEvent(ev, db+"."+tbl, kind.String(), err)
		}
		r.changes = append(r.changes, ch)
		r.txnChanges++
	}
	return true, nil
}

// table returns the sink's view of a tracked table and the mapping from the
// row image's column order to the definition's. With full row metadata the
// binlog names the columns and they are matched by name; otherwise by
// position.
func (r *syncRun) table(def *schema.TableDef, tm *replication.TableMapEvent) (*Table, []int, error) {
	t, ok := r.tables[def]
	if !ok {
		t = r.s.sinkTable(def)
		if r.fk == nil {
			r.fk = newFKGroups(r.tracker, r.s.rules)
		}
		r.fk.decorate(t, def)
		r.tables[def] = t
	}
	n := int(tm.ColumnCount)
	order := make([]int, n)
	names := tm.ColumnNameString()
	if len(names) == n {
		for i, name := range names {
			ci := def.Column(name)
			if ci < 0 {
				return nil, nil, fmt.Errorf("%w: the binlog names column %q, which the tracked definition lacks", ErrSchemaMismatch, name)
			}
			order[i] = ci
		}
	} else {
		for i := range order {
			order[i] = i
		}
	}
	if n != len(def.Columns) {
		return nil, nil, fmt.Errorf("%w: the binlog has %d columns, the tracked definition %d", ErrSchemaMismatch, n, len(def.Columns))
	}
	return t, order, nil
}

// sinkTable builds the Table handed to the sink for a definition.
func (s *Syncer) sinkTable(def *schema.TableDef) *Table { return sinkTableOf(s.rules, def) }

// ddl applies a DDL statement, written under sql_mode mode, and stores
// the checkpoint after it. The applier has applied every change before it
// (applier.ddl).
func (r *syncRun) ddl(ctx context.Context, ev *streamer.Event, defaultSchema, query string, mode schema.SQLMode) error {
	s := r.s
	r.shardPre()
	// DDL is not transactional downstream: record first that a crash from
	// here on must replay it in safe mode.
	replay := !r.w.safeUntil.IsZero() && ev.Pos.Compare(r.w.safeUntil) <= 0
	if !replay {
		cp := r.w.checkpoint(r.lastTxnEnd)
		cp.SafeUntil = ev.Pos
		if err := s.retryBounded(ctx, "save checkpoint", func(ctx context.Context) error { return s.store.Save(ctx, cp) }); err != nil {
			return s.wrap(ev.Pos, "", "save checkpoint", err)
		}
	}
	// From here the tracker may hold the event's statements before the
	// checkpoint passes it: one stored before it (by a batch, or at the
	// run's end after a failure here) carries the schema before it, or
	// the run after would apply its statements twice.
	r.w.beginDDL(ev.Pos)
	if op, ok := s.takeOperator(ev.Pos, r.eventStart(ev)); ok {
		if op.skip {
			s.log.Warn("skipping DDL as asked", slog.String("pos", ev.Pos.String()), slog.String("query", query))
			r.w.endDDL()
			return r.w.saveCheckpoint(ctx, ev.Pos)
		}
		for _, q := range op.replace {
			if _, err := r.tracker.Apply(defaultSchema, q); err != nil {
				return r.wrapEvent(ev, "", q, err)
			}
			r.w.schemaDirty = true
			r.tables, r.fk = map[*schema.TableDef]*Table{}, nil
			if err := r.execDDL(ctx, &DDL{Schema: defaultSchema, Query: q, SourceQuery: query, Pos: ev.Pos, SafeMode: replay || s.cfg.SafeMode,
				ZeroGetsAutoValue: mode&schema.ModeNoAutoValueOnZero == 0}); err != nil {
				return r.wrapEvent(ev, "", q, err)
			}
		}
		r.w.endDDL()
		return r.w.saveCheckpoint(ctx, ev.Pos)
	}
	stmts, err := schema.SplitMode(mode, defaultSchema, query)
	if err != nil {
		return r.wrapEvent(ev, "", query, err)
	}
	for i := range stmts {
		st := &stmts[i]
		if st.Ignored {
			if !r.ignoredKind[st.Kind] {
				r.ignoredKind[st.Kind] = true
				s.log.Info("ignoring statements that do not shape tables", slog.String("kind", st.Kind), slog.String("example", truncate(query, 200)))
			}
			continue
		}
		if online, err := r.onlineStmt(ctx, ev, st, query, mode, defaultSchema, replay); online || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		prev, _ := r.tracker.Table(st.Table.Schema, st.Table.Name) // for optimistic shard mode
		if _, err := r.tracker.ApplyStmts(*st); err != nil {
			return r.wrapEvent(ev, st.Table.String(), query, err)
		}
		r.w.schemaDirty = true
		r.tables, r.fk = map[*schema.TableDef]*Table{}, nil
		if !s.rules.allowed(st.Table.Schema, st.Table.Name) {
			continue
		}
		skip, err := s.rules.skipDDL(st.Table.Schema, st.Table.Name, st.Kind, query)
		if err != nil {
			return r.wrapEvent(ev, st.Table.String(), query, err)
		}
		if skip {
			continue
		}
		routed, err := st.Render(s.rules.route)
		if err != nil {
			return r.wrapEvent(ev, st.Table.String(), query, err)
		}
		rs, rt := s.rules.route(st.Table.Schema, st.Table.Name)
		if st.Table.Name == "" {
			rt = ""
		}
		if err := r.ensureTargetSchemas(ctx, ev, st, query); err != nil {
			return r.wrapEvent(ev, st.Table.String(), query, err)
		}
		// When tables are renamed on the way, several sources may create
		// the same target (shards merged into one table): the second
		// creation finds the first, which is not an error. So does the
		// CREATE DATABASE of a schema made for routed tables already.
		merged := (rs != st.Table.Schema || (st.Table.Name != "" && rt != st.Table.Name)) &&
			(st.Kind == schema.KindCreateTable || st.Kind == schema.KindCreateDatabase) ||
			st.Kind == schema.KindCreateDatabase && r.ensured[rs]
		d := &DDL{Schema: rs, Table: rt, Query: routed, SourceQuery: query, Pos: ev.Pos, SafeMode: replay || merged || s.cfg.SafeMode,
			ZeroGetsAutoValue: mode&schema.ModeNoAutoValueOnZero == 0}
		if err := r.shardDDL(ctx, ev, st, prev, d, func() error { return r.execDDL(ctx, d) }); err != nil {
			return r.wrapEvent(ev, st.Table.String(), query, err)
		}
	}
	r.w.endDDL()
	return r.w.saveCheckpoint(ctx, ev.Pos)
}

// ensureTargetSchemas creates downstream, once per run, the schema that a
// table statement creates a table in when routing sends the table to
// another schema than the one its own schema is routed to (which that
// schema's CREATE DATABASE makes): CREATE DATABASE IF NOT EXISTS, with the
// source schema's character set and collation.
func (r *syncRun) ensureTargetSchemas(ctx context.Context, ev *streamer.Event, st *schema.Stmt, query string) error {
	switch st.Kind {
	case schema.KindCreateTable, schema.KindRenameTable, schema.KindAlterTable:
	default:
		return nil
	}
	for _, n := range []schema.TableName{st.Table, st.NewTable} {
		if n.Name == "" {
			continue
		}
		target, ok := r.s.rules.targetSchema(n)
		if !ok || r.ensured[target] {
			continue
		}
		cs, coll, _ := r.tracker.Database(n.Schema)
		d := &DDL{Schema: target, Query: createSchemaSQL(target, cs, coll), SourceQuery: query, Pos: ev.Pos, SafeMode: true}
		if err := r.execDDL(ctx, d); err != nil {
			return err
		}
		if r.ensured == nil {
			r.ensured = map[string]bool{}
		}
		r.ensured[target] = true
	}
	return nil
}

func (r *syncRun) execDDL(ctx context.Context, d *DDL) error {
	tried := false
	err := r.s.watchDDL(func() error {
		return r.s.retry(ctx, func() error {
			if tried && !d.SafeMode {
				// The failed attempt may have run the DDL (a connection lost
				// after the server did it, before the reply): an attempt
				// after it is a replay.
				c := *d
				c.SafeMode = true
				return r.s.sink.ExecDDL(ctx, &c)
			}
			tried = true
			return r.s.sink.ExecDDL(ctx, d)
		})
	})
	if err == nil {
		r.s.updateStatus(func(st *SyncerStatus) { st.DDLs++ })
		if f := r.s.feed.Load(); f != nil {
			f.ddl(d)
		}
	}
	return err
}

// wrapEvent is wrap for an error about the event ev: the error carries
// where the event starts and ends.
func (r *syncRun) wrapEvent(ev *streamer.Event, table, stmt string, err error) error {
	if err == nil {
		return nil
	}
	return r.s.wrapAt(r.eventStart(ev).Clone(), ev.Pos.Clone(), table, stmt, err)
}

// eventStart is the position where ev begins in its binlog file, with the
// GTID set executed before its transaction (shared: Clone it to keep it);
// zero for an event that occupies no space in the file.
func (r *syncRun) eventStart(ev *streamer.Event) streamer.Position {
	p := ev.Start() // a compressed transaction's events: where its payload begins
	if p.IsZero() {
		return p
	}
	p.Flavor, p.GTIDSet = ev.Pos.Flavor, r.lastTxnEnd.GTIDSet
	return p
}

// fullImage reports whether a rows event's column bitmap has its first n
// bits set (every column in the image); a missing bitmap counts as full.
func fullImage(bm []byte, n uint64) bool {
	if bm == nil {
		return true
	}
	for i := uint64(0); i < n; i++ {
		if int(i/8) >= len(bm) || bm[i/8]&(1<<(i%8)) == 0 {
			return false
		}
	}
	return true
}

// shapesTables reports whether query holds a statement the tracker
// applies (one that is neither ignored nor unparseable).
func shapesTables(mode schema.SQLMode, defaultSchema, query string) bool {
	stmts, err := schema.SplitMode(mode, defaultSchema, query)
	return err == nil && slices.ContainsFunc(stmts, func(st schema.Stmt) bool { return !st.Ignored })
}

// sqlMode is the sql_mode a query event records; the default mode when it
// records none or cannot be read.
func (r *syncRun) sqlMode(e *replication.QueryEvent) schema.SQLMode {
	mode, found, err := schema.StatusVarsSQLMode(e.StatusVars)
	if (err != nil || !found) && !r.modeWarned {
		r.modeWarned = true
		msg := "no sql_mode recorded"
		if err != nil {
			msg = err.Error()
		}
		r.s.log.Warn("reading query events in the default sql_mode", slog.String("reason", msg))
	}
	return mode
}

// statementDML reports whether a query event is a row change logged as a
// statement (binlog_format STATEMENT or MIXED, or a session that set it):
// such rows never arrive as row events, so when the statement may write a
// table the task replicates (or the statement cannot be read), the task
// stops there with ErrStatementBinlog, before its checkpoint passes it.
//
// So does a stored function call, and a statement on a table with triggers
// (syncer_statement.go): what they wrote is in no event.
func (r *syncRun) statementDML(ctx context.Context, ev *streamer.Event, mode schema.SQLMode, defaultSchema, query string) (bool, error) {
	s := r.s
	kind, tables, dml := schema.StatementDML(mode, defaultSchema, query)
	if !dml {
		if isFunctionCall(query) {
			return true, r.statementErr(ev, "", query, fmt.Errorf("%w: a stored function call, whose changes (to tables that cannot be told) are not in the binlog", ErrStatementBinlog))
		}
		return false, nil
	}
	if tables == nil {
		return true, r.statementErr(ev, "", query, fmt.Errorf("%w: a %s whose tables cannot be told", ErrStatementBinlog, kind))
	}
	ck := map[string]ChangeKind{schema.KindInsert: Insert, schema.KindUpdate: Update, schema.KindDelete: Delete}[kind]
	for _, t := range tables {
		passed := !s.rules.allowed(t.Schema, t.Name)
		if !passed {
			// Not tracked: a temporary table, or one the task never saw
			// created.
			_, tracked := r.tracker.Table(t.Schema, t.Name)
			passed = !tracked
		}
		if !passed {
			skip, err := s.rules.skipDML(t.Schema, t.Name, ck)
			if err != nil {
				return true, r.wrapEvent(ev, t.Schema+"."+t.Name, query, err)
			}
			if !skip {
				return true, r.statementErr(ev, t.Schema+"."+t.Name, query, fmt.Errorf("%w: a %s", ErrStatementBinlog, kind))
			}
		}
		if err := r.triggersWrite(ctx, ev, t, kind, query); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (s *Syncer) wrap(pos streamer.Position, table, stmt string, err error) error {
	return s.wrapAt(streamer.Position{}, pos, table, stmt, err)
}

// wrapAt makes err a *SyncError about the event from start to pos (start
// zero when it is not about one event), unless it is one already.
func (s *Syncer) wrapAt(start, pos streamer.Position, table, stmt string, err error) error {
	if err == nil {
		return nil
	}
	var se *SyncError
	if errors.As(err, &se) {
		return withStack(err)
	}
	return withStack(&SyncError{Task: s.cfg.Task, Source: s.cfg.Source, Start: start, Pos: pos, Table: table, Statement: stmt, Err: err})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
