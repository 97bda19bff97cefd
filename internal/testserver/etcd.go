package testserver

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// etcdReadyTimeout bounds how long an embedded etcd may take to become ready.
const etcdReadyTimeout = 30 * time.Second

// Etcd is a single-member etcd server embedded in the test process, with a
// client connected to it. Its methods are safe for concurrent use.
type Etcd struct {
	// Client is connected to Endpoints. It survives Stop and Restart (it
	// reconnects within about a second of a restart) and is closed by the
	// test cleanup. Do not close it.
	Client *clientv3.Client
	// Endpoints are the server's client URLs ("http://127.0.0.1:PORT").
	Endpoints []string

	dir        string
	clientPort int
	peerPort   int
	log        *zap.Logger

	mu     sync.Mutex
	server *embed.Etcd // nil while stopped
}

// StartEtcd starts an embedded etcd on free loopback ports with its data
// under tb.TempDir(), waits until it is ready, and returns it with a
// connected client. The cleanup closes the client and the server.
func StartEtcd(tb testing.TB) *Etcd {
	tb.Helper()
	logs := &testLogWriter{tb: tb}
	e := &Etcd{dir: filepath.Join(tb.TempDir(), "etcd"), log: logs.logger()}
	var err error
	// Ports may be taken between picking and binding: retry with others.
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if e.clientPort, err = freePort(); err != nil {
			continue
		}
		if e.peerPort, err = freePort(); err != nil {
			continue
		}
		// A failed attempt must not leave member data naming other ports.
		if err = os.RemoveAll(e.dir); err != nil {
			break
		}
		if err = e.start(); err == nil {
			break
		}
	}
	if err != nil {
		logs.close()
		tb.Fatalf("start etcd: %v", err)
	}
	e.Endpoints = []string{e.clientURL().String()}
	e.Client, err = e.newClient()
	if err != nil {
		e.Stop()
		logs.close()
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() {
		_ = e.Client.Close()
		e.Stop()
		logs.close()
	})
	return e
}

// NewClient returns another client connected to the server, configured as
// Client is (it survives Stop and Restart). The caller closes it; the test
// cleanup closes it too if it is still open (closing twice is harmless). A
// test that checks for leaked goroutines uses its own client, since an etcd
// client keeps some goroutines (watch streams, lease keepalives) until it
// is closed.
func (e *Etcd) NewClient(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := e.newClient()
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

func (e *Etcd) newClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// gRPC's default reconnect backoff grows to 2 minutes; keep it
			// short so the client is back soon after Restart.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  50 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   time.Second,
				},
				MinConnectTimeout: time.Second,
			}),
		},
	})
}

func (e *Etcd) clientURL() *url.URL {
	return &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(e.clientPort)}
}

func (e *Etcd) peerURL() *url.URL {
	return &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(e.peerPort)}
}

// start starts the server on e's dir and ports and waits until it is ready.
func (e *Etcd) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "testserver"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{*e.clientURL()}
	cfg.AdvertiseClientUrls = []url.URL{*e.clientURL()}
	cfg.ListenPeerUrls = []url.URL{*e.peerURL()}
	cfg.AdvertisePeerUrls = []url.URL{*e.peerURL()}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "testserver-" + strconv.Itoa(e.clientPort)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(e.log)
	cfg.EnableGRPCGateway = false
	cfg.UnsafeNoFsync = true // throwaway data; fsync only slows tests down
	cfg.SocketOpts.ReuseAddress = true

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	t := time.NewTimer(etcdReadyTimeout)
	defer t.Stop()
	select {
	case <-srv.Server.ReadyNotify():
		e.server = srv
		return nil
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("etcd failed while starting: %w", err)
	case <-srv.Server.StopNotify():
		srv.Close()
		return errors.New("etcd stopped while starting")
	case <-t.C:
		srv.Close()
		return fmt.Errorf("etcd not ready after %v", etcdReadyTimeout)
	}
}

// Stop stops the server and waits until it is down; the client stays open
// and its requests fail until Restart. Stopping a stopped server does
// nothing.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		e.server.Close()
		e.server = nil
	}
}

// Restart starts the server again on the same data directory and ports
// (after Stop) and waits until it is ready; the data written before Stop is
// still there. It fails the test if the server cannot start.
func (e *Etcd) Restart(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		tb.Fatalf("etcd restart: server on %s is still running", e.Endpoints[0])
	}
	if err := e.start(); err != nil {
		tb.Fatalf("etcd restart on %s: %v", e.Endpoints[0], err)
	}
}

// testLogWriter sends the embedded server's log lines to the test log, so
// they show only with -v or when the test fails (etcd logs at error level
// even on a normal shutdown). Lines written after close are dropped: the
// testing package panics on logging after the test has ended.
type testLogWriter struct {
	mu     sync.Mutex
	tb     testing.TB
	closed bool
}

func (w *testLogWriter) logger() *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.ErrorLevel))
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.tb.Logf("etcd: %s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}
