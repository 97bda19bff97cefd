package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailover runs the example against real servers and an embedded etcd:
// worker a serves, is killed mid-workload, the source is rebound to b, and
// the downstream ends equal to the upstream — checked here row by row, not
// only by the example's own checksum line. A second run on the same
// servers (the demo database and the task's checkpoint are reset) passes
// too.
func TestFailover(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 700})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 701})
	from := fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr())
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for i, txns := range []string{"300", "40"} {
		var stdout, stderr syncBuffer
		code := run(ctx, []string{"-from", from, "-to", to, "-txns", txns, "-rate", "0", "-keepalive-ttl", "1s"}, &stdout, &stderr)
		out := stdout.String()
		if code != 0 {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, code, out, stderr.String())
		}
		for _, want := range []string{"killing worker a (epoch ", "rebound to worker b (epoch ", "worker b caught up at ", "tables match: failover_demo.t checksum "} {
			if !strings.Contains(out, want) {
				t.Errorf("run %d: no %q in:\n%s", i, want, out)
			}
		}
		const q = "SELECT id, k, v, amount FROM failover_demo.t ORDER BY id"
		u, d := dump(t, up, q), dump(t, down, q)
		if u != d {
			t.Fatalf("run %d: failover_demo.t differs:\nup   %s\ndown %s", i, u, d)
		}
		if !strings.Contains(u, fmt.Sprintf("row %d", 3*atoi(t, txns))) {
			t.Fatalf("run %d: the workload's last insert is missing upstream: %.200s", i, u)
		}
	}
	var stderr bytes.Buffer
	if code := run(ctx, []string{"-from", from}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Errorf("without -to: exit %d, want 2 (%s)", code, stderr.String())
	}
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func dump(t *testing.T, m *testserver.MariaDB, q string) string {
	t.Helper()
	rs, err := m.DB(t).Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var b strings.Builder
	for rs.Next() {
		var id, k int
		var v, amount string
		if err := rs.Scan(&id, &k, &v, &amount); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d,%d,%s,%s;", id, k, v, amount)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
