package streamer

import (
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

func ev(e replication.Event) *replication.BinlogEvent {
	return &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: 100}, Event: e}
}

// xaPrepareEv is an XA_PREPARE event as go-mysql leaves it: undecoded.
func xaPrepareEv() *replication.BinlogEvent {
	return &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: 100, EventType: replication.XA_PREPARE_LOG_EVENT},
		Event: &replication.GenericEvent{}}
}

func query(q string) *replication.BinlogEvent { return ev(&replication.QueryEvent{Query: []byte(q)}) }

// TestTxnTrackerMySQL frames MySQL transactions: GTID+BEGIN..XID, GTID+DDL,
// and anonymous GTIDs, and keeps the executed set.
func TestTxnTrackerMySQL(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	gtidEv := func(gno int64) *replication.BinlogEvent {
		return ev(&replication.GTIDEvent{SID: sid[:], GNO: gno})
	}
	start, _ := mysql.ParseMysqlGTIDSet(sid.String() + ":1-4")
	tr := newTxnTracker(FlavorMySQL, start)
	steps := []struct {
		e      *replication.BinlogEvent
		gtid   string
		txnEnd bool
		set    string
	}{
		{gtidEv(5), sid.String() + ":5", false, ":1-4"},
		{query("BEGIN"), sid.String() + ":5", false, ":1-4"},
		{ev(&replication.TableMapEvent{}), sid.String() + ":5", false, ":1-4"},
		{ev(&replication.RowsEvent{}), sid.String() + ":5", false, ":1-4"},
		{ev(&replication.XIDEvent{}), sid.String() + ":5", true, ":1-5"},
		{gtidEv(6), sid.String() + ":6", false, ":1-5"},
		{query("CREATE TABLE t (a int)"), sid.String() + ":6", true, ":1-6"},
		{ev(&replication.GTIDEvent{SID: make([]byte, 16)}), "", false, ":1-6"}, // anonymous
		{query("BEGIN"), "", false, ":1-6"},
		{query("COMMIT"), "", true, ":1-6"},
		{query("DROP TABLE x"), "", true, ":1-6"}, // no GTID at all: its own transaction
		// An XA transaction: XA START opens it as BEGIN does, XA_PREPARE
		// ends it; its XA COMMIT is a statement of its own.
		{gtidEv(7), sid.String() + ":7", false, ":1-6"},
		{query("XA START X'61',X'',1"), sid.String() + ":7", false, ":1-6"},
		{ev(&replication.RowsEvent{}), sid.String() + ":7", false, ":1-6"},
		{query("XA END X'61',X'',1"), sid.String() + ":7", false, ":1-6"},
		{xaPrepareEv(), sid.String() + ":7", true, ":1-7"},
		{gtidEv(8), sid.String() + ":8", false, ":1-7"},
		{query("XA COMMIT X'61',X'',1"), sid.String() + ":8", true, ":1-8"},
	}
	for i, s := range steps {
		gtid, end, err := tr.observe(s.e)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if gtid != s.gtid || end != s.txnEnd {
			t.Fatalf("step %d: gtid %q end %v, want %q %v", i, gtid, end, s.gtid, s.txnEnd)
		}
		if got := tr.gset.String(); got != sid.String()+s.set {
			t.Fatalf("step %d: set %s, want %s", i, got, sid.String()+s.set)
		}
	}
}

// TestTxnTrackerMariaDB frames MariaDB groups: a standalone GTID (DDL) ends
// at its statement, others at XID or COMMIT; the set starts from the file's
// GTID list when none was given.
func TestTxnTrackerMariaDB(t *testing.T) {
	tr := newTxnTracker(FlavorMariaDB, nil)
	mg := func(seq uint64, flags byte) *replication.BinlogEvent {
		return ev(&replication.MariadbGTIDEvent{GTID: mysql.MariadbGTID{DomainID: 0, ServerID: 1, SequenceNumber: seq}, Flags: flags})
	}
	steps := []struct {
		e      *replication.BinlogEvent
		txnEnd bool
		set    string
	}{
		{ev(&replication.MariadbGTIDListEvent{GTIDs: []mysql.MariadbGTID{{DomainID: 0, ServerID: 1, SequenceNumber: 9}, {DomainID: 2, ServerID: 3, SequenceNumber: 4}}}), false, "0-1-9,2-3-4"},
		{mg(10, replication.BINLOG_MARIADB_FL_STANDALONE|replication.BINLOG_MARIADB_FL_DDL), false, "0-1-9,2-3-4"},
		{query("ALTER TABLE t ADD c INT"), true, "0-1-10,2-3-4"},
		{mg(11, 0), false, "0-1-10,2-3-4"},
		{ev(&replication.RowsEvent{}), false, "0-1-10,2-3-4"},
		{ev(&replication.XIDEvent{}), true, "0-1-11,2-3-4"},
		{mg(12, 0), false, "0-1-11,2-3-4"},
		{query("INSERT INTO myisam_t VALUES (1)"), false, "0-1-11,2-3-4"},
		{query("COMMIT"), true, "0-1-12,2-3-4"},
	}
	for i, s := range steps {
		_, end, err := tr.observe(s.e)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if end != s.txnEnd {
			t.Fatalf("step %d: end %v", i, end)
		}
		if tr.gset == nil || tr.gset.String() != s.set {
			t.Fatalf("step %d: set %v, want %s", i, tr.gset, s.set)
		}
	}
}

func TestExtendOffset(t *testing.T) {
	cases := []struct {
		prev uint64
		pos  uint32
		want uint64
	}{
		{4, 120, 120},
		{1<<32 - 100, 50, 1<<32 + 50},
		{1<<32 + 50, 400, 1<<32 + 400},
		{5<<32 + 10, 9, 6<<32 + 9},
	}
	for _, c := range cases {
		if got := extendOffset(c.prev, c.pos); got != c.want {
			t.Errorf("extendOffset(%d, %d) = %d, want %d", c.prev, c.pos, got, c.want)
		}
	}
}

// TestObserveRawMatchesObserve frames the same MySQL and MariaDB event
// sequences from raw bytes (observeRaw, the raw reader's in-place tracker)
// and from go-mysql's decoding (observe): both must agree at every event on
// the transaction end and the GTID set. Events carry no checksum: no format
// description announces one.
func TestObserveRawMatchesObserve(t *testing.T) {
	rawEv := func(typ replication.EventType, serverID uint32, body []byte) []byte {
		b := make([]byte, replication.EventHeaderSize, replication.EventHeaderSize+len(body))
		b[4] = byte(typ)
		b[5], b[6], b[7], b[8] = byte(serverID), byte(serverID>>8), byte(serverID>>16), byte(serverID>>24)
		size := uint32(len(b) + len(body))
		b[9], b[10], b[11], b[12] = byte(size), byte(size>>8), byte(size>>16), byte(size>>24)
		b[13] = 100 // log_pos: not artificial
		return append(b, body...)
	}
	q := func(stmt string) []byte {
		return rawEv(replication.QUERY_EVENT, 1, append(append(make([]byte, 13), 0), stmt...))
	}
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	gtid := func(s uuid.UUID, gno uint64) []byte {
		body := append([]byte{1}, s[:]...)
		for i := 0; i < 8; i++ {
			body = append(body, byte(gno>>(8*i)))
		}
		typ := replication.GTID_EVENT
		if s == (uuid.UUID{}) {
			typ = replication.ANONYMOUS_GTID_EVENT
		}
		return rawEv(typ, 1, body)
	}
	mg := func(seq uint64, domain uint32, flags byte) []byte {
		body := make([]byte, 0, 13)
		for i := 0; i < 8; i++ {
			body = append(body, byte(seq>>(8*i)))
		}
		body = append(body, byte(domain), byte(domain>>8), byte(domain>>16), byte(domain>>24), flags)
		return rawEv(replication.MARIADB_GTID_EVENT, 7, body)
	}
	xid := rawEv(replication.XID_EVENT, 1, make([]byte, 8))
	// A row-less stand-in for row events: go-mysql decodes rows only with a
	// format description.
	rows := rawEv(replication.USER_VAR_EVENT, 1, make([]byte, 20))

	mysqlStart, _ := mysql.ParseMysqlGTIDSet(sid.String() + ":1-4")
	mariaStart, _ := mysql.ParseMariadbGTIDSet("0-7-9,2-3-4")
	cases := []struct {
		name   string
		flavor string
		start  mysql.GTIDSet
		events [][]byte
	}{
		{"MySQL", FlavorMySQL, mysqlStart, [][]byte{
			gtid(sid, 5), q("BEGIN"), rows, xid,
			gtid(sid, 6), q("CREATE TABLE t (a int)"),
			gtid(uuid.UUID{}, 0), q("BEGIN"), rows, q("COMMIT"),
			q("DROP TABLE x"),
			gtid(sid, 7), q(" begin "), rows, q("ROLLBACK"),
		}},
		{"MariaDB", FlavorMariaDB, mariaStart, [][]byte{
			mg(10, 0, replication.BINLOG_MARIADB_FL_STANDALONE|replication.BINLOG_MARIADB_FL_DDL), q("ALTER TABLE t ADD c INT"),
			mg(11, 0, 0), q("BEGIN"), rows, xid,
			mg(5, 2, 0), q("BEGIN"), q("INSERT INTO myisam_t VALUES (1)"), q("COMMIT"),
			mg(12, 1, 0), q("BEGIN"), rows, xid,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dec := newTxnTracker(c.flavor, c.start.Clone())
			raw := newTxnTracker(c.flavor, c.start.Clone())
			raw.inPlace = true
			p := replication.NewBinlogParser()
			p.SetFlavor(c.flavor)
			for i, e := range c.events {
				be, err := p.Parse(e)
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				_, dend, err := dec.observe(be)
				if err != nil {
					t.Fatalf("event %d decoded: %v", i, err)
				}
				rend, err := raw.observeRaw(be.Header.EventType, be.Header.ServerID, e[replication.EventHeaderSize:], e, p)
				if err != nil {
					t.Fatalf("event %d raw: %v", i, err)
				}
				if rend != dend || raw.inTxn != dec.inTxn || raw.gset.String() != dec.gset.String() {
					t.Fatalf("event %d (%s): raw end=%v in=%v set=%s, decoded end=%v in=%v set=%s",
						i, be.Header.EventType, rend, raw.inTxn, raw.gset, dend, dec.inTxn, dec.gset)
				}
			}
			if raw.gset.String() == c.start.String() {
				t.Fatal("no transaction changed the set")
			}
		})
	}
}
