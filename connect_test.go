package dmworker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// logText is an slog handler that keeps every record as a line of text.
type logText struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logText) Enabled(context.Context, slog.Level) bool { return true }
func (l *logText) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&l.buf, " %s=%v", a.Key, a.Value)
		return true
	})
	l.buf.WriteByte('\n')
	return nil
}
func (l *logText) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logText) WithGroup(string) slog.Handler      { return l }
func (l *logText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestSubTaskFirstConnectPausesAtOnce: a subtask whose upstream cannot
// work from the start (nothing listens on the port, or the password is
// wrong) pauses at once with an error that says so, without resuming
// again and again (a wrong port used to be resumed for minutes).
func TestSubTaskFirstConnectPausesAtOnce(t *testing.T) {
	p := newPair(t, 90, 91, testserver.MariaDBOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := upstreamOf(p.up)
	refused.Host, refused.Port = "127.0.0.1", uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	const badPassword = "not-the-Password-44"
	denied := upstreamOf(p.up)
	denied.Password = badPassword
	for _, tc := range []struct {
		name string
		up   streamer.UpstreamConfig
		want error
	}{{"refused", refused, streamer.ErrUnreachable}, {"wrong password", denied, streamer.ErrAccessDenied}} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logText{}
			st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "first-" + strings.ReplaceAll(tc.name, " ", "-")}, tc.up, p.sink,
				dmworker.WithLogger(slog.New(logs)))
			if err != nil {
				t.Fatal(err)
			}
			runSubTask(t, st)
			s := waitStage(t, st.Status, dmworker.SubTaskPaused)
			if !errors.Is(s.LastError, tc.want) {
				t.Fatalf("paused with %v, want %v", s.LastError, tc.want)
			}
			if s.Retries != 0 || strings.Contains(logs.String(), "subtask resumes after a retryable error") {
				t.Fatalf("%d automatic resumes; logs:\n%s", s.Retries, logs.String())
			}
			if msg := s.LastError.Error(); !strings.Contains(msg, tc.up.SourceName()) || strings.Contains(msg, badPassword) {
				t.Fatalf("the error does not name the source, or shows the password: %s", msg)
			}
		})
	}
}

// TestSubTaskOutageAfterFirstConnectIsRetried: once the upstream has been
// reached, a run that starts while it is down (a Resume during an outage)
// waits for it instead of pausing, and converges when it is back.
func TestSubTaskOutageAfterFirstConnectIsRetried(t *testing.T) {
	p := newPair(t, 92, 93, testserver.MariaDBOptions{})
	logs := &logText{}
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "outage"}, upstreamOf(p.up), p.sink, dmworker.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer to start", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE d")
	mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (1, 1)")
	waitSubTaskSynced(t, st.Status, p)

	if err := st.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := p.up.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := st.Resume(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reader retrying", func() bool {
		if s := st.Status(); s.Stage == dmworker.SubTaskPaused {
			t.Fatalf("paused by %v", s.LastError)
		}
		return strings.Contains(logs.String(), "upstream connection failed, retrying")
	})
	if s := st.Status(); s.Stage != dmworker.SubTaskRunning || s.LastError != nil {
		t.Fatalf("stage %s, error %v while the upstream is down", s.Stage, s.LastError)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.up.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (2, 2)")
	waitSubTaskSynced(t, st.Status, p)
	checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
}

// TestRelayFirstConnectFailsFast: a relay whose upstream cannot work from
// the start (nothing listens on the port, or the password is wrong) stops
// at once with an error that says so; a wrong port used to be retried for
// ever, with a warning each time.
func TestRelayFirstConnectFailsFast(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 94})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := upstreamOf(m)
	refused.Host, refused.Port = "127.0.0.1", uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	denied := upstreamOf(m)
	denied.Password = "not-the-Password-46"
	for _, tc := range []struct {
		name string
		up   streamer.UpstreamConfig
		want error
	}{{"refused", refused, streamer.ErrUnreachable}, {"wrong password", denied, streamer.ErrAccessDenied}} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logText{}
			r, err := dmworker.NewRelay(tc.up, t.TempDir(), dmworker.RelayConfig{}, dmworker.WithLogger(slog.New(logs)))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// Retrying shows as this deadline passing (Run then returns nil).
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.Run(ctx); !errors.Is(err, tc.want) || ctx.Err() != nil {
				t.Fatalf("Run: %v (context: %v), want %v; logs:\n%s", err, ctx.Err(), tc.want, logs.String())
			}
			if strings.Contains(logs.String(), "retrying") {
				t.Fatalf("the relay retried:\n%s", logs.String())
			}
		})
	}
}
