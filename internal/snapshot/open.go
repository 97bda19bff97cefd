package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// Point is the binlog point a snapshot reads at: every transaction the
// binlog holds before it is visible, none after.
type Point struct {
	File   string
	Offset uint64
	// GTID is the upstream's GTID set at the point, in its text form ("" when
	// the server logs no GTIDs).
	GTID string
	// Method says how the connections were brought to one point: "no-lock"
	// (they agreed at once), "backup-stage" (MariaDB's BACKUP STAGE
	// BLOCK_COMMIT held while they opened), "flush-tables" (MySQL's FLUSH
	// TABLES WITH READ LOCK held while they opened) or "single" (one
	// connection: the lock was refused).
	Method string
	// Blocked is how long commits on the upstream were blocked (zero without
	// a lock).
	Blocked time.Duration
	// GTIDFromBinlog is true when the GTID set was read from the binlog
	// (writes kept the server's own variable moving while it was sampled).
	GTIDFromBinlog bool
}

// Snapshot is a set of connections, each inside a read-only transaction that
// sees the upstream at Point.
type Snapshot struct {
	Conns []*sql.Conn
	Point Point
}

// ErrNoConsistentPoint means the connections could not be brought to one
// binlog point.
var ErrNoConsistentPoint = errors.New("snapshot: connections did not agree on one binlog point")

// GTIDResolver returns the GTID set at a binlog point by reading the binlog
// (used when the server's variable cannot be sampled at the point).
type GTIDResolver func(ctx context.Context, file string, offset uint64) (string, error)

// LockWaitTimeout is the snapshot connections' lock_wait_timeout. A DDL
// on a table one connection has read waits for the end of its transaction,
// and a connection that reads the table after it waits behind the DDL: the
// copy, which waits for that connection, would never end (no server sees
// the cycle). With the timeout, the read fails with ER_LOCK_WAIT_TIMEOUT
// and the copy stops with an error naming the table; the DDL goes on.
var LockWaitTimeout = time.Minute

// noLockAttempts is how many times Open tries to open every connection's
// snapshot at one point without any lock before it takes one.
const noLockAttempts = 3

// Open opens n connections from db (n >= 1) and starts on each a
// transaction WITH CONSISTENT SNAPSHOT, all at the same binlog point.
//
// MariaDB: the snapshots are opened without any lock, and their
// binlog_snapshot_file/position compared; if they differ (commits landed in
// between) after a few tries, BACKUP STAGE START + BLOCK_COMMIT is held while
// they open again (commits wait for a few milliseconds: n START TRANSACTION
// statements and two status reads; Point.Blocked says how long). If the
// user lacks the privilege for BACKUP STAGE, one connection is used. The
// GTID set is @@gtid_binlog_pos sampled while the binlog end equalled the
// snapshot's point (under the lock, or bracketed by two equal SHOW MASTER
// STATUS); if no quiet moment comes, resolve reads it from the binlog.
//
// MySQL: FLUSH TABLES WITH READ LOCK is held while the snapshots open and
// SHOW MASTER STATUS and @@gtid_executed are read (no binlog_snapshot_*
// status exists there).
func Open(ctx context.Context, db *sql.DB, n int, mariadb bool, resolve GTIDResolver) (*Snapshot, error) {
	if n < 1 {
		return nil, fmt.Errorf("snapshot: %d connections", n)
	}
	ctl, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	s := &Snapshot{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		s.Conns = append(s.Conns, c)
		// Text in UTC for TIMESTAMP; long writes: the reader may wait on
		// the sink between rows.
		for _, q := range []string{
			"SET SESSION time_zone = '+00:00'",
			"SET SESSION net_write_timeout = 3600",
			"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			fmt.Sprintf("SET SESSION lock_wait_timeout = %d", max(1, int(LockWaitTimeout/time.Second))),
		} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("snapshot: %s: %w", q, err)
			}
		}
	}
	if !mariadb {
		if err := s.openMySQL(ctx, ctl); err != nil {
			return nil, err
		}
		ok = true
		return s, nil
	}
	for range noLockAttempts {
		m1, g1, err := masterStatus(ctx, ctl)
		if err != nil {
			return nil, err
		}
		p, same, err := s.begin(ctx)
		if err != nil {
			return nil, err
		}
		if same {
			m2, g2, err := masterStatus(ctx, ctl)
			if err != nil {
				return nil, err
			}
			s.Point = p
			s.Point.Method = "no-lock"
			if m1 == m2 && m1 == (binlogPos{p.File, p.Offset}) && g1 == g2 {
				s.Point.GTID = g1
			} else if err := s.resolveGTID(ctx, resolve); err != nil {
				return nil, err
			}
			ok = true
			return s, nil
		}
		if err := s.rollback(ctx); err != nil {
			return nil, err
		}
	}
	// Commits kept landing between the opens: block them for a moment.
	if _, err := ctl.ExecContext(ctx, "BACKUP STAGE START"); err != nil {
		if !IsAccessDenied(err) {
			return nil, fmt.Errorf("snapshot: BACKUP STAGE START: %w", err)
		}
		return s.single(ctx, ctl, resolve, &ok)
	}
	end := func() error {
		_, err := ctl.ExecContext(context.WithoutCancel(ctx), "BACKUP STAGE END")
		return err
	}
	// Commits wait from the moment BLOCK_COMMIT is asked for.
	t0 := time.Now()
	if _, err := ctl.ExecContext(ctx, "BACKUP STAGE BLOCK_COMMIT"); err != nil {
		_ = end()
		return nil, fmt.Errorf("snapshot: BACKUP STAGE BLOCK_COMMIT: %w", err)
	}
	p, same, err := s.begin(ctx)
	var m binlogPos
	var g string
	if err == nil {
		m, g, err = masterStatus(ctx, ctl)
	}
	endErr := end()
	blocked := time.Since(t0)
	if err != nil {
		return nil, err
	}
	if endErr != nil {
		return nil, fmt.Errorf("snapshot: BACKUP STAGE END: %w", endErr)
	}
	if !same || m != (binlogPos{p.File, p.Offset}) {
		return nil, fmt.Errorf("%w: under BACKUP STAGE BLOCK_COMMIT (binlog end %s:%d, snapshot %s:%d)", ErrNoConsistentPoint, m.file, m.offset, p.File, p.Offset)
	}
	s.Point = p
	s.Point.GTID, s.Point.Method, s.Point.Blocked = g, "backup-stage", blocked
	ok = true
	return s, nil
}

// single falls back to one connection when no lock may be taken.
func (s *Snapshot) single(ctx context.Context, ctl *sql.Conn, resolve GTIDResolver, ok *bool) (*Snapshot, error) {
	for _, c := range s.Conns[1:] {
		c.Close()
	}
	s.Conns = s.Conns[:1]
	m1, g1, err := masterStatus(ctx, ctl)
	if err != nil {
		return nil, err
	}
	p, _, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	m2, g2, err := masterStatus(ctx, ctl)
	if err != nil {
		return nil, err
	}
	s.Point = p
	s.Point.Method = "single"
	if m1 == m2 && m1 == (binlogPos{p.File, p.Offset}) && g1 == g2 {
		s.Point.GTID = g1
	} else if err := s.resolveGTID(ctx, resolve); err != nil {
		return nil, err
	}
	*ok = true
	return s, nil
}

func (s *Snapshot) resolveGTID(ctx context.Context, resolve GTIDResolver) error {
	if resolve == nil {
		return fmt.Errorf("%w: the GTID set at %s:%d is unknown", ErrNoConsistentPoint, s.Point.File, s.Point.Offset)
	}
	g, err := resolve(ctx, s.Point.File, s.Point.Offset)
	if err != nil {
		return fmt.Errorf("snapshot: GTID set at %s:%d from the binlog: %w", s.Point.File, s.Point.Offset, err)
	}
	s.Point.GTID, s.Point.GTIDFromBinlog = g, true
	return nil
}

// openMySQL opens the snapshots under FLUSH TABLES WITH READ LOCK.
func (s *Snapshot) openMySQL(ctx context.Context, ctl *sql.Conn) error {
	if _, err := ctl.ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		return fmt.Errorf("snapshot: FLUSH TABLES WITH READ LOCK: %w", err)
	}
	t0 := time.Now()
	var err error
	for _, c := range s.Conns {
		if _, err = c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			break
		}
	}
	var m binlogPos
	var g sql.NullString
	if err == nil {
		m, err = showMaster(ctx, ctl)
	}
	if err == nil {
		err = ctl.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&g)
	}
	_, unlockErr := ctl.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
	if err != nil {
		return fmt.Errorf("snapshot: open under FLUSH TABLES WITH READ LOCK: %w", err)
	}
	if unlockErr != nil {
		return fmt.Errorf("snapshot: UNLOCK TABLES: %w", unlockErr)
	}
	s.Point = Point{File: m.file, Offset: m.offset, GTID: g.String, Method: "flush-tables", Blocked: time.Since(t0)}
	return nil
}

type binlogPos struct {
	file   string
	offset uint64
}

// begin starts the transaction on every connection and reads its binlog
// point; same is true when they all agree.
func (s *Snapshot) begin(ctx context.Context) (Point, bool, error) {
	var first Point
	same := true
	for i, c := range s.Conns {
		if _, err := c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			return first, false, fmt.Errorf("snapshot: START TRANSACTION WITH CONSISTENT SNAPSHOT: %w", err)
		}
		p, err := snapshotStatus(ctx, c)
		if err != nil {
			return first, false, err
		}
		if i == 0 {
			first = p
		} else if p.File != first.File || p.Offset != first.Offset {
			same = false
		}
	}
	return first, same, nil
}

func (s *Snapshot) rollback(ctx context.Context) error {
	for _, c := range s.Conns {
		if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
			return err
		}
	}
	return nil
}

// Close ends the transactions and returns the connections to the pool.
func (s *Snapshot) Close() {
	for _, c := range s.Conns {
		_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		c.Close()
	}
	s.Conns = nil
}

// snapshotStatus reads MariaDB's binlog_snapshot_file/position of the
// connection's consistent snapshot.
func snapshotStatus(ctx context.Context, c *sql.Conn) (Point, error) {
	rows, err := c.QueryContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return Point{}, fmt.Errorf("snapshot: SHOW STATUS LIKE 'binlog_snapshot_%%': %w", err)
	}
	defer rows.Close()
	var p Point
	for rows.Next() {
		var name, val string
		if err := rows.Scan(&name, &val); err != nil {
			return Point{}, err
		}
		switch name {
		case "Binlog_snapshot_file":
			p.File = val
		case "Binlog_snapshot_position":
			if _, err := fmt.Sscan(val, &p.Offset); err != nil {
				return Point{}, fmt.Errorf("snapshot: binlog_snapshot_position %q: %w", val, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return Point{}, err
	}
	if p.File == "" {
		return Point{}, errors.New("snapshot: the server reports no binlog_snapshot_file: is the binlog on?")
	}
	return p, nil
}

// masterStatus reads the binlog end and @@gtid_binlog_pos (MariaDB).
func masterStatus(ctx context.Context, c *sql.Conn) (binlogPos, string, error) {
	m, err := showMaster(ctx, c)
	if err != nil {
		return m, "", err
	}
	var g string
	if err := c.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&g); err != nil {
		return m, "", fmt.Errorf("snapshot: @@gtid_binlog_pos: %w", err)
	}
	return m, g, nil
}

func showMaster(ctx context.Context, c *sql.Conn) (binlogPos, error) {
	rows, err := c.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return binlogPos{}, fmt.Errorf("snapshot: SHOW MASTER STATUS: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return binlogPos{}, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return binlogPos{}, err
		}
		return binlogPos{}, errors.New("snapshot: SHOW MASTER STATUS is empty: is the binlog on?")
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return binlogPos{}, err
	}
	var m binlogPos
	m.file = string(vals[0])
	if _, err := fmt.Sscan(string(vals[1]), &m.offset); err != nil {
		return binlogPos{}, fmt.Errorf("snapshot: SHOW MASTER STATUS position %q: %w", vals[1], err)
	}
	return m, rows.Err()
}

// IsAccessDenied reports a missing privilege (ER_SPECIFIC_ACCESS_DENIED_ERROR
// and kin).
func IsAccessDenied(err error) bool {
	var me *gomysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1227, 1044, 1045, 1142:
		return true
	}
	return false
}
