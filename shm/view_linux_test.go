package shm

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newMemfd returns a memfd of size bytes carrying seals (none if seals is 0
// and sealing is not allowed at all when allowSealing is false).
func newMemfd(tb testing.TB, size int64, allowSealing bool, seals int) int {
	tb.Helper()
	flags := unix.MFD_CLOEXEC
	if allowSealing {
		flags |= unix.MFD_ALLOW_SEALING
	}
	fd, err := unix.MemfdCreate("gwipc:test-unsealed", flags)
	require.NoError(tb, err)
	require.NoError(tb, unix.Ftruncate(fd, size))
	if seals != 0 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
		require.NoError(tb, err)
	}
	return fd
}

func TestMapViewRejects(t *testing.T) {
	checkLeaks(t)
	g := Geometry{SlotSize: 64, SlotCount: 4}
	p := newTestPool(t, "rejects", g)

	tests := []struct {
		name string
		fd   func(t *testing.T) int
		g    Geometry
		want []error // the error must match one of these
	}{
		{"bad geometry", func(t *testing.T) int { return dupFd(t, p.Fd()) }, Geometry{0, 4}, []error{ErrBadGeometry}},
		{"larger geometry", func(t *testing.T) int { return dupFd(t, p.Fd()) }, Geometry{64, 8}, []error{ErrSizeMismatch}},
		{"smaller geometry", func(t *testing.T) int { return dupFd(t, p.Fd()) }, Geometry{64, 2}, []error{ErrSizeMismatch}},
		{"memfd without sealing", func(t *testing.T) int { return newMemfd(t, g.Size(), false, 0) }, g, []error{ErrNotSealed}},
		{"sealable memfd, no seals", func(t *testing.T) int { return newMemfd(t, g.Size(), true, 0) }, g, []error{ErrNotSealed}},
		{"memfd sealed against shrink only", func(t *testing.T) int {
			return newMemfd(t, g.Size(), true, unix.F_SEAL_SHRINK)
		}, g, []error{ErrNotSealed}},
		{"memfd sealed against grow only", func(t *testing.T) int {
			return newMemfd(t, g.Size(), true, unix.F_SEAL_GROW)
		}, g, []error{ErrNotSealed}},
		{"sealed memfd of wrong size", func(t *testing.T) int {
			return newMemfd(t, g.Size()-1, true, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW)
		}, g, []error{ErrSizeMismatch}},
		{"pipe", func(t *testing.T) int {
			var fds [2]int
			require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
			require.NoError(t, unix.Close(fds[1]))
			return fds[0]
		}, g, []error{ErrNotMemfd}},
		{"directory", func(t *testing.T) int {
			fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			return fd
		}, g, []error{ErrNotMemfd}},
		{"disk file", func(t *testing.T) int {
			name := filepath.Join(t.TempDir(), "pool")
			require.NoError(t, os.WriteFile(name, make([]byte, g.Size()), 0o600))
			fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			return fd
		}, g, []error{ErrNotMemfd, ErrNotSealed}}, // ErrNotSealed if TempDir is a tmpfs
		{"closed fd", func(t *testing.T) int {
			fd := dupFd(t, p.Fd())
			require.NoError(t, unix.Close(fd))
			return fd
		}, g, []error{unix.EBADF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fds := countFds(t)
			fd := tt.fd(t)
			v, err := MapView(fd, tt.g)
			require.Error(t, err)
			assert.Nil(t, v)
			matched := false
			for _, want := range tt.want {
				matched = matched || errors.Is(err, want)
			}
			assert.True(t, matched, "got %v, want one of %v", err, tt.want)
			assert.Equal(t, fds, countFds(t), "MapView closes fd on error")
		})
	}
}

func TestMapViewClosesFd(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "closes-fd", Geometry{8, 1})
	fds := countFds(t)
	v, err := MapView(dupFd(t, p.Fd()), p.Geometry())
	require.NoError(t, err)
	assert.Equal(t, fds, countFds(t), "MapView closes fd on success")
	require.NoError(t, v.Close())
}

func TestViewBytes(t *testing.T) {
	g := Geometry{SlotSize: 100, SlotCount: 3}
	p := newTestPool(t, "bounds", g)
	v := mapTestView(t, p)

	tests := []struct {
		h       Handle
		wantErr error
	}{
		{Handle{0, 0}, nil},
		{Handle{0, 100}, nil},
		{Handle{2, 100}, nil},
		{Handle{2, 1}, nil},
		{Handle{3, 0}, ErrBadSlot},
		{Handle{math.MaxUint32, 1}, ErrBadSlot},
		{Handle{0, 101}, ErrBadLength},
		{Handle{2, math.MaxUint32}, ErrBadLength},
		{Handle{3, 101}, ErrBadSlot},
	}
	for _, tt := range tests {
		b, err := v.Bytes(tt.h)
		if tt.wantErr != nil {
			assert.ErrorIs(t, err, tt.wantErr, "handle %+v", tt.h)
			assert.Nil(t, b, "handle %+v", tt.h)
			continue
		}
		require.NoError(t, err, "handle %+v", tt.h)
		assert.Len(t, b, int(tt.h.Len), "handle %+v", tt.h)
		assert.Equal(t, int(tt.h.Len), cap(b), "handle %+v: capacity must not reach past the payload", tt.h)
	}
}

// TestReadOnly checks the seals rather than writing through a view (which
// would crash the test binary).
func TestReadOnly(t *testing.T) {
	checkLeaks(t)
	g := Geometry{SlotSize: 64, SlotCount: 2}
	p := newTestPool(t, "read-only", g)
	v := mapTestView(t, p)
	fd := dupFd(t, p.Fd())
	t.Cleanup(func() { unix.Close(fd) })

	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	require.NoError(t, err)
	assert.Equal(t, poolSeals, seals&poolSeals, "seals %#x", seals)

	_, err = unix.Mmap(fd, 0, int(g.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	assert.ErrorIs(t, err, unix.EPERM, "writable shared mapping of a sealed pool")
	_, err = unix.Pwrite(fd, []byte("x"), 0)
	assert.ErrorIs(t, err, unix.EPERM, "write to a sealed pool")
	assert.ErrorIs(t, unix.Ftruncate(fd, 0), unix.EPERM, "shrink")
	assert.ErrorIs(t, unix.Ftruncate(fd, 2*g.Size()), unix.EPERM, "grow")
	_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE)
	assert.ErrorIs(t, err, unix.EPERM, "F_SEAL_SEAL: no more seals")

	// The reader's own mapping cannot be made writable either.
	v.mu.Lock()
	err = unix.Mprotect(v.mem, unix.PROT_READ|unix.PROT_WRITE)
	v.mu.Unlock()
	assert.ErrorIs(t, err, unix.EACCES, "mprotect of a read-only view")

	// The writer's mapping, made before F_SEAL_FUTURE_WRITE, still writes.
	i, err := p.Alloc()
	require.NoError(t, err)
	p.Slot(i)[0] = 42
	b, err := v.Bytes(Handle{Slot: i, Len: 1})
	require.NoError(t, err)
	assert.Equal(t, byte(42), b[0])
}

func TestViewClose(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "view-close", Geometry{8, 2})
	v, err := MapView(dupFd(t, p.Fd()), p.Geometry())
	require.NoError(t, err)
	require.Equal(t, 2, countMappings(t, poolMaps("view-close")))

	require.NoError(t, v.Close())
	require.NoError(t, v.Close(), "Close is idempotent")
	assert.Equal(t, 1, countMappings(t, poolMaps("view-close")), "unmapped at once without references")
	_, err = v.Bytes(Handle{0, 1})
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, v.Acquire(), ErrClosed)
	assert.Panics(t, v.Unref, "Unref without Acquire")
}

func TestViewCloseWithReference(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "view-ref", Geometry{8, 2})
	i, err := p.Alloc()
	require.NoError(t, err)
	copy(p.Slot(i), "sample")
	v, err := MapView(dupFd(t, p.Fd()), p.Geometry())
	require.NoError(t, err)

	sample, err := v.Bytes(Handle{Slot: i, Len: 6})
	require.NoError(t, err)
	require.NoError(t, v.Acquire()) // the sample outlives the callback
	require.NoError(t, v.Acquire())
	require.NoError(t, v.Close())
	assert.Equal(t, 2, countMappings(t, poolMaps("view-ref")), "references keep the view mapped")
	assert.Equal(t, "sample", string(sample), "would fault if unmapped")
	_, err = v.Bytes(Handle{Slot: i, Len: 6})
	assert.ErrorIs(t, err, ErrClosed)

	v.Unref()
	assert.Equal(t, 2, countMappings(t, poolMaps("view-ref")), "one reference left")
	v.Unref()
	assert.Equal(t, 1, countMappings(t, poolMaps("view-ref")), "last Unref unmaps")
	assert.Panics(t, v.Unref)
}

func TestViewUnrefBeforeClose(t *testing.T) {
	p := newTestPool(t, "view-unref", Geometry{8, 1})
	v := mapTestView(t, p)
	require.NoError(t, v.Acquire())
	v.Unref()
	_, err := v.Bytes(Handle{0, 8})
	assert.NoError(t, err, "Unref before Close leaves the view open")
	require.NoError(t, v.Close())
	assert.Equal(t, 1, countMappings(t, poolMaps("view-unref")))
}
