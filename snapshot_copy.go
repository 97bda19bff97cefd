package dmworker

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/snapshot"
)

// snapshotCopy is one run's copy of the planned tables.
type snapshotCopy struct {
	u       *snapshotUnit
	prog    *snapshotProgress
	tracker *schema.Tracker
	tables  map[string]*Table // sink tables by upstream "schema.name"

	// progMu guards prog's tables.
	progMu sync.Mutex
	// applyMu is held shared by Apply calls when the sink takes them
	// concurrently, exclusively otherwise, and exclusively by checkpoint
	// saves and DDL: the sink contract wants those with no Apply running.
	applyMu    sync.RWMutex
	concurrent bool
	// resumed: a previous run of this copy may have written part of the
	// unfinished chunks, so keyed rows are written in safe mode.
	resumed bool
	// savePending is set while a progress save waits for applyMu, before
	// it reads the progress: a chunk recorded done meanwhile is in what
	// that save stores (see itemDone).
	savePending atomic.Bool
	// bulkOff holds the upstream tables (by "schema.name") whose batches a
	// BulkSink refused: they go through Apply.
	bulkOff sync.Map
}

// bulkable reports whether batches of table go to BulkSink.ApplyBulk.
func (c *snapshotCopy) bulkable(table string) bool {
	_, off := c.bulkOff.Load(table)
	return !off
}

// noBulk sends the rest of table's batches through Apply.
func (c *snapshotCopy) noBulk(table string, why error) {
	if _, loaded := c.bulkOff.LoadOrStore(table, true); !loaded {
		c.u.log.Info("the sink's bulk load refused a batch: the table's rows go through Apply", slog.String("table", table), errAttr(why))
	}
}

// save stores the progress in the checkpoint; schemaJSON is the tracked
// schema, nil when unchanged since the last save.
func (c *snapshotCopy) save(ctx context.Context, schemaJSON []byte) error {
	u := c.u
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.savePending.Store(false)
	c.progMu.Lock()
	data, err := json.Marshal(c.prog)
	c.progMu.Unlock()
	if err != nil {
		return u.wrap(c.prog.Pos, "", "save progress", err)
	}
	cp := Checkpoint{Task: u.cfg.Task, Source: u.cfg.Source, Pos: c.prog.Pos, Schema: schemaJSON, Epoch: u.epoch, Snapshot: data}
	if c.prog.SafeUntil.Compare(c.prog.Pos) > 0 {
		cp.SafeUntil = c.prog.SafeUntil
	}
	if err := c.retry(ctx, func() error { return u.store.Save(ctx, cp) }); err != nil {
		return u.wrap(c.prog.Pos, "", "save progress", err)
	}
	return nil
}

// retry runs f until it succeeds, fails with an error that is not
// retryable, or five minutes of backoff have passed.
func (c *snapshotCopy) retry(ctx context.Context, f func() error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, 5*time.Minute
	return backoff.Retry(func() error {
		err := f()
		if err != nil && (!IsRetryable(err) || errors.Is(err, ErrSinkTimeout)) {
			return backoff.Permanent(err)
		}
		if err != nil {
			c.u.log.Warn("retrying sink call", errAttr(err))
		}
		return err
	}, backoff.WithContext(b, ctx))
}

// prepare creates the databases and tables downstream (routed; existing
// ones are fine) from the upstream's definitions read on conn, and empties
// the unfinished tables without a key, which a previous attempt may have
// filled in part. On a first run, the plain secondary indexes of a table
// are left out (TablePlan.Deferred, saved before the table is created) and
// added when its rows are in (addKeys), unless SnapshotConfig.IndexesFirst.
func (c *snapshotCopy) prepare(ctx context.Context, conn *sql.Conn) error {
	u := c.u
	pos := c.prog.Pos
	type create struct {
		db, object, query string
		t                 *snapshot.TablePlan // for a table
		// schema is set for the downstream schema of routed tables
		// (rules.targetSchema): query creates it and runs as it is.
		schema string
	}
	var creates []create
	seen := map[string]bool{}
	targets := map[string]int{}
	madeSchemas := map[string]bool{}
	for _, t := range c.prog.Tables {
		def, ok := c.tracker.Table(t.Schema, t.Name)
		if !ok {
			return u.wrap(pos, t.QualifiedName(), "prepare", fmt.Errorf("%w: not in the tracked schema", ErrUnknownTable))
		}
		st := sinkTableOf(u.rules, def)
		c.tables[t.QualifiedName()] = st
		targets[st.QualifiedName()]++
		if !seen[t.Schema] {
			seen[t.Schema] = true
			var name, q string
			if err := conn.QueryRowContext(ctx, "SHOW CREATE DATABASE "+quoteIdent(t.Schema)).Scan(&name, &q); err != nil {
				return u.wrap(pos, t.Schema, "SHOW CREATE DATABASE", err)
			}
			creates = append(creates, create{db: t.Schema, object: t.Schema, query: q})
		}
		if ts, ok := u.rules.targetSchema(schema.TableName{Schema: t.Schema, Name: t.Name}); ok && !madeSchemas[ts] {
			madeSchemas[ts] = true
			cs, coll, _ := c.tracker.Database(t.Schema)
			creates = append(creates, create{object: ts, query: createSchemaSQL(ts, cs, coll), schema: ts})
		}
		var name, q string
		if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+quoteIdent(t.Schema)+"."+quoteIdent(t.Name)).Scan(&name, &q); err != nil {
			return u.wrap(pos, t.QualifiedName(), "SHOW CREATE TABLE", err)
		}
		creates = append(creates, create{db: t.Schema, object: t.QualifiedName(), query: q, t: t})
	}
	// A table a foreign key references keeps its indexes: creating the
	// referencing table fails while the referenced columns lack one.
	referenced := map[string]bool{}
	for _, n := range c.tracker.Tables() {
		def, _ := c.tracker.Table(n.Schema, n.Name)
		for i := range def.ForeignKeys {
			ref := def.ForeignKeys[i].Ref()
			referenced[ref.Schema+"."+ref.Name] = true
		}
	}
	deferred := false
	for i := range creates {
		cr := &creates[i]
		t := cr.t
		if t == nil {
			continue
		}
		stripped, keys := snapshot.SplitKeys(cr.query)
		// Only into a table of its own: rows of another upstream table
		// routed into it may still be arriving.
		if !c.resumed && !t.Finished && !u.sc.IndexesFirst && len(keys) > 0 && targets[c.tables[t.QualifiedName()].QualifiedName()] == 1 &&
			!referenced[t.QualifiedName()] && !c.createFiltered(cr.db, cr.query) {
			c.progMu.Lock()
			t.Deferred = keys
			c.progMu.Unlock()
			deferred = true
		}
		if len(t.Deferred) > 0 {
			cr.query = stripped
		}
	}
	if deferred {
		// Saved before any table is created without its indexes, so that
		// a resumed copy adds them.
		if err := c.save(ctx, nil); err != nil {
			return err
		}
	}
	for _, cr := range creates {
		if cr.schema != "" {
			d := &DDL{Schema: cr.schema, Query: cr.query, SourceQuery: cr.query, Pos: pos, SafeMode: true}
			if err := c.retry(ctx, func() error { return u.sink.ExecDDL(ctx, d) }); err != nil {
				return u.wrap(pos, cr.object, cr.query, err)
			}
			continue
		}
		if err := c.createDDL(ctx, cr.db, cr.query, cr.object); err != nil {
			return err
		}
		if t := cr.t; t != nil && !t.Finished && len(t.Key) == 0 {
			st := c.tables[t.QualifiedName()]
			q := "TRUNCATE TABLE " + quoteIdent(st.Schema) + "." + quoteIdent(st.Name)
			if err := c.retry(ctx, func() error {
				return u.sink.ExecDDL(ctx, &DDL{Schema: st.Schema, Table: st.Name, Query: q, SourceQuery: q, Pos: pos})
			}); err != nil {
				return u.wrap(pos, t.QualifiedName(), q, err)
			}
		}
	}
	return nil
}

// addKeys adds the deferred secondary indexes of t, whose rows are all
// copied: one ALTER TABLE for all of them, or, when that fails (the table
// existed before the copy with some of them), one per index in safe mode.
// With a ConcurrentSink it runs while other tables are written (the
// contract allows an index added to a table no Apply writes); otherwise
// with no Apply running. Then the progress is saved without them.
func (c *snapshotCopy) addKeys(ctx context.Context, t *snapshot.TablePlan) error {
	u := c.u
	c.progMu.Lock()
	keys := slices.Clone(t.Deferred)
	c.progMu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	st := c.tables[t.QualifiedName()]
	name := quoteIdent(st.Schema) + "." + quoteIdent(st.Name)
	exec := func(q string, safe bool) error {
		if !c.concurrent {
			c.applyMu.Lock()
			defer c.applyMu.Unlock()
		}
		return u.sink.ExecDDL(ctx, &DDL{Schema: st.Schema, Table: st.Name, Query: q, SourceQuery: q, Pos: c.prog.Pos, SafeMode: safe})
	}
	start := time.Now()
	q := "ALTER TABLE " + name + " ADD " + strings.Join(keys, ", ADD ")
	if err := exec(q, false); err != nil {
		if ctx.Err() != nil {
			return err
		}
		u.log.Info("adding the indexes one by one", slog.String("table", t.QualifiedName()), errAttr(err))
		for _, k := range keys {
			q := "ALTER TABLE " + name + " ADD " + k
			if err := c.retry(ctx, func() error { return exec(q, true) }); err != nil {
				return u.wrap(c.prog.Pos, t.QualifiedName(), q, err)
			}
		}
	}
	u.log.Info("indexes added", slog.String("table", t.QualifiedName()), slog.Int("indexes", len(keys)), slog.Duration("took", time.Since(start)))
	c.progMu.Lock()
	t.Deferred = nil
	c.progMu.Unlock()
	return c.save(ctx, nil)
}

// createStmts splits a CREATE DATABASE or CREATE TABLE into the statements
// to run downstream: those an event filter keeps. dropped reports whether
// the filter dropped one.
func (c *snapshotCopy) createStmts(db, create string) (keep []*schema.Stmt, dropped bool, err error) {
	stmts, err := schema.Split(db, create)
	if err != nil {
		return nil, false, err
	}
	for i := range stmts {
		st := &stmts[i]
		if st.Ignored {
			continue
		}
		skip, err := c.u.rules.skipDDL(st.Table.Schema, st.Table.Name, st.Kind, create)
		if err != nil {
			return nil, false, err
		}
		if skip {
			dropped = true
			continue
		}
		keep = append(keep, st)
	}
	return keep, dropped, nil
}

// createFiltered reports whether an event filter drops (part of) a CREATE
// statement: the table downstream is then not the copy's own, and its
// indexes are left alone.
func (c *snapshotCopy) createFiltered(db, create string) bool {
	_, dropped, err := c.createStmts(db, create)
	return dropped || err != nil
}

// createDDL runs a CREATE DATABASE or CREATE TABLE downstream, routed, in
// safe mode (the object may exist), unless an event filter drops it.
func (c *snapshotCopy) createDDL(ctx context.Context, db, create, object string) error {
	u := c.u
	pos := c.prog.Pos
	stmts, _, err := c.createStmts(db, create)
	if err != nil {
		return u.wrap(pos, object, create, err)
	}
	for _, st := range stmts {
		routed, err := st.Render(u.rules.route)
		if err != nil {
			return u.wrap(pos, object, create, err)
		}
		rs, rt := u.rules.route(st.Table.Schema, st.Table.Name)
		if st.Table.Name == "" {
			rt = ""
		}
		d := &DDL{Schema: rs, Table: rt, Query: routed, SourceQuery: create, Pos: pos, SafeMode: true}
		if err := c.retry(ctx, func() error { return u.sink.ExecDDL(ctx, d) }); err != nil {
			return u.wrap(pos, object, routed, err)
		}
	}
	return nil
}

// copyItem is one unit of work: a range chunk, or a whole keyset or keyless
// table.
type copyItem struct {
	idx   int // in prog.Tables
	t     *snapshot.TablePlan
	def   *schema.TableDef
	chunk int
}

// copyQueue hands the work items out to the readers. A reader stays on its
// table while the table has chunks left; one that needs another table takes
// the first, in copy order, that the fewest readers are on. So the writers
// load different tables for as long as as many tables are left as there
// are readers, and tables still finish one group after another (each
// one's deferred indexes built while the next ones are copied). Loads into
// one table do not run in parallel when its key is AUTO_INCREMENT: with
// innodb_autoinc_lock_mode 1 (MariaDB's default) a LOAD DATA holds the
// table's AUTO-INC lock until it ends, even when it gives every key value
// (seen as LOCK WAIT on AUTO_INC in information_schema.INNODB_LOCKS when
// the readers shared each table's chunks).
type copyQueue struct {
	mu     sync.Mutex
	tables []*queuedTable
}

type queuedTable struct {
	items   []copyItem
	readers int // readers on the table
}

// next returns the next item for a reader that was on q.tables[prev] (prev
// -1: on none), and the index of the item's table; false when no work is
// left.
func (q *copyQueue) next(prev int) (copyItem, int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if prev >= 0 {
		t := q.tables[prev]
		if len(t.items) > 0 {
			it := t.items[0]
			t.items = t.items[1:]
			return it, prev, true
		}
		t.readers--
	}
	best := -1
	for i, t := range q.tables {
		if len(t.items) > 0 && (best < 0 || t.readers < q.tables[best].readers) {
			best = i
		}
	}
	if best < 0 {
		return copyItem{}, -1, false
	}
	t := q.tables[best]
	t.readers++
	it := t.items[0]
	t.items = t.items[1:]
	return it, best, true
}

// copyJob is what a reader hands its writer: a batch of the rows of item
// it, then, with the item's last batch (or alone), the item's end.
type copyJob struct {
	it      copyItem
	changes []Change
	bytes   int64 // the size of changes' values
	end     *copyEnd
}

// copyEnd ends a chunk, a whole table, or a page of a keyset table.
type copyEnd struct {
	// For a page: the encoded key of its last row (nil for an empty page),
	// and whether it was the table's last.
	last     []string
	finished bool
}

// copyWaits is where the copy's time went, summed over the connections.
type copyWaits struct {
	readers atomic.Int64 // readers waiting for their writer to take a batch
	writers atomic.Int64 // writers waiting for a batch
	saves   atomic.Int64 // progress saves, the wait for the other writers included
	nsaves  atomic.Int64
}

// copy reads the unfinished chunks on the snapshot's connections, one
// reader each, and writes them to the sink, one writer per reader: a
// reader reads its next batch while its writer applies the one before
// (two batches at most: the one read and the one applied), so that the upstream's reads
// and the sink's writes overlap.
func (c *snapshotCopy) copy(ctx context.Context, conns []*sql.Conn) error {
	if cs, ok := c.u.sink.(ConcurrentSink); ok && cs.Concurrent() {
		c.concurrent = true
	}
	var whole, ranges []*queuedTable
	for i, t := range c.prog.Tables {
		if t.Finished {
			continue
		}
		def, _ := c.tracker.Table(t.Schema, t.Name)
		if t.Mode != snapshot.ModeRange {
			whole = append(whole, &queuedTable{items: []copyItem{{idx: i, t: t, def: def}}})
			continue
		}
		var items []copyItem
		for ch := range t.Chunks() {
			if t.Done[ch] != '1' {
				items = append(items, copyItem{idx: i, t: t, def: def, chunk: ch})
			}
		}
		if len(items) > 0 {
			ranges = append(ranges, &queuedTable{items: items})
		}
	}
	// Sequential tables (pages, or one chunk) first, biggest first; then
	// the range chunks, table after table.
	slices.SortStableFunc(whole, func(a, b *queuedTable) int { return int(b.items[0].t.EstRows - a.items[0].t.EstRows) })
	q := &copyQueue{tables: append(whole, ranges...)}
	// Readers and writers stop at the first error (golang.org/x/sync's
	// errgroup, done by hand: go.mod does not require that module yet).
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	var waits copyWaits
	start := time.Now()
	for _, conn := range conns {
		// Unbuffered: two batches per reader at most, the one its
		// writer applies and the one it reads.
		jobs := make(chan copyJob)
		wg.Go(func() {
			defer close(jobs)
			if err := c.reader(gctx, conn, q, jobs, &waits); err != nil {
				fail(err)
			}
		})
		wg.Go(func() {
			if err := c.writer(gctx, jobs, &waits); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	rw, ww := time.Duration(waits.readers.Load()), time.Duration(waits.writers.Load())
	c.u.mu.Lock()
	c.u.st.ReadersWaited += rw
	c.u.st.WritersWaited += ww
	c.u.mu.Unlock()
	c.u.log.Info("rows copied", slog.Duration("took", time.Since(start)), slog.Int("connections", len(conns)),
		slog.Duration("readers-waited", rw), slog.Duration("writers-waited", ww),
		slog.Int64("saves", waits.nsaves.Load()), slog.Duration("saving", time.Duration(waits.saves.Load())))
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return firstErr
	}
	// Tables a previous run finished but did not index.
	for _, t := range c.prog.Tables {
		if err := c.addKeys(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// reader reads work items on one snapshot connection and hands their rows
// to jobs, until the work runs out or ctx ends.
func (c *snapshotCopy) reader(ctx context.Context, conn *sql.Conn, q *copyQueue, jobs chan<- copyJob, waits *copyWaits) error {
	send := func(j copyJob) error {
		start := time.Now()
		select {
		case jobs <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
		waits.readers.Add(int64(time.Since(start)))
		return nil
	}
	prev := -1
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		it, at, ok := q.next(prev)
		if !ok {
			return nil
		}
		prev = at
		var err error
		if it.t.Mode == snapshot.ModeKeyset {
			err = c.readPages(ctx, conn, it, send)
		} else {
			err = c.readChunk(ctx, conn, it, send)
		}
		if err != nil {
			if ctx.Err() == nil && upstreamConnLost(err) {
				// The upstream went away mid-read (restarted, crashed, a
				// reset): a resumed copy, on a new connection, goes on
				// from the chunks done.
				err = Retryable(err)
			}
			return c.u.wrap(c.prog.Pos, it.t.QualifiedName(), fmt.Sprintf("copy chunk %d", it.chunk), err)
		}
	}
}

// upstreamConnLost says whether err, reading the upstream, means the
// connection broke or the server went away, which a new connection may cure.
func upstreamConnLost(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1053, 1927, 2006, 2013: // server shutdown, connection killed, gone away, lost
			return true
		}
	}
	return false
}

// writer applies the batches of one reader in their order, and records
// each item done once its last batch is in.
func (c *snapshotCopy) writer(ctx context.Context, jobs <-chan copyJob, waits *copyWaits) error {
	var rows, bytes int64 // of the current item (page), applied
	for {
		start := time.Now()
		var j copyJob
		var ok bool
		select {
		case j, ok = <-jobs:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return nil
		}
		waits.writers.Add(int64(time.Since(start)))
		if len(j.changes) > 0 {
			if err := c.apply(ctx, j); err != nil {
				return c.u.wrap(c.prog.Pos, j.it.t.QualifiedName(), fmt.Sprintf("copy chunk %d", j.it.chunk), err)
			}
			rows += int64(len(j.changes))
			bytes += j.bytes
		}
		if j.end != nil {
			err := c.itemDone(ctx, j.it, j.end, rows, bytes, waits)
			rows, bytes = 0, 0
			if err != nil {
				return c.u.wrap(c.prog.Pos, j.it.t.QualifiedName(), fmt.Sprintf("copy chunk %d", j.it.chunk), err)
			}
		}
	}
}

// batcher gathers a reader's rows into batches for its writer.
type batcher struct {
	c       *snapshotCopy
	it      copyItem
	tbl     *Table
	changes []Change
	bytes   int64
	send    func(copyJob) error
}

func (c *snapshotCopy) newBatcher(it copyItem, send func(copyJob) error) *batcher {
	return &batcher{c: c, it: it, tbl: c.tables[it.t.QualifiedName()], send: send}
}

func (b *batcher) add(row []any, size int) error {
	if b.changes == nil {
		b.changes = make([]Change, 0, b.c.u.sc.BatchRows)
	}
	b.changes = append(b.changes, Change{Kind: Insert, Table: b.tbl, After: row})
	b.bytes += int64(size)
	if len(b.changes) >= b.c.u.sc.BatchRows || b.bytes >= snapshotBatchBytes {
		return b.flush(nil)
	}
	return nil
}

// flush hands the rows gathered, and end when not nil, to the writer.
func (b *batcher) flush(end *copyEnd) error {
	if len(b.changes) == 0 && end == nil {
		return nil
	}
	j := copyJob{it: b.it, changes: b.changes, bytes: b.bytes, end: end}
	b.changes, b.bytes = nil, 0
	return b.send(j)
}

// apply writes one batch to the sink.
func (c *snapshotCopy) apply(ctx context.Context, j copyJob) error {
	u := c.u
	keyed := len(j.it.t.Key) > 0
	// Keyed rows go in as plain inserts when no earlier attempt can have
	// written them: the first run of a copy into tables it created.
	// Otherwise, and for every retry of a batch (its commit may have
	// happened; the table may hold rows the copy did not write), in safe
	// mode, which replaces what is there.
	batch := &Batch{Changes: j.changes, SafeMode: keyed && c.resumed, Fence: Fence{Task: u.cfg.Task, Source: u.cfg.Source, Epoch: u.epoch}}
	locked := func(f func() error) error {
		if c.concurrent {
			c.applyMu.RLock()
			defer c.applyMu.RUnlock()
		} else {
			c.applyMu.Lock()
			defer c.applyMu.Unlock()
		}
		return f()
	}
	// Each call bounded by the sink timeout: a connection frozen half-open
	// fails the copy with ErrSinkTimeout, which the subtask resumes.
	bound := func(op string, f func(context.Context) error) error {
		return locked(func() error { return boundCall(ctx, u.sinkTimeout, op, u.log, f) })
	}
	apply := func() error {
		return bound("snapshot apply", func(ctx context.Context) error { return u.sink.Apply(ctx, batch) })
	}
	name := j.it.t.QualifiedName()
	var err error
	if bs, ok := u.sink.(BulkSink); ok && !batch.SafeMode && c.bulkable(name) {
		// The sink's fast path for plain inserts; Apply where it has none.
		err = bound("snapshot bulk apply", func(ctx context.Context) error { return bs.ApplyBulk(ctx, batch) })
		if errors.Is(err, ErrBulkUnsupported) {
			c.noBulk(name, err)
			err = apply()
		}
	} else {
		err = apply()
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrSinkTimeout) && (keyed || !errors.Is(err, ErrOutcomeUnknown)) {
		// (An abandoned call, or a call into a table without a key whose
		// outcome the sink cannot tell, is not tried again here: a keyless
		// table would get its rows twice. The copy stops; the resumed one
		// empties the unfinished keyless tables.)
		if keyed && !batch.SafeMode {
			u.log.Info("retrying a batch in safe mode", slog.String("table", name), errAttr(err))
			batch.SafeMode = true
			err = c.retry(ctx, apply)
		} else if IsRetryable(err) {
			err = c.retry(ctx, apply)
		}
	}
	if err != nil {
		return err
	}
	n := int64(len(j.changes))
	u.mu.Lock()
	ts := &u.st.Tables[j.it.idx]
	ts.Rows += n
	ts.Bytes += j.bytes
	u.st.Rows += n
	u.st.Bytes += j.bytes
	u.mu.Unlock()
	return nil
}

// readChunk reads one range chunk, or a whole table.
func (c *snapshotCopy) readChunk(ctx context.Context, conn *sql.Conn, it copyItem, send func(copyJob) error) error {
	q, args, err := it.t.ChunkQuery(it.def, it.chunk)
	if err != nil {
		return err
	}
	b := c.newBatcher(it, send)
	if err := snapshot.Read(ctx, conn, it.def, q, args, b.add); err != nil {
		return err
	}
	return b.flush(&copyEnd{})
}

// readPages reads a keyset table page after page, each page ended for the
// writer to save.
func (c *snapshotCopy) readPages(ctx context.Context, conn *sql.Conn, it copyItem, send func(copyJob) error) error {
	limit := c.u.sc.ChunkRows
	c.progMu.Lock()
	enc := slices.Clone(it.t.Last)
	c.progMu.Unlock()
	for {
		var last []any
		if len(enc) > 0 {
			var err error
			if last, err = snapshot.DecodeKey(enc); err != nil {
				return err
			}
		}
		q, args, err := it.t.PageQuery(it.def, last, limit)
		if err != nil {
			return err
		}
		b := c.newBatcher(it, send)
		n := 0
		var lastRow []any
		if err := snapshot.Read(ctx, conn, it.def, q, args, func(row []any, size int) error {
			n++
			lastRow = row
			return b.add(row, size)
		}); err != nil {
			return err
		}
		end := &copyEnd{finished: n < limit}
		if lastRow != nil {
			if end.last, err = snapshot.EncodeKey(it.t.KeyOf(it.def, lastRow)); err != nil {
				return err
			}
			enc = end.last
		}
		if err := b.flush(end); err != nil {
			return err
		}
		if end.finished {
			return nil
		}
	}
}

// itemDone records an item (or a keyset table's page) copied, its rows and
// bytes applied: saves the progress, and adds the table's deferred indexes
// when it was the table's last.
func (c *snapshotCopy) itemDone(ctx context.Context, it copyItem, end *copyEnd, rows, bytes int64, waits *copyWaits) error {
	c.progMu.Lock()
	t := it.t
	t.Rows += rows
	t.Bytes += bytes
	switch t.Mode {
	case snapshot.ModeRange:
		d := []byte(t.Done)
		d[it.chunk] = '1'
		t.Done = string(d)
		t.Finished = !strings.Contains(t.Done, "0")
	case snapshot.ModeKeyset:
		if end.last != nil {
			t.Last = end.last
		}
		t.Finished = end.finished
	default:
		t.Finished = true
	}
	finished := t.Finished
	c.progMu.Unlock()
	if t.Mode != snapshot.ModeKeyset || finished {
		c.chunkDone(it.idx, finished)
	}
	// A save is a barrier (no Apply runs during it): when another writer's
	// save is waiting for its turn and has not read the progress yet, it
	// stores this item too, and this one is left out.
	if c.savePending.CompareAndSwap(false, true) {
		start := time.Now()
		err := c.save(ctx, nil)
		waits.saves.Add(int64(time.Since(start)))
		waits.nsaves.Add(1)
		if err != nil {
			return err
		}
	}
	if finished {
		return c.addKeys(ctx, t)
	}
	return nil
}

func (c *snapshotCopy) chunkDone(idx int, tableDone bool) {
	u := c.u
	u.mu.Lock()
	defer u.mu.Unlock()
	ts := &u.st.Tables[idx]
	ts.ChunksDone++
	ts.Done = tableDone
}
