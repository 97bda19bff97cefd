package dmworker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
)

// runCoordinator builds a coordinator and runs it until the test ends (or
// until the returned stop is called).
func runCoordinator(t testing.TB, cli *clientv3.Client, opts ...dmworker.CoordinatorOption) (*dmworker.Coordinator, func()) {
	t.Helper()
	c, err := dmworker.NewCoordinator(cli, append([]dmworker.CoordinatorOption{dmworker.WithKeepAliveTTL(testTTL), fastBackoff}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if err := c.Close(); err != nil {
			t.Errorf("close coordinator: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("coordinator run: %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// defaultKeys names the keys under DefaultEtcdPrefix.
var defaultKeys dmworker.EtcdKeys

// putSource creates a source key (its value is the host's source config; the
// coordinator needs only the name).
func putSource(t testing.TB, cli *clientv3.Client, name string) {
	t.Helper()
	if _, err := cli.Put(t.Context(), defaultKeys.Source(name), `{"name":"`+name+`"}`); err != nil {
		t.Fatal(err)
	}
}

// waitBindings waits until the bindings, as source -> worker, equal want,
// and returns them with their epochs.
func waitBindings(t testing.TB, c *dmworker.Coordinator, want map[string]string) map[string]dmworker.Binding {
	t.Helper()
	var got map[string]dmworker.Binding
	seen := map[string]string{}
	eventually(t, etcdWait, func() string { return fmt.Sprintf("bindings %v, want %v", seen, want) }, func() bool {
		var err error
		if got, err = c.Bindings(t.Context()); err != nil {
			t.Fatal(err)
		}
		seen = map[string]string{}
		for s, b := range got {
			if b.Source != s || b.Epoch <= 0 {
				t.Fatalf("binding %+v under source %s", b, s)
			}
			seen[s] = b.Worker
		}
		return maps.Equal(seen, want)
	})
	return got
}

// checkBindingHistory replays every change ever made under the bound/ prefix
// and fails if, at any revision, a source was bound to two workers.
func checkBindingHistory(t testing.TB, cli *clientv3.Client) {
	t.Helper()
	now, err := cli.Get(t.Context(), "any")
	if err != nil {
		t.Fatal(err)
	}
	end := now.Header.Revision
	pfx := defaultKeys.Bounds()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	state := map[string]string{} // worker -> source
	changes := 0
	for wr := range cli.Watch(ctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(1)) {
		if err := wr.Err(); err != nil {
			t.Fatalf("watch binding history: %v", err)
		}
		// A response holds the events of whole revisions: check between them.
		for i, ev := range wr.Events {
			worker := strings.TrimPrefix(string(ev.Kv.Key), pfx)
			if ev.Type == clientv3.EventTypeDelete {
				delete(state, worker)
			} else {
				var sb dmworker.SourceBinding
				if err := json.Unmarshal(ev.Kv.Value, &sb); err != nil {
					t.Fatal(err)
				}
				state[worker] = sb.Source
			}
			changes++
			if i+1 < len(wr.Events) && wr.Events[i+1].Kv.ModRevision == ev.Kv.ModRevision {
				continue
			}
			by := map[string]string{}
			for w, s := range state {
				if o, ok := by[s]; ok {
					t.Fatalf("at revision %d source %s bound to both %s and %s", ev.Kv.ModRevision, s, o, w)
				}
				by[s] = w
			}
		}
		if wr.Header.Revision >= end {
			break
		}
	}
	if changes == 0 {
		t.Fatal("no binding was ever made")
	}
}

func TestNewCoordinatorRejects(t *testing.T) {
	e := testserver.StartEtcd(t)
	for _, tc := range []struct {
		name string
		cli  *clientv3.Client
		opts []dmworker.CoordinatorOption
		want string
	}{
		// (An option a Coordinator does not take, WithWorkerAddr, no
		// longer compiles: CoordinatorOption is typed.)
		{"no client", nil, nil, "etcd client is required"},
		{"bad TTL", e.Client, []dmworker.CoordinatorOption{dmworker.WithKeepAliveTTL(100 * time.Millisecond)}, "whole number of seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dmworker.NewCoordinator(tc.cli, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCoordinator = %v, %v; want an error with %q", c, err, tc.want)
			}
		})
	}
}

// The failover story, coordinator side: a source bound to worker A moves to
// the idle worker B when A's lease is revoked, with a higher epoch; A comes
// back and does not take it back (a live binding is kept), but gets the
// next source. Never is a source bound to two workers.
func TestCoordinatorRebindsWhenWorkerDies(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	a := runKeepAlive(t, e.Client, "worker-a")
	b := runKeepAlive(t, e.Client, "worker-b")
	waitAlive(t, a, true, etcdWait)
	waitAlive(t, b, true, etcdWait)
	putSource(t, e.Client, "mysql-1")
	c, _ := runCoordinator(t, e.Client)

	// Both idle: the first in name order gets it.
	first := waitBindings(t, c, map[string]string{"mysql-1": "worker-a"})["mysql-1"]

	revoked := time.Now()
	if _, err := e.Client.Revoke(t.Context(), a.Status().Lease); err != nil {
		t.Fatal(err)
	}
	moved := waitBindings(t, c, map[string]string{"mysql-1": "worker-b"})["mysql-1"]
	t.Logf("source rebound within %s of the lease's revocation (polled every 20ms)", time.Since(revoked).Round(time.Millisecond))
	if moved.Epoch <= first.Epoch {
		t.Fatalf("epoch went from %d to %d on rebinding", first.Epoch, moved.Epoch)
	}

	waitAlive(t, a, true, etcdWait) // A registers again
	putSource(t, e.Client, "mysql-2")
	now := waitBindings(t, c, map[string]string{"mysql-1": "worker-b", "mysql-2": "worker-a"})
	if now["mysql-1"] != moved {
		t.Fatalf("live binding changed from %+v to %+v", moved, now["mysql-1"])
	}
	if now["mysql-2"].Epoch <= moved.Epoch {
		t.Fatalf("new binding's epoch %d not above the older %d", now["mysql-2"].Epoch, moved.Epoch)
	}
	checkBindingHistory(t, e.Client)
}

// A source with no idle worker waits for one; a source deleted frees its
// worker for the waiting source.
func TestCoordinatorSourceWaitsForIdleWorker(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	w1 := runKeepAlive(t, e.Client, "w1")
	waitAlive(t, w1, true, etcdWait)
	putSource(t, e.Client, "s1")
	putSource(t, e.Client, "s2")
	c, _ := runCoordinator(t, e.Client)
	waitBindings(t, c, map[string]string{"s1": "w1"})

	w2 := runKeepAlive(t, e.Client, "w2")
	waitAlive(t, w2, true, etcdWait)
	waitBindings(t, c, map[string]string{"s1": "w1", "s2": "w2"})

	putSource(t, e.Client, "s3")
	host, err := dmworker.NewEtcdHost(e.Client, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.DeleteSourceConfig(t.Context(), "s1"); err != nil {
		t.Fatal(err)
	}
	waitBindings(t, c, map[string]string{"s2": "w2", "s3": "w1"})
	checkBindingHistory(t, e.Client)
}

// Two coordinators: one leads and binds, the other stands by; when the
// leader closes, the other leads and keeps binding. Nothing is left running
// after Close.
func TestCoordinatorStandbyTakesOver(t *testing.T) {
	e := testserver.StartEtcd(t)
	if _, err := e.Client.Get(t.Context(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	cli := e.NewClient(t)

	w1 := runKeepAlive(t, cli, "w1")
	w2 := runKeepAlive(t, cli, "w2")
	waitAlive(t, w1, true, etcdWait)
	waitAlive(t, w2, true, etcdWait)
	putSource(t, e.Client, "s1")

	c1, stop1 := runCoordinator(t, cli)
	waitBindings(t, c1, map[string]string{"s1": "w1"})
	c2, stop2 := runCoordinator(t, cli)
	// c2 has campaigned once its election key is there.
	eventually(t, etcdWait, says("two election keys"), func() bool {
		resp, err := e.Client.Get(t.Context(), defaultKeys.Coordinators(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count == 2
	})
	lead1, _ := c1.Leading()
	lead2, _ := c2.Leading()
	if !lead1 || lead2 {
		t.Fatalf("leading: first %v, second %v; want only the first", lead1, lead2)
	}

	stop1()
	if l, _ := c1.Leading(); l {
		t.Fatal("closed coordinator still leading")
	}
	waitLeading(t, c2, true, etcdWait)
	putSource(t, e.Client, "s2")
	waitBindings(t, c2, map[string]string{"s1": "w1", "s2": "w2"})
	checkBindingHistory(t, e.Client)

	stop2()
	resp, err := e.Client.Get(t.Context(), defaultKeys.Coordinators(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d election keys left after both coordinators closed", resp.Count)
	}
	w1.Close()
	w2.Close()
	checkNoGoroutines(t, cli, before)
}

// etcd stopped and back: workers and coordinator lose their leases (the
// coordinator stops leading, the workers stop being alive, within the TTL),
// then register and lead again; the source is bound anew, for the workers'
// new registrations, with a higher epoch.
func TestCoordinatorEtcdRestart(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	a := runKeepAlive(t, e.Client, "worker-a")
	b := runKeepAlive(t, e.Client, "worker-b")
	waitAlive(t, a, true, etcdWait)
	waitAlive(t, b, true, etcdWait)
	putSource(t, e.Client, "mysql-1")
	c, _ := runCoordinator(t, e.Client)
	first := waitBindings(t, c, map[string]string{"mysql-1": "worker-a"})["mysql-1"]

	e.Stop()
	waitAlive(t, a, false, testTTL)
	waitAlive(t, b, false, testTTL)
	waitLeading(t, c, false, testTTL)

	e.Restart(t)
	waitAlive(t, a, true, etcdWait)
	waitAlive(t, b, true, etcdWait)
	waitLeading(t, c, true, etcdWait)
	var now dmworker.Binding
	eventually(t, etcdWait, func() string { return fmt.Sprintf("mysql-1 bound anew, now %+v", now) }, func() bool {
		got, err := c.Bindings(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		now = got["mysql-1"]
		// Bound for the worker's current registration.
		for _, w := range []*dmworker.KeepAlive{a, b} {
			if st := w.Status(); now.Worker == w.Name() && st.Alive && now.Epoch > st.Revision {
				return true
			}
		}
		return false
	})
	if now.Epoch <= first.Epoch {
		t.Fatalf("epoch went from %d to %d", first.Epoch, now.Epoch)
	}
	checkBindingHistory(t, e.Client)
}

// waitLeading waits until c's Leading reports want, failing after d.
func waitLeading(t testing.TB, c *dmworker.Coordinator, want bool, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		leading, changed := c.Leading()
		if leading == want {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("coordinator: leading is not %v within %s", want, d)
		}
	}
}

// A worker cut off from etcd (silently: no connection reset) stops serving
// before its lease expires and the coordinator gives its source to another
// worker; once the network is back it registers again, and the source stays
// where it went.
func TestCoordinatorPartitionedWorkerStopsFirst(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	proxy, err := faultnet.New(strings.TrimPrefix(e.Endpoints[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cliA, err := clientv3.New(clientv3.Config{Endpoints: []string{proxy.Addr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cliA.Close()

	// The worker's TTL leaves 2s between its stopping (at 4s without a
	// confirmed renewal) and the earliest expiry of its lease (6s).
	a := runKeepAlive(t, cliA, "worker-a", dmworker.WithKeepAliveTTL(6*time.Second))
	waitAlive(t, a, true, etcdWait)
	b := runKeepAlive(t, e.Client, "worker-b")
	waitAlive(t, b, true, etcdWait)
	putSource(t, e.Client, "mysql-1")
	c, _ := runCoordinator(t, e.Client)
	first := waitBindings(t, c, map[string]string{"mysql-1": "worker-a"})["mysql-1"]

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	bound := e.Client.Watch(ctx, defaultKeys.Bound("worker-b"), clientv3.WithRev(first.Epoch+1))
	cut := time.Now()
	proxy.Stall(true)
	timer := time.NewTimer(etcdWait)
	defer timer.Stop()
	select {
	case wr := <-bound:
		if wr.Err() != nil || len(wr.Events) == 0 || wr.Events[0].Type != clientv3.EventTypePut {
			t.Fatalf("watch of worker-b's binding: %+v, %v", wr.Events, wr.Err())
		}
		if alive, _ := a.Alive(); alive {
			t.Fatalf("worker-a still alive when its source was bound to worker-b (status %+v)", a.Status())
		}
		t.Logf("worker-a stopped %s after the cut, its source moved %s after the cut (worker TTL 6s)",
			a.Status().Since.Sub(cut).Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	case <-timer.C:
		t.Fatalf("source not moved %s after worker-a was cut off", etcdWait)
	}
	if st := a.Status(); !errors.Is(st.Err, dmworker.ErrLeaseLost) {
		t.Fatalf("worker-a status error %v, want ErrLeaseLost", st.Err)
	}
	moved := waitBindings(t, c, map[string]string{"mysql-1": "worker-b"})["mysql-1"]
	if moved.Epoch <= first.Epoch {
		t.Fatalf("epoch went from %d to %d", first.Epoch, moved.Epoch)
	}

	proxy.Stall(false)
	waitAlive(t, a, true, etcdWait)
	putSource(t, e.Client, "mysql-2") // a change the coordinator handles after A is back
	now := waitBindings(t, c, map[string]string{"mysql-1": "worker-b", "mysql-2": "worker-a"})
	if now["mysql-1"] != moved {
		t.Fatalf("binding changed from %+v to %+v", moved, now["mysql-1"])
	}
	checkBindingHistory(t, e.Client)
}

// A leader whose lease is revoked from outside steps down at once; the
// standby leads and binds; the deposed one campaigns again and stands by.
func TestCoordinatorDeposedLeaderStepsDown(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	w1 := runKeepAlive(t, e.Client, "w1")
	waitAlive(t, w1, true, etcdWait)
	c1, _ := runCoordinator(t, e.Client)
	waitLeading(t, c1, true, etcdWait)
	c2, _ := runCoordinator(t, e.Client)
	elections := func() []*electionKey {
		resp, err := e.Client.Get(t.Context(), defaultKeys.Coordinators(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			t.Fatal(err)
		}
		var out []*electionKey
		for _, kv := range resp.Kvs {
			out = append(out, &electionKey{string(kv.Key), clientv3.LeaseID(kv.Lease)})
		}
		return out
	}
	eventually(t, etcdWait, says("two election keys"), func() bool { return len(elections()) == 2 })
	leaderKey := elections()[0]

	if _, err := e.Client.Revoke(t.Context(), leaderKey.lease); err != nil {
		t.Fatal(err)
	}
	waitLeading(t, c1, false, testTTL)
	waitLeading(t, c2, true, etcdWait)
	putSource(t, e.Client, "s1")
	waitBindings(t, c2, map[string]string{"s1": "w1"})
	// The deposed coordinator is back in the race, behind the new leader.
	eventually(t, etcdWait, says("the deposed coordinator campaigning again"), func() bool {
		keys := elections()
		return len(keys) == 2 && keys[0].key != leaderKey.key && keys[1].key != leaderKey.key
	})
	if l, _ := c1.Leading(); l {
		t.Fatal("deposed coordinator leads again while the other leads")
	}
	checkBindingHistory(t, e.Client)
}

// electionKey is an election key and its lease.
type electionKey struct {
	key   string
	lease clientv3.LeaseID
}

// Clusters under different prefixes do not see each other.
func TestCoordinatorEtcdPrefix(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	other := dmworker.WithEtcdPrefix("/other") // the trailing "/" is added
	w := runKeepAlive(t, e.Client, "w1", other)
	waitAlive(t, w, true, etcdWait)
	if _, err := e.Client.Put(t.Context(), "/other/source/s1", "{}"); err != nil {
		t.Fatal(err)
	}
	putSource(t, e.Client, "s-default") // under the default prefix: no worker there
	c, _ := runCoordinator(t, e.Client, other)
	waitBindings(t, c, map[string]string{"s1": "w1"})
	resp, err := e.Client.Get(t.Context(), "/other/bound/w1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("binding under /other/bound/: %v, %v", resp, err)
	}
	var logs lockedBuffer
	def, _ := runCoordinator(t, e.Client, dmworker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	// Once it has looked, it reports its source without a worker.
	eventually(t, etcdWait, logs.String, func() bool {
		return strings.Contains(logs.String(), "sources without a worker") && strings.Contains(logs.String(), "s-default")
	})
	if b, err := def.Bindings(t.Context()); err != nil || len(b) != 0 {
		t.Fatalf("default-prefix bindings %v, %v; want none", b, err)
	}
}

// lockedBuffer collects logs written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
