package streamer

import (
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
// GTID) or at a BEGIN query, and ends at an XID event, at a COMMIT or
// ROLLBACK query, or right after its single statement when the GTID event
// says there is no terminating COMMIT (MariaDB FL_STANDALONE; on MySQL, a
// GTID event followed by a statement other than BEGIN, i.e. DDL).
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
}

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
		q := strings.TrimSpace(string(ev.Query))
		switch {
		case strings.EqualFold(q, "BEGIN"):
			if !t.inTxn {
				t.begin("")
			}
			t.sawBegin = true
			t.mysqlGTID = false
		case strings.EqualFold(q, "COMMIT"), strings.EqualFold(q, "ROLLBACK"):
			txnEnd = true
		case !t.inTxn:
			// A statement outside any transaction (no GTIDs on the
			// server): it is a transaction of its own.
			txnEnd = true
		case t.standalone, t.mysqlGTID && !t.sawBegin:
			txnEnd = true
		}
	case *replication.XIDEvent:
		txnEnd = true
	case *replication.PreviousGTIDsEvent:
		if t.gset == nil && !isArtificial(e.Header) {
			if s, perr := mysql.ParseMysqlGTIDSet(ev.GTIDSets); perr == nil {
				t.gset = s
				t.flavor = FlavorMySQL
			}
		}
	case *replication.MariadbGTIDListEvent:
		if t.gset == nil && !isArtificial(e.Header) {
			s := &mysql.MariadbGTIDSet{Sets: make(map[uint32]*mysql.MariadbGTID)}
			for i := range ev.GTIDs {
				if aerr := s.AddSet(&ev.GTIDs[i]); aerr != nil {
					return "", false, aerr
				}
			}
			t.gset = s
			t.flavor = FlavorMariaDB
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

func (t *txnTracker) begin(gtid string) {
	t.inTxn = true
	t.sawBegin = false
	t.standalone = false
	t.mysqlGTID = false
	t.currentGTID = gtid
}

// commit ends the open transaction and adds its GTID to the set.
func (t *txnTracker) commit() error {
	g := t.currentGTID
	t.inTxn, t.sawBegin, t.standalone, t.mysqlGTID, t.currentGTID = false, false, false, false, ""
	if g == "" || t.gset == nil {
		return nil
	}
	next := t.gset.Clone()
	if err := next.Update(g); err != nil {
		return err
	}
	t.gset = next
	return nil
}

// reset forgets a half-read transaction, as after a reconnect that resumes
// at the last transaction end.
func (t *txnTracker) reset() {
	t.inTxn, t.sawBegin, t.standalone, t.mysqlGTID, t.currentGTID = false, false, false, false, ""
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
