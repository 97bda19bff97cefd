package dmworker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
)

// bulkCounter counts a BulkSink's loads and refusals.
type bulkCounter struct {
	concurrentSink
	loaded, refused atomic.Int64
	mu              sync.Mutex
	refusedTables   map[string]string // table: why
}

func (s *bulkCounter) ApplyBulk(ctx context.Context, b *dmworker.Batch) error {
	err := s.concurrentSink.ApplyBulk(ctx, b)
	switch {
	case err == nil:
		s.loaded.Add(1)
	case errors.Is(err, dmworker.ErrBulkUnsupported):
		s.refused.Add(1)
		s.mu.Lock()
		if s.refusedTables == nil {
			s.refusedTables = map[string]string{}
		}
		s.refusedTables[b.Changes[0].Table.QualifiedName()] = err.Error()
		s.mu.Unlock()
	}
	return err
}

// TestSnapshotBulkTypes copies every type family, and strings holding every
// byte LOAD DATA treats specially, through mysqlsink's bulk path: each
// table equals the upstream's row by row and by CHECKSUM TABLE (the stored
// bytes). A latin1 table, which the bulk path refuses (its raw bytes would
// be stored unconverted), goes through Apply and is equal too.
func TestSnapshotBulkTypes(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 391})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 392})
	updb, downdb := up.DB(t), down.DB(t)
	exec := fillTypeFamilies(t, updb)
	for _, q := range typeFamilyChanges {
		exec(q)
	}
	exec("CREATE TABLE tf.tricky (id INT PRIMARY KEY, s VARCHAR(64), b VARBINARY(64), t TEXT, y YEAR, n INT) DEFAULT CHARSET=utf8mb4")
	exec(`INSERT INTO tf.tricky VALUES
		(1, 'tab\there', x'09', 'new\nline', 0, -1),
		(2, '\\N', '\\N', 'back\\slash\\', 1901, 0),
		(3, '', x'', '', 2155, NULL),
		(4, NULL, NULL, NULL, NULL, NULL),
		(5, CONCAT('nul', CHAR(0 USING utf8mb4), 'byte'), x'005C090A0D1A2722', 'cr\r ctrlz\Z quote'' dq"', 2000, 7),
		(6, 'NULL', 'NULL', '\\\\N', 69, 2147483647),
		(7, '🥝\t🥝', x'F09FA59D', '\\t\\n\\0', 1999, -2147483648),
		(8, 'trailing  ', x'2020', ' leading', 2024, 1)`)
	exec("CREATE TABLE tf.lat (id INT PRIMARY KEY, v VARCHAR(20)) DEFAULT CHARSET=latin1")
	exec("INSERT INTO tf.lat VALUES (1, 'é'), (2, 'x\ty'), (3, NULL)")

	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	counted := &bulkCounter{concurrentSink: concurrentSink{sink}}
	cfg := dmworker.SyncerConfig{Task: "bulk-types", Upstream: upstreamOf(up)}
	runSnapshot(t, cfg, dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 3, BatchRows: 2}, counted, dmworker.SinkStoreForTest(sink))
	tables := []string{"tricky", "lat"}
	for _, tb := range typeFamilyTables {
		tables = append(tables, tb.Name)
	}
	for _, n := range tables {
		checkEqual(t, updb, downdb, "tf."+n, "tf."+n)
		var name string
		var a, b int64
		if err := updb.QueryRow("CHECKSUM TABLE tf."+n).Scan(&name, &a); err != nil {
			t.Fatal(err)
		}
		if err := downdb.QueryRow("CHECKSUM TABLE tf."+n).Scan(&name, &b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("tf.%s: CHECKSUM TABLE %d downstream, %d upstream", n, b, a)
		}
	}
	// Every table but the latin1 one bulk loaded (a refusal sends the
	// rest of a table's rows through Apply).
	if counted.loaded.Load() < int64(len(tables)-1) || len(counted.refusedTables) != 1 || counted.refusedTables["tf.lat"] == "" {
		t.Fatalf("%d batches bulk loaded; refused: %v; want only tf.lat refused", counted.loaded.Load(), counted.refusedTables)
	}
}
