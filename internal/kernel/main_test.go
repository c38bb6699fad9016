package kernel

import (
	"os"
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

func TestMain(m *testing.M) {
	// The holders tests run this binary again as the process that holds.
	holder.RunIfChild()
	os.Exit(m.Run())
}
