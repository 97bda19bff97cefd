package dmworker

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/snapshot"
	"github.com/dmworker/dmworker/streamer"
)

// seedAttempts bounds how many times a fresh start reads the upstream's
// table definitions again because a DDL ran while it read them.
const seedAttempts = 8

// seedAtEnd is a fresh start's seed at the upstream's binlog end (no
// checkpoint, no SyncerConfig.Start): the table definitions read from the
// upstream now, and a position they are the definitions at. The
// definitions are read between two positions of the binlog's end, p1 (the
// one Run read first) and p2; when no DDL was logged between the two, they
// are those at p1, where the run starts. Otherwise they are read again from
// p2, up to seedAttempts times. Without this a DDL run upstream while the
// syncer started (a task started under a migration, say) left the tracker
// with the definition after the DDL and the stream before it: the DDL then
// came again, and the rows before it did not fit.
func (s *Syncer) seedAtEnd(ctx context.Context, p1 streamer.Position) (*schema.Tracker, streamer.Position, error) {
	db, err := openUpstreamDB(s.cfg.Upstream)
	if err != nil {
		return nil, p1, err
	}
	defer db.Close()
	master := func(ctx context.Context) (streamer.Position, error) {
		st, err := s.queryUpstream(ctx)
		return st.Master, err
	}
	read := func(ctx context.Context) (*schema.Tracker, error) { return seedTracker(ctx, db, s.rules) }
	return seedConsistent(ctx, db, s.log, p1, master, read)
}

// seedConsistent is seedAtEnd's loop: read the definitions (read), then
// the binlog's end (master), and look for a DDL logged in between (on db).
func seedConsistent(ctx context.Context, db *sql.DB, log *slog.Logger, p1 streamer.Position,
	master func(context.Context) (streamer.Position, error), read func(context.Context) (*schema.Tracker, error),
) (*schema.Tracker, streamer.Position, error) {
	for attempt := 1; ; attempt++ {
		t, err := read(ctx)
		if err != nil {
			return nil, p1, err
		}
		p2, err := master(ctx)
		if err != nil {
			return nil, p1, err
		}
		stmt, err := ddlBetween(ctx, db, p1, p2)
		if err != nil {
			if snapshot.IsAccessDenied(err) {
				log.Warn("cannot list the upstream's binlog events (grant BINLOG MONITOR or REPLICATION CLIENT): "+
					"the table definitions are taken as they are at the start position, unchecked",
					slog.String("pos", p1.String()), errAttr(err))
				return t, p1, nil
			}
			return nil, p1, fmt.Errorf("listing the upstream's binlog events from %s to %s: %w", p1, p2, err)
		}
		if stmt == "" {
			return t, p1, nil
		}
		if attempt == seedAttempts {
			return nil, p1, fmt.Errorf("a DDL ran on the upstream each of the %d times its table definitions were read (the last between %s and %s: %q): "+
				"start the task again when DDLs pause, or give the position and its schema (SyncerConfig.Start, WithStartSchema)",
				seedAttempts, p1, p2, stmt)
		}
		log.Info("a DDL ran upstream while its table definitions were read: reading them again",
			slog.String("from", p1.String()), slog.String("to", p2.String()), slog.String("query", stmt))
		p1 = p2
	}
}

// ddlBetween returns the first statement logged as a query event (a DDL,
// or a statement-format DML) between the binlog positions from and to of
// the server db reaches, "" when there is none. Transaction control (BEGIN,
// COMMIT, XA) does not count.
func ddlBetween(ctx context.Context, db *sql.DB, from, to streamer.Position) (string, error) {
	if from.Name == "" || to.Name == "" || from.Compare(to) >= 0 {
		return "", nil
	}
	files := []string{from.Name}
	if from.Name != to.Name {
		all, err := binlogFiles(ctx, db)
		if err != nil {
			return "", err
		}
		files = files[:0]
		for _, f := range all {
			p := streamer.Position{Name: f}
			if p.Compare(streamer.Position{Name: from.Name}) >= 0 && p.Compare(streamer.Position{Name: to.Name}) <= 0 {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		q := "SHOW BINLOG EVENTS IN " + quoteString(f)
		if f == from.Name {
			q += fmt.Sprintf(" FROM %d", from.Offset)
		}
		stmt, err := firstQueryEvent(ctx, db, q, f, to)
		if err != nil || stmt != "" {
			return stmt, err
		}
	}
	return "", nil
}

// firstQueryEvent runs q (a SHOW BINLOG EVENTS of file) and returns the
// first query event's statement that is no transaction control, stopping
// at the position to.
func firstQueryEvent(ctx context.Context, db *sql.DB, q, file string, to streamer.Position) (string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	// Log_name, Pos, Event_type, Server_id, End_log_pos, Info.
	if len(cols) < 6 {
		return "", fmt.Errorf("SHOW BINLOG EVENTS returned %d columns", len(cols))
	}
	vals := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return "", err
		}
		var pos uint64
		if _, err := fmt.Sscan(string(vals[1]), &pos); err != nil {
			return "", fmt.Errorf("SHOW BINLOG EVENTS: position %q: %w", vals[1], err)
		}
		if file == to.Name && pos >= to.Offset {
			return "", rows.Err()
		}
		if string(vals[2]) == "Query" && !txnControl(string(vals[5])) {
			return string(vals[5]), nil
		}
	}
	return "", rows.Err()
}

// txnControl reports whether a query event's text (as SHOW BINLOG EVENTS
// shows it, perhaps after "use `db`; ") only delimits a transaction.
func txnControl(info string) bool {
	s := strings.TrimSpace(info)
	if strings.HasPrefix(strings.ToLower(s), "use ") {
		if i := strings.Index(s, ";"); i >= 0 {
			s = strings.TrimSpace(s[i+1:])
		}
	}
	w := strings.ToUpper(strings.TrimRight(strings.Fields(s + " x")[0], ";"))
	switch w {
	case "BEGIN", "COMMIT", "ROLLBACK", "XA", "SAVEPOINT", "RELEASE":
		return true
	}
	return false
}

// quoteString quotes s as an SQL string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}
