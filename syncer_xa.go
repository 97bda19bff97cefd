package dmworker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/streamer"
)

// XA transactions.
//
// MariaDB (10.5 and later) logs an XA transaction's changes when it is
// prepared, not when it commits:
//
//	GTID (flags PREPARED_XA, the xid)  rows ...  Query "XA END xid"  XA_PREPARE "xid"
//	... other transactions ...
//	GTID (flags COMPLETED_XA, standalone)  Query "XA COMMIT xid"   (or XA ROLLBACK)
//
// XA COMMIT ... ONE PHASE is logged as a plain transaction (BEGIN ... XID);
// MySQL logs it as XA_PREPARE with its one-phase byte set. Applying the rows
// at the prepare would leave rows downstream that an XA ROLLBACK never lets
// the upstream commit. So the syncer keeps a prepared XA's changes in
// memory, by xid, applies them when its XA COMMIT comes (at the commit's
// position, where the upstream makes them visible: the prepared transaction
// holds its row locks until then, so no transaction in between touched its
// rows) and drops them at its XA ROLLBACK. While one is open, checkpoints
// stay before the oldest open one (the same floor a held shard DDL uses,
// their SafeUntil moving on): a restart reads its rows again and replays
// what came after in safe mode.
//
// An XA COMMIT whose prepare came before the position the task started at
// (a snapshot or a Start taken while the XA was prepared) has no rows here
// to apply: the syncer stops there with ErrXAPreparedBeforeStart. Skip(pos)
// passes over it.

// ErrXAPreparedBeforeStart is an XA COMMIT of an XA transaction whose XA
// PREPARE (where the binlog holds its rows) lies before the position the
// task started reading at: its rows cannot be applied. The SyncError names
// the XA COMMIT and its position. Apply the transaction's rows downstream
// by hand and Skip the event, or start the task again from before the
// prepare.
var ErrXAPreparedBeforeStart = errors.New("dmworker: XA COMMIT of a transaction prepared before the task's start")

// mariadbFlPreparedXA is the MariaDB GTID event flag of a prepared XA
// transaction's changes (FL_PREPARED_XA; go-mysql has no name for it).
const mariadbFlPreparedXA = 0x40

// xaTxn is a prepared XA transaction's changes, kept until its outcome.
type xaTxn struct {
	floor shardFloor // the checkpoint before its GTID event
	rows  [][]Change // one slice per rows event
	xid   string
}

// xaState is a run's XA transactions: the one being read and those
// prepared, oldest first.
type xaState struct {
	open     *xaTxn
	prepared []*xaTxn
}

// xaBegin starts keeping a prepared XA's changes, at its GTID event; the
// checkpoint stays before it from now on.
func (r *syncRun) xaBegin() error {
	b := r.w.schemaState()
	if b == nil {
		return r.s.wrap(r.lastTxnEnd, "", "", errors.New("the schema before an XA transaction could not be recorded"))
	}
	r.xa.open = &xaTxn{floor: shardFloor{pos: r.lastTxnEnd.Clone(), schema: b}}
	r.xaFloor()
	return nil
}

// xaRows keeps the changes in r.changes for the open XA transaction.
func (r *syncRun) xaRows() {
	r.xa.open.rows = append(r.xa.open.rows, slices.Clone(r.changes))
	clear(r.changes)
	r.changes = r.changes[:0]
}

// xaPrepared ends the open XA transaction's changes at its XA_PREPARE
// event: they wait for the outcome, or, for a one-phase commit, are
// applied now.
func (r *syncRun) xaPrepared(ctx context.Context, ev *streamer.Event) error {
	x := r.xa.open
	r.xa.open = nil
	xid, onePhase, err := xaPrepareXID(ev.RawData)
	if err != nil {
		return r.wrapEvent(ev, "", "XA PREPARE", err)
	}
	if x == nil {
		// No GTID event said PREPARED_XA (MySQL's XA START): the rows went
		// the ordinary way; nothing to keep.
		if !onePhase {
			return r.wrapEvent(ev, "", "XA PREPARE "+xid, fmt.Errorf("an XA transaction prepared without a MariaDB PREPARED_XA GTID event: its rows were not kept apart"))
		}
		return nil
	}
	x.xid = xid
	if onePhase {
		r.xaFloor()
		return r.xaApply(ctx, ev, x)
	}
	r.xa.prepared = append(r.xa.prepared, x)
	r.s.log.Info("XA transaction prepared: its rows wait for its XA COMMIT", slog.String("xid", xid),
		slog.String("pos", ev.Pos.String()), slog.Int("open", len(r.xa.prepared)))
	r.xaFloor()
	return nil
}

// xaOutcome handles an XA COMMIT or XA ROLLBACK query; it reports whether
// q is one.
func (r *syncRun) xaOutcome(ctx context.Context, ev *streamer.Event, q string) (bool, error) {
	commit, xid, ok := parseXAOutcome(q)
	if !ok {
		return false, nil
	}
	i := slices.IndexFunc(r.xa.prepared, func(x *xaTxn) bool { return x.xid == xid })
	if i < 0 {
		if !commit {
			return true, nil // nothing of it was applied
		}
		if op, ok := r.s.takeOperator(ev.Pos, r.eventStart(ev)); ok && op.skip {
			r.s.log.Warn("skipping XA COMMIT as asked", slog.String("pos", ev.Pos.String()), slog.String("query", q))
			return true, nil
		}
		return true, r.wrapEvent(ev, "", q, fmt.Errorf("%w: xid %s", ErrXAPreparedBeforeStart, xid))
	}
	x := r.xa.prepared[i]
	r.xa.prepared = slices.Delete(r.xa.prepared, i, i+1)
	r.xaFloor()
	if !commit {
		r.s.log.Info("XA transaction rolled back: its rows are dropped", slog.String("xid", xid), slog.String("pos", ev.Pos.String()))
		return true, nil
	}
	return true, r.xaApply(ctx, ev, x)
}

// xaApply applies a committed XA transaction's changes, as read at ev.
func (r *syncRun) xaApply(ctx context.Context, ev *streamer.Event, x *xaTxn) error {
	for _, ch := range x.rows {
		r.changes = append(r.changes[:0], ch...)
		if err := r.applyChanges(ctx, ev, false); err != nil {
			return err
		}
	}
	return nil
}

// xaFloor keeps checkpoints before the oldest open XA transaction.
func (r *syncRun) xaFloor() {
	var f *shardFloor
	switch {
	case len(r.xa.prepared) > 0:
		f = &r.xa.prepared[0].floor
	case r.xa.open != nil:
		f = &r.xa.open.floor
	}
	r.w.xaFloor = f
	if f == nil {
		r.s.xaFloor.Store(nil)
	} else {
		p := f.pos
		r.s.xaFloor.Store(&p)
	}
}

// xaPrepareXID decodes an XA_PREPARE event (raw: its bytes, header and
// checksum included): one_phase(1) format_id(4) gtrid_length(4)
// bqual_length(4) data. The xid comes as MariaDB writes it in XA COMMIT.
func xaPrepareXID(raw []byte) (xid string, onePhase bool, err error) {
	const header = 19
	if len(raw) < header+13 {
		return "", false, fmt.Errorf("XA_PREPARE event of %d bytes", len(raw))
	}
	b := raw[header:]
	format := binary.LittleEndian.Uint32(b[1:])
	gl, bl := binary.LittleEndian.Uint32(b[5:]), binary.LittleEndian.Uint32(b[9:])
	if gl > 64 || bl > 64 || len(b) < 13+int(gl+bl) {
		return "", false, fmt.Errorf("XA_PREPARE event of %d bytes with xid lengths %d and %d", len(raw), gl, bl)
	}
	d := b[13:]
	return xidString(d[:gl], d[gl:gl+bl], uint64(format)), b[0] != 0, nil
}

// xidString is an xid in one form for both sources of it.
func xidString(gtrid, bqual []byte, format uint64) string {
	return fmt.Sprintf("X'%X',X'%X',%d", gtrid, bqual, format)
}

// parseXAOutcome parses XA COMMIT xid or XA ROLLBACK xid, where xid is
// gtrid [, bqual [, format_id]], each string a quoted or X” literal.
func parseXAOutcome(q string) (commit bool, xid string, ok bool) {
	f := strings.Fields(q)
	if len(f) < 3 || !strings.EqualFold(f[0], "XA") {
		return false, "", false
	}
	switch {
	case strings.EqualFold(f[1], "COMMIT"):
		commit = true
	case strings.EqualFold(f[1], "ROLLBACK"):
	default:
		return false, "", false
	}
	rest := strings.TrimSpace(q)
	rest = strings.TrimSpace(rest[len(f[0]):])
	rest = strings.TrimSpace(rest[len(f[1]):])
	var parts [][]byte
	format := uint64(1)
	for i := 0; i < 3 && rest != ""; i++ {
		if i == 2 {
			end := strings.IndexFunc(rest, func(c rune) bool { return c < '0' || c > '9' })
			if end < 0 {
				end = len(rest)
			}
			n, err := strconv.ParseUint(rest[:end], 10, 32)
			if err != nil {
				return false, "", false
			}
			format, rest = n, strings.TrimSpace(rest[end:])
			break
		}
		b, n, lok := xidLiteral(rest)
		if !lok {
			return false, "", false
		}
		parts = append(parts, b)
		rest = strings.TrimSpace(rest[n:])
		if !strings.HasPrefix(rest, ",") {
			break
		}
		rest = strings.TrimSpace(rest[1:])
	}
	if len(parts) == 0 {
		return false, "", false
	}
	if rest != "" && !strings.EqualFold(rest, "ONE PHASE") {
		return false, "", false
	}
	if len(parts) == 1 {
		parts = append(parts, nil)
	}
	return commit, xidString(parts[0], parts[1], format), true
}

// xidLiteral reads a string literal at the start of s: X'hex' or 'text'
// (with ” and backslash escapes); it returns its bytes and its length in s.
func xidLiteral(s string) ([]byte, int, bool) {
	if len(s) >= 3 && (s[0] == 'X' || s[0] == 'x') && s[1] == '\'' {
		end := strings.IndexByte(s[2:], '\'')
		if end < 0 {
			return nil, 0, false
		}
		b, err := hex.DecodeString(s[2 : 2+end])
		if err != nil {
			return nil, 0, false
		}
		return b, 3 + end, true
	}
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') {
		return nil, 0, false
	}
	quote := s[0]
	var b bytes.Buffer
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == quote && i+1 < len(s) && s[i+1] == quote:
			i++
			b.WriteByte(quote)
		case c == quote:
			return b.Bytes(), i + 1, true
		default:
			b.WriteByte(c)
		}
	}
	return nil, 0, false
}

// isXAQuery reports whether q is an XA statement.
func isXAQuery(q string) bool {
	return len(q) > 3 && strings.EqualFold(q[:2], "XA") && (q[2] == ' ' || q[2] == '\t' || q[2] == '\n')
}

// xaStart reports whether q (an XA statement) is XA START or XA BEGIN.
func xaStart(q string) bool {
	f := strings.Fields(q)
	return len(f) >= 2 && (strings.EqualFold(f[1], "START") || strings.EqualFold(f[1], "BEGIN"))
}

// isXAPrepare reports whether ev is an XA_PREPARE event.
func isXAPrepare(ev *streamer.Event) bool {
	return ev.Header != nil && ev.Header.EventType == replication.XA_PREPARE_LOG_EVENT
}
