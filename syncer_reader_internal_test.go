package dmworker

import (
	"context"
	"errors"
	"testing"

	"github.com/dmworker/dmworker/streamer"
)

// filterRecorder is a reader that records the table filter set on it.
type filterRecorder struct {
	keep func(schema, table string) bool
	set  int
}

func (f *filterRecorder) GetEvent(context.Context) (*streamer.Event, error) {
	return nil, streamer.ErrEndOfStream
}
func (f *filterRecorder) Close() error { return nil }
func (f *filterRecorder) SetTableFilter(keep func(schema, table string) bool) {
	f.keep, f.set = keep, f.set+1
}

// plainReader is a reader without SetTableFilter.
type plainReader struct{ set int }

func (*plainReader) GetEvent(context.Context) (*streamer.Event, error) {
	return nil, streamer.ErrEndOfStream
}
func (*plainReader) Close() error { return nil }

// TestOpenReaderSetsTableFilter: a reader from a ReaderFactory that takes a
// table filter gets the task's block and allow lists, so that it decodes
// the rows of the replicated tables only; one that does not is used as it
// is, and a factory's error passes through.
func TestOpenReaderSetsTableFilter(t *testing.T) {
	rs, err := newRules(SyncerConfig{Filter: BlockAllowList{DoDBs: []string{"shop"}, IgnoreTables: []TablePattern{{Schema: "shop", Name: "log"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var next streamer.Reader
	var nextErr error
	s := &Syncer{rules: rs, opts: syncerOptions{readerFactory: func(context.Context, streamer.Position) (streamer.Reader, error) {
		return next, nextErr
	}}}

	rec := &filterRecorder{}
	next = rec
	r, err := s.openReader(context.Background(), streamer.Position{})
	if err != nil || r != rec {
		t.Fatalf("openReader: %v, %v", r, err)
	}
	if rec.set != 1 || rec.keep == nil {
		t.Fatalf("SetTableFilter called %d times, filter set: %v", rec.set, rec.keep != nil)
	}
	for _, tc := range []struct {
		schema, table string
		want          bool
	}{{"shop", "orders", true}, {"shop", "log", false}, {"other", "orders", false}, {"mysql", "user", false}} {
		if got := rec.keep(tc.schema, tc.table); got != tc.want {
			t.Errorf("filter(%s, %s) = %v, want %v", tc.schema, tc.table, got, tc.want)
		}
	}

	plain := &plainReader{}
	next = plain
	if r, err := s.openReader(context.Background(), streamer.Position{}); err != nil || r != plain || plain.set != 0 {
		t.Fatalf("a reader without SetTableFilter: %v, %v, set %d", r, err, plain.set)
	}

	next, nextErr = nil, errors.New("no reader")
	if _, err := s.openReader(context.Background(), streamer.Position{}); err != nextErr {
		t.Fatalf("openReader error %v, want the factory's", err)
	}
}
