package streamer_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestReadersNoticeHalfOpenConnection: with the default heartbeat and read
// timeout, a connection that goes silent without a reset (the proxy holds
// its bytes back for good while new connections work: the upstream's side
// vanished) is given up and replaced well within a minute (the default
// promises 15s; it used to take 90s), and the reader goes on delivering
// every event once, in order.
func TestReadersNoticeHalfOpenConnection(t *testing.T) {
	for i, kind := range []string{"remote", "raw"} {
		t.Run(kind, func(t *testing.T) {
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: uint32(340 + i), MaxBinlogSize: 16 << 10})
			db := m.DB(t)
			workload(t, db, 0, 30)
			p, err := faultnet.New(m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			up := upstreamOf(m)
			up.Port = uint16(p.Port())
			logs := newLogCounter()
			// Default heartbeat and read timeout: what is tested.
			opts := []streamer.RemoteOption{streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}
			start := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
			ctx := testCtx(t)

			var read func(ctx context.Context, end streamer.Position) ([]evKey, error)
			var mid func()
			switch kind {
			case "remote":
				r, err := streamer.NewRemoteReader(up, start, opts...)
				if err != nil {
					t.Fatal(err)
				}
				closeReader(t, r)
				var got []*streamer.Event
				mid = func() { got = readToMidTransaction(ctx, t, r, nil) }
				read = func(ctx context.Context, end streamer.Position) ([]evKey, error) {
					for n := len(got); n == 0 || got[n-1].Pos.Compare(end) < 0; n = len(got) {
						ev, err := r.GetEvent(ctx)
						if err != nil {
							return nil, err
						}
						got = append(got, ev)
					}
					checkTransactions(t, got)
					return keys(got), nil
				}
			default:
				r, err := streamer.NewRawReader(up, start, opts...)
				if err != nil {
					t.Fatal(err)
				}
				closeReader(t, r)
				var got []rawGot
				mid = func() { got = readRawToMidTransaction(ctx, t, r, nil) }
				read = func(ctx context.Context, end streamer.Position) ([]evKey, error) {
					for n := len(got); n == 0 || got[n-1].pos.Compare(end) < 0; n = len(got) {
						ev, err := r.Next(ctx)
						if err != nil {
							return nil, err
						}
						got = append(got, copyRaw(r, ev))
					}
					checkRawTransactions(t, got)
					return rawKeys(got), nil
				}
			}

			mid()
			accepted := p.Accepted()
			p.StallOpen()
			stalled := time.Now()
			// Keep writing while the reader's connection is dead.
			workload(t, db, 30, 20)
			want := fileEvents(t, m)
			// A generous bound: four times what the default promises,
			// and well under the 90s it used to take.
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			got, err := read(dctx, lastPos(want))
			if err != nil {
				t.Fatalf("the reader did not get past the half-open connection within %s: %v\nlogs:\n%s",
					time.Since(stalled).Round(time.Second), err, logs.text())
			}
			if p.Accepted() == accepted || logs.n("reading upstream binlog") < 2 {
				t.Fatalf("the reader did not reconnect; logs:\n%s", logs.text())
			}
			equalEvents(t, got, want)
		})
	}
}

// refusedAddr returns a loopback port nothing listens on.
func refusedAddr(t *testing.T) (string, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return "127.0.0.1", uint16(port)
}

// TestFirstConnectFailsFast: before a reader has ever connected, an address
// nothing listens on and a wrong password end it at once with an error
// that says so (they used to be retried for ever, with a warning a
// second); QueryUpstream says the same. WithRetryFirstConnect keeps
// retrying the unreachable upstream (for a reader that takes over from one
// that had reached it).
func TestFirstConnectFailsFast(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 342})
	host, port := refusedAddr(t)
	refused := upstreamOf(m)
	refused.Host, refused.Port = host, port
	const badPassword = "not-the-Password-43"
	denied := upstreamOf(m)
	denied.Password = badPassword
	start := streamer.Position{Name: "mysql-bin.000001", Offset: 4}

	type reader func(ctx context.Context) error
	readers := map[string]func(up streamer.UpstreamConfig, opts ...streamer.RemoteOption) reader{
		"remote": func(up streamer.UpstreamConfig, opts ...streamer.RemoteOption) reader {
			r, err := streamer.NewRemoteReader(up, start, opts...)
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)
			return func(ctx context.Context) error { _, err := r.GetEvent(ctx); return err }
		},
		"raw": func(up streamer.UpstreamConfig, opts ...streamer.RemoteOption) reader {
			r, err := streamer.NewRawReader(up, start, opts...)
			if err != nil {
				t.Fatal(err)
			}
			closeReader(t, r)
			return func(ctx context.Context) error { _, err := r.Next(ctx); return err }
		},
		"query": func(up streamer.UpstreamConfig, _ ...streamer.RemoteOption) reader {
			return func(ctx context.Context) error { _, err := streamer.QueryUpstream(ctx, up); return err }
		},
	}
	for name, open := range readers {
		for _, tc := range []struct {
			what string
			up   streamer.UpstreamConfig
			want error
		}{{"refused", refused, streamer.ErrUnreachable}, {"wrong password", denied, streamer.ErrAccessDenied}} {
			t.Run(name+"/"+tc.what, func(t *testing.T) {
				logs := newLogCounter()
				next := open(tc.up, streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
				// Retrying for ever shows as this deadline passing.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := next(ctx)
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v; logs:\n%s", err, tc.want, logs.text())
				}
				var se *streamer.Error
				if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.up.SourceName()) {
					t.Fatalf("error %q is not a *streamer.Error naming the source %s", err, tc.up.SourceName())
				}
				if strings.Contains(err.Error(), badPassword) || strings.Contains(logs.text(), badPassword) {
					t.Fatalf("the password shows: %v\n%s", err, logs.text())
				}
				if n := logs.n("upstream connection failed, retrying"); n > 0 {
					t.Fatalf("%d retries before failing", n)
				}
				if name != "query" {
					// Terminal: the same error again.
					if err := next(ctx); !errors.Is(err, tc.want) {
						t.Fatalf("second call: %v", err)
					}
				}
			})
		}
		if name == "query" {
			continue
		}
		t.Run(name+"/refused with WithRetryFirstConnect", func(t *testing.T) {
			logs := newLogCounter()
			next := open(refused, streamer.WithLogger(slog.New(logs)), streamer.WithBackoff(10*time.Millisecond, 100*time.Millisecond),
				streamer.WithRetryFirstConnect())
			waitFor(t, "retries", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				if err := next(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error %v while retrying", err)
				}
				return logs.n("upstream connection failed, retrying") >= 3
			})
		})
	}
}
