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
