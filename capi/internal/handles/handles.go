// Package handles is the registry behind the C API's opaque handles.
//
// A handle is a pointer value base+serial, where base is the start of a
// large PROT_NONE reservation of address space and serial a 64-bit counter
// that is never reused. The values are real addresses (so C and the Go
// runtime can hold them in pointer-typed slots), never Go-heap addresses,
// never dereferenced, and never the same twice: a stale handle cannot alias
// a newer object. Each serial maps to an entry {kind, object, state}; a
// handle of another kind, outside the reservation, or closed is refused.
//
// Why not github.com/mattn/go-pointer: its handles are malloc(1) addresses,
// which malloc hands out again once freed (a stale handle then names a newer
// object: ABA), and its entries carry no kind and no generation, so a
// handle of the wrong kind or a closed one is not recognised. It also needs
// cgo, and this package is pure Go so it can be tested with -race alone.
//
// Lifetime: Acquire takes a reference for the duration of a call, Close
// ends a handle (Acquire fails from then on) and runs its finaliser once
// the last reference is released, so a close racing with calls in progress
// never frees what they use.
package handles

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kind tells what a handle refers to. Zero is not a kind.
type Kind uint8

// reservations are the sizes tried for the address-space reservation, largest
// first: its size bounds the number of handles ever made.
var reservations = []uintptr{1 << 36, 1 << 32, 1 << 28, 1 << 24}

// tagBase marks the check word of caller-stored structs ("gwipc" << 16).
const tagBase = 0x6777697063 << 16

// Registry maps serials to entries. Safe for concurrent use. A nil
// *Registry has no handles and makes none (Add returns 0).
type Registry struct {
	mem  []byte // the PROT_NONE reservation
	base unsafe.Pointer

	mu      sync.RWMutex
	next    uint64 // the last serial issued
	entries map[uint64]*entry
}

type entry struct {
	kind Kind
	obj  any
	// state is references<<1 | closed. Acquire adds 2 under the read lock;
	// Close sets the closed bit under the write lock and removes the entry,
	// so no reference is taken once it is set.
	state atomic.Int64
	done  func(any) // run once, when closed and unreferenced
}

// ErrNoSpace is returned by New when no reservation could be made.
var ErrNoSpace = errors.New("handles: cannot reserve address space")

// New reserves the address space and returns an empty registry.
func New() (*Registry, error) {
	for _, size := range reservations {
		mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err == nil {
			return &Registry{mem: mem, base: unsafe.Pointer(unsafe.SliceData(mem)), entries: map[uint64]*entry{}}, nil
		}
	}
	return nil, ErrNoSpace
}

// Add registers obj and returns its new serial, or 0 once the reservation
// is used up.
func (r *Registry) Add(kind Kind, obj any) uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next+1 >= uint64(len(r.mem)) {
		return 0
	}
	r.next++
	r.entries[r.next] = &entry{kind: kind, obj: obj}
	return r.next
}

// Pointer is the handle value of serial.
func (r *Registry) Pointer(serial uint64) unsafe.Pointer {
	return unsafe.Add(r.base, serial)
}

// Serial is the serial a handle value names, or 0 if it is outside the
// reservation (NULL included).
func (r *Registry) Serial(addr uintptr) uint64 {
	if r == nil {
		return 0
	}
	base := uintptr(r.base)
	if addr <= base || addr-base >= uintptr(len(r.mem)) {
		return 0
	}
	return uint64(addr - base)
}

// Tag is the check word stored next to the serial in caller-stored structs
// of kind k.
func Tag(k Kind) uint64 { return tagBase | uint64(k) }

// Ref is a reference taken by Acquire; the zero Ref holds nothing.
type Ref struct {
	e *entry
}

// Acquire takes a reference on serial's entry if it is open and of kind k.
func (r *Registry) Acquire(serial uint64, k Kind) (Ref, bool) {
	if r == nil {
		return Ref{}, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.entries[serial]
	if e == nil || e.kind != k {
		return Ref{}, false
	}
	e.state.Add(2)
	return Ref{e}, true
}

// Object is the registered object.
func (ref Ref) Object() any { return ref.e.obj }

// Release gives the reference back; the last one of a closed entry runs its
// finaliser.
func (ref Ref) Release() {
	if ref.e != nil && ref.e.state.Add(-2) == 1 {
		ref.e.finish()
	}
}

// Close ends serial's handle if it is open and of kind k, and reports
// whether it did (exactly once per handle). Acquire fails from now on;
// done (may be nil) runs with the object once no reference is held: at
// once, or in the last Release.
func (r *Registry) Close(serial uint64, k Kind, done func(any)) (any, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	e := r.entries[serial]
	if e == nil || e.kind != k {
		r.mu.Unlock()
		return nil, false
	}
	delete(r.entries, serial)
	e.done = done
	last := e.state.Add(1) == 1
	r.mu.Unlock()
	if last {
		e.finish()
	}
	return e.obj, true
}

func (e *entry) finish() {
	if e.done != nil {
		e.done(e.obj)
	}
}

// Issued reports whether serial was ever issued (it may be closed since).
func (r *Registry) Issued(serial uint64) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return serial != 0 && serial <= r.next
}
