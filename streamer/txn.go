package streamer

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

// txnTracker follows transaction boundaries and the executed GTID set through
// a stream of events. Both readers use it, so that they agree on what a
// transaction is and on the GTID set at each position.
//
// A transaction starts at a GTID event (MySQL GTID or anonymous GTID, MariaDB
// GTID) or at a BEGIN (or MySQL's XA START) query, and ends at an XID event,
// at an XA_PREPARE event, at a COMMIT or ROLLBACK query, or right after its
// single statement when the GTID event says there is no terminating COMMIT
// (MariaDB FL_STANDALONE; on MySQL, a GTID event followed by a statement
// other than BEGIN, i.e. DDL).
//
// An XA transaction is two transactions in the binlog: its changes, from
// its GTID event to the XA_PREPARE event that ends them (the GTID counts as
// executed there, as in the server's own GTID position), and later its
// outcome, XA COMMIT or XA ROLLBACK, a statement of its own.
type txnTracker struct {
	flavor string
	// gset is the executed set at the last transaction end. It is replaced,
	// never modified, so events can share it.
	gset mysql.GTIDSet

	inTxn       bool
	sawBegin    bool   // a BEGIN query was seen in this transaction
	standalone  bool   // MariaDB: no COMMIT will follow
	mysqlGTID   bool   // MySQL: GTID seen, the first query decides BEGIN vs DDL
	currentGTID string // GTID of the open transaction, "" if anonymous

	// inPlace is set by the raw reader: gset belongs to the tracker alone
	// and a commit adds to it in place instead of replacing it (no
	// allocation per transaction); the open transaction's GTID is kept in
	// cur, never formatted as a string. version counts changes of gset.
	inPlace bool
	cur     gtidRef
	version uint64

	// The raw path's Transaction_payload decoding: the decoder, and the
	// format description's post-header lengths (nil: the defaults).
	payload    payloadDecoder
	postHeader []byte
}

// gtidRef is a transaction's GTID in decoded form, kept without allocating.
type gtidRef struct {
	kind   gtidKind
	domain uint32 // MariaDB
	server uint32 // MariaDB
	seq    uint64 // MariaDB
	sid    [16]byte
	tag    mysql.Tag // MySQL tagged GTIDs
	gno    int64
}

type gtidKind uint8

const (
	gtidNone    gtidKind = iota // anonymous or no GTID
	gtidMariaDB                 // domain-server-seq
	gtidMySQL                   // uuid[:tag]:gno
)

func newTxnTracker(flavor string, gset mysql.GTIDSet) *txnTracker {
	return &txnTracker{flavor: flavor, gset: gset}
}

// observe updates the tracker with e and reports the GTID of the transaction
// e belongs to and whether e ends it. It returns an error only when a GTID
// cannot be added to the set (a corrupt or inconsistent stream).
func (t *txnTracker) observe(e *replication.BinlogEvent) (gtid string, txnEnd bool, err error) {
	switch ev := e.Event.(type) {
	case *replication.GTIDEvent:
		t.begin(mysqlGTIDString(ev.SID, ev.Tag, ev.GNO))
		t.mysqlGTID = true
	case *replication.GtidTaggedLogEvent:
		t.begin(mysqlGTIDString(ev.SID, ev.Tag, ev.GNO))
		t.mysqlGTID = true
	case *replication.MariadbGTIDEvent:
		t.begin(ev.GTID.String())
		t.standalone = ev.IsStandalone()
	case *replication.QueryEvent:
		txnEnd = t.query(ev.Query)
	case *replication.XIDEvent:
		txnEnd = true
	case *replication.GenericEvent:
		// go-mysql leaves XA_PREPARE_LOG_EVENT undecoded.
		txnEnd = e.Header.EventType == replication.XA_PREPARE_LOG_EVENT
	case *replication.PreviousGTIDsEvent, *replication.MariadbGTIDListEvent:
		if !isArtificial(e.Header) {
			if err := t.fileGTIDSet(e.Event); err != nil {
				return "", false, err
			}
		}
	}
	gtid = t.currentGTID
	if !t.inTxn {
		gtid = ""
	}
	if txnEnd {
		err = t.commit()
	}
	return gtid, txnEnd, err
}

// query updates the tracker with a query event's statement and reports
// whether it ends the transaction. Both the decoded and the raw path use it.
func (t *txnTracker) query(stmt []byte) (txnEnd bool) {
	q := bytes.TrimSpace(stmt)
	switch {
	case bytes.EqualFold(q, []byte("BEGIN")), isXAStart(q):
		if !t.inTxn {
			t.begin("")
		}
		t.sawBegin = true
		t.mysqlGTID = false
	case bytes.EqualFold(q, []byte("COMMIT")), bytes.EqualFold(q, []byte("ROLLBACK")):
		txnEnd = true
	case !t.inTxn:
		// A statement outside any transaction (no GTIDs on the
		// server): it is a transaction of its own.
		txnEnd = true
	case t.standalone, t.mysqlGTID && !t.sawBegin:
		txnEnd = true
	}
	return txnEnd
}

// isXAStart reports whether q is XA START (or XA BEGIN), which opens an XA
// transaction as BEGIN does (MySQL logs it; MariaDB folds it into the GTID
// event).
func isXAStart(q []byte) bool {
	f := bytes.Fields(q)
	return len(f) >= 2 && bytes.EqualFold(f[0], []byte("XA")) &&
		(bytes.EqualFold(f[1], []byte("START")) || bytes.EqualFold(f[1], []byte("BEGIN")))
}

// fileGTIDSet takes the executed set from the previous-GTIDs (MySQL) or
// GTID-list (MariaDB) event at a file's start, when no set is known yet.
func (t *txnTracker) fileGTIDSet(e replication.Event) error {
	if t.gset != nil {
		return nil
	}
	switch ev := e.(type) {
	case *replication.PreviousGTIDsEvent:
		if s, perr := mysql.ParseMysqlGTIDSet(ev.GTIDSets); perr == nil {
			t.gset = s
			t.flavor = FlavorMySQL
			t.version++
		}
	case *replication.MariadbGTIDListEvent:
		// One GTID per domain, the last one listed winning, as
		// MariadbGTIDSet.AddSet would do; but AddSet logs each one out
		// of order to the global logger, and a damaged list can hold
		// many.
		s := &mysql.MariadbGTIDSet{Sets: make(map[uint32]*mysql.MariadbGTID, len(ev.GTIDs))}
		for i := range ev.GTIDs {
			g := ev.GTIDs[i]
			s.Sets[g.DomainID] = &g
		}
		t.gset = s
		t.flavor = FlavorMariaDB
		t.version++
	}
	return nil
}

func (t *txnTracker) begin(gtid string) {
	t.inTxn = true
	t.sawBegin = false
	t.standalone = false
	t.mysqlGTID = false
	t.currentGTID = gtid
	t.cur = gtidRef{}
}

// beginRef starts a transaction whose GTID is held in decoded form (raw
// path).
func (t *txnTracker) beginRef(g gtidRef) {
	t.begin("")
	t.cur = g
}

// commit ends the open transaction and adds its GTID to the set.
func (t *txnTracker) commit() error {
	g, ref := t.currentGTID, t.cur
	t.reset()
	if t.gset == nil {
		return nil
	}
	if t.inPlace {
		return t.addInPlace(ref)
	}
	if g == "" {
		return nil
	}
	next := t.gset.Clone()
	if err := next.Update(g); err != nil {
		return err
	}
	t.gset = next
	t.version++
	return nil
}

// addInPlace adds g to the tracker's own set without copying it.
func (t *txnTracker) addInPlace(g gtidRef) error {
	switch g.kind {
	case gtidMariaDB:
		s, ok := t.gset.(*mysql.MariadbGTIDSet)
		if !ok {
			return fmt.Errorf("MariaDB GTID %d-%d-%d in a %T", g.domain, g.server, g.seq, t.gset)
		}
		// As MariadbGTIDSet.AddSet, without its log line for a GTID out
		// of order (the global logger is not ours to write to).
		if cur, ok := s.Sets[g.domain]; ok {
			cur.ServerID, cur.SequenceNumber = g.server, g.seq
		} else {
			s.Sets[g.domain] = &mysql.MariadbGTID{DomainID: g.domain, ServerID: g.server, SequenceNumber: g.seq}
		}
	case gtidMySQL:
		s, ok := t.gset.(*mysql.MysqlGTIDSet)
		if !ok {
			return fmt.Errorf("MySQL GTID %s:%d in a %T", uuid.UUID(g.sid), g.gno, t.gset)
		}
		s.AddGTIDWithTag(uuid.UUID(g.sid), g.tag, g.gno)
	default:
		return nil
	}
	t.version++
	return nil
}

// reset forgets a half-read transaction, as after a reconnect that resumes
// at the last transaction end.
func (t *txnTracker) reset() {
	t.inTxn, t.sawBegin, t.standalone, t.mysqlGTID, t.currentGTID = false, false, false, false, ""
	t.cur = gtidRef{}
}

func mysqlGTIDString(sid []byte, tag mysql.Tag, gno int64) string {
	u, err := uuid.FromBytes(sid)
	if err != nil || (u == uuid.UUID{}) {
		return "" // anonymous GTID
	}
	var b strings.Builder
	b.WriteString(u.String())
	b.WriteByte(':')
	if ts := tag.String(); ts != "" {
		b.WriteString(ts)
		b.WriteByte(':')
	}
	b.WriteString(strconv.FormatInt(gno, 10))
	return b.String()
}

// isArtificial reports whether the server generated the event for this
// connection only (fake rotate, re-sent format description, heartbeat): it
// occupies no space in the binlog file.
func isArtificial(h *replication.EventHeader) bool {
	if h.Flags&replication.LOG_EVENT_ARTIFICIAL_F != 0 || h.LogPos == 0 {
		return true
	}
	switch h.EventType {
	case replication.HEARTBEAT_EVENT, replication.HEARTBEAT_LOG_EVENT_V2:
		return true
	}
	return false
}

// observeRaw is observe for an event the raw reader has not decoded: typ
// and serverID from its header, body its bytes between the header and the
// checksum, raw the whole event. It decodes only the fields framing needs;
// the rare event types that carry GTID sets or compressed statements are
// decoded by p (go-mysql's parser, which has seen the format description).
// The tracker must be inPlace.
func (t *txnTracker) observeRaw(typ replication.EventType, serverID uint32, body, raw []byte,
	p *replication.BinlogParser) (txnEnd bool, err error) {
	switch typ {
	case replication.MARIADB_GTID_EVENT:
		// seq_no(8) domain_id(4) flags(1) ...
		if len(body) < 13 {
			return false, fmt.Errorf("MariaDB GTID event of %d bytes", len(body))
		}
		t.beginRef(gtidRef{kind: gtidMariaDB, seq: le64(body), domain: le32(body[8:]), server: serverID})
		t.standalone = body[12]&replication.BINLOG_MARIADB_FL_STANDALONE != 0
	case replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT:
		// flags(1) sid(16) gno(8) ...
		if len(body) < 25 {
			return false, fmt.Errorf("GTID event of %d bytes", len(body))
		}
		g := gtidRef{kind: gtidMySQL, gno: int64(le64(body[17:]))}
		copy(g.sid[:], body[1:17])
		if g.sid == ([16]byte{}) {
			g = gtidRef{} // anonymous
		}
		t.beginRef(g)
		t.mysqlGTID = true
	case replication.QUERY_EVENT:
		// thread_id(4) exec_time(4) schema_len(1) error_code(2)
		// status_len(2) status schema NUL statement
		if len(body) < 13 {
			return false, fmt.Errorf("query event of %d bytes", len(body))
		}
		at := 13 + int(le16(body[11:])) + int(body[8]) + 1
		if at > len(body) {
			return false, fmt.Errorf("query event of %d bytes: statement would start at %d", len(body), at)
		}
		txnEnd = t.query(body[at:])
	case replication.XID_EVENT, replication.XA_PREPARE_LOG_EVENT:
		txnEnd = true
	case replication.TRANSACTION_PAYLOAD_EVENT:
		// The inner events commit (or not) themselves.
		return t.observeRawPayload(body)
	case replication.GTID_TAGGED_LOG_EVENT, replication.MARIADB_QUERY_COMPRESSED_EVENT,
		replication.PREVIOUS_GTIDS_EVENT, replication.MARIADB_GTID_LIST_EVENT:
		// go-mysql trusts the counts in these events: check them first.
		if perr := checkDecodable(typ, body, nil); perr != nil {
			return false, perr
		}
		be, perr := parseSafe(p, raw)
		if perr != nil {
			return false, perr
		}
		e := be.Event
		switch ev := e.(type) {
		case *replication.GtidTaggedLogEvent:
			g := gtidRef{kind: gtidMySQL, tag: ev.Tag, gno: ev.GNO}
			copy(g.sid[:], ev.SID)
			if len(ev.SID) != 16 || g.sid == ([16]byte{}) {
				g = gtidRef{}
			}
			t.beginRef(g)
			t.mysqlGTID = true
		case *replication.QueryEvent:
			txnEnd = t.query(ev.Query)
		case *replication.PreviousGTIDsEvent, *replication.MariadbGTIDListEvent:
			if err := t.fileGTIDSet(e); err != nil {
				return false, err
			}
		}
	}
	if txnEnd {
		err = t.commit()
	}
	return txnEnd, err
}

// observeRawPayload observes the events a Transaction_payload event holds
// (body without header and checksum) and reports whether the transaction
// ends with it, as it must: see checkPayloadTxn.
func (t *txnTracker) observeRawPayload(body []byte) (txnEnd bool, err error) {
	events, err := t.payload.decode(body, t.postHeader)
	if err != nil {
		return false, err
	}
	err = innerEvents(events, func(ev []byte, last bool) error {
		typ := replication.EventType(ev[4])
		// Inner events are never of the types observeRaw decodes with
		// go-mysql's parser (decode refuses them): no parser needed.
		end, err := t.observeRaw(typ, le32(ev[5:]), ev[eventHeaderSize:], ev, nil)
		if err != nil {
			return err
		}
		txnEnd = end
		return checkPayloadTxn(typ, end, last)
	})
	return txnEnd, err
}

// checkPayloadTxn checks an inner event of a Transaction_payload event:
// MySQL puts exactly one transaction in a payload, ending with its last
// event. A transaction that ends before it, or not at all, would have the
// readers report a transaction end inside the payload, at a position that
// is no place to resume from, or none at all.
func checkPayloadTxn(typ replication.EventType, txnEnd, last bool) error {
	switch {
	case txnEnd && !last:
		return fmt.Errorf("%w: its transaction ends at a %s event before its last event", errPayload, typ)
	case last && !txnEnd:
		return fmt.Errorf("%w: its last event, %s, does not end its transaction", errPayload, typ)
	}
	return nil
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

// parseSafe is p.Parse turning a panic of go-mysql's decoders (which index
// without checking on some malformed events) into an error.
func parseSafe(p *replication.BinlogParser, raw []byte) (be *replication.BinlogEvent, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("undecodable event: %v", x)
		}
	}()
	return p.Parse(raw)
}
