package dmworker

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmworker/dmworker/internal/causality"
	"github.com/dmworker/dmworker/streamer"
)

// Parallel apply (SyncerConfig.Workers > 1): parallelApplier, the applier
// (syncer_apply.go) of a run with workers.
//
// The reading goroutine (the dispatcher) turns events into changes
// (syncRun), then the applier hands each change to one of N workers: the
// causality tracker keeps changes to one row, or to one value of a unique
// key, on one worker and in order; a change whose keys are held by two
// workers waits until all but one of them have applied what they hold. Each
// worker gathers what is queued for it, and what comes within
// FlushInterval, into batches of up to BatchSize changes (compacted unless
// NoCompact, and grouped by table and kind where rows are independent, so that
// the sink writes few multi-row statements), one sink transaction each,
// fenced by the syncer's epoch. A worker another change waits for applies
// at once. DDL is a barrier: every worker drains before it runs.
//
// Checkpoints are a low watermark: the end of the last upstream transaction
// every one of whose changes is applied, saved every CheckpointInterval.
// Workers may have applied changes beyond it, so every stored checkpoint
// also bounds what may be applied: SafeUntil, a position a little ahead of
// what has been dispatched (leaseAhead). Before handing out a change beyond
// that bound the dispatcher stores a checkpoint with a further one. After a
// crash, the replay runs in safe mode up to SafeUntil, so that whatever the
// workers had applied converges.
//
// Changes to the tables of a foreign key cascade group (Table.fkGroup, see
// foreignkeys.go) do not go to the workers: an ON DELETE or ON UPDATE
// action reaches rows the binlog never names, so a replay after a crash
// could not tell which of them were applied, and would run actions again or
// miss them. The dispatcher gathers them, whole transactions at a time, and
// applies them itself, in upstream order, once the workers have applied
// everything before (drain), in one sink transaction with a checkpoint at
// the end of their last transaction: exact, so no replay ever repeats them.
// It does so at a transaction end once BatchSize of them are gathered or
// FlushInterval has passed since the first, when the stream pauses, and
// before a DDL. While some are gathered, no checkpoint passes the
// transaction end before the first of them.
//
// Memory is bounded by bytes: every queued change holds its estimated size
// from the queue budget (QueueBytes) until it is applied; the dispatcher,
// and with it the reader, waits when the budget is spent. A big upstream
// transaction streams through: its changes are applied as they come, the
// watermark staying before the transaction until it ends.

// leaseAhead is how far beyond the dispatched position a stored checkpoint's
// SafeUntil reaches, in bytes of binlog: one checkpoint write per this much.
const leaseAhead = 16 << 20

// markerEvery is how often the dispatcher records a transaction end as a
// watermark candidate.
const markerEvery = 50 * time.Millisecond

type parallelApplier struct {
	w       *runWriter
	ctx     context.Context // ends when Run's context ends or a worker fails
	cancel  context.CancelFunc
	workers []*applyWorker
	wg      sync.WaitGroup
	hasher  *causality.Hasher
	tracker *causality.Tracker
	tkeys   map[*Table]*tableKeys

	seq      uint64   // sequence number of the last change dispatched
	lastDisp []uint64 // per worker: the last sequence number given to it
	keys     []uint64
	holds    []causality.Hold

	lastTxnEnd streamer.Position // end of the last whole transaction read
	midTxn     bool              // a transaction is open: some of its changes are dispatched

	markers    []marker
	lastMarker time.Time
	saved      streamer.Position // position of the last checkpoint stored
	lease      streamer.Position // SafeUntil of the last checkpoint stored
	lastSave   time.Time
	lastFeed   time.Time // when the validator's feed was last told what is applied
	conflicts  int64

	// Tables written in the current one-second window, and the spread
	// derived from the last one (see home).
	windowStart  time.Time
	windowTables map[string]struct{}
	spread       uint64

	// Changes of cascade groups not applied yet: the first complete of
	// them are whole transactions, ending at groupEnd; groupFrom is the
	// transaction end before the first; groupSafe says whether one needs
	// safe mode.
	group     []Change
	complete  int
	groupEnd  streamer.Position
	groupFrom streamer.Position
	groupSafe bool
	groupAt   time.Time // when the first was gathered

	mu     sync.Mutex
	used   int64         // queue bytes held
	notify chan struct{} // closed (and replaced) whenever a worker progresses
	err    error         // the first worker failure
}

// marker is a transaction end and, per worker, what it must have applied
// for every change before that end to be applied.
type marker struct {
	pos  streamer.Position
	need []uint64
}

// tableKeys is what causality needs of a table.
type tableKeys struct {
	name string
	base uint64 // where the table's stretch of workers starts
	keys []causality.KeyDef
}

type applyWorker struct {
	p       *parallelApplier
	id      int
	ch      chan queued
	kick    chan struct{} // apply the batch gathered so far, now
	applied atomic.Uint64
}

type queued struct {
	ch   Change
	seq  uint64
	size int64
	safe bool
}

// newParallelApplier starts the workers of a run that starts at start (its
// checkpoint stored).
func newParallelApplier(ctx context.Context, w *runWriter, start streamer.Position) *parallelApplier {
	s := w.s
	n := s.cfg.Workers
	pctx, cancel := context.WithCancel(ctx)
	p := &parallelApplier{
		w: w, ctx: pctx, cancel: cancel, lastTxnEnd: start,
		hasher:       causality.NewHasher(maphash.MakeSeed()),
		tkeys:        map[*Table]*tableKeys{},
		windowTables: map[string]struct{}{},
		lastDisp:     make([]uint64, n),
		notify:       make(chan struct{}),
		lastSave:     time.Now(),
	}
	p.tracker = causality.NewTracker(func(i int) uint64 { return p.workers[i].applied.Load() })
	p.started(start, w.safeUntil)
	depth := max(4*s.cfg.BatchSize, 256)
	for i := range n {
		wk := &applyWorker{p: p, id: i, ch: make(chan queued, depth), kick: make(chan struct{}, 1)}
		p.workers = append(p.workers, wk)
		p.wg.Add(1)
		go wk.run()
	}
	s.updateStatus(func(st *SyncerStatus) { st.Workers = n })
	s.mu.Lock()
	s.queueFn = p.queueBytes
	s.mu.Unlock()
	return p
}

// started records the checkpoint Run began from (or stored at a fresh
// start) as the last one stored.
func (p *parallelApplier) started(cp streamer.Position, safeUntil streamer.Position) {
	p.saved = cp
	p.lease = cp
	if safeUntil.Compare(cp) > 0 {
		p.lease = safeUntil
	}
}

// failure returns the error that ended p.ctx: a worker's, or the context's.
func (p *parallelApplier) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return p.ctx.Err()
}

// workerFailed reports whether a worker stopped with an error.
func (p *parallelApplier) workerFailed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

func (p *parallelApplier) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel()
}

// progressed wakes whoever waits on a worker's progress or the budget.
func (p *parallelApplier) progressed(release int64) {
	p.mu.Lock()
	p.used -= release
	close(p.notify)
	p.notify = make(chan struct{})
	p.mu.Unlock()
}

// wait waits for the next progress; it fails when p.ctx ends.
func (p *parallelApplier) wait(ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-p.ctx.Done():
		return p.failure()
	}
}

// acquire takes n bytes of the queue budget, waiting while it is spent. A
// change bigger than the whole budget waits for an empty queue.
func (p *parallelApplier) acquire(n int64) error {
	limit := p.w.s.cfg.QueueBytes
	for {
		p.mu.Lock()
		if p.used == 0 || p.used+n <= limit {
			p.used += n
			p.mu.Unlock()
			return nil
		}
		ch := p.notify
		p.mu.Unlock()
		if err := p.wait(ch); err != nil {
			return err
		}
	}
}

func (p *parallelApplier) queueBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// waitApplied waits until worker w has applied sequence number seq.
func (p *parallelApplier) waitApplied(w int, seq uint64) error {
	if p.workers[w].applied.Load() < seq {
		p.flushNow(w)
	}
	for {
		p.mu.Lock()
		ch := p.notify
		p.mu.Unlock()
		if p.workers[w].applied.Load() >= seq {
			return nil
		}
		if err := p.wait(ch); err != nil {
			return err
		}
	}
}

// drain waits until every worker has applied everything it was given.
func (p *parallelApplier) drain() error {
	p.flushAll()
	for w := range p.workers {
		if err := p.waitApplied(w, p.lastDisp[w]); err != nil {
			return err
		}
	}
	p.markers = p.markers[:0]
	return nil
}

// flushAll asks every worker with work to apply it now.
func (p *parallelApplier) flushAll() {
	for w, wk := range p.workers {
		if wk.applied.Load() < p.lastDisp[w] {
			p.flushNow(w)
		}
	}
}

func (p *parallelApplier) idle() bool {
	if len(p.group) > 0 {
		return false
	}
	for w, wk := range p.workers {
		if wk.applied.Load() < p.lastDisp[w] {
			return false
		}
	}
	return true
}

// dispatch hands the changes read from the event at pos to the workers;
// safe: they need safe mode.
func (p *parallelApplier) dispatch(ctx context.Context, changes []Change, pos streamer.Position, safe bool) error {
	if len(changes) == 0 {
		return nil
	}
	conflicts := p.conflicts
	if p.lease.Compare(pos) < 0 {
		lease := streamer.Position{Name: pos.Name, Offset: pos.Offset + leaseAhead}
		if err := p.save(ctx, p.watermark(), lease); err != nil {
			return err
		}
	}
	for i := range changes {
		ch := changes[i]
		if ch.Table.fkGroup != "" {
			if err := p.gather(ctx, ch, safe); err != nil {
				return err
			}
			continue
		}
		p.keys = p.changeKeys(p.keys[:0], &ch)
		p.holds = p.tracker.Holders(p.holds[:0], p.keys)
		var target int
		switch len(p.holds) {
		case 0:
			target = p.home(&ch, p.keys[0])
		case 1:
			target = p.holds[0].Worker
		default:
			// Held by several: go to the one that got its key last,
			// once the others have applied theirs.
			best := 0
			for j, h := range p.holds {
				if h.Seq > p.holds[best].Seq {
					best = j
				}
			}
			target = p.holds[best].Worker
			for _, h := range p.holds {
				if h.Worker != target {
					if err := p.waitApplied(h.Worker, h.Seq); err != nil {
						return err
					}
				}
			}
			p.conflicts++
		}
		p.seq++
		p.tracker.Take(target, p.seq, p.keys)
		size := changeSize(&ch)
		if err := p.acquire(size); err != nil {
			return err
		}
		select {
		case p.workers[target].ch <- queued{ch: ch, seq: p.seq, size: size, safe: safe}:
		case <-p.ctx.Done():
			return p.failure()
		}
		p.lastDisp[target] = p.seq
	}
	if n := p.conflicts; n != conflicts {
		p.w.s.updateStatus(func(st *SyncerStatus) { st.Conflicts = n })
	}
	return nil
}

// gather keeps a change of a cascade group for flushGroups. A transaction
// with more than MaxBatchRows of them is applied in parts: the part so far
// now, with the checkpoint at the last whole transaction and the rest of the
// transaction in safe mode, as the serial syncer does.
func (p *parallelApplier) gather(ctx context.Context, ch Change, safe bool) error {
	s := p.w.s
	if len(p.group) == 0 {
		p.groupFrom, p.groupAt = p.lastTxnEnd, time.Now()
	}
	p.group = append(p.group, ch)
	p.groupSafe = p.groupSafe || safe
	if len(p.group) < s.cfg.MaxBatchRows {
		return nil
	}
	if err := p.drain(); err != nil {
		return err
	}
	cp := p.w.checkpoint(p.lastTxnEnd)
	cp.SafeUntil = s.Status().Read
	if p.lease.Compare(cp.SafeUntil) > 0 {
		cp.SafeUntil = p.lease
	}
	if err := p.applyGroup(ctx, len(p.group), cp); err != nil {
		return err
	}
	p.groupSafe = true // the rest of the transaction: its start may be applied
	return nil
}

// flushGroups applies the gathered changes of cascade groups that make whole
// transactions, when force is set or BatchSize of them are gathered or
// FlushInterval has passed since the first: after the workers have applied
// everything before them, with an exact checkpoint at their end (SafeUntil
// still covering what the workers may apply later).
func (p *parallelApplier) flushGroups(ctx context.Context, force bool) error {
	cfg := &p.w.s.cfg
	if p.complete == 0 || (!force && p.complete < cfg.BatchSize && time.Since(p.groupAt) < time.Duration(cfg.FlushInterval)) {
		return nil
	}
	if err := p.drain(); err != nil {
		return err
	}
	cp := p.w.checkpoint(p.groupEnd)
	if p.lease.Compare(cp.Pos) > 0 && p.lease.Compare(cp.SafeUntil) > 0 {
		cp.SafeUntil = p.lease
	}
	return p.applyGroup(ctx, p.complete, cp)
}

// applyGroup applies the first n gathered changes with checkpoint cp, every
// worker having applied what came before.
func (p *parallelApplier) applyGroup(ctx context.Context, n int, cp Checkpoint) error {
	if err := p.w.applyAt(ctx, p.group[:n], p.groupSafe, cp); err != nil {
		return err
	}
	rest := copy(p.group, p.group[n:])
	clear(p.group[rest:])
	p.group, p.complete = p.group[:rest], 0
	p.groupSafe = false
	if rest > 0 {
		p.groupFrom, p.groupAt = p.lastTxnEnd, time.Now()
	}
	p.saved, p.lastSave = cp.Pos, time.Now()
	p.markers = p.markers[:0]
	p.w.s.updateStatus(func(st *SyncerStatus) {
		st.Rows += int64(n)
		st.Batches++
		st.Checkpoint = cp.Pos
	})
	return nil
}

// home picks the worker for a change whose keys no worker holds. A table's
// rows go to a stretch of spread workers starting at one its name hashes
// to, spread being the worker count divided by the number of tables written
// lately (at least 1): with many tables each worker sees few of them, and
// its batch turns into few multi-row statements; with one table every
// worker takes part.
func (p *parallelApplier) home(ch *Change, key uint64) int {
	n := uint64(len(p.workers))
	tk := p.tkeys[ch.Table]
	now := time.Now()
	if now.Sub(p.windowStart) >= time.Second {
		p.spread = max(1, n/uint64(max(1, len(p.windowTables))))
		clear(p.windowTables)
		p.windowStart = now
	}
	p.windowTables[tk.name] = struct{}{}
	if p.spread == 0 {
		p.spread = n
	}
	return int((tk.base + key%p.spread) % n)
}

// changeKeys returns the causality keys of a change: its table's primary and
// unique keys in its old and new rows; the table itself when no key
// identifies the row.
func (p *parallelApplier) changeKeys(dst []uint64, ch *Change) []uint64 {
	tk := p.tkeys[ch.Table]
	if tk == nil {
		tk = &tableKeys{name: ch.Table.QualifiedName()}
		tk.base = p.hasher.TableKey(tk.name)
		for i, k := range append([][]int{ch.Table.PrimaryKey}, ch.Table.UniqueKeys...) {
			if len(k) == 0 {
				continue
			}
			kd := causality.KeyDef{Columns: k, Prefix: ch.Table.pkPrefix}
			if i > 0 {
				kd.Prefix = nil
				if ch.Table.ukPrefixes != nil {
					kd.Prefix = ch.Table.ukPrefixes[i-1]
				}
			}
			for _, c := range k {
				kd.Fold = append(kd.Fold, !ch.Table.Columns[c].Binary)
			}
			tk.keys = append(tk.keys, kd)
		}
		p.tkeys[ch.Table] = tk
	}
	n := len(dst)
	if ch.Before != nil {
		dst = p.hasher.AppendKeys(dst, tk.name, tk.keys, ch.Before)
	}
	if ch.After != nil {
		dst = p.hasher.AppendKeys(dst, tk.name, tk.keys, ch.After)
	}
	if len(dst) == n {
		dst = append(dst, p.hasher.TableKey(tk.name))
	}
	return dst
}

// tablesChanged forgets the tables' keys after a DDL.
func (p *parallelApplier) tablesChanged() { clear(p.tkeys) }

// mark notes the end of an upstream transaction at pos.
func (p *parallelApplier) mark(pos streamer.Position) {
	if len(p.group) > p.complete {
		p.complete, p.groupEnd = len(p.group), pos
	}
	if now := time.Now(); now.Sub(p.lastMarker) >= markerEvery {
		p.lastMarker = now
		p.markers = append(p.markers, marker{pos: pos, need: slices.Clone(p.lastDisp)})
	}
}

// watermark returns the end of the last transaction whose changes are all
// applied, as far as the markers tell, and drops the markers it passes.
func (p *parallelApplier) watermark() streamer.Position {
	if !p.midTxn && p.idle() {
		p.markers = p.markers[:0]
		return p.lastTxnEnd
	}
	done := p.markersApplied()
	if done < 0 {
		return p.saved
	}
	pos := p.markers[done].pos
	p.markers = slices.Delete(p.markers, 0, done+1)
	return pos
}

// markersApplied is the index of the last marker whose changes, and every
// earlier marker's, the workers have all applied; -1 when none.
func (p *parallelApplier) markersApplied() int {
	done := -1
	for i, m := range p.markers {
		for w, need := range m.need {
			if p.workers[w].applied.Load() < need {
				return done
			}
		}
		done = i
	}
	return done
}

// unsaved reports whether a checkpoint save could move the stored one.
func (p *parallelApplier) unsaved() bool {
	return !p.saved.Equal(p.lastTxnEnd) || p.lease.Compare(p.saved) > 0
}

// maybeCheckpoint stores the watermark when CheckpointInterval has passed
// since the last save (at once when force is set) and it has moved. When
// every worker is idle between transactions the checkpoint is exact: its
// SafeUntil falls back to the replay window, if any.
func (p *parallelApplier) maybeCheckpoint(ctx context.Context, force bool) error {
	if !force && time.Since(p.lastSave) < time.Duration(p.w.s.cfg.CheckpointInterval) {
		return nil
	}
	pos := p.watermark()
	lease := p.lease
	if !p.midTxn && p.idle() {
		lease = pos
	}
	if pos.Equal(p.saved) && lease.Equal(p.lease) {
		p.lastSave = time.Now()
		return nil
	}
	return p.save(ctx, pos, lease)
}

// save stores a checkpoint at pos allowing changes up to lease to have been
// applied.
func (p *parallelApplier) save(ctx context.Context, pos, lease streamer.Position) error {
	if len(p.group) > 0 && pos.Compare(p.groupFrom) > 0 {
		// Gathered changes of cascade groups are not applied yet.
		pos = p.groupFrom
	}
	cp := p.w.checkpoint(pos)
	if lease.Compare(pos) > 0 && lease.Compare(cp.SafeUntil) > 0 {
		cp.SafeUntil = lease
	}
	if err := p.w.save(ctx, cp); err != nil {
		return err
	}
	p.saved, p.lease, p.lastSave = pos, lease, time.Now()
	p.w.s.updateStatus(func(st *SyncerStatus) { st.Checkpoint = pos })
	return nil
}

// afterDDL records the checkpoint the DDL stored (at pos, exact: every
// worker had drained before it).
func (p *parallelApplier) afterDDL(pos streamer.Position) {
	p.saved, p.lease, p.lastSave = pos, pos, time.Now()
	p.markers = p.markers[:0]
	p.tablesChanged()
}

// The applier interface (syncer_apply.go).

func (p *parallelApplier) context() context.Context { return p.ctx }

func (p *parallelApplier) rows(ctx context.Context, changes []Change, pos streamer.Position, safe, txnEnd bool) error {
	p.midTxn = !txnEnd
	return p.dispatch(ctx, changes, pos, safe)
}

func (p *parallelApplier) txnEnd(ctx context.Context, pos streamer.Position, commit bool) error {
	p.lastTxnEnd = pos
	if !commit {
		p.mark(pos)
		return nil
	}
	p.midTxn = false
	p.mark(pos)
	if err := p.flushGroups(ctx, false); err != nil {
		return err
	}
	if err := p.maybeCheckpoint(ctx, false); err != nil {
		return err
	}
	if f := p.w.s.feed.Load(); f != nil && time.Since(p.lastFeed) >= feedAppliedEvery {
		p.lastFeed = time.Now()
		f.applied(p.appliedPos())
	}
	return nil
}

// feedAppliedEvery is how often the validator's feed is told how far the
// workers have applied (between the checkpoints, stored every
// CheckpointInterval), so that the validator holds the rows it has taken
// from the feed that soon.
const feedAppliedEvery = 50 * time.Millisecond

// appliedPos is the position before which every change read has been
// applied: the watermark, without taking the markers it passes (the next
// checkpoint does).
func (p *parallelApplier) appliedPos() streamer.Position {
	pos := p.saved
	if !p.midTxn && p.idle() {
		pos = p.lastTxnEnd
	} else if done := p.markersApplied(); done >= 0 {
		pos = p.markers[done].pos
	}
	if len(p.group) > 0 && pos.Compare(p.groupFrom) > 0 {
		pos = p.groupFrom // gathered changes of cascade groups are not applied yet
	}
	return pos
}

// ddl is a barrier: everything before the DDL is applied first.
func (p *parallelApplier) ddl(ctx context.Context, pos streamer.Position, exec func() error) error {
	if err := p.drain(); err != nil {
		return err
	}
	if err := p.flushGroups(ctx, true); err != nil {
		return err
	}
	if err := exec(); err != nil {
		return err
	}
	p.afterDDL(pos)
	return nil
}

// wakeAt: while something is unsaved, look at the workers every
// FlushInterval: once they are idle the checkpoint is saved at once, exact.
func (p *parallelApplier) wakeAt() (time.Time, bool) {
	if p.unsaved() {
		return time.Now().Add(time.Duration(p.w.s.cfg.FlushInterval)), true
	}
	return time.Time{}, false
}

func (p *parallelApplier) settled() bool { return !p.unsaved() }

func (p *parallelApplier) pause(ctx context.Context) error {
	p.flushAll() // nothing more is coming for now
	if err := p.flushGroups(ctx, true); err != nil {
		return err
	}
	return p.maybeCheckpoint(ctx, !p.midTxn && p.idle())
}

func (p *parallelApplier) failed() error {
	if p.workerFailed() {
		return p.failure()
	}
	return nil
}

// handleError: an error that only says Run's context ended is a stop
// (close saves what the workers reached).
func (p *parallelApplier) handleError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// close stops the workers and, unless one failed, saves what they reached.
func (p *parallelApplier) close(ctx context.Context, err error) error {
	s := p.w.s
	serr := p.finish(ctx)
	if ferr := p.failure(); p.workerFailed() {
		err = ferr
	} else if err == nil {
		err = serr
	}
	s.mu.Lock()
	s.queueFn = nil
	s.mu.Unlock()
	s.updateStatus(func(st *SyncerStatus) { st.Conflicts = p.conflicts })
	return err
}

// finish ends the workers and stores the watermark they reached.
func (p *parallelApplier) finish(ctx context.Context) error {
	p.cancel()
	p.wg.Wait()
	if p.workerFailed() {
		return nil
	}
	sctx, cancel := context.WithTimeout(afterStop(ctx), 30*time.Second)
	defer cancel()
	pos := p.watermark()
	if pos.Equal(p.saved) {
		return nil
	}
	return p.save(sctx, pos, p.lease)
}

func (w *applyWorker) run() {
	p := w.p
	defer p.wg.Done()
	bs := p.w.s.cfg.BatchSize
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	batch := make([]queued, 0, bs)
	changes := make([]Change, 0, bs)
	for {
		var it queued
		select {
		case it = <-w.ch:
		case <-p.ctx.Done():
			return
		}
		batch = append(batch[:0], it)
		// Gather a batch: what is queued, then what comes within
		// FlushInterval, unless the dispatcher needs it applied now.
		linger.Reset(time.Duration(p.w.s.cfg.FlushInterval))
	fill:
		for len(batch) < bs {
			select {
			case it = <-w.ch:
				batch = append(batch, it)
				continue
			default:
			}
			select {
			case it = <-w.ch:
				batch = append(batch, it)
			case <-w.kick:
				break fill
			case <-linger.C:
				break fill
			case <-p.ctx.Done():
				return
			}
		}
		if err := w.apply(batch, changes[:0]); err != nil {
			if p.ctx.Err() == nil {
				p.fail(err)
			}
			return
		}
	}
}

// flushNow asks worker w to apply what it gathers without waiting for more.
func (p *parallelApplier) flushNow(w int) {
	select {
	case p.workers[w].kick <- struct{}{}:
	default:
	}
}

// batchTable is the table every change of batch writes, or "" when they
// write several: the sink's error (wrapped) then names the one that failed.
func batchTable(batch []queued) string {
	name := batch[0].ch.Table.QualifiedName()
	for _, q := range batch[1:] {
		if q.ch.Table != batch[0].ch.Table && q.ch.Table.QualifiedName() != name {
			return ""
		}
	}
	return name
}

// apply writes one batch and records the progress.
func (w *applyWorker) apply(batch []queued, changes []Change) error {
	p := w.p
	s := p.w.s
	safe := false
	var size int64
	for i := range batch {
		changes = append(changes, batch[i].ch)
		safe = safe || batch[i].safe
		size += batch[i].size
	}
	var (
		kinds [Delete + 1]uint64
		t0    time.Time
	)
	if s.inst != nil {
		kinds, t0 = kindCounts(changes), time.Now()
	}
	if s.cfg.compacting() {
		changes = compact(changes, safe)
	}
	changes = group(changes)
	b := &Batch{Changes: changes, SafeMode: safe, Fence: Fence{Task: s.cfg.Task, Source: s.cfg.Source, Epoch: p.w.epoch}}
	err := s.retryBounded(p.ctx, "apply batch", func(ctx context.Context) error { return applyReplaying(ctx, s.sink, b) })
	if err == nil && s.inst != nil {
		s.inst.applyDur.observe(time.Since(t0))
		s.inst.addKinds(kinds)
	}
	clear(changes)
	if err != nil {
		if errors.Is(err, ErrStaleEpoch) {
			s.log.Warn("fenced off: a newer epoch has written", slog.Int64("epoch", p.w.epoch))
		}
		return s.wrap(s.Status().Checkpoint, batchTable(batch), "apply batch", err)
	}
	last := batch[len(batch)-1].seq
	clear(batch)
	w.applied.Store(last)
	p.progressed(size)
	n := int64(len(batch))
	s.updateStatus(func(st *SyncerStatus) { st.Rows += n; st.Batches++ })
	return nil
}

// changeSize estimates the memory a queued change holds.
func changeSize(ch *Change) int64 {
	n := int64(96)
	for _, row := range [][]any{ch.Before, ch.After} {
		n += int64(24 + 16*len(row))
		for _, v := range row {
			switch x := v.(type) {
			case string:
				n += int64(len(x))
			case []byte:
				n += int64(len(x))
			case nil:
			default:
				n += 8
			}
		}
	}
	return n
}
