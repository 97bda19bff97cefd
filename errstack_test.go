package dmworker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
)

// errFull is a downstream fault the syncer does not retry.
var errFull = errors.New("downstream table is full")

// failingSink refuses every batch with errFull.
type failingSink struct{ *sinktest.MemSink }

func (failingSink) Apply(context.Context, *dmworker.Batch) error { return errFull }

// An error that stops a unit carries the stack of where it crossed into the
// package (pingcap/errors), its log line writes that stack, and errors.Is
// and errors.As see through it as before.
func TestErrorsCarryStack(t *testing.T) {
	b := dmworkertest.NewBinlog()
	if err := b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Begin().Insert("shop", "orders", []any{int64(1)}).Commit(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opts := append(b.SyncerOptions(), dmworker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "orders", Source: "shop-db", Start: b.Start(),
		SyncerTuning: dmworker.SyncerTuning{Workers: 1}}, failingSink{sinktest.NewMemSink()}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if !errors.Is(err, errFull) {
		t.Fatalf("Run: %v, want the sink's error", err)
	}
	var se *dmworker.SyncError
	if !errors.As(err, &se) || se.Task != "orders" {
		t.Fatalf("Run: %v (%T), want a *SyncError of task orders", err, err)
	}
	if se.Error() != err.Error() {
		t.Errorf("message changed by the stack: %q, want %q", err.Error(), se.Error())
	}
	stack := dmworker.ErrorStack(err)
	if !strings.Contains(stack, "github.com/dmworker/dmworker.") || !strings.Contains(stack, ".go:") {
		t.Fatalf("ErrorStack = %q, want frames of the package with files and lines", stack)
	}
	if st := s.Status().LastError; dmworker.ErrorStack(st) == "" {
		t.Errorf("Status().LastError %v carries no stack", st)
	}
	if !strings.Contains(logs.String(), `msg="syncer stopped"`) || !strings.Contains(logs.String(), "stack=") {
		t.Errorf("the log line of the stop has no stack:\n%s", logs.String())
	}
	if dmworker.ErrorStack(errFull) != "" || dmworker.ErrorStack(nil) != "" {
		t.Error("ErrorStack of an error without a stack is not empty")
	}
}
