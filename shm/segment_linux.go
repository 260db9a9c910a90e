package shm

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxSegmentBytes is the largest Segment this package creates or maps.
const MaxSegmentBytes = 16 << 20

// Segment is a sealed memfd of a fixed size that its writer maps
// read-write and its readers map read-only (MapSegment): shared memory for
// structures other than slot pools, such as a connection's message rings.
// Like a pool's, its seals stop anyone, readers included, from resizing it
// or mapping it writable again.
type Segment struct {
	mu  sync.Mutex
	fd  int
	mem []byte
}

// NewSegment creates a zeroed segment of size bytes (at most
// MaxSegmentBytes) in a memfd named "gwipc:"+name. The caller owns it and
// must Close it.
func NewSegment(name string, size int) (*Segment, error) {
	if size <= 0 || size > MaxSegmentBytes {
		return nil, fmt.Errorf("%w: segment of %d bytes", ErrBadGeometry, size)
	}
	fd, err := createMemfd("gwipc:" + name)
	if err != nil {
		return nil, err
	}
	mem, err := setupMemfd(fd, int64(size))
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Segment{fd: fd, mem: mem}, nil
}

// Bytes is the writable mapping, valid until Close.
func (s *Segment) Bytes() []byte { return s.mem }

// Fd is the memfd, to be passed to readers; owned by the segment (-1 once
// the fd is closed by CloseFd or Close).
func (s *Segment) Fd() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fd
}

// CloseFd closes the memfd once readers have their copy; the mapping stays.
func (s *Segment) CloseFd() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// Close closes the memfd and unmaps the segment. The caller must not use
// Bytes afterwards. Idempotent.
func (s *Segment) Close() error {
	s.CloseFd()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return nil
	}
	err := unix.Munmap(s.mem)
	s.mem = nil
	if err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}

// MapSegment maps a segment received from its writer read-only, after
// checking that fd is a memfd sealed against resizing and exactly size bytes
// (at most MaxSegmentBytes). It always takes ownership of fd. The caller
// unmaps the result with UnmapSegment; no access to it can fault (SIGBUS)
// while mapped.
func MapSegment(fd int, size int) ([]byte, error) {
	defer unix.Close(fd)
	if size <= 0 || size > MaxSegmentBytes {
		return nil, fmt.Errorf("%w: segment of %d bytes", ErrBadGeometry, size)
	}
	return mapSealed(fd, int64(size))
}

// UnmapSegment unmaps what MapSegment mapped.
func UnmapSegment(mem []byte) error {
	if err := unix.Munmap(mem); err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}
