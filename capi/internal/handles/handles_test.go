package handles

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	kindA Kind = iota + 1
	kindB
)

// open is the number of open handles.
func open(r *Registry) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	r, err := New()
	require.NoError(t, err)
	return r
}

func TestHandlesAreAddressesInTheReservation(t *testing.T) {
	r := newRegistry(t)
	s := r.Add(kindA, "x")
	require.NotZero(t, s)
	p := r.Pointer(s)
	assert.Equal(t, s, r.Serial(uintptr(p)))
	assert.Zero(t, r.Serial(0), "NULL")
	assert.Zero(t, r.Serial(uintptr(r.base)), "the base itself is no handle")
	assert.Zero(t, r.Serial(uintptr(r.base)+uintptr(len(r.mem))), "past the end")
	var local int
	assert.Zero(t, r.Serial(uintptr(unsafe.Pointer(&local))), "a Go address")
}

func TestSerialsAreNeverReused(t *testing.T) {
	r := newRegistry(t)
	seen := map[uint64]bool{}
	for range 1000 {
		s := r.Add(kindA, nil)
		require.False(t, seen[s])
		seen[s] = true
		_, ok := r.Close(s, kindA, nil)
		require.True(t, ok)
	}
	assert.Zero(t, open(r))
}

func TestAcquireChecksKindAndState(t *testing.T) {
	r := newRegistry(t)
	s := r.Add(kindA, 42)
	ref, ok := r.Acquire(s, kindA)
	require.True(t, ok)
	assert.Equal(t, 42, ref.Object())
	ref.Release()

	_, ok = r.Acquire(s, kindB)
	assert.False(t, ok, "wrong kind")
	_, ok = r.Close(s, kindB, nil)
	assert.False(t, ok, "wrong kind cannot close")
	_, ok = r.Acquire(s+1, kindA)
	assert.False(t, ok, "never issued")

	obj, ok := r.Close(s, kindA, nil)
	assert.True(t, ok)
	assert.Equal(t, 42, obj)
	_, ok = r.Acquire(s, kindA)
	assert.False(t, ok, "closed")
	_, ok = r.Close(s, kindA, nil)
	assert.False(t, ok, "closed twice")
}

func TestCloseWaitsForTheLastReference(t *testing.T) {
	r := newRegistry(t)
	s := r.Add(kindA, "obj")
	ref1, _ := r.Acquire(s, kindA)
	ref2, _ := r.Acquire(s, kindA)
	var done []any
	_, ok := r.Close(s, kindA, func(o any) { done = append(done, o) })
	require.True(t, ok)
	assert.Empty(t, done, "still referenced")
	ref1.Release()
	assert.Empty(t, done)
	ref2.Release()
	assert.Equal(t, []any{"obj"}, done)

	s = r.Add(kindA, "now")
	r.Close(s, kindA, func(o any) { done = append(done, o) })
	assert.Equal(t, []any{"obj", "now"}, done, "unreferenced: at once")
	Ref{}.Release() // the zero Ref holds nothing
}

func TestTagsDifferByKind(t *testing.T) {
	assert.NotEqual(t, Tag(kindA), Tag(kindB))
	assert.NotZero(t, Tag(kindA))
}

func TestConcurrentAcquireAndClose(t *testing.T) {
	r := newRegistry(t)
	const handles = 200
	var finished atomic.Int32
	serials := make([]uint64, handles)
	for i := range serials {
		serials[i] = r.Add(kindA, i)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, s := range serials {
				if ref, ok := r.Acquire(s, kindA); ok {
					_ = ref.Object()
					ref.Release()
				}
			}
		})
	}
	wg.Go(func() {
		for _, s := range serials {
			r.Close(s, kindA, func(any) { finished.Add(1) })
		}
	})
	wg.Wait()
	assert.Equal(t, int32(handles), finished.Load(), "every finaliser ran exactly once")
	assert.Zero(t, open(r))
}

func TestNilRegistryHasNoHandles(t *testing.T) {
	var r *Registry
	assert.Zero(t, r.Add(kindA, "x"))
	assert.Zero(t, r.Serial(12345))
	_, ok := r.Acquire(1, kindA)
	assert.False(t, ok)
	_, ok = r.Close(1, kindA, nil)
	assert.False(t, ok)
	assert.False(t, r.Issued(1))
}
