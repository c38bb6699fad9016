package kernel

import "errors"

// Source reads objects one by one, by ID: the syscall source
// (BPF_*_GET_NEXT_ID, GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, fdinfo). The BPF
// iterators read a whole kind in one pass instead: see IteratorSource.
type Source interface {
	// NextID returns the smallest ID greater than after, or ErrEndOfList.
	NextID(k Kind, after uint32) (uint32, error)
	// NewReader returns a Reader for the use of one goroutine.
	NewReader() (Reader, error)
	// Close releases what the source holds, once its readers are closed.
	Close() error
}

// Reader fills records. A Reader is not safe for concurrent use.
type Reader interface {
	// Read fills the fields of rec that need selects for the object of kind
	// k with ID id. An error for which Gone is true means the object was
	// released since it was listed.
	Read(k Kind, id uint32, need Need, rec *Record) error
	// UsedMaps returns the IDs of the maps used by the program that the
	// last Read read in full (NeedDetails), until the next Read.
	UsedMaps() []uint32
	// Close releases what the Reader holds open.
	Close() error
}

// IteratorSource reads every object of a kind in one pass, in ascending ID
// order: the BPF iterators (Iterators). The collector merges what it reads
// with its tables; tests replace it with a fake.
type IteratorSource interface {
	// Available reports whether kind k is read by an iterator.
	Available(k Kind) bool
	// Begin starts a pass over kind k. Objects with an ID above fullAbove
	// come with every field; the others with their ID and what can change
	// (memory, element count, and run-time statistics if stats).
	Begin(k Kind, fullAbove uint32, stats bool) error
	// Next fills rec with the next object of the pass and reports whether
	// the record is full; ErrEndOfList after the last one.
	Next(rec *Record) (full bool, err error)
	// UsedMaps returns the IDs of the maps used by the program of the last
	// full record Next gave, until the next Next.
	UsedMaps() []uint32
	// End finishes the pass in progress, if any.
	End() error
	// ElementCounts reports whether map records carry element counts.
	ElementCounts() bool
	// Own returns the objects the source itself consists of.
	Own() []OwnObject
	// Close releases everything.
	Close() error
}

// OwnObject is an object the agent itself loaded.
type OwnObject struct {
	Kind Kind
	ID   uint32
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
	OpProcfsRead            // open, read (or list), close of another process's file in procfs
	OpProcfsLink            // readlink of another process's descriptor in procfs
	NumOps
)

var opNames = [NumOps]string{"get_next_id", "get_fd_by_id", "obj_get_info", "fdinfo", "close", "enable_stats", "iter_create", "iter_read",
	"procfs_read", "procfs_readlink"}

// String returns the label value used in metrics.
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return "unknown"
}

// Calls is the number of system calls one operation makes.
func (o Op) Calls() int {
	if o == OpFDInfo || o == OpProcfsRead {
		return 3
	}
	return 1
}

// Gate stands before every system call a Source makes: it enforces the
// concurrency and rate limits and counts calls and failures. Acquire
// returns an error when the collection is being stopped. Release with a nil
// err counts a call; with an error, a call and a failure.
type Gate interface {
	Acquire(op Op) error
	Release(op Op, k Kind, id uint32, err error)
}

// ErrMismatch reports an object whose info names another ID than the one it
// was opened by; it can only mean a kernel or layout bug.
var ErrMismatch = errors.New("object info does not match the requested ID")
