package streamer

import (
	"context"
	"testing"
)

// UsedServerIDsForTest exposes usedServerIDs to the external tests.
func UsedServerIDsForTest(ctx context.Context, t testing.TB, c UpstreamConfig) map[uint32]bool {
	t.Helper()
	conn, err := c.connect(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	used, err := usedServerIDs(conn)
	if err != nil {
		t.Fatal(err)
	}
	return used
}
