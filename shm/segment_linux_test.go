package shm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestSegmentIsSharedReadOnly(t *testing.T) {
	checkLeaks(t)
	s, err := NewSegment("seg", 8192)
	require.NoError(t, err)
	defer s.Close()
	fd, err := unix.FcntlInt(uintptr(s.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(t, err)
	ro, err := MapSegment(fd, 8192)
	require.NoError(t, err)
	defer UnmapSegment(ro)
	s.Bytes()[100] = 42
	assert.Equal(t, byte(42), ro[100], "the reader sees the writer's bytes")
	_, err = unix.Mmap(s.Fd(), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	assert.Error(t, err, "sealed: nobody maps it writable again")
	s.CloseFd()
	assert.Equal(t, -1, s.Fd())
	s.Bytes()[101] = 7 // the writer's mapping survives its fd
	assert.Equal(t, byte(7), ro[101])
}

func TestMapSegmentRefusesWhatItCannotTrust(t *testing.T) {
	checkLeaks(t)
	s, err := NewSegment("seg", 4096)
	require.NoError(t, err)
	defer s.Close()
	dup := func() int {
		fd, err := unix.FcntlInt(uintptr(s.Fd()), unix.F_DUPFD_CLOEXEC, 0)
		require.NoError(t, err)
		return fd
	}
	_, err = MapSegment(dup(), 8192)
	assert.ErrorIs(t, err, ErrSizeMismatch)
	_, err = MapSegment(dup(), MaxSegmentBytes+1)
	assert.ErrorIs(t, err, ErrBadGeometry)
	unsealed, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	require.NoError(t, unix.Ftruncate(unsealed, 4096))
	_, err = MapSegment(unsealed, 4096)
	assert.ErrorIs(t, err, ErrNotSealed)
	_, err = NewSegment("big", MaxSegmentBytes+1)
	assert.ErrorIs(t, err, ErrBadGeometry)
}
