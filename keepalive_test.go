package dmworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// The Liveness a SourceWorker takes (defined with SourceWorker).
var _ interface {
	Alive() (alive bool, changed <-chan struct{})
} = (*dmworker.KeepAlive)(nil)

// testTTL is the lease TTL in these tests: short, so losses show in seconds.
const testTTL = 3 * time.Second

// etcdWait bounds waits for etcd-driven changes that have no TTL bound of
// their own (registration after etcd is back, a coordinator's reaction).
const etcdWait = 30 * time.Second

// fastBackoff retries registration soon in tests.
var fastBackoff = dmworker.WithEtcdBackoff(50*time.Millisecond, 500*time.Millisecond)

// eventually polls cond (for state that has no change notification) until
// it holds, failing the test after d with what() in the message.
func eventually(t testing.TB, d time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what())
		}
		<-tick.C
	}
}

// packageGoroutines returns the stacks of the goroutines that run code of
// this package (test code aside).
func packageGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if runsPackageCode(g) {
			left = append(left, g)
		}
	}
	return left
}

// says makes a fixed message for eventually.
func says(msg string) func() string { return func() string { return msg } }

// checkNoGoroutines checks, after Close, that no goroutine runs code of this
// package (test code aside), then closes cli, the test's own client, and
// checks with goleak that nothing started since ignore was taken is left:
// an etcd client keeps some goroutines of its own until it is closed.
func checkNoGoroutines(t testing.TB, cli *clientv3.Client, ignore goleak.Option) {
	t.Helper()
	// A goroutine of the test that called Run may still be on its way out
	// of Run's frame when Close returns (Close waits for what Run started,
	// not for Run's caller to be scheduled): poll for a short while, so
	// that only a goroutine that stays fails the test.
	var left []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		left = packageGoroutines()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, g := range left {
		t.Errorf("goroutine left after Close:\n%s", g)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, ignore)
}

// runsPackageCode reports whether a goroutine's stack (as runtime.Stack
// prints it) has a frame of the root package outside its test files.
func runsPackageCode(stack string) bool {
	lines := strings.Split(stack, "\n")
	for i := 1; i+1 < len(lines); i += 2 { // a function line, then its file line
		fn, file := lines[i], lines[i+1]
		if strings.HasPrefix(fn, "created by ") {
			return false
		}
		if strings.HasPrefix(fn, "github.com/dmworker/dmworker.") && !strings.Contains(file, "_test.go:") {
			return true
		}
	}
	return false
}

// waitAlive waits until ka's Alive reports want, failing after d.
func waitAlive(t testing.TB, ka *dmworker.KeepAlive, want bool, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		alive, changed := ka.Alive()
		if alive == want {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("worker %s: alive is not %v within %s (status %+v)", ka.Name(), want, d, ka.Status())
		}
	}
}

// runKeepAlive builds a keepalive and runs it until the test ends.
func runKeepAlive(t testing.TB, cli *clientv3.Client, name string, opts ...dmworker.KeepAliveOption) *dmworker.KeepAlive {
	t.Helper()
	ka, err := dmworker.NewKeepAlive(cli, name, append([]dmworker.KeepAliveOption{dmworker.WithKeepAliveTTL(testTTL), fastBackoff}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- ka.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := ka.Close(); err != nil {
			t.Errorf("close keepalive %s: %v", name, err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("keepalive %s run: %v", name, err)
		}
	})
	return ka
}

// workerKey reads a worker's keepalive key; ok false when it is absent.
func workerKey(t testing.TB, cli *clientv3.Client, name string) (info dmworker.WorkerInfo, lease clientv3.LeaseID, ok bool) {
	t.Helper()
	resp, err := cli.Get(t.Context(), defaultKeys.Worker(name))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return info, 0, false
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil {
		t.Fatalf("worker %s key value %q: %v", name, resp.Kvs[0].Value, err)
	}
	return info, clientv3.LeaseID(resp.Kvs[0].Lease), true
}

// leaseAlive reports whether etcd still knows lease.
func leaseAlive(t testing.TB, cli *clientv3.Client, lease clientv3.LeaseID) bool {
	t.Helper()
	resp, err := cli.TimeToLive(t.Context(), lease)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TTL > 0
}

func TestNewKeepAliveRejects(t *testing.T) {
	e := testserver.StartEtcd(t)
	for _, tc := range []struct {
		name   string
		cli    *clientv3.Client
		worker string
		opts   []dmworker.KeepAliveOption
		want   string
	}{
		{"no client", nil, "w1", nil, "etcd client is required"},
		{"empty name", e.Client, "", nil, "worker name"},
		{"slash in name", e.Client, "a/b", nil, "worker name"},
		{"fractional TTL", e.Client, "w1", []dmworker.KeepAliveOption{dmworker.WithKeepAliveTTL(1500 * time.Millisecond)}, "whole number of seconds"},
		{"zero TTL", e.Client, "w1", []dmworker.KeepAliveOption{dmworker.WithKeepAliveTTL(0)}, "whole number of seconds"},
		{"bad backoff", e.Client, "w1", []dmworker.KeepAliveOption{dmworker.WithEtcdBackoff(time.Second, time.Millisecond)}, "backoff"},
		// (An option a KeepAlive does not take, WithSource, no longer
		// compiles: KeepAliveOption is typed.)
	} {
		t.Run(tc.name, func(t *testing.T) {
			ka, err := dmworker.NewKeepAlive(tc.cli, tc.worker, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewKeepAlive = %v, %v; want an error with %q", ka, err, tc.want)
			}
		})
	}
}

// A worker registers under a lease with the TTL, publishes its info, and
// Close revokes the lease and removes the key, leaving no goroutine behind.
func TestKeepAliveRegistersAndCloseRevokes(t *testing.T) {
	e := testserver.StartEtcd(t)
	if _, err := e.Client.Get(t.Context(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	cli := e.NewClient(t)

	ka, err := dmworker.NewKeepAlive(cli, "w1", dmworker.WithKeepAliveTTL(testTTL), dmworker.WithWorkerAddr("10.0.0.1:8262"))
	if err != nil {
		t.Fatal(err)
	}
	if alive, _ := ka.Alive(); alive {
		t.Fatal("alive before Run")
	}
	runErr := make(chan error, 1)
	go func() { runErr <- ka.Run(t.Context()) }()
	waitAlive(t, ka, true, etcdWait)

	info, lease, ok := workerKey(t, e.Client, "w1")
	if !ok {
		t.Fatal("worker key absent while alive")
	}
	st := ka.Status()
	if lease != st.Lease || info.Name != "w1" || info.Addr != "10.0.0.1:8262" || info.Started == "" {
		t.Fatalf("key under lease %x with %+v; status %+v", lease, info, st)
	}
	if kv, err := cli.Get(t.Context(), defaultKeys.Worker("w1")); err != nil || kv.Kvs[0].CreateRevision != st.Revision {
		t.Fatalf("status revision %d, key %v (%v)", st.Revision, kv, err)
	}
	ttl, err := e.Client.TimeToLive(t.Context(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != int64(testTTL/time.Second) {
		t.Fatalf("granted TTL %ds, want %s", ttl.GrantedTTL, testTTL)
	}
	if err := ka.Run(t.Context()); !errors.Is(err, dmworker.ErrKeepAliveRunning) {
		t.Fatalf("second Run = %v, want ErrKeepAliveRunning", err)
	}

	if err := ka.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run after Close = %v", err)
	}
	if alive, _ := ka.Alive(); alive {
		t.Fatal("alive after Close")
	}
	if _, _, ok := workerKey(t, e.Client, "w1"); ok {
		t.Fatal("worker key still there after Close")
	}
	if leaseAlive(t, e.Client, lease) {
		t.Fatalf("lease %x not revoked by Close", lease)
	}
	if err := ka.Run(t.Context()); !errors.Is(err, dmworker.ErrKeepAliveClosed) {
		t.Fatalf("Run after Close = %v, want ErrKeepAliveClosed", err)
	}
	checkNoGoroutines(t, cli, before)
}

// A lease revoked from outside makes the worker not alive at once (the key's
// deletion is watched), then it registers again under a new lease.
func TestKeepAliveLeaseRevokedFromOutside(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	// A long TTL: renewals (every 10s) cannot be what notices the loss.
	ka := runKeepAlive(t, e.Client, "w1", dmworker.WithKeepAliveTTL(30*time.Second))
	waitAlive(t, ka, true, etcdWait)
	old := ka.Status().Lease

	if _, err := e.Client.Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	waitAlive(t, ka, false, 5*time.Second)
	if err := ka.Status().Err; !errors.Is(err, dmworker.ErrLeaseLost) {
		t.Fatalf("status error %v, want ErrLeaseLost", err)
	}
	waitAlive(t, ka, true, etcdWait)
	st := ka.Status()
	if st.Lease == old {
		t.Fatalf("registered again under the revoked lease %x", old)
	}
	if _, lease, ok := workerKey(t, e.Client, "w1"); !ok || lease != st.Lease {
		t.Fatalf("worker key present %v under lease %x, want lease %x", ok, lease, st.Lease)
	}
}

// With etcd stopped, the worker turns not alive within the TTL, before etcd
// could have expired its lease; once etcd is back it registers again under
// a new lease and the old one is gone.
func TestKeepAliveEtcdStopped(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	ka := runKeepAlive(t, e.Client, "w1")
	waitAlive(t, ka, true, etcdWait)
	old := ka.Status().Lease

	stopped := time.Now()
	e.Stop()
	waitAlive(t, ka, false, testTTL)
	st := ka.Status()
	t.Logf("not alive %s after etcd was stopped, %s after the last confirmed renewal was sent (TTL %s)",
		st.Since.Sub(stopped).Round(time.Millisecond), st.Since.Sub(st.Confirmed).Round(time.Millisecond), testTTL)
	if !errors.Is(st.Err, dmworker.ErrLeaseLost) {
		t.Fatalf("status error %v, want ErrLeaseLost", st.Err)
	}
	if deadline := st.Confirmed.Add(testTTL); !st.Since.Before(deadline) {
		t.Fatalf("turned not alive at %s, not before the lease's earliest expiry %s", st.Since, deadline)
	}

	restarted := time.Now()
	e.Restart(t)
	waitAlive(t, ka, true, etcdWait)
	st = ka.Status()
	t.Logf("registered again %s after etcd was restarted", st.Since.Sub(restarted).Round(time.Millisecond))
	if st.Lease == old {
		t.Fatalf("registered again under the old lease %x", old)
	}
	if _, lease, ok := workerKey(t, e.Client, "w1"); !ok || lease != st.Lease {
		t.Fatalf("worker key present %v under lease %x, want lease %x", ok, lease, st.Lease)
	}
	if leaseAlive(t, e.Client, old) {
		t.Fatalf("old lease %x still alive after registering again", old)
	}
}

// A second worker with the same name does not take the key over: it stays
// not alive with ErrWorkerRegistered, and registers once the first is gone.
func TestKeepAliveDuplicateNameRefused(t *testing.T) {
	t.Parallel()
	e := testserver.StartEtcd(t)
	first, err := dmworker.NewKeepAlive(e.Client, "w1", dmworker.WithKeepAliveTTL(testTTL))
	if err != nil {
		t.Fatal(err)
	}
	firstErr := make(chan error, 1)
	go func() { firstErr <- first.Run(t.Context()) }()
	defer first.Close()
	waitAlive(t, first, true, etcdWait)
	held := first.Status().Lease

	second := runKeepAlive(t, e.Client, "w1")
	eventually(t, etcdWait, says("second worker refused with ErrWorkerRegistered"), func() bool {
		return errors.Is(second.Status().Err, dmworker.ErrWorkerRegistered)
	})
	if alive, _ := second.Alive(); alive {
		t.Fatal("second worker with the same name is alive")
	}
	if _, lease, ok := workerKey(t, e.Client, "w1"); !ok || lease != held {
		t.Fatalf("worker key present %v under lease %x, want the first worker's %x", ok, lease, held)
	}
	if alive, _ := first.Alive(); !alive {
		t.Fatal("first worker lost its registration to the second")
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-firstErr; err != nil {
		t.Fatal(err)
	}
	waitAlive(t, second, true, etcdWait)
	if _, lease, ok := workerKey(t, e.Client, "w1"); !ok || lease != second.Status().Lease {
		t.Fatalf("worker key present %v under lease %x, want the second worker's %x", ok, lease, second.Status().Lease)
	}
}
