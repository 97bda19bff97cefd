package dmworker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/dmworker/dmworker/internal/compare"
	"github.com/dmworker/dmworker/internal/filter"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/snapshot"
	"github.com/dmworker/dmworker/streamer"
)

// Diff compares tables of the upstream with their copies downstream and
// reports every row that differs, by key.
//
// The upstream is read in a consistent snapshot (START TRANSACTION WITH
// CONSISTENT SNAPSHOT on each worker's connection, all at one binlog
// point, DiffResult.Position). The downstream must hold what the upstream
// held at that point when it is read: give WithDiffWait a function that
// returns once the syncer has applied up to the position (for instance by
// polling the task's checkpoint), or compare a downstream that receives no
// writes. A syncer that goes on applying past the position makes rows
// written meanwhile look different: WithDiffRecheck compares those again
// until they converge.
//
// tables selects upstream tables by schema and table pattern (wildcards as
// in BlockAllowList); none selects every table outside the system schemas.
// WithDiffRules applies a task's block-allow list and routes: a routed
// table is compared with its target, and several upstream tables routed to
// one target (merged shards) are compared as their union.
//
// How: each table is cut into chunks by its key (integer keys into ranges
// planned from MIN and MAX, other keys by walking the key every
// WithDiffChunkRows rows); both servers compute each chunk's row count and
// the sum of the CRC32 of every row's text (32 bits a row, as
// pt-table-checksum and sync-diff-inspector; WithDiffHash64 for 64 bits at
// twice the servers' work), so rows do not cross the network;
// only inside a chunk whose checksums differ are the rows read from both
// sides and matched by key (under the key's collation). Chunks run in
// parallel over tables, WithDiffWorkers at a time. A table without a key
// is one chunk; when it differs, rows are matched by their full-row hash
// and counted, duplicates included.
//
// Values compare as the servers store them: DECIMAL, integers, temporal
// values (with their fractional digits), strings and binary strings
// exactly; FLOAT to 6 and DOUBLE to 15 significant digits (values that
// round to the same digits, or differ by less than half a unit of the last
// one, are the same; -0 is 0); JSON by value (JSON_NORMALIZE on MariaDB,
// then a compare by value in the client). Columns generated on the
// downstream are skipped, as are columns only one side has
// (DiffTable.Skipped).
//
// Merged shards: the chunks are cut by the first shard's key; each chunk's
// checksum upstream is the sum of every shard's checksums of that key range
// (the hashes are summed, not XORed, so that they add up), and a chunk that
// differs is matched by key against the union of the shards' rows (a key
// present in two shards counts as the last shard's row).
//
// Keys are matched under their collation (the servers' WEIGHT_STRING);
// both sides are expected to give a key column the same collation: where
// they differ, a row may fall into different chunks on the two sides and
// show as missing in one and extra in another.
//
// With WithDiffProgressFile each finished chunk and its result are written
// to a file, and a later Diff with the same file (after a kill -9)
// compares only the chunks not done, at its own snapshot: the result then
// joins chunks compared at the earlier point with chunks compared at
// Position, which is the same thing when the tables did not change
// between the runs (a quiescent downstream, or WithDiffWait).
//
// Diff returns an error when it cannot compare (a server unreachable, a
// table unreadable); a difference is not an error: see DiffResult.Equal.
func Diff(ctx context.Context, upstream, downstream *sql.DB, tables []TablePattern, opts ...DiffOption) (*DiffResult, error) {
	o := defaultDiffOptions()
	for _, opt := range opts {
		opt.applyDiff(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	d := &differ{o: o, up: upstream, down: downstream}
	return d.run(ctx, tables)
}

// DiffOption configures Diff: WithLogger, WithDiffWorkers,
// WithDiffChunkRows, WithDiffProgressFile, WithDiffWait, WithDiffRecheck,
// WithDiffRules, WithDiffMaxRows, WithDiffHash64.
type DiffOption interface{ applyDiff(*diffOptions) }

type diffOptions struct {
	logger    *slog.Logger
	workers   int
	chunkRows int
	progress  string
	wait      func(context.Context, Position) error
	filter    BlockAllowList
	routes    []RouteRule
	maxRows   int

	recheck      int
	recheckDelay time.Duration
	hash64       bool
}

func defaultDiffOptions() diffOptions {
	return diffOptions{logger: discardLogger(), workers: DefaultDiffWorkers, chunkRows: DefaultDiffChunkRows, maxRows: DefaultDiffMaxRows}
}

func (o *diffOptions) validate() error {
	switch {
	case o.workers < 1 || o.workers > 256:
		return fmt.Errorf("dmworker: diff workers %d: want 1 to 256", o.workers)
	case o.chunkRows < 1:
		return fmt.Errorf("dmworker: diff chunk rows %d: want at least 1", o.chunkRows)
	case o.maxRows < 0:
		return fmt.Errorf("dmworker: diff max rows %d: must not be negative", o.maxRows)
	case o.recheck < 0 || o.recheckDelay < 0:
		return fmt.Errorf("dmworker: diff recheck %d after %s: must not be negative", o.recheck, o.recheckDelay)
	}
	return nil
}

// Diff defaults.
const (
	// DefaultDiffWorkers is how many chunks Diff compares at once.
	DefaultDiffWorkers = 4
	// DefaultDiffChunkRows is the rows per chunk Diff aims at.
	DefaultDiffChunkRows = 20000
	// DefaultDiffMaxRows is how many differing rows Diff reports per
	// table.
	DefaultDiffMaxRows = 10000
)

func (o LoggerOption) applyDiff(d *diffOptions) { o.set(&d.logger) }

type diffOptionFunc func(*diffOptions)

func (f diffOptionFunc) applyDiff(o *diffOptions) { f(o) }

// WithDiffWorkers sets how many chunks are compared at once: the number of
// upstream snapshot connections and of downstream connections. Default
// DefaultDiffWorkers (4); 1 to 256.
func WithDiffWorkers(n int) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.workers = n })
}

// WithDiffChunkRows sets the rows per chunk: the unit that is checksummed,
// resumed, and read row by row when it differs (so it bounds the rows held
// in memory). Default DefaultDiffChunkRows (20000).
func WithDiffChunkRows(n int) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.chunkRows = n })
}

// WithDiffProgressFile keeps Diff's progress in the file at path: the
// chunks of each table, which are done and what they found. A Diff given
// an existing file goes on from it (a table whose columns or sources
// changed starts over); the file is rewritten, atomically, after each
// chunk. Default: none, nothing is resumed.
func WithDiffProgressFile(path string) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.progress = path })
}

// WithDiffWait sets the function Diff calls with the upstream position of
// its snapshot before it reads the downstream; it returns once the
// downstream has applied everything up to that position (or an error,
// which Diff returns). Default: none, the downstream is assumed to be
// quiescent and caught up.
func WithDiffWait(wait func(ctx context.Context, pos Position) error) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.wait = wait })
}

// WithDiffRules applies a task's block-allow list and routes: only tables
// the list allows are compared, each with the table its routes send it to.
// Default: every table selected, each compared with the table of the same
// name.
func WithDiffRules(filter BlockAllowList, routes []RouteRule) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.filter, o.routes = filter, routes })
}

// WithDiffMaxRows caps the differing rows reported per table (the rest
// are counted in DiffTable.Omitted). Default DefaultDiffMaxRows (10000); 0
// reports none, only counts.
func WithDiffMaxRows(n int) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.maxRows = n })
}

// WithDiffHash64 sums a 64-bit hash of each row in the chunk checksums
// (CRC32 and CRC32C of the row's text where both servers have CRC32C,
// MariaDB 10.8 and later; else the first 64 bits of MD5) instead of CRC32
// alone: a chunk where a row changed then looks equal once in 2^64 instead
// of once in 2^32, for about twice the servers' work per row (three times
// with MD5). Default CRC32 alone. Tables without a key match their rows by
// the 64-bit hash either way.
func WithDiffHash64() DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.hash64 = true })
}

// WithDiffRecheck compares the chunks that found differing rows again, up
// to rounds times, each after delay and at a new upstream snapshot (and
// WithDiffWait again), and reports only the rows found different every
// time in the same way (same kind, key and values on both sides): a row
// the syncer was still applying when the downstream was read converges or
// changes, and drops out; a row that stays different stays. For a
// downstream that a running task keeps writing (WithDiffWait returns once
// the task has passed the position, and the task goes on past it, so
// rows written meanwhile can look different). Default 0 rounds: no
// recheck.
func WithDiffRecheck(rounds int, delay time.Duration) DiffOption {
	return diffOptionFunc(func(o *diffOptions) { o.recheck, o.recheckDelay = rounds, delay })
}

// DiffKind is how a row differs.
type DiffKind string

// The kinds of difference.
const (
	// DiffMissing: the upstream has the row, the downstream does not.
	DiffMissing DiffKind = "missing"
	// DiffExtra: the downstream has a row the upstream does not.
	DiffExtra DiffKind = "extra"
	// DiffChanged: both have the key, with different values.
	DiffChanged DiffKind = "changed"
)

// String is the kind's word.
func (k DiffKind) String() string { return string(k) }

// DiffRow is one row that differs. Values are SQL literals (NULL, 12,
// 1.5, 'text', X'00FF'), in the order of DiffTable.Columns.
type DiffRow struct {
	Kind DiffKind `json:"kind"`
	// Key is the row's key values in DiffTable.Key's order; nil for a
	// table without a key.
	Key []string `json:"key,omitempty"`
	// Columns are the columns that differ (DiffChanged).
	Columns []string `json:"columns,omitempty"`
	// Upstream and Downstream are the row on each side (nil on the side
	// that lacks it).
	Upstream   []string `json:"upstream,omitempty"`
	Downstream []string `json:"downstream,omitempty"`
}

// DiffTable is the comparison of one downstream table.
type DiffTable struct {
	// Schema and Name are the downstream table's.
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Sources are the upstream tables compared with it, "schema.table"
	// (more than one for merged shards).
	Sources []string `json:"sources"`
	// NoTarget is true when the downstream table does not exist.
	NoTarget bool `json:"no-target,omitempty"`
	// Key is the key rows are matched by (empty: by the whole row).
	Key []string `json:"key,omitempty"`
	// Columns are the compared columns; Skipped those left out (generated
	// downstream, or on one side only).
	Columns []string `json:"columns"`
	Skipped []string `json:"skipped,omitempty"`
	// Chunks compared, and how many of them differed by checksum (a
	// differing chunk may turn out to hold no differing row: floats close
	// to a rounding boundary).
	Chunks          int `json:"chunks"`
	DifferingChunks int `json:"differing-chunks"`
	// UpstreamRows and DownstreamRows are the rows counted on each side.
	UpstreamRows   int64 `json:"upstream-rows"`
	DownstreamRows int64 `json:"downstream-rows"`
	// Rows are the rows that differ, by chunk then key; Omitted how many
	// more differ beyond WithDiffMaxRows.
	Rows    []DiffRow `json:"rows,omitempty"`
	Omitted int       `json:"omitted,omitempty"`
}

// Equal reports whether the table is the same on both sides.
func (t *DiffTable) Equal() bool { return !t.NoTarget && len(t.Rows) == 0 && t.Omitted == 0 }

// String is "schema.name".
func (t *DiffTable) String() string { return t.Schema + "." + t.Name }

// DiffResult is what Diff found.
type DiffResult struct {
	// Position is the upstream point the snapshot read at.
	Position Position `json:"position"`
	// Resumed is the number of chunks taken from the progress file.
	Resumed int `json:"resumed"`
	// Rechecks is the number of rechecks done (WithDiffRecheck).
	Rechecks int `json:"rechecks,omitempty"`
	// Tables, by downstream name.
	Tables []DiffTable `json:"tables"`
}

// Equal reports whether every table is the same on both sides.
func (r *DiffResult) Equal() bool {
	for i := range r.Tables {
		if !r.Tables[i].Equal() {
			return false
		}
	}
	return true
}

// WriteFixSQL writes the statements that make the downstream equal to the
// upstream as compared: REPLACE of each missing or changed row with the
// upstream's values, DELETE of each extra row (by key; by every column,
// LIMIT 1, in a table without a key). It starts with the session settings
// the literals need (sql_mode, time_zone, utf8mb4). Rows beyond
// WithDiffMaxRows are not written: a comment says how many.
func (r *DiffResult) WriteFixSQL(w io.Writer) error {
	var b strings.Builder
	b.WriteString("-- dmworker diff repair at upstream " + r.Position.String() + "\n")
	b.WriteString("SET NAMES utf8mb4;\nSET SESSION time_zone = '+00:00';\nSET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';\nSET SESSION foreign_key_checks = 0;\n")
	for i := range r.Tables {
		t := &r.Tables[i]
		if t.Equal() {
			continue
		}
		name := compare.Quote(t.Schema) + "." + compare.Quote(t.Name)
		if t.NoTarget {
			fmt.Fprintf(&b, "-- %s does not exist downstream\n", name)
			continue
		}
		cols := make([]string, len(t.Columns))
		for j, c := range t.Columns {
			cols[j] = compare.Quote(c)
		}
		keyIdx := make([]int, len(t.Key))
		for j, k := range t.Key {
			keyIdx[j] = slices.Index(t.Columns, k)
		}
		for _, row := range t.Rows {
			switch row.Kind {
			case DiffMissing, DiffChanged:
				verb := "REPLACE"
				if len(t.Key) == 0 {
					verb = "INSERT"
				}
				fmt.Fprintf(&b, "%s INTO %s (%s) VALUES (%s);\n", verb, name, strings.Join(cols, ", "), strings.Join(row.Upstream, ", "))
			case DiffExtra:
				var conds []string
				if len(t.Key) > 0 {
					for j, k := range t.Key {
						conds = append(conds, compare.Quote(k)+" = "+row.Key[j])
					}
					fmt.Fprintf(&b, "DELETE FROM %s WHERE %s;\n", name, strings.Join(conds, " AND "))
				} else {
					for j, c := range cols {
						conds = append(conds, c+" <=> "+row.Downstream[j])
					}
					fmt.Fprintf(&b, "DELETE FROM %s WHERE %s LIMIT 1;\n", name, strings.Join(conds, " AND "))
				}
			}
		}
		if t.Omitted > 0 {
			fmt.Fprintf(&b, "-- %s: %d more differing rows not reported (WithDiffMaxRows): diff again after applying this\n", name, t.Omitted)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// differ is one Diff call.
type differ struct {
	o        diffOptions
	up, down *sql.DB
	upMaria  bool
	upJSON   bool // JSON_NORMALIZE available upstream
	downJSON bool
	hash     compare.Hash // a row's hash, 64 bits
	sum      compare.Hash // the hash the chunk checksums sum

	mu     sync.Mutex // guards prog
	prog   *diffProgress
	fileMu sync.Mutex // one writer of the progress file at a time
}

// diffGroup is one downstream table and its upstream sources.
type diffGroup struct {
	target   schema.TableName
	sources  []*schema.TableDef
	srcJSON  []map[string]bool // per source: its JSON columns
	down     *schema.TableDef
	cols     [][]compare.Column // per source
	keyPos   []int
	keyCols  []*schema.ColumnDef // upstream (source 0) key columns
	skipped  []string
	noTarget bool
	state    *diffTableProgress
}

func (g *diffGroup) keyed() bool { return len(g.keyPos) > 0 }

// diffProgress is the progress file's content.
type diffProgress struct {
	Version  int                           `json:"version"`
	Position string                        `json:"position"`
	Tables   map[string]*diffTableProgress `json:"tables"`
}

type diffTableProgress struct {
	// Sig is the sources, columns and key: a table whose sig changed is
	// compared again from the start.
	Sig string `json:"sig"`
	// Bounds are the chunk boundaries, each key encoded by
	// snapshot.EncodeKey: chunk i holds Bounds[i-1] <= key < Bounds[i].
	Bounds [][]string   `json:"bounds,omitempty"`
	Chunks []*diffChunk `json:"chunks"`
}

type diffChunk struct {
	Done     bool      `json:"done,omitempty"`
	Differs  bool      `json:"differs,omitempty"`
	UpRows   int64     `json:"up-rows,omitempty"`
	DownRows int64     `json:"down-rows,omitempty"`
	Rows     []DiffRow `json:"rows,omitempty"`
	Omitted  int       `json:"omitted,omitempty"`
}

func (d *differ) run(ctx context.Context, patterns []TablePattern) (*DiffResult, error) {
	log := d.o.logger
	if err := d.loadProgress(); err != nil {
		return nil, err
	}
	var err error
	var upCRC, downCRC bool
	if d.upMaria, d.upJSON, upCRC, err = serverKind(ctx, d.up); err != nil {
		return nil, fmt.Errorf("dmworker: diff: upstream: %w", err)
	}
	if _, d.downJSON, downCRC, err = serverKind(ctx, d.down); err != nil {
		return nil, fmt.Errorf("dmworker: diff: downstream: %w", err)
	}
	d.hash = compare.MD5
	if upCRC && downCRC {
		d.hash = compare.CRC
	}
	d.sum = compare.CRC32
	if d.o.hash64 {
		d.sum = d.hash
	}
	noResolve := func(context.Context, string, uint64) (string, error) { return "", nil }
	snap, err := snapshot.Open(ctx, d.up, d.o.workers, d.upMaria, noResolve)
	if err != nil {
		return nil, fmt.Errorf("dmworker: diff: upstream snapshot: %w", err)
	}
	defer snap.Close()
	res := &DiffResult{Position: diffPosition(snap.Point, d.upMaria)}
	log.Info("diff snapshot open", "position", res.Position.String(), "method", snap.Point.Method)
	if d.o.wait != nil {
		if err := d.o.wait(ctx, res.Position); err != nil {
			return nil, fmt.Errorf("dmworker: diff: waiting for the downstream to reach %s: %w", res.Position, err)
		}
	}
	groups, err := d.groups(ctx, snap.Conns[0], patterns)
	if err != nil {
		return nil, err
	}
	// Down connections, in UTC like the snapshot's.
	downConns := make([]*sql.Conn, 0, len(snap.Conns))
	defer func() {
		for _, c := range downConns {
			c.Close()
		}
	}()
	for range snap.Conns {
		c, err := d.down.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("dmworker: diff: downstream: %w", err)
		}
		downConns = append(downConns, c)
		if _, err := c.ExecContext(ctx, "SET SESSION time_zone = '+00:00'"); err != nil {
			return nil, fmt.Errorf("dmworker: diff: downstream: %w", err)
		}
	}
	type pair struct{ up, down *sql.Conn }
	pairs := make(chan pair, len(snap.Conns))
	for i := range snap.Conns {
		pairs <- pair{snap.Conns[i], downConns[i]}
	}

	d.mu.Lock()
	d.prog.Position = res.Position.String()
	d.mu.Unlock()
	// Plan the tables not planned yet (on one snapshot connection).
	for _, g := range groups {
		if g.noTarget || g.state != nil {
			continue
		}
		st, err := d.plan(ctx, snap.Conns[0], g)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		g.state = st
		d.prog.Tables[plainName(g.target)] = st
		d.mu.Unlock()
	}
	if err := d.saveProgress(); err != nil {
		return nil, err
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(len(snap.Conns))
	for _, g := range groups {
		if g.noTarget {
			continue
		}
		for i, ch := range g.state.Chunks {
			if ch.Done {
				res.Resumed++
				continue
			}
			eg.Go(func() error {
				var p pair
				select {
				case p = <-pairs:
				case <-ectx.Done():
					return ectx.Err()
				}
				defer func() { pairs <- p }()
				out, err := d.chunk(ectx, p.up, p.down, g, i)
				if err != nil {
					return fmt.Errorf("dmworker: diff: %s chunk %d: %w", g.target, i, err)
				}
				d.mu.Lock()
				g.state.Chunks[i] = out
				d.mu.Unlock()
				return d.saveProgress()
			})
		}
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	snap.Close()
	for round := 0; round < d.o.recheck && d.anyRows(groups); round++ {
		if err := d.recheck(ctx, groups, downConns); err != nil {
			return nil, err
		}
		res.Rechecks++
	}
	for _, g := range groups {
		res.Tables = append(res.Tables, d.table(g))
	}
	return res, nil
}

// anyRows reports whether a chunk found differing rows.
func (d *differ) anyRows(groups []*diffGroup) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, g := range groups {
		if g.noTarget {
			continue
		}
		for _, ch := range g.state.Chunks {
			if len(ch.Rows) > 0 || ch.Omitted > 0 {
				return true
			}
		}
	}
	return false
}

// recheck compares again, after the recheck delay and at a new upstream
// snapshot (and WithDiffWait), the chunks that found differing rows, and
// keeps only the rows found different both times.
func (d *differ) recheck(ctx context.Context, groups []*diffGroup, downConns []*sql.Conn) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.o.recheckDelay):
	}
	snap, err := snapshot.Open(ctx, d.up, len(downConns), d.upMaria, func(context.Context, string, uint64) (string, error) { return "", nil })
	if err != nil {
		return fmt.Errorf("dmworker: diff: recheck: upstream snapshot: %w", err)
	}
	defer snap.Close()
	pos := diffPosition(snap.Point, d.upMaria)
	if d.o.wait != nil {
		if err := d.o.wait(ctx, pos); err != nil {
			return fmt.Errorf("dmworker: diff: recheck: waiting for the downstream to reach %s: %w", pos, err)
		}
	}
	type pair struct{ up, down *sql.Conn }
	pairs := make(chan pair, len(snap.Conns))
	for i := range snap.Conns {
		pairs <- pair{snap.Conns[i], downConns[i]}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(len(snap.Conns))
	for _, g := range groups {
		if g.noTarget {
			continue
		}
		for i, ch := range g.state.Chunks {
			if len(ch.Rows) == 0 && ch.Omitted == 0 {
				continue
			}
			eg.Go(func() error {
				p := <-pairs
				defer func() { pairs <- p }()
				out, err := d.chunk(ectx, p.up, p.down, g, i)
				if err != nil {
					return fmt.Errorf("dmworker: diff: recheck %s chunk %d: %w", g.target, i, err)
				}
				before := map[string]bool{}
				for _, r := range ch.Rows {
					before[r.identity()] = true
				}
				kept := out.Rows[:0]
				for _, r := range out.Rows {
					if before[r.identity()] || ch.Omitted > 0 {
						kept = append(kept, r)
					}
				}
				out.Rows = kept
				if ch.Omitted == 0 {
					out.Omitted = 0
				}
				out.Differs = out.Differs || ch.Differs
				d.mu.Lock()
				g.state.Chunks[i] = out
				d.mu.Unlock()
				return nil
			})
		}
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	return d.saveProgress()
}

// identity is what makes two reports of a row the same difference: the
// same kind, key and images on both sides.
func (r *DiffRow) identity() string {
	return string(r.Kind) + "|" + strings.Join(r.Key, ",") + "|" + strings.Join(r.Upstream, ",") + "|" + strings.Join(r.Downstream, ",")
}

// serverKind reports whether db is MariaDB, has JSON_NORMALIZE and has
// CRC32C.
func serverKind(ctx context.Context, db *sql.DB) (mariadb, normalize, crc32c bool, err error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return false, false, false, err
	}
	mariadb = strings.Contains(strings.ToLower(v), "mariadb")
	if mariadb {
		var s sql.NullString
		normalize = db.QueryRowContext(ctx, "SELECT JSON_NORMALIZE('{}')").Scan(&s) == nil
		crc32c = db.QueryRowContext(ctx, "SELECT CRC32C('')").Scan(&s) == nil
	}
	return mariadb, normalize, crc32c, nil
}

func diffPosition(p snapshot.Point, mariadb bool) Position {
	pos := streamer.Position{Name: p.File, Offset: p.Offset}
	flavor := streamer.FlavorMySQL
	if mariadb {
		flavor = streamer.FlavorMariaDB
	}
	if p.GTID != "" {
		if set, err := streamer.NewGTIDSet(flavor, p.GTID); err == nil {
			pos.Flavor, pos.GTIDSet = flavor, set
		}
	}
	return pos
}

// groups lists the upstream tables selected and groups them by target.
func (d *differ) groups(ctx context.Context, conn *sql.Conn, patterns []TablePattern) ([]*diffGroup, error) {
	sel, err := filter.NewBlockAllowList(BlockAllowList{DoTables: patterns, CaseSensitive: d.o.filter.CaseSensitive}.filterRules())
	if err != nil {
		return nil, fmt.Errorf("dmworker: diff: tables: %w", err)
	}
	ba, err := filter.NewBlockAllowList(d.o.filter.filterRules())
	if err != nil {
		return nil, fmt.Errorf("dmworker: diff: block-allow list: %w", err)
	}
	router, err := filter.NewRouter(filterRouteRules(d.o.routes), d.o.filter.CaseSensitive)
	if err != nil {
		return nil, fmt.Errorf("dmworker: diff: routes: %w", err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2")
	if err != nil {
		return nil, fmt.Errorf("dmworker: diff: list tables: %w", err)
	}
	byTarget := map[schema.TableName]*diffGroup{}
	var order []schema.TableName
	var names []schema.TableName
	for rows.Next() {
		var n schema.TableName
		if err := rows.Scan(&n.Schema, &n.Name); err != nil {
			rows.Close()
			return nil, err
		}
		if sel.Allowed(n.Schema, n.Name) && ba.Allowed(n.Schema, n.Name) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		def, upJSON, err := loadDef(ctx, conn, n)
		if err != nil {
			return nil, fmt.Errorf("dmworker: diff: upstream %s: %w", n, err)
		}
		ts, tt := router.Route(n.Schema, n.Name)
		tn := schema.TableName{Schema: ts, Name: tt}
		g := byTarget[tn]
		if g == nil {
			g = &diffGroup{target: tn}
			byTarget[tn] = g
			order = append(order, tn)
		}
		g.sources = append(g.sources, def)
		g.srcJSON = append(g.srcJSON, upJSON)
		g.cols = append(g.cols, nil)
	}
	sort.Slice(order, func(i, j int) bool { return plainName(order[i]) < plainName(order[j]) })
	var out []*diffGroup
	for _, tn := range order {
		g := byTarget[tn]
		out = append(out, g)
		down, downJSON, err := loadDef(ctx, d.down, tn)
		var me *gomysql.MySQLError
		if errors.As(err, &me) && (me.Number == 1146 || me.Number == 1049) {
			g.noTarget = true
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dmworker: diff: downstream %s: %w", tn, err)
		}
		g.down = down
		for s, src := range g.sources {
			cols, skipped, keyPos, err := compare.Columns(src, down, g.srcJSON[s], downJSON)
			if err != nil {
				return nil, fmt.Errorf("dmworker: diff: %s against %s: %w", src.QualifiedName(), tn, err)
			}
			g.cols[s] = cols
			if s == 0 {
				g.skipped, g.keyPos = skipped, keyPos
				for _, p := range keyPos {
					g.keyCols = append(g.keyCols, cols[p].Up)
				}
			} else if len(cols) != len(g.cols[0]) || !slices.Equal(keyPos, g.keyPos) {
				return nil, fmt.Errorf("dmworker: diff: shards %s and %s of %s differ in columns or key", g.sources[0].QualifiedName(), src.QualifiedName(), tn)
			}
		}
		d.mu.Lock()
		if st := d.prog.Tables[plainName(tn)]; st != nil && st.Sig == g.sig() {
			g.state = st
		}
		d.mu.Unlock()
	}
	return out, nil
}

func (g *diffGroup) sig() string {
	var b strings.Builder
	for s, src := range g.sources {
		b.WriteString(plainName(src.QualifiedName()) + "(")
		for _, c := range g.cols[s] {
			b.WriteString(c.Name + " " + c.Up.Type + ",")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "key%v", g.keyPos)
	return b.String()
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadDef reads a table's definition and its JSON columns.
func loadDef(ctx context.Context, q queryRower, n schema.TableName) (*schema.TableDef, map[string]bool, error) {
	var name, create string
	if err := q.QueryRowContext(ctx, "SHOW CREATE TABLE "+compare.Quote(n.Schema)+"."+compare.Quote(n.Name)).Scan(&name, &create); err != nil {
		return nil, nil, err
	}
	t := schema.New()
	if err := t.CreateFromSQL(n.Schema, "CREATE DATABASE "+compare.Quote(n.Schema)); err != nil {
		return nil, nil, err
	}
	if err := t.CreateFromSQL(n.Schema, create); err != nil {
		return nil, nil, fmt.Errorf("definition %q: %w", create, err)
	}
	def, ok := t.Table(n.Schema, n.Name)
	if !ok {
		return nil, nil, fmt.Errorf("definition of %s not parsed", n)
	}
	return def, compare.JSONColumns(create), nil
}

// plan cuts a group into chunks by the first source's key.
func (d *differ) plan(ctx context.Context, conn *sql.Conn, g *diffGroup) (*diffTableProgress, error) {
	st := &diffTableProgress{Sig: g.sig()}
	src := g.sources[0]
	if g.keyed() {
		p, err := snapshot.Plan(ctx, conn, src, d.o.chunkRows)
		if err != nil {
			return nil, fmt.Errorf("dmworker: diff: %w", err)
		}
		switch p.Mode {
		case snapshot.ModeRange:
			for _, b := range p.Bounds {
				enc := "i:" + b
				if g.keyCols[0].Unsigned {
					enc = "u:" + b
				}
				st.Bounds = append(st.Bounds, []string{enc})
			}
		case snapshot.ModeKeyset:
			if st.Bounds, err = d.walk(ctx, conn, g); err != nil {
				return nil, fmt.Errorf("dmworker: diff: %s: key boundaries: %w", src.QualifiedName(), err)
			}
		}
	}
	st.Chunks = make([]*diffChunk, len(st.Bounds)+1)
	for i := range st.Chunks {
		st.Chunks[i] = &diffChunk{}
	}
	return st, nil
}

// walk finds keyset boundaries every chunkRows rows in key order.
func (d *differ) walk(ctx context.Context, conn *sql.Conn, g *diffGroup) ([][]string, error) {
	src := g.sources[0]
	kd := &schema.TableDef{}
	var names []string
	for _, c := range g.keyCols {
		kd.Columns = append(kd.Columns, *c)
		names = append(names, compare.Quote(c.Name))
	}
	var out [][]string
	var last []any
	for {
		q := "SELECT " + strings.Join(names, ", ") + " FROM " + qualified(src.QualifiedName())
		var args []any
		if last != nil {
			var cond string
			cond, args = compare.Tuple(g.keyCols, ">=", last)
			q += " WHERE " + cond
		}
		q += " ORDER BY " + strings.Join(names, ", ") + fmt.Sprintf(" LIMIT 1 OFFSET %d", d.o.chunkRows)
		var next []any
		if err := snapshot.Read(ctx, conn, kd, q, args, func(row []any, _ int) error { next = row; return nil }); err != nil {
			return nil, err
		}
		if next == nil {
			return out, nil
		}
		enc, err := snapshot.EncodeKey(next)
		if err != nil {
			return nil, err
		}
		out = append(out, enc)
		last = next
	}
}

func qualified(n schema.TableName) string {
	return compare.Quote(n.Schema) + "." + compare.Quote(n.Name)
}

// bounds decodes chunk i's lower and upper keys.
func (g *diffGroup) bounds(i int) (lo, hi []any, err error) {
	b := g.state.Bounds
	if i > 0 {
		if lo, err = snapshot.DecodeKey(b[i-1]); err != nil {
			return nil, nil, err
		}
	}
	if i < len(b) {
		if hi, err = snapshot.DecodeKey(b[i]); err != nil {
			return nil, nil, err
		}
	}
	return lo, hi, nil
}

// chunk compares chunk i of g.
func (d *differ) chunk(ctx context.Context, up, down *sql.Conn, g *diffGroup, i int) (*diffChunk, error) {
	lo, hi, err := g.bounds(i)
	if err != nil {
		return nil, err
	}
	where, args := compare.Range(g.keyCols, lo, hi)
	out := &diffChunk{Done: true}
	var upSum, downSum string
	var eg errgroup.Group
	eg.Go(func() error {
		upSum = ""
		for s, src := range g.sources {
			var n int64
			var sum string
			q := compare.ChecksumQuery(qualified(src.QualifiedName()), g.cols[s], d.upJSON, d.sum, where)
			if err := up.QueryRowContext(ctx, q, args...).Scan(&n, &sum); err != nil {
				return fmt.Errorf("upstream checksum: %w", err)
			}
			out.UpRows += n
			upSum = compare.Sum(upSum, sum)
		}
		return nil
	})
	eg.Go(func() error {
		q := compare.ChecksumQuery(qualified(g.target), downCols(g.cols[0]), d.downJSON, d.sum, where)
		if err := down.QueryRowContext(ctx, q, args...).Scan(&out.DownRows, &downSum); err != nil {
			return fmt.Errorf("downstream checksum: %w", err)
		}
		return nil
	})
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	if out.UpRows == out.DownRows && upSum == downSum {
		return out, nil
	}

	out.Differs = true
	var rows []DiffRow
	if g.keyed() {
		rows, err = d.rowsByKey(ctx, up, down, g, where, args)
	} else {
		rows, err = d.rowsByHash(ctx, up, down, g)
	}
	if err != nil {
		return nil, err
	}
	if len(rows) > d.o.maxRows {
		out.Omitted = len(rows) - d.o.maxRows
		rows = rows[:d.o.maxRows]
	}
	out.Rows = rows
	return out, nil
}

// downCols is cols with the downstream's definitions as the upstream's, for
// the statements run downstream.
func downCols(cols []compare.Column) []compare.Column {
	out := slices.Clone(cols)
	for i := range out {
		out[i].Up = out[i].Down
	}
	return out
}

type sideRow struct {
	vals []any
	cols []compare.Column
}

// readSide reads the rows of one table within where, as compare.ReadDef
// converts them.
func readSide(ctx context.Context, conn *sql.Conn, table schema.TableName, cols []compare.Column, keyPos []int, up bool, where string, args []any, emit func([]any) error) error {
	q := "SELECT " + compare.SelectList(cols, keyPos) + " FROM " + qualified(table)
	if where != "" {
		q += " WHERE " + where
	}
	return snapshot.Read(ctx, conn, compare.ReadDef(cols, keyPos, up), q, args, func(row []any, _ int) error { return emit(row) })
}

func literals(cols []compare.Column, vals []any, up bool) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		def := c.Down
		if up {
			def = c.Up
		}
		out[i] = compare.Literal(def, vals[i])
	}
	return out
}

// rowsByKey reads a differing chunk from both sides and matches its rows
// by key.
func (d *differ) rowsByKey(ctx context.Context, up, down *sql.Conn, g *diffGroup, where string, args []any) ([]DiffRow, error) {
	upRows := map[string]sideRow{}
	var order []string
	for s, src := range g.sources {
		cols := g.cols[s]
		err := readSide(ctx, up, src.QualifiedName(), cols, g.keyPos, true, where, args, func(row []any) error {
			k := compare.MatchKey(cols, g.keyPos, row)
			if _, dup := upRows[k]; !dup {
				order = append(order, k)
			}
			upRows[k] = sideRow{row, cols}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("upstream rows: %w", err)
		}
	}
	cols0 := g.cols[0]
	keyOf := func(cols []compare.Column, vals []any, up bool) []string {
		out := make([]string, len(g.keyPos))
		for j, p := range g.keyPos {
			def := cols[p].Down
			if up {
				def = cols[p].Up
			}
			out[j] = compare.Literal(def, vals[p])
		}
		return out
	}
	changed := map[string]DiffRow{}
	var extras []DiffRow
	err := readSide(ctx, down, g.target, cols0, g.keyPos, false, where, args, func(row []any) error {
		k := compare.MatchKey(cols0, g.keyPos, row)
		u, ok := upRows[k]
		if !ok {
			extras = append(extras, DiffRow{Kind: DiffExtra, Key: keyOf(cols0, row, false), Downstream: literals(cols0, row, false)})
			return nil
		}
		delete(upRows, k)
		var diff []string
		for j, c := range u.cols {
			if !compare.Equal(c, u.vals[j], row[j]) {
				diff = append(diff, c.Name)
			}
		}
		if diff != nil {
			changed[k] = DiffRow{Kind: DiffChanged, Key: keyOf(u.cols, u.vals, true), Columns: diff,
				Upstream: literals(u.cols, u.vals, true), Downstream: literals(cols0, row, false)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("downstream rows: %w", err)
	}
	var out []DiffRow
	for _, k := range order {
		if r, ok := changed[k]; ok {
			out = append(out, r)
		} else if u, ok := upRows[k]; ok {
			out = append(out, DiffRow{Kind: DiffMissing, Key: keyOf(u.cols, u.vals, true), Upstream: literals(u.cols, u.vals, true)})
		}
	}
	return append(out, extras...), nil
}

// rowsByHash compares a table without a key: the count of each full-row
// hash on both sides, then the rows of the hashes whose counts differ.
func (d *differ) rowsByHash(ctx context.Context, up, down *sql.Conn, g *diffGroup) ([]DiffRow, error) {
	counts := func(conn *sql.Conn, table schema.TableName, cols []compare.Column, normJSON bool, into map[string]int64) error {
		h := compare.HashExpr(cols, normJSON, d.hash)
		rows, err := conn.QueryContext(ctx, "SELECT "+h+", COUNT(*) FROM "+qualified(table)+" GROUP BY 1")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				return err
			}
			into[k] += n
		}
		return rows.Err()
	}
	upN, downN := map[string]int64{}, map[string]int64{}
	for s, src := range g.sources {
		if err := counts(up, src.QualifiedName(), g.cols[s], d.upJSON, upN); err != nil {
			return nil, fmt.Errorf("upstream row hashes: %w", err)
		}
	}
	dc := downCols(g.cols[0])
	if err := counts(down, g.target, dc, d.downJSON, downN); err != nil {
		return nil, fmt.Errorf("downstream row hashes: %w", err)
	}
	var hashes []string
	for k := range upN {
		hashes = append(hashes, k)
	}
	for k := range downN {
		if _, ok := upN[k]; !ok {
			hashes = append(hashes, k)
		}
	}
	sort.Strings(hashes)
	var out []DiffRow
	fetch := func(conn *sql.Conn, table schema.TableName, cols []compare.Column, normJSON, isUp bool, hash string, n int64, kind DiffKind) error {
		where := compare.HashExpr(cols, normJSON, d.hash) + " = ?"
		got := int64(0)
		return readSide(ctx, conn, table, cols, nil, isUp, where+fmt.Sprintf(" LIMIT %d", n), []any{hash}, func(row []any) error {
			if got >= n {
				return nil
			}
			got++
			r := DiffRow{Kind: kind}
			if isUp {
				r.Upstream = literals(cols, row, true)
			} else {
				r.Downstream = literals(cols, row, false)
			}
			out = append(out, r)
			return nil
		})
	}
	for _, h := range hashes {
		diff := upN[h] - downN[h]
		switch {
		case diff > 0:
			for s, src := range g.sources {
				before := len(out)
				if err := fetch(up, src.QualifiedName(), g.cols[s], d.upJSON, true, h, diff, DiffMissing); err != nil {
					return nil, fmt.Errorf("upstream rows: %w", err)
				}
				diff -= int64(len(out) - before)
				if diff <= 0 {
					break
				}
			}
		case diff < 0:
			if err := fetch(down, g.target, dc, d.downJSON, false, h, -diff, DiffExtra); err != nil {
				return nil, fmt.Errorf("downstream rows: %w", err)
			}
		}
	}
	return out, nil
}

// table assembles a group's result.
func (d *differ) table(g *diffGroup) DiffTable {
	t := DiffTable{Schema: g.target.Schema, Name: g.target.Name, NoTarget: g.noTarget, Skipped: g.skipped}
	for _, s := range g.sources {
		t.Sources = append(t.Sources, plainName(s.QualifiedName()))
	}
	if g.noTarget {
		return t
	}
	for _, c := range g.cols[0] {
		t.Columns = append(t.Columns, c.Name)
	}
	for _, p := range g.keyPos {
		t.Key = append(t.Key, g.cols[0][p].Name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t.Chunks = len(g.state.Chunks)
	for _, ch := range g.state.Chunks {
		t.UpstreamRows += ch.UpRows
		t.DownstreamRows += ch.DownRows
		if ch.Differs {
			t.DifferingChunks++
		}
		for _, r := range ch.Rows {
			if len(t.Rows) < d.o.maxRows {
				t.Rows = append(t.Rows, r)
			} else {
				t.Omitted++
			}
		}
		t.Omitted += ch.Omitted
	}
	return t
}

// loadProgress reads the progress file, if any.
func (d *differ) loadProgress() error {
	d.prog = &diffProgress{Version: 1, Tables: map[string]*diffTableProgress{}}
	if d.o.progress == "" {
		return nil
	}
	data, err := os.ReadFile(d.o.progress)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	var p diffProgress
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("dmworker: diff: progress file %s: %w", d.o.progress, err)
	}
	if p.Version != 1 {
		return fmt.Errorf("dmworker: diff: progress file %s: version %d, want 1", d.o.progress, p.Version)
	}
	if p.Tables == nil {
		p.Tables = map[string]*diffTableProgress{}
	}
	d.prog = &p
	return nil
}

// saveProgress writes the progress file atomically (temporary file,
// fsync, rename, fsync of the directory).
func (d *differ) saveProgress() error {
	if d.o.progress == "" {
		return nil
	}
	d.fileMu.Lock()
	defer d.fileMu.Unlock()
	d.mu.Lock()
	data, err := json.Marshal(d.prog)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := d.o.progress + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	if err := os.Rename(tmp, d.o.progress); err != nil {
		return fmt.Errorf("dmworker: diff: progress file: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(d.o.progress)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// plainName is "schema.table", unquoted, as DiffTable.Sources and the
// progress file write it.
func plainName(n schema.TableName) string { return n.Schema + "." + n.Name }
