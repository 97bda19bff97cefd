package dmworker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/dumpserver"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// incidentEvent is an INCIDENT event (LOST_EVENTS, with a message) that
// starts at offset at of a binlog with CRC32 checksums.
func incidentEvent(serverID uint32, at uint64, msg string) []byte {
	size := 19 + 3 + len(msg) + 4
	b := make([]byte, 19, size)
	b[4] = byte(replication.INCIDENT_EVENT)
	binary.LittleEndian.PutUint32(b[5:], serverID)
	binary.LittleEndian.PutUint32(b[9:], uint32(size))
	binary.LittleEndian.PutUint32(b[13:], uint32(at)+uint32(size))
	b = binary.LittleEndian.AppendUint16(b, 1) // INCIDENT_LOST_EVENTS
	b = append(b, byte(len(msg)))
	b = append(b, msg...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// TestSyncerStopsAtIncident: an INCIDENT event (the upstream could not log
// changes it made) stops the syncer, through the local and the remote
// reader, with ErrUpstreamIncident at the event, its checkpoint before it;
// Skip passes over it, and what came before is applied. (The old code passed over it without a word.)
func TestSyncerStopsAtIncident(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 92})
	mustExec(t, p.updb, "CREATE DATABASE inc")
	mustExec(t, p.updb, "CREATE TABLE inc.t (id INT PRIMARY KEY, v INT)")
	start := upstreamPos(t, p.updb)
	mustExec(t, p.updb, "INSERT INTO inc.t VALUES (1, 1), (2, 2)")
	mustExec(t, p.updb, "FLUSH BINARY LOGS")
	mustExec(t, p.updb, "INSERT INTO inc.t VALUES (3, 3)")
	files := upstreamFiles(t, p.up)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	last := names[len(names)-1]
	at := uint64(len(files[last]))
	files[last] = append(files[last], incidentEvent(92, at, "lost events: a test")...)

	relay := t.TempDir()
	sub := streamer.SubDirName("92", 1)
	if err := os.MkdirAll(filepath.Join(relay, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	var served []dumpserver.File
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(relay, sub, n), files[n], 0o644); err != nil {
			t.Fatal(err)
		}
		served = append(served, dumpserver.File{Name: n, Data: files[n]})
	}
	if err := streamer.WriteRelayIndex(relay, []string{sub}); err != nil {
		t.Fatal(err)
	}
	srv, err := dumpserver.Start(served...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dumpUp := streamer.UpstreamConfig{Host: srv.Host(), Port: srv.Port(), User: dumpserver.User, Password: dumpserver.Password,
		Flavor: streamer.FlavorMariaDB, ServerID: 4244}
	readers := map[string]dmworker.ReaderFactory{
		"local": func(_ context.Context, start streamer.Position) (streamer.Reader, error) {
			return streamer.NewLocalReader(relay, streamer.StartAtPosition(start))
		},
		"remote": func(_ context.Context, start streamer.Position) (streamer.Reader, error) {
			return streamer.NewRemoteReader(dumpUp, start)
		},
	}
	for _, reader := range []string{"local", "remote"} {
		t.Run(reader, func(t *testing.T) {
			target := "inc_" + reader
			mustExec(t, p.downdb, "CREATE DATABASE "+target)
			mustExec(t, p.downdb, "CREATE TABLE "+target+".t (id INT PRIMARY KEY, v INT)")
			cfg := dmworker.SyncerConfig{Task: target, Upstream: upstreamOf(p.up), Start: start,
				Filter: dmworker.BlockAllowList{DoDBs: []string{"inc"}}, Routes: []dmworker.RouteRule{{SchemaPattern: "inc", TargetSchema: target}}}
			s, err := dmworker.NewSyncer(cfg, p.sink, dmworker.WithReaderFactory(readers[reader]))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = s.Run(ctx)
			var se *dmworker.SyncError
			if !errors.Is(err, dmworker.ErrUpstreamIncident) || !errors.As(err, &se) || se.Start.Name != last || se.Start.Offset != at ||
				!strings.Contains(se.Statement, "lost events: a test") {
				t.Fatalf("Run: %v, want ErrUpstreamIncident at %s:%d", err, last, at)
			}
			if cp := s.Status().Checkpoint; cp.Compare(se.Start) > 0 {
				t.Fatalf("checkpoint %s passed the incident at %s", cp, se.Start)
			}
			s.Skip(se.Start)
			run := runSyncer(t, s)
			waitUntil(t, "the checkpoint past the incident", func() bool {
				select {
				case <-run.done:
					t.Fatalf("the syncer stopped: %v", run.err)
				default:
				}
				return s.Status().Checkpoint.Compare(se.Pos) >= 0
			})
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, p.updb, p.downdb, "inc.t", target+".t")
		})
	}
}
