package shm

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// requiredSeals are the seals a reader insists on: with them the file can
// never become smaller than the size checked at MapView, so no access to the
// mapping can raise SIGBUS.
const requiredSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// View is the reader side of a pool: the writer's memfd mapped read-only
// (PROT_READ). Writing through any slice it returns faults. All methods are
// safe for concurrent use; Bytes does not allocate.
//
// The mapping lives until Close, or, if references were taken with Acquire,
// until the last Unref after Close.
type View struct {
	geo    Geometry
	stride int64
	mem    []byte      // never changes, so Bytes reads it without locking
	closed atomic.Bool // set once, under mu

	mu     sync.Mutex
	refs   int
	mapped bool
}

// MapView maps the pool memfd fd, received from the writer, read-only. It
// checks that g is valid, that fd is a memfd sealed against shrinking and
// growing (ErrNotMemfd, ErrNotSealed) and that its size is g.Size()
// (ErrSizeMismatch). MapView always takes ownership of fd: it is closed
// before MapView returns, on success and on error.
func MapView(fd int, g Geometry) (*View, error) {
	mem, err := mapReadOnly(fd, g)
	// The mapping does not depend on fd, and Linux releases the descriptor
	// even when close reports an error, so there is nothing to act on.
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	return &View{geo: g, stride: g.Stride(), mem: mem, mapped: true}, nil
}

func mapReadOnly(fd int, g Geometry) ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return mapSealed(fd, g.Size())
}

// mapSealed maps the sealed memfd fd, which must be exactly size bytes,
// read-only.
func mapSealed(fd int, size int64) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: file mode %#o", ErrNotMemfd, st.Mode&unix.S_IFMT)
	}
	// Seals first: once the size cannot change, checking it means something.
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMemfd, os.NewSyscallError("fcntl F_GET_SEALS", err))
	}
	if seals&requiredSeals != requiredSeals {
		return nil, fmt.Errorf("%w: seals %#x", ErrNotSealed, seals)
	}
	if st.Size != size {
		return nil, fmt.Errorf("%w: file has %d bytes, want %d", ErrSizeMismatch, st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return mem, nil
}

// Geometry returns the view's geometry.
func (v *View) Geometry() Geometry { return v.geo }

// Bytes returns the h.Len payload bytes at the start of slot h.Slot. The
// slice is read-only (writing to it faults) and points into memory the writer
// may still change, so treat its contents as untrusted. It is valid until
// Close, or while the caller holds a reference taken with Acquire. Bytes
// returns ErrBadSlot if h.Slot >= SlotCount, ErrBadLength if h.Len > SlotSize
// and ErrClosed after Close; it does not allocate.
func (v *View) Bytes(h Handle) ([]byte, error) {
	if h.Slot >= v.geo.SlotCount {
		return nil, ErrBadSlot
	}
	if h.Len > v.geo.SlotSize {
		return nil, ErrBadLength
	}
	if v.closed.Load() {
		return nil, ErrClosed
	}
	off := int64(h.Slot) * v.stride
	end := off + int64(h.Len)
	return v.mem[off:end:end], nil
}

// Acquire takes a reference that keeps the mapping alive after Close, for a
// sample that outlives the caller's stack. Each Acquire needs one Unref. It
// returns ErrClosed after Close.
func (v *View) Acquire() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed.Load() {
		return ErrClosed
	}
	v.refs++
	return nil
}

// Unref drops a reference taken with Acquire; after Close, the last one
// unmaps the view. Unref without a matching Acquire panics.
func (v *View) Unref() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.refs <= 0 {
		panic("shm: View.Unref without Acquire")
	}
	v.refs--
	if v.closed.Load() && v.refs == 0 {
		v.unmapLocked() // no caller to report to; munmap of a valid mapping does not fail
	}
}

// Close marks the view closed (later Bytes and Acquire return ErrClosed) and
// unmaps it now if no Acquire references are outstanding, otherwise at the
// last Unref. Close is idempotent.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed.Load() {
		return nil
	}
	v.closed.Store(true)
	if v.refs == 0 {
		return v.unmapLocked()
	}
	return nil
}

func (v *View) unmapLocked() error {
	if !v.mapped {
		return nil
	}
	v.mapped = false
	err := unix.Munmap(v.mem)
	if err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}
