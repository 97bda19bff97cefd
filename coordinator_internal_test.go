package dmworker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/testserver"
)

func TestCoordinatorPlan(t *testing.T) {
	bind := func(w, s string, wrev, srev int64) action {
		return action{bind: true, worker: w, source: s, workerRev: wrev, sourceRev: srev, reason: "unbound source"}
	}
	unbind := func(w, s string, rev int64, why string) action {
		return action{worker: w, source: s, rev: rev, reason: why}
	}
	for _, tc := range []struct {
		name    string
		workers map[string]int64 // name -> create revision
		sources map[string]int64
		bound   map[string]boundKV
		last    map[string]string
		want    []action
		unbound []string
	}{
		{
			name:    "sources in name order to idle workers in name order",
			workers: map[string]int64{"w2": 3, "w1": 2, "w3": 4},
			sources: map[string]int64{"b": 6, "a": 5},
			want:    []action{bind("w1", "a", 2, 5), bind("w2", "b", 3, 6)},
		},
		{
			name:    "live binding kept, no idle worker left",
			workers: map[string]int64{"w1": 2},
			sources: map[string]int64{"a": 5, "b": 6},
			bound:   map[string]boundKV{"w1": {"b", 9}},
			unbound: []string{"a"},
		},
		{
			name:    "dead worker unbound, source fails over to an idle one",
			workers: map[string]int64{"w2": 3},
			sources: map[string]int64{"a": 5},
			bound:   map[string]boundKV{"w1": {"a", 9}},
			last:    map[string]string{"a": "w1"},
			want:    []action{unbind("w1", "a", 9, "worker gone"), bind("w2", "a", 3, 5)},
		},
		{
			name:    "worker registered again after the binding: it fails over too",
			workers: map[string]int64{"w1": 12, "w2": 3},
			sources: map[string]int64{"a": 5},
			bound:   map[string]boundKV{"w1": {"a", 9}},
			last:    map[string]string{"a": "w1"},
			want:    []action{unbind("w1", "a", 9, "worker registered again"), bind("w2", "a", 3, 5)},
		},
		{
			name:    "worker registered again and alone: it gets its source back",
			workers: map[string]int64{"w1": 12},
			sources: map[string]int64{"a": 5},
			bound:   map[string]boundKV{"w1": {"a", 9}},
			last:    map[string]string{"a": "w1"},
			want:    []action{unbind("w1", "a", 9, "worker registered again"), bind("w1", "a", 12, 5)},
		},
		{
			name:    "the worker that served an unbound source last is preferred",
			workers: map[string]int64{"w1": 2, "w2": 3},
			sources: map[string]int64{"a": 5},
			last:    map[string]string{"a": "w2"},
			want:    []action{bind("w2", "a", 3, 5)},
		},
		{
			name:    "gone source unbound, its worker takes the waiting one",
			workers: map[string]int64{"w1": 2},
			sources: map[string]int64{"b": 6},
			bound:   map[string]boundKV{"w1": {"a", 7}},
			want:    []action{unbind("w1", "a", 7, "source gone"), bind("w1", "b", 2, 6)},
		},
		{
			name:    "source bound twice: the newest binding stays",
			workers: map[string]int64{"w1": 2, "w2": 3},
			sources: map[string]int64{"a": 5},
			bound:   map[string]boundKV{"w1": {"a", 11}, "w2": {"a", 8}},
			want:    []action{unbind("w2", "a", 8, "source bound twice")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last := tc.last
			if last == nil {
				last = map[string]string{}
			}
			// Run twice: the plan must not depend on map order.
			for range 2 {
				got, unbound := plan(tc.workers, tc.sources, tc.bound, last)
				if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(unbound, tc.unbound) {
					t.Fatalf("plan =\n%+v unbound %v\nwant\n%+v unbound %v", got, unbound, tc.want, tc.unbound)
				}
			}
		})
	}
}

// newTestCoordinator builds a coordinator for the internal tests.
func newTestCoordinator(t *testing.T, cli *clientv3.Client, opts ...CoordinatorOption) *Coordinator {
	t.Helper()
	c, err := NewCoordinator(cli, append([]CoordinatorOption{WithKeepAliveTTL(3 * time.Second), WithEtcdBackoff(50*time.Millisecond, 500*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A coordinator whose leadership ended cannot write: its guarded changes are
// refused with ErrNotLeader, whether its key is gone or another leads.
func TestCoordinatorDeposedCannotWrite(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	ctx := t.Context()
	c := newTestCoordinator(t, e.Client)
	if _, err := e.Client.Put(ctx, c.keys.source("s1"), "{}"); err != nil {
		t.Fatal(err)
	}
	w, err := e.Client.Put(ctx, c.keys.worker("w1"), "{}")
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.Client.Get(ctx, c.keys.source("s1"))
	if err != nil {
		t.Fatal(err)
	}
	bindS1 := action{bind: true, worker: "w1", source: "s1", workerRev: w.Header.Revision, sourceRev: g.Kvs[0].CreateRevision}

	lease, _, err := c.lease.grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := c.campaign(ctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	// Another coordinator campaigns and waits behind ld.
	other := newTestCoordinator(t, e.Client)
	lease2, _, err := other.lease.grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld2c := make(chan leader, 1)
	errc := make(chan error, 1)
	go func() {
		ld2, err := other.campaign(ctx, lease2)
		ld2c <- ld2
		errc <- err
	}()

	// ld's lease is lost (revoked here): its key goes, the other leads.
	if _, err := e.Client.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ld2 := <-ld2c

	_, err = c.apply(ctx, ld, g.Header.Revision, bindS1)
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader's bind = %v, want ErrNotLeader", err)
	}
	if _, err := c.reconcile(ctx, ld); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader's reconcile = %v, want ErrNotLeader", err)
	}
	if resp, err := e.Client.Get(ctx, c.keys.bounds(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("bindings after the deposed leader's attempts: %v, %v", resp, err)
	}

	// The new leader's write goes through, and the old one still cannot
	// undo it.
	rev, err := other.apply(ctx, ld2, g.Header.Revision, bindS1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.apply(ctx, ld, rev, action{worker: "w1", source: "s1", rev: rev})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader's unbind = %v, want ErrNotLeader", err)
	}
	b, err := other.Bindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Binding{Worker: "w1", Source: "s1", Epoch: rev}); b["s1"] != want || len(b) != 1 {
		t.Fatalf("bindings %v, want only %+v", b, want)
	}
	if _, err := e.Client.Revoke(ctx, lease2); err != nil {
		t.Fatal(err)
	}
}

// A compaction past the revision the leader watches from makes the watch
// fail; the leader reads everything again and misses no change.
func TestCoordinatorSurvivesCompaction(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	ctx := t.Context()
	var logs syncBuffer
	c := newTestCoordinator(t, e.Client, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, k := range []string{c.keys.source("s1"), c.keys.worker("w1")} {
		if _, err := e.Client.Put(ctx, k, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	// After the first reconciliation and before its watch starts: add a
	// source and a worker, and compact them out of the history.
	var once sync.Once
	hookErr := make(chan error, 1)
	compacted := make(chan int64, 1)
	c.hookBeforeWatch = func() {
		once.Do(func() {
			var rev int64
			for _, k := range []string{c.keys.source("s2"), c.keys.worker("w2")} {
				resp, err := e.Client.Put(ctx, k, "{}")
				if err != nil {
					hookErr <- err
					return
				}
				rev = resp.Header.Revision
			}
			if _, err := e.Client.Compact(ctx, rev); err != nil {
				hookErr <- fmt.Errorf("compact at %d: %w", rev, err)
				return
			}
			compacted <- rev
		})
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	defer func() {
		c.Close()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()

	deadline := time.After(30 * time.Second)
	select {
	case err := <-hookErr:
		t.Fatal(err)
	case <-compacted:
	case <-deadline:
		t.Fatal("the coordinator never reached its first watch")
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := c.Bindings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b["s1"].Worker == "w1" && b["s2"].Worker == "w2" && len(b) == 2 {
			// It got there through the failed watch, not through events.
			if !strings.Contains(logs.String(), "compacted") {
				t.Fatalf("no compacted watch in the logs:\n%s", logs.String())
			}
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("bindings %v after compaction, want s1 on w1 and s2 on w2", b)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
