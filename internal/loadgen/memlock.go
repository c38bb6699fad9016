package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// memlockReader reads the "memlock" line of /proc/self/fdinfo/<fd>.
type memlockReader struct {
	dir string // "/proc/self/fdinfo/"
	buf []byte
}

var memlockKey = []byte("memlock:")

func (r *memlockReader) read(fd int) (uint64, error) {
	path := r.dir + strconv.Itoa(fd)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	defer f.Close()
	r.buf = r.buf[:0]
	for {
		if len(r.buf) == cap(r.buf) {
			r.buf = slices.Grow(r.buf, 4096)
		}
		n, err := f.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("loadgen: reading %s: %w", path, err)
		}
		if n == 0 {
			break
		}
	}
	for line := range bytes.Lines(r.buf) {
		rest, ok := bytes.CutPrefix(line, memlockKey)
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loadgen: %s: memlock %q: %w", path, bytes.TrimSpace(rest), err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("loadgen: %s has no memlock line", path)
}
