package dmworker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// Row changes logged as statements.
//
// A session with binlog_format STATEMENT or MIXED logs some row changes as
// the SQL that made them. statementDML (syncer_run.go) stops the task at
// one that names a table the task replicates. Two kinds change tables
// without naming them:
//
//   - a stored function that writes, called from SELECT, DO or SET: the
//     binlog holds "SELECT db.f()" (the server rewrites DO and SET so), and
//     what the function wrote is in no event. Its tables cannot be told:
//     the task stops there.
//   - a statement on a table with triggers: what the triggers wrote is in no
//     event. The syncer asks the upstream (information_schema.TRIGGERS,
//     cached for the run, forgotten at any CREATE or DROP TRIGGER) and
//     stops there when the table has any, or when it cannot tell.
//
// Skip(pos) passes over such a statement.

// ErrUpstreamIncident is an INCIDENT event in the upstream's binlog: the
// server could not log changes it made (LOST_EVENTS), so the binlog lacks
// them from there on, and a replica that went on would differ without a
// word. The syncer stops at it, before its checkpoint passes it; the
// SyncError names it and carries the server's message. Compare the tables
// (Diff), bring them in line, then Skip the event.
var ErrUpstreamIncident = errors.New("dmworker: the upstream's binlog has an incident (changes it could not log)")

// incident stops the run at an INCIDENT event, unless the host asked to
// Skip it.
func (r *syncRun) incident(ev *streamer.Event) error {
	msg := "INCIDENT"
	if raw := ev.RawData; len(raw) >= 19+3 {
		// number(2) message_length(1) message
		b := raw[19:]
		n := int(b[2])
		if 3+n <= len(b) {
			msg = fmt.Sprintf("INCIDENT %d: %s", binary.LittleEndian.Uint16(b), b[3:3+n])
		}
	}
	if op, ok := r.s.takeOperator(ev.Pos, r.eventStart(ev)); ok && op.skip {
		r.s.log.Warn("skipping an upstream incident, as asked", slog.String("pos", ev.Pos.String()), slog.String("incident", msg))
		return nil
	}
	return r.wrapEvent(ev, "", msg, ErrUpstreamIncident)
}

// isFunctionCall reports whether q, a statement logged in a query event, is
// a call of a stored function that wrote data: the binlog holds no SELECT
// or DO otherwise.
func isFunctionCall(q string) bool {
	f := strings.Fields(strings.TrimLeft(q, "( \t\r\n"))
	return len(f) > 0 && (strings.EqualFold(f[0], "SELECT") || strings.EqualFold(f[0], "DO") ||
		strings.HasPrefix(strings.ToUpper(f[0]), "SELECT(") || strings.HasPrefix(strings.ToUpper(f[0]), "DO("))
}

// triggerDDL matches CREATE TRIGGER and DROP TRIGGER (with their optional
// clauses: OR REPLACE, DEFINER, IF [NOT] EXISTS).
var triggerDDL = regexp.MustCompile(`(?is)^\s*(CREATE|DROP)\b.*?\bTRIGGER\b`)

// statementErr is the error for a row change logged as the statement q at
// ev, unless the host asked to Skip it (nil then).
func (r *syncRun) statementErr(ev *streamer.Event, table, q string, err error) error {
	if op, ok := r.s.takeOperator(ev.Pos, r.eventStart(ev)); ok && op.skip {
		r.s.log.Warn("skipping a row change logged as a statement, as asked", slog.String("pos", ev.Pos.String()), slog.String("query", truncate(q, 200)))
		return nil
	}
	return r.wrapEvent(ev, table, q, err)
}

// triggersWrite returns the error for a statement-logged change of table t
// when t has triggers upstream (or that cannot be told): what they wrote is
// not in the binlog.
func (r *syncRun) triggersWrite(ctx context.Context, ev *streamer.Event, t schema.TableName, kind, q string) error {
	has, err := r.hasTriggers(ctx, t)
	name := t.Schema + "." + t.Name
	switch {
	case err != nil:
		return r.statementErr(ev, name, q, fmt.Errorf("%w: a %s of %s, which may have triggers (cannot ask the upstream: %v)", ErrStatementBinlog, kind, name, err))
	case has:
		return r.statementErr(ev, name, q, fmt.Errorf("%w: a %s of %s, whose triggers' changes are not in the binlog", ErrStatementBinlog, kind, name))
	}
	return nil
}

// hasTriggers reports whether the upstream has triggers on table t.
func (r *syncRun) hasTriggers(ctx context.Context, t schema.TableName) (bool, error) {
	if has, ok := r.triggers[t]; ok {
		return has, nil
	}
	if r.s.offline() {
		return false, fmt.Errorf("no upstream configured")
	}
	db, err := openUpstreamDB(r.s.cfg.Upstream)
	if err != nil {
		return false, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(qctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
		t.Schema, t.Name).Scan(&n); err != nil {
		return false, err
	}
	if r.triggers == nil {
		r.triggers = map[schema.TableName]bool{}
	}
	r.triggers[t] = n > 0
	return n > 0, nil
}
