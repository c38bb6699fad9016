package exposition

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a server
// goroutine, a connection or a scrape left behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
