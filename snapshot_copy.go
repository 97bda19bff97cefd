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

	"github.com/cenkalti/backoff/v4"

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
		if err != nil && !IsRetryable(err) {
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

// copy reads the unfinished chunks on the snapshot's connections, one
// reader each, and writes them to the sink.
func (c *snapshotCopy) copy(ctx context.Context, conns []*sql.Conn) error {
	if cs, ok := c.u.sink.(ConcurrentSink); ok && cs.Concurrent() {
		c.concurrent = true
	}
	var whole, ranges [][]copyItem
	for i, t := range c.prog.Tables {
		if t.Finished {
			continue
		}
		def, _ := c.tracker.Table(t.Schema, t.Name)
		if t.Mode != snapshot.ModeRange {
			whole = append(whole, []copyItem{{idx: i, t: t, def: def}})
			continue
		}
		var items []copyItem
		for ch := range t.Chunks() {
			if t.Done[ch] != '1' {
				items = append(items, copyItem{idx: i, t: t, def: def, chunk: ch})
			}
		}
		ranges = append(ranges, items)
	}
	// Sequential tables (pages, or one chunk) first, biggest first; then
	// the range chunks table after table, the readers sharing each table's
	// chunks: tables finish one after the other, and each one's deferred
	// indexes are built while the next ones are copied.
	slices.SortStableFunc(whole, func(a, b []copyItem) int { return int(b[0].t.EstRows - a[0].t.EstRows) })
	work := make(chan copyItem, c.countItems(whole)+c.countItems(ranges))
	for _, w := range whole {
		work <- w[0]
	}
	for _, items := range ranges {
		for _, it := range items {
			work <- it
		}
	}
	close(work)
	// Readers stop at the first error (golang.org/x/sync's errgroup, done
	// by hand: go.mod does not require that module yet).
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for _, conn := range conns {
		wg.Go(func() {
			if err := c.reader(gctx, conn, work); err != nil {
				errOnce.Do(func() { firstErr = err })
				cancel()
			}
		})
	}
	wg.Wait()
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

// reader copies work items on one snapshot connection until the work runs
// out or ctx ends.
func (c *snapshotCopy) reader(ctx context.Context, conn *sql.Conn, work <-chan copyItem) error {
	for it := range work {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if it.t.Mode == snapshot.ModeKeyset {
			err = c.copyPages(ctx, conn, it)
		} else {
			err = c.copyChunk(ctx, conn, it)
		}
		if err != nil {
			return c.u.wrap(c.prog.Pos, it.t.QualifiedName(), fmt.Sprintf("copy chunk %d", it.chunk), err)
		}
	}
	return nil
}

func (c *snapshotCopy) countItems(x [][]copyItem) int {
	n := 0
	for _, v := range x {
		n += len(v)
	}
	return n
}

// batcher gathers rows into batches for the sink.
type batcher struct {
	c            *snapshotCopy
	it           copyItem
	tbl          *Table
	keyed        bool // the table has a primary or unique key
	changes      []Change
	rows, bytes  int64 // in this chunk, applied
	pendingBytes int64
}

func (c *snapshotCopy) newBatcher(it copyItem) *batcher {
	return &batcher{c: c, it: it, tbl: c.tables[it.t.QualifiedName()], keyed: len(it.t.Key) > 0,
		changes: make([]Change, 0, c.u.sc.BatchRows)}
}

func (b *batcher) add(ctx context.Context, row []any, size int) error {
	b.changes = append(b.changes, Change{Kind: Insert, Table: b.tbl, After: row})
	b.pendingBytes += int64(size)
	if len(b.changes) >= b.c.u.sc.BatchRows || b.pendingBytes >= snapshotBatchBytes {
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flush(ctx context.Context) error {
	if len(b.changes) == 0 {
		return nil
	}
	c, u := b.c, b.c.u
	// Keyed rows go in as plain inserts when no earlier attempt can have
	// written them: the first run of a copy into tables it created.
	// Otherwise, and for every retry of a batch (its commit may have
	// happened; the table may hold rows the copy did not write), in safe
	// mode, which replaces what is there.
	batch := &Batch{Changes: b.changes, SafeMode: b.keyed && c.resumed, Fence: Fence{Task: u.cfg.Task, Source: u.cfg.Source, Epoch: u.epoch}}
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
	apply := func() error { return locked(func() error { return u.sink.Apply(ctx, batch) }) }
	var err error
	if bs, ok := u.sink.(BulkSink); ok && !batch.SafeMode && c.bulkable(b.it.t.QualifiedName()) {
		// The sink's fast path for plain inserts; Apply where it has none.
		err = locked(func() error { return bs.ApplyBulk(ctx, batch) })
		if errors.Is(err, ErrBulkUnsupported) {
			c.noBulk(b.it.t.QualifiedName(), err)
			err = apply()
		}
	} else {
		err = apply()
	}
	if err != nil && ctx.Err() == nil {
		if b.keyed && !batch.SafeMode {
			u.log.Info("retrying a batch in safe mode", slog.String("table", b.it.t.QualifiedName()), errAttr(err))
			batch.SafeMode = true
			err = c.retry(ctx, apply)
		} else if IsRetryable(err) {
			err = c.retry(ctx, apply)
		}
	}
	if err != nil {
		return err
	}
	n := int64(len(b.changes))
	b.rows += n
	b.bytes += b.pendingBytes
	u.mu.Lock()
	ts := &u.st.Tables[b.it.idx]
	ts.Rows += n
	ts.Bytes += b.pendingBytes
	u.st.Rows += n
	u.st.Bytes += b.pendingBytes
	u.mu.Unlock()
	b.pendingBytes = 0
	b.changes = make([]Change, 0, u.sc.BatchRows)
	return nil
}

// copyChunk copies one range chunk, or a whole table, then saves it done.
func (c *snapshotCopy) copyChunk(ctx context.Context, conn *sql.Conn, it copyItem) error {
	q, args, err := it.t.ChunkQuery(it.def, it.chunk)
	if err != nil {
		return err
	}
	b := c.newBatcher(it)
	if err := snapshot.Read(ctx, conn, it.def, q, args, func(row []any, size int) error { return b.add(ctx, row, size) }); err != nil {
		return err
	}
	if err := b.flush(ctx); err != nil {
		return err
	}
	c.progMu.Lock()
	t := it.t
	t.Rows += b.rows
	t.Bytes += b.bytes
	if t.Mode == snapshot.ModeRange {
		d := []byte(t.Done)
		d[it.chunk] = '1'
		t.Done = string(d)
		t.Finished = !strings.Contains(t.Done, "0")
	} else {
		t.Finished = true
	}
	finished := t.Finished
	c.progMu.Unlock()
	c.chunkDone(it.idx, finished)
	if err := c.save(ctx, nil); err != nil {
		return err
	}
	if finished {
		return c.addKeys(ctx, t)
	}
	return nil
}

// copyPages copies a keyset table page after page, saving after each.
func (c *snapshotCopy) copyPages(ctx context.Context, conn *sql.Conn, it copyItem) error {
	limit := c.u.sc.ChunkRows
	for {
		c.progMu.Lock()
		enc := slices.Clone(it.t.Last)
		c.progMu.Unlock()
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
		b := c.newBatcher(it)
		n := 0
		var lastRow []any
		if err := snapshot.Read(ctx, conn, it.def, q, args, func(row []any, size int) error {
			n++
			lastRow = row
			return b.add(ctx, row, size)
		}); err != nil {
			return err
		}
		if err := b.flush(ctx); err != nil {
			return err
		}
		var newLast []string
		if lastRow != nil {
			if newLast, err = snapshot.EncodeKey(it.t.KeyOf(it.def, lastRow)); err != nil {
				return err
			}
		}
		finished := n < limit
		c.progMu.Lock()
		it.t.Rows += b.rows
		it.t.Bytes += b.bytes
		if newLast != nil {
			it.t.Last = newLast
		}
		it.t.Finished = finished
		c.progMu.Unlock()
		if finished {
			c.chunkDone(it.idx, true)
		}
		if err := c.save(ctx, nil); err != nil {
			return err
		}
		if finished {
			return c.addKeys(ctx, it.t)
		}
	}
}

func (c *snapshotCopy) chunkDone(idx int, tableDone bool) {
	u := c.u
	u.mu.Lock()
	defer u.mu.Unlock()
	ts := &u.st.Tables[idx]
	ts.ChunksDone++
	ts.Done = tableDone
}
