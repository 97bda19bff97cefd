package dmworker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// TestCoordinatorForgetsRemovedSources: the coordinator's memory of which
// worker served each source last goes with the source. Before, a source
// added and removed left its entry for as long as the coordinator ran: 50
// sources come and gone left 50.
func TestCoordinatorForgetsRemovedSources(t *testing.T) {
	e := testserver.StartEtcd(t)
	cli := e.Client
	ctx := context.Background()
	keys := newEtcdKeys(DefaultEtcdPrefix)
	ka, err := NewKeepAlive(cli, "w1", WithKeepAliveTTL(3*time.Second), WithEtcdBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	kaErr := make(chan error, 1)
	go func() { kaErr <- ka.Run(ctx) }()
	defer func() {
		if err := ka.Close(); err != nil {
			t.Error(err)
		}
		if err := <-kaErr; err != nil {
			t.Error(err)
		}
	}()
	c, err := NewCoordinator(cli, WithKeepAliveTTL(3*time.Second), WithEtcdBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cErr := make(chan error, 1)
	go func() { cErr <- c.Run(ctx) }()
	bound := func(source string, want bool) {
		t.Helper()
		waitFor(t, func() bool {
			b, err := c.Bindings(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, ok := b[source]
			return ok == want
		})
	}
	for i := range 50 {
		s := fmt.Sprintf("s%d", i)
		if _, err := cli.Put(ctx, keys.source(s), `{"name":"`+s+`"}`); err != nil {
			t.Fatal(err)
		}
		bound(s, true)
		if _, err := cli.Delete(ctx, keys.source(s)); err != nil {
			t.Fatal(err)
		}
		bound(s, false)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-cErr; err != nil {
		t.Fatal(err)
	}
	if n := len(c.last); n > 1 {
		t.Fatalf("the coordinator remembers the last worker of %d sources after 50 came and went", n)
	}
}
