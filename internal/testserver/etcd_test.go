package testserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

func TestEtcdStopRestart(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	ctx := t.Context()

	if _, err := e.Client.Put(ctx, "/k", "v1"); err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client.Get(ctx, "/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get /k: %v", resp.Kvs)
	}

	e.Stop()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = e.Client.Get(short, "/k")
	cancel()
	if err == nil {
		t.Fatal("get succeeded with etcd stopped")
	}

	e.Restart(t)
	deadline := time.Now().Add(waitTimeout)
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		resp, err = e.Client.Get(attempt, "/k")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not back %v after restart: %v", waitTimeout, err)
		}
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart get /k: %v", resp.Kvs)
	}
	if _, err := e.Client.Put(ctx, "/k", "v2"); err != nil {
		t.Fatal(err)
	}
}

func TestTwoEtcdsAtOnce(t *testing.T) {
	t.Parallel()
	a, b := testserver.StartEtcd(t), testserver.StartEtcd(t)
	if a.Endpoints[0] == b.Endpoints[0] {
		t.Fatalf("both on %s", a.Endpoints[0])
	}
	if _, err := a.Client.Put(t.Context(), "/only-a", "x"); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Client.Get(t.Context(), "/only-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("second etcd sees the first one's key: %v", resp.Kvs)
	}
}
