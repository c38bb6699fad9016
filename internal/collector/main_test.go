package collector

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

// TestMain fails the package's tests if a goroutine outlives them: a worker
// of a pool that was not stopped, a timer's waiter, a churn generator.
func TestMain(m *testing.M) {
	holder.RunIfChild()
	goleak.VerifyTestMain(m)
}
