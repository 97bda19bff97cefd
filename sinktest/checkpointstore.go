package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
)

// RunCheckpointStoreConformance checks that a dmworker.CheckpointStore
// keeps its contract, and the dmworker.CheckpointMover contract when it
// implements it, with one subtest per behaviour:
//
//   - Missing: Load of a task and source with nothing stored reports false
//     and no error;
//   - RoundTrip: every field is stored and loaded back (positions with
//     their GTID sets, SafeUntil, Schema, Epoch, Snapshot, Server); a
//     Save replaces the stored checkpoint; a nil Schema keeps the stored
//     one; a nil Snapshot or an empty Server clears the stored one;
//   - NotAliased: changing the bytes of a saved or loaded checkpoint
//     afterwards changes nothing stored;
//   - Separate: tasks and sources are kept apart;
//   - StaleEpoch: a checkpoint of an older epoch is refused with
//     dmworker.ErrStaleEpoch (not retryable) and changes nothing; the same
//     or a newer epoch is stored;
//   - ConcurrentEpochs: writers of two epochs saving at once: the newer
//     epoch wins for good once stored;
//   - Move (a CheckpointMover only): a checkpoint moves to another source
//     name, Source changed and the old name emptied; nothing moves from a
//     missing source or onto a taken one;
//   - ShardLocks (a dmworker.ShardLockStore only): lock states are stored
//     by task and target, replaced, loaded back unaliased, kept apart by
//     task, and deleted by a nil state.
//
// newStore is called once per subtest; stores may share one backend:
// every subtest uses tasks of its own ("cs-<run>-<subtest>", run random
// per call). Schema values are JSON documents, as the syncer writes them.
func RunCheckpointStoreConformance(t *testing.T, newStore func(t *testing.T) dmworker.CheckpointStore) {
	t.Helper()
	run := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	tests := []struct {
		name string
		fn   func(*storeEnv)
	}{
		{"Missing", testStoreMissing},
		{"RoundTrip", testStoreRoundTrip},
		{"NotAliased", testStoreNotAliased},
		{"Separate", testStoreSeparate},
		{"StaleEpoch", testStoreStaleEpoch},
		{"ConcurrentEpochs", testStoreConcurrentEpochs},
		{"Move", testStoreMove},
		{"ShardLocks", testStoreShardLocks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			tc.fn(&storeEnv{t: t, ctx: ctx, s: newStore(t), task: "cs-" + run + "-" + tc.name})
		})
	}
}

type storeEnv struct {
	t    *testing.T
	ctx  context.Context
	s    dmworker.CheckpointStore
	task string
}

func (e *storeEnv) save(cp dmworker.Checkpoint) {
	e.t.Helper()
	if err := e.s.Save(e.ctx, cp); err != nil {
		e.t.Fatalf("save %s: %v", fmtCheckpoint(cp), err)
	}
}

// want checks the checkpoint stored for the subtest's task and source;
// want nil means none.
func (e *storeEnv) want(task, source string, want *dmworker.Checkpoint) {
	e.t.Helper()
	got, ok, err := e.s.Load(e.ctx, task, source)
	if err != nil {
		e.t.Fatalf("load %s/%s: %v", task, source, err)
	}
	switch {
	case want == nil && ok:
		e.t.Fatalf("checkpoint of %s/%s: got %s, want none", task, source, fmtCheckpoint(got))
	case want != nil && !ok:
		e.t.Fatalf("checkpoint of %s/%s: none, want %s", task, source, fmtCheckpoint(*want))
	case want != nil && !sameCheckpoint(got, *want):
		e.t.Fatalf("checkpoint of %s/%s:\n got %s\nwant %s", task, source, fmtCheckpoint(got), fmtCheckpoint(*want))
	}
}

func testStoreMissing(e *storeEnv) {
	e.want(e.task, "src", nil)
}

func testStoreRoundTrip(e *storeEnv) {
	cp := dmworker.Checkpoint{
		Task: e.task, Source: "src",
		Pos:       mustPos(e.t, "mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5"),
		SafeUntil: mustPos(e.t, "mysql-bin.000004:99 mariadb-gtid=0-1-130,1-2-5"),
		Schema:    []byte(`{"v":1}`),
		Epoch:     3,
		Snapshot:  []byte("{\"done\":[1]}\x00\xff"),
		Server:    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
	}
	e.save(cp)
	e.want(e.task, "src", &cp)

	// Replaced; a nil Schema keeps the stored one; a nil Snapshot and an
	// empty Server clear theirs; a GTID-only position.
	cp2 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"), Epoch: 3}
	e.save(cp2)
	e.want(e.task, "src", withSchema(cp2, cp.Schema))
	cp3 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000009:4"), SafeUntil: mustPos(e.t, "mysql-bin.000009:400"),
		Schema: []byte(`{"v":2}`), Epoch: 3, Snapshot: []byte("more")}
	e.save(cp3)
	e.want(e.task, "src", &cp3)
	cp4 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: cp3.Pos, SafeUntil: cp3.SafeUntil, Epoch: 3}
	e.save(cp4)
	e.want(e.task, "src", withSchema(cp4, cp3.Schema))
}

func testStoreNotAliased(e *storeEnv) {
	cp := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:100 mariadb-gtid=0-1-7"),
		Schema: []byte(`{"v":1}`), Snapshot: []byte("progress")}
	stored := cp
	stored.Schema, stored.Snapshot, stored.Pos = bytes.Clone(cp.Schema), bytes.Clone(cp.Snapshot), cp.Pos.Clone()
	e.save(cp)
	cp.Snapshot[0], cp.Schema[2] = 'X', 'X'
	e.want(e.task, "src", &stored)
	got, _, err := e.s.Load(e.ctx, e.task, "src")
	if err != nil {
		e.t.Fatal(err)
	}
	got.Snapshot[0] = 'Y'
	if len(got.Schema) > 2 {
		got.Schema[2] = 'Y'
	}
	e.want(e.task, "src", &stored)
}

func testStoreSeparate(e *storeEnv) {
	a := dmworker.Checkpoint{Task: e.task, Source: "src-a", Pos: mustPos(e.t, "mysql-bin.000001:4"), Schema: []byte(`{"a":1}`)}
	b := dmworker.Checkpoint{Task: e.task, Source: "src-b", Pos: mustPos(e.t, "mysql-bin.000002:4"), Schema: []byte(`{"b":1}`), Epoch: 7}
	c := dmworker.Checkpoint{Task: e.task + "-other", Source: "src-a", Pos: mustPos(e.t, "mysql-bin.000003:4")}
	e.save(a)
	e.save(b)
	e.save(c)
	e.want(e.task, "src-a", &a)
	e.want(e.task, "src-b", &b)
	e.want(e.task+"-other", "src-a", &c)
	e.want(e.task+"-other", "src-b", nil)
	e.want(e.task, "other", nil)
}

func testStoreStaleEpoch(e *storeEnv) {
	p1, p2 := mustPos(e.t, "mysql-bin.000002:120 mariadb-gtid=0-1-5"), mustPos(e.t, "mysql-bin.000002:900 mariadb-gtid=0-1-7")
	cp := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p2, Schema: []byte(`{"v":1}`), Epoch: 3}
	e.save(cp)
	err := e.s.Save(e.ctx, dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p1, Epoch: 2})
	if !errors.Is(err, dmworker.ErrStaleEpoch) {
		e.t.Fatalf("save from an older epoch: got %v, want dmworker.ErrStaleEpoch", err)
	}
	if dmworker.IsRetryable(err) {
		e.t.Errorf("save from an older epoch: the error is retryable: %v", err)
	}
	e.want(e.task, "src", &cp)
	same := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p1, Epoch: 3}
	e.save(same)
	e.want(e.task, "src", withSchema(same, cp.Schema))
	newer := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p2, Epoch: 4}
	e.save(newer)
	if err := e.s.Save(e.ctx, same); !errors.Is(err, dmworker.ErrStaleEpoch) {
		e.t.Fatalf("epoch 3 after epoch 4: got %v, want dmworker.ErrStaleEpoch", err)
	}
	e.want(e.task, "src", withSchema(newer, cp.Schema))
	// Other sources have epochs of their own.
	e.save(dmworker.Checkpoint{Task: e.task, Source: "other", Pos: p1, Epoch: 1})
}

func testStoreConcurrentEpochs(e *storeEnv) {
	p1 := mustPos(e.t, "mysql-bin.000002:120 mariadb-gtid=0-1-5")
	e.save(dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p1, Epoch: 3})
	var wg sync.WaitGroup
	for epoch := int64(4); epoch <= 5; epoch++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				err := e.s.Save(e.ctx, dmworker.Checkpoint{Task: e.task, Source: "src", Pos: p1, Epoch: epoch})
				if err != nil && !errors.Is(err, dmworker.ErrStaleEpoch) {
					e.t.Error(err)
				}
				if _, _, err := e.s.Load(e.ctx, e.task, "src"); err != nil {
					e.t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if cp, _, _ := e.s.Load(e.ctx, e.task, "src"); cp.Epoch != 5 {
		e.t.Fatalf("epoch %d after concurrent saves, want 5", cp.Epoch)
	}
}

func testStoreMove(e *storeEnv) {
	m, ok := e.s.(dmworker.CheckpointMover)
	if !ok {
		e.t.Skip("not a dmworker.CheckpointMover")
	}
	move := func(from, to string, want bool) {
		e.t.Helper()
		got, err := m.MoveCheckpoint(e.ctx, e.task, from, to)
		if err != nil || got != want {
			e.t.Fatalf("move %s to %s: got %v, %v; want %v", from, to, got, err, want)
		}
	}
	cp := dmworker.Checkpoint{Task: e.task, Source: "old", Pos: mustPos(e.t, "mysql-bin.000001:4 mariadb-gtid=0-1-1"), Schema: []byte(`{"v":1}`),
		Epoch: 2, Snapshot: []byte("s"), Server: "0-1"}
	e.save(cp)
	move("old", "new", true)
	e.want(e.task, "old", nil)
	moved := cp
	moved.Source = "new"
	e.want(e.task, "new", &moved)
	move("old", "new", false)       // nothing there
	move("missing", "other", false) // nothing there
	e.save(cp)
	move("old", "new", false) // taken
	e.want(e.task, "old", &cp)
	e.want(e.task, "new", &moved)
}

func testStoreShardLocks(e *storeEnv) {
	ls, ok := e.s.(dmworker.ShardLockStore)
	if !ok {
		e.t.Skip("not a dmworker.ShardLockStore")
	}
	want := func(task string, want map[string]string) {
		e.t.Helper()
		got, err := ls.LoadShardLocks(e.ctx, task)
		if err != nil {
			e.t.Fatalf("load shard locks of %s: %v", task, err)
		}
		if len(got) != len(want) {
			e.t.Fatalf("shard locks of %s: %d, want %d (%q)", task, len(got), len(want), got)
		}
		for k, v := range want {
			if string(got[k]) != v {
				e.t.Fatalf("shard lock %s/%s: %q, want %q", task, k, got[k], v)
			}
		}
		for _, v := range got {
			for i := range v {
				v[i] = 'x' // not aliased with what is stored
			}
		}
	}
	save := func(task, target string, state []byte) {
		e.t.Helper()
		if err := ls.SaveShardLock(e.ctx, task, target, state); err != nil {
			e.t.Fatalf("save shard lock %s/%s: %v", task, target, err)
		}
	}
	other := e.task + "-other"
	want(e.task, map[string]string{})
	st := []byte(`{"rounds":[]}`)
	save(e.task, "m.orders", st)
	st[2] = 'X'
	save(e.task, "m.items", []byte(`{"rounds":[1]}`))
	save(other, "m.orders", []byte(`{"other":true}`))
	want(e.task, map[string]string{"m.orders": `{"rounds":[]}`, "m.items": `{"rounds":[1]}`})
	save(e.task, "m.orders", []byte(`{"rounds":[2]}`))
	want(e.task, map[string]string{"m.orders": `{"rounds":[2]}`, "m.items": `{"rounds":[1]}`})
	save(e.task, "m.items", nil)
	want(e.task, map[string]string{"m.orders": `{"rounds":[2]}`})
	want(other, map[string]string{"m.orders": `{"other":true}`})
}
