package dmworker

import (
	"encoding/binary"
	"testing"
)

// xaPrepareEvent builds an XA_PREPARE event's bytes (header, body,
// checksum) for an xid.
func xaPrepareEvent(onePhase bool, format uint32, gtrid, bqual []byte) []byte {
	b := make([]byte, 19, 19+13+len(gtrid)+len(bqual)+4)
	b[4] = 38 // XA_PREPARE_LOG_EVENT
	if onePhase {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, format)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(gtrid)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(bqual)))
	b = append(b, gtrid...)
	b = append(b, bqual...)
	return append(b, 0, 0, 0, 0)
}

// TestXAIDs: the xid of an XA_PREPARE event and that of the XA COMMIT or
// XA ROLLBACK MariaDB logs for it read the same, whatever form the
// statement gives it in.
func TestXAIDs(t *testing.T) {
	id, one, err := xaPrepareXID(xaPrepareEvent(false, 7, []byte{0x0a, 0x7f}, []byte{0xff}))
	if err != nil || one || id != "X'0A7F',X'FF',7" {
		t.Fatalf("xaPrepareXID: %q %v %v", id, one, err)
	}
	for _, tc := range []struct {
		q      string
		commit bool
		xid    string
	}{
		{"XA COMMIT X'0a7f',X'ff',7", true, "X'0A7F',X'FF',7"},
		{"xa rollback X'61',X'',1", false, "X'61',X'',1"},
		{"XA COMMIT 'a'", true, "X'61',X'',1"},
		{"XA COMMIT 'a', 'b'", true, "X'61',X'62',1"},
		{"XA COMMIT 'it''s','\\'',3", true, "X'69742773',X'27',3"},
		{"XA COMMIT 'a' ONE PHASE", true, "X'61',X'',1"},
	} {
		commit, xid, ok := parseXAOutcome(tc.q)
		if !ok || commit != tc.commit || xid != tc.xid {
			t.Errorf("parseXAOutcome(%q) = %v %q %v, want %v %q", tc.q, commit, xid, ok, tc.commit, tc.xid)
		}
	}
	for _, q := range []string{"XA END X'61',X'',1", "XA COMMIT", "XA COMMIT X'6'", "XA COMMIT 'a' junk", "XA PREPARE 'a'"} {
		if _, _, ok := parseXAOutcome(q); ok {
			t.Errorf("parseXAOutcome(%q) ok", q)
		}
	}
}

// FuzzXAPrepareXID: any bytes decode or fail without a panic, and an xid
// read from an event reads the same from the XA COMMIT that names it.
func FuzzXAPrepareXID(f *testing.F) {
	f.Add(false, uint32(1), []byte("a"), []byte(""), []byte(nil))
	f.Add(true, uint32(7), []byte{0x0a, 0x7f}, []byte{0xff}, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, onePhase bool, format uint32, gtrid, bqual, junk []byte) {
		_, _, _ = xaPrepareXID(junk)
		if len(gtrid) > 64 || len(bqual) > 64 {
			return
		}
		raw := xaPrepareEvent(onePhase, format, gtrid, bqual)
		id, one, err := xaPrepareXID(raw)
		if err != nil || one != onePhase {
			t.Fatalf("xaPrepareXID: %q %v %v", id, one, err)
		}
		commit, xid, ok := parseXAOutcome("XA COMMIT " + id)
		if !ok || !commit || xid != id {
			t.Fatalf("XA COMMIT %s reads as %v %q %v", id, commit, xid, ok)
		}
		for n := range raw {
			_, _, _ = xaPrepareXID(raw[:n])
		}
	})
}
