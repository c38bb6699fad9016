package kernel

import "errors"

// Source is where records come from. The syscall source asks the kernel
// object by object (BPF_*_GET_NEXT_ID, GET_FD_BY_ID, OBJ_GET_INFO_BY_FD,
// fdinfo); a BPF iterator source reads every object of a kind in a few
// large reads at Begin and answers the rest from its buffer.
type Source interface {
	// Mode names the implementation: "syscall" or "iterator".
	Mode(k Kind) string
	// Begin starts a pass over the objects of kind k, in ascending ID order.
	Begin(k Kind) error
	// NextID returns the smallest ID greater than after, or ErrEndOfList.
	NextID(k Kind, after uint32) (uint32, error)
	// NewReader returns a Reader for the use of one goroutine.
	NewReader() Reader
}

// Reader fills records. A Reader is not safe for concurrent use.
type Reader interface {
	// Read fills the fields of rec that need selects for the object of kind
	// k with ID id. An error for which Gone is true means the object was
	// released since it was listed.
	Read(k Kind, id uint32, need Need, rec *Record) error
	// Close releases what the Reader holds open.
	Close() error
}

// Op is a kind of kernel operation, for accounting and limits.
type Op uint8

const (
	OpNextID      Op = iota // BPF_*_GET_NEXT_ID
	OpGetFD                 // BPF_*_GET_FD_BY_ID
	OpInfo                  // BPF_OBJ_GET_INFO_BY_FD
	OpFDInfo                // open, read, close of /proc/self/fdinfo/<fd>
	OpClose                 // close of an object's fd
	OpEnableStats           // BPF_ENABLE_STATS
	OpIterCreate            // BPF_ITER_CREATE
	OpIterRead              // read() of an iterator
	NumOps
)

var opNames = [NumOps]string{"get_next_id", "get_fd_by_id", "obj_get_info", "fdinfo", "close", "enable_stats", "iter_create", "iter_read"}

// String returns the label value used in metrics.
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return "unknown"
}

// Calls is the number of system calls one operation makes.
func (o Op) Calls() int {
	if o == OpFDInfo {
		return 3
	}
	return 1
}

// Gate stands before every system call a Source makes: it enforces the
// concurrency and rate limits and counts calls and failures. Acquire
// returns an error when the collection is being stopped.
type Gate interface {
	Acquire(op Op) error
	Release(op Op, k Kind, id uint32, err error)
}

// ErrMismatch reports an object whose info names another ID than the one it
// was opened by; it can only mean a kernel or layout bug.
var ErrMismatch = errors.New("object info does not match the requested ID")
