package dmworkertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

const typesTable = `CREATE TABLE types (
	id INT NOT NULL PRIMARY KEY,
	ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
	i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
	d1 DECIMAL(10,2), d2 DECIMAL(65,30), d3 DECIMAL(20,0), d4 DECIMAL(5,5),
	f FLOAT, dbl DOUBLE,
	vc VARCHAR(64), vcl VARCHAR(300) CHARACTER SET latin1, c CHAR(10), bn BINARY(4), vb VARBINARY(300),
	tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT, bl BLOB, lb LONGBLOB,
	dt DATE, dtm DATETIME, dtm6 DATETIME(6), dtm2 DATETIME(2), ts TIMESTAMP(3) NULL, tm TIME, tm1 TIME(1), tm4 TIME(4), tm6 TIME(6), y YEAR,
	e ENUM('a','b','c'), s SET('x','y','z'), j JSON, bt BIT(12), b64 BIT(64)
)`

func typesRow(id int64, v int) []any {
	if v == 0 {
		row := make([]any, 43)
		row[0] = id
		return row
	}
	neg := v < 0
	sign := map[bool]string{false: "", true: "-"}[neg]
	n := int64(v)
	return []any{id,
		n, uint64(255), n * 300, uint64(65535), n * 70000, uint64(16777215),
		n * 2000000000 / int64(max(v, -v)), uint64(4294967295), n * 9000000000000000000 / int64(max(v, -v)), uint64(18446744073709551615),
		sign + "12345678.90", sign + "12345678901234567890123456789012345.123456789012345678901234567890", sign + "12345678901234567890", sign + "0.00001",
		float32(1.5) * float32(v), 2.25 * float64(v),
		"ünïcödé", "Grüße " + fmt.Sprint(v), "char", []byte{0, 1, 2, 3}, []byte("varbinary\x00\xff"),
		"tiny", "text", "medium", "long", []byte("blob\x00"), []byte("longblob"),
		"2024-02-29", "2024-02-29 12:34:56", "2024-02-29 12:34:56.000001", "1999-12-31 23:59:59.99", "2038-01-19 03:14:07.123",
		sign + "838:59:59", sign + "00:00:01.5", sign + "12:00:00.0001", sign + "00:00:00.000001", int64(2024),
		"b", "x,z", `{"a": [1, 2]}`, uint64(0xabc), uint64(1<<63 | 1),
	}
}

func newSyncer(t *testing.T, b *dmworkertest.Binlog, sink dmworker.Sink, opts ...dmworker.SyncerOption) *dmworker.Syncer {
	t.Helper()
	cfg := dmworker.SyncerConfig{Task: "test", Source: "upstream", Start: b.Start(), SyncerTuning: dmworker.SyncerTuning{FlushInterval: dmworker.Duration(10 * time.Millisecond)}}
	s, err := dmworker.NewSyncer(cfg, sink, append(b.SyncerOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts s and returns a function that stops it and returns Run's
// error.
func run(t *testing.T, s *dmworker.Syncer) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func waitApplied(t *testing.T, s *dmworker.Syncer, pos streamer.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := dmworkertest.WaitApplied(ctx, s, pos); err != nil {
		t.Fatal(err)
	}
}

func mustCommit(t *testing.T, tx *dmworkertest.Tx) streamer.Position {
	t.Helper()
	pos, err := tx.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// TestTypesRoundTrip checks every supported type: values built into row
// events come out of the syncer as the same values.
func TestTypesRoundTrip(t *testing.T) {
	b := dmworkertest.NewBinlog()
	if err := b.Define("db", "CREATE DATABASE db", typesTable); err != nil {
		t.Fatal(err)
	}
	rows := [][]any{typesRow(1, 1), typesRow(2, -1), typesRow(3, 0), typesRow(4, 7)}
	mustCommit(t, b.Begin().Insert("db", "types", rows[0], rows[1], rows[2]))
	mustCommit(t, b.Begin().Insert("db", "types", typesRow(4, 3)).Update("db", "types", typesRow(4, 3), rows[3]))
	mustCommit(t, b.Begin().Delete("db", "types", rows[2]))
	end := mustCommit(t, b.Begin().Insert("db", "types", rows[2]))

	sink := sinktest.NewMemSink()
	s := newSyncer(t, b, sink)
	stop := run(t, s)
	waitApplied(t, s, end)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := sink.Rows("db", "types")
	sinktest.SortRows(got)
	if len(got) != len(rows) {
		t.Fatalf("got %d rows, want %d", len(got), len(rows))
	}
	for i, want := range rows {
		for j := range want {
			w := want[j]
			if sinktest.CompareValues(got[i][j], w) != 0 {
				t.Errorf("row %d column %d: got %T %v, want %T %v", i, j, got[i][j], got[i][j], w, w)
			}
		}
	}
	if u := sink.Unmatched(); len(u) > 0 {
		t.Errorf("unmatched changes: %v", u)
	}
}
