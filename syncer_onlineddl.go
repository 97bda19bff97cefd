package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dmworker/dmworker/internal/onlineddl"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// OnlineDDLConfig is how a task treats online schema changes made upstream
// by gh-ost or pt-online-schema-change, as DM's online-ddl,
// shadow-table-rules and trash-table-rules. SyncerConfig and SubTaskConfig
// embed it, so that its keys are theirs.
//
// With it on (the default), the tables such a tool works with are never
// replicated, whatever the block-allow list says: a shadow table (gh-ost's
// _t_gho, pt-osc's _t_new) and a trash table (gh-ost's changelog _t_ghc and
// sentry or old table _t_del, pt-osc's old table _t_old). The ALTERs run on
// a shadow table are recorded against its real table t; at the cut-over,
// the RENAME that swaps the shadow table in (RENAME TABLE t TO _t_del,
// _t_gho TO t), they run downstream on t, routed as t is, as DDL: the
// downstream never copies the rows. The tracked schema follows the
// upstream's. What is recorded is stored with the checkpoint, in its
// schema, so that a syncer killed between the ALTER and the cut-over finds
// it again; a replay of a cut-over after a crash runs its ALTERs in safe
// mode. Dropping a shadow table (the cleanup after an aborted run) forgets
// its record and changes nothing downstream. Online schema changes of
// tables the task does not replicate are passed over.
//
// A shadow table created before the task's start has no record: its
// cut-over stops the syncer with an error naming the RENAME; apply the
// change downstream by hand and Replace the event with the ALTER (which the
// tracker applies too).
type OnlineDDLConfig struct {
	// OnlineDDL turns the handling of online schema changes on or off.
	// Default (nil) on; new(bool) turns it off. Off, the tools' tables
	// are tables like any other: replicated when the block-allow list
	// lets them through (the downstream then redoes the row copy).
	OnlineDDL *bool `json:"online-ddl,omitempty" toml:"online-ddl"`
	// ShadowTableRules are regular expressions (RE2, matched against the
	// table name, case-sensitively) for shadow tables; the first submatch
	// is the real table's name. Default `^_(.+)_(?:new|gho)$`.
	ShadowTableRules []string `json:"shadow-table-rules,omitempty" toml:"shadow-table-rules"`
	// TrashTableRules are regular expressions for the tools' other tables
	// (changelog, sentry, old table), with the real table's name as first
	// submatch. Default `^_(.+)_(?:ghc|del|old)$`.
	TrashTableRules []string `json:"trash-table-rules,omitempty" toml:"trash-table-rules"`
}

// OnlineDDLEnabled reports whether online schema changes are handled (true
// unless OnlineDDL is set to false).
func (c OnlineDDLConfig) OnlineDDLEnabled() bool { return c.OnlineDDL == nil || *c.OnlineDDL }

// onlineRules compiles the rules; nil when the handling is off.
func (c OnlineDDLConfig) onlineRules() (*onlineddl.Rules, error) {
	if !c.OnlineDDLEnabled() {
		return nil, nil
	}
	return onlineddl.NewRules(c.ShadowTableRules, c.TrashTableRules)
}

// onlineTable reports whether a table is one an online schema change tool
// works with (never replicated while the handling is on).
func (r *rules) onlineTable(table string) bool {
	if r.online == nil || table == "" {
		return false
	}
	k, _ := r.online.Kind(table)
	return k != onlineddl.Real
}

// onlineStmt handles a statement on a shadow or trash table, or a RENAME
// of a real table to one; it reports false, doing nothing, for any other.
// The statement is applied to the tracker; shadow tables' ALTERs are
// recorded, and at the cut-over the recorded ALTERs run downstream on the
// real table.
func (r *syncRun) onlineStmt(ctx context.Context, ev *streamer.Event, st *schema.Stmt, query string, mode schema.SQLMode, defaultSchema string, replay bool) (bool, error) {
	s := r.s
	on := s.rules.online
	if on == nil || st.Table.Name == "" {
		return false, nil
	}
	k1, real1 := on.Kind(st.Table.Name)
	k2 := onlineddl.Real
	if !st.NewTable.IsZero() {
		k2, _ = on.Kind(st.NewTable.Name)
	}
	if k1 == onlineddl.Real && k2 == onlineddl.Real {
		return false, nil
	}
	// The real table this is about: for a RENAME of a real table, that
	// table; else the one the name says.
	real := schema.TableName{Schema: st.Table.Schema, Name: real1}
	if k1 == onlineddl.Real {
		real = st.Table
	}
	replicated := s.rules.allowed(real.Schema, real.Name)
	cutover := k1 == onlineddl.Shadow && k2 == onlineddl.Real && !st.NewTable.IsZero()
	if cutover {
		replicated = s.rules.allowed(st.NewTable.Schema, st.NewTable.Name)
	}
	if k1 == onlineddl.Real && k2 == onlineddl.Shadow && replicated {
		return true, r.wrapEvent(ev, st.Table.String(), query, fmt.Errorf("%w: a table renamed to a shadow table's name (%s): the online schema change rules do not fit this tool",
			ErrUnsupportedDDL, st.NewTable))
	}
	if cutover && st.Kind != schema.KindRenameTable && replicated {
		return true, r.wrapEvent(ev, st.Table.String(), query, fmt.Errorf("%w: a cut-over by ALTER TABLE ... RENAME; only RENAME TABLE is supported", ErrUnsupportedDDL))
	}

	// The tracker follows every such statement: at the cut-over the
	// shadow table's definition becomes the real table's.
	if _, err := r.tracker.ApplyStmts(*st); err != nil {
		if !errors.Is(err, schema.ErrUnknownTable) || (cutover && replicated) {
			return true, r.wrapEvent(ev, st.Table.String(), query, err)
		}
		// A tool's table the tracker never saw: created before the
		// task's start, or of a table the task does not replicate.
		s.log.Warn("online schema change: statement on a table not tracked, passed over", slog.String("query", truncate(query, 200)),
			slog.String("pos", ev.Pos.String()))
	}
	r.w.schemaDirty = true
	r.tables, r.fk = map[*schema.TableDef]*Table{}, nil

	state := r.w.online
	if k1 != onlineddl.Shadow {
		return true, nil // trash tables, and the real table moved aside
	}
	switch {
	case cutover:
		rec, ok := state.Get(st.Table.Schema, st.Table.Name)
		state.Drop(st.Table.Schema, st.Table.Name)
		if !replicated {
			return true, nil
		}
		if !ok {
			return true, r.wrapEvent(ev, st.Table.String(), query, fmt.Errorf("online schema change cut-over onto %s, but no ALTER of the shadow table %s is recorded "+
				"(it was created before the task's start): apply the change downstream by hand and Replace this event with it", st.NewTable, st.Table))
		}
		return true, r.cutover(ctx, ev, rec, st.NewTable, query, replay)
	case st.Kind == schema.KindCreateTable:
		if replicated {
			state.Begin(st.Table.Schema, st.Table.Name)
			s.log.Info("online schema change: shadow table created", slog.String("shadow", st.Table.String()), slog.String("table", real.String()))
		}
	case st.Kind == schema.KindDropTable || st.Kind == schema.KindRenameTable || !st.NewTable.IsZero():
		if state.Drop(st.Table.Schema, st.Table.Name) {
			s.log.Info("online schema change: shadow table dropped, its recorded changes discarded", slog.String("shadow", st.Table.String()),
				slog.String("table", real.String()))
		}
	case st.OnlyAutoIncrement():
		// gh-ost carries the counter over to its ghost table; the
		// downstream table is not rebuilt and keeps its own.
	case st.Kind == schema.KindAlterTable || st.Kind == schema.KindCreateIndex || st.Kind == schema.KindDropIndex:
		if replicated {
			state.Record(st.Table.Schema, st.Table.Name, onlineddl.Stmt{Schema: defaultSchema, Query: st.Query, Mode: uint64(mode)})
			s.log.Info("online schema change: recorded", slog.String("shadow", st.Table.String()), slog.String("table", real.String()),
				slog.String("query", truncate(st.Query, 200)))
		}
	}
	return true, nil
}

// cutover runs the statements recorded on a shadow table downstream, on
// the real table it is renamed to (routed), in the order they ran.
func (r *syncRun) cutover(ctx context.Context, ev *streamer.Event, rec *onlineddl.Record, real schema.TableName, query string, replay bool) error {
	s := r.s
	shadow := schema.TableName{Schema: rec.Schema, Name: rec.Table}
	rename := func(sc, t string) (string, string) {
		if sc == shadow.Schema && t == shadow.Name {
			return s.rules.route(real.Schema, real.Name)
		}
		return s.rules.route(sc, t)
	}
	rs, rt := s.rules.route(real.Schema, real.Name)
	for _, rst := range rec.Stmts {
		stmts, err := schema.SplitMode(schema.SQLMode(rst.Mode), rst.Schema, rst.Query)
		if err != nil {
			return r.wrapEvent(ev, real.String(), rst.Query, err)
		}
		for i := range stmts {
			st := &stmts[i]
			if st.Ignored || st.Table != shadow {
				continue
			}
			skip, err := s.rules.skipDDL(real.Schema, real.Name, st.Kind, rst.Query)
			if err != nil {
				return r.wrapEvent(ev, real.String(), rst.Query, err)
			}
			if skip {
				continue
			}
			q, err := st.Render(rename)
			if err != nil {
				return r.wrapEvent(ev, real.String(), rst.Query, err)
			}
			s.log.Info("online schema change: cut-over, applying the recorded change", slog.String("table", real.String()), slog.String("query", truncate(q, 200)))
			if err := r.execDDL(ctx, &DDL{Schema: rs, Table: rt, Query: q, SourceQuery: rst.Query, Pos: ev.Pos, SafeMode: replay || s.cfg.SafeMode}); err != nil {
				return r.wrapEvent(ev, real.String(), q, err)
			}
		}
	}
	return nil
}
