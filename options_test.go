package dmworker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// TestSyncerRemoteOptions: WithRemoteOptions reaches the remote reader a
// Syncer reads the upstream with (an event queue the reader refuses stops
// the run with the reader's error).
func TestSyncerRemoteOptions(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 71})
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "opts", Upstream: upstreamOf(m)}, sinktest.NewMemSink(),
		dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{}),
		dmworker.WithRemoteOptions(streamer.WithEventQueueSize(-1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "event queue size") {
		t.Fatalf("Run = %v, want the reader's refusal of the event queue size", err)
	}
}

// TestNewRelayRejectsBadReaderConfig: RelayConfig.Reader is checked by
// NewRelay, and by a SourceWorker for its source.
func TestNewRelayRejectsBadReaderConfig(t *testing.T) {
	up := streamer.UpstreamConfig{Host: "h", Port: 1, User: "u"}
	for name, rc := range map[string]dmworker.ReaderConfig{
		"negative":             {Heartbeat: -1},
		"timeout <= heartbeat": {Heartbeat: dmworker.Duration(time.Second), ReadTimeout: dmworker.Duration(time.Second)},
		"half a backoff":       {BackoffMin: dmworker.Duration(time.Second)},
	} {
		if _, err := dmworker.NewRelay(up, t.TempDir(), dmworker.RelayConfig{Reader: rc}); err == nil {
			t.Errorf("%s: no error", name)
		}
		src := dmworker.SourceConfig{Name: "s", Upstream: up, EnableRelay: true, RelayDir: t.TempDir(),
			RelayConfig: dmworker.RelayConfig{Reader: rc}}
		sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
			return sinktest.NewMemSink(), nil
		}
		if _, err := dmworker.NewSourceWorker("w", sinks, dmworker.WithSource(src)); err == nil {
			t.Errorf("%s: source worker: no error", name)
		}
	}
}
