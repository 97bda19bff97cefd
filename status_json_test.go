package dmworker_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
)

// TestStatusJSONErrors: the status types write their LastError as text,
// nested ones included, and leave it out when nil.
func TestStatusJSONErrors(t *testing.T) {
	st := dmworker.SubTaskStatus{Name: "t", Stage: dmworker.SubTaskPaused, LastError: errors.New("boom"),
		Syncer:   dmworker.SyncerStatus{LastError: errors.New("sync failed"), Rows: 7},
		Snapshot: dmworker.SnapshotStatus{LastError: errors.New("copy failed")}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"LastError":"boom"`, `"LastError":"sync failed"`, `"LastError":"copy failed"`, `"Rows":7`, `"Name":"t"`, `"Stage":"Paused"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	b, err = json.Marshal(dmworker.RelayStatus{LastError: errors.New("disk full")})
	if err != nil || !strings.Contains(string(b), `"LastError":"disk full"`) {
		t.Errorf("relay status %s, %v", b, err)
	}
	b, err = json.Marshal(dmworker.SubTaskStatus{Name: "ok"})
	if err != nil || strings.Contains(string(b), "LastError") {
		t.Errorf("no error: %s, %v", b, err)
	}
}
