package streamer_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: readers
// must wait for everything they started when closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
