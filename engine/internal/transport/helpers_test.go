package transport

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 5 * time.Second

func TestMain(m *testing.M) {
	// Start the runtime's netpoller (os/exec pipes and the testing package
	// use it) so that its fds are part of every fd-count baseline.
	r, w, err := os.Pipe()
	if err == nil {
		r.Close()
		w.Close()
	}
	os.Exit(m.Run())
}

// sockDir returns a directory short enough for socket paths, removed at the
// end of the test.
func sockDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) > 60 {
		var err error
		dir, err = os.MkdirTemp("/tmp", "gw")
		require.NoError(tb, err)
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

// sockPath returns a fresh socket path in a short directory.
func sockPath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(sockDir(tb), "s")
}

// fdCount returns how many fds this process has open.
func fdCount(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(tb, err)
	return len(ents)
}

// checkFDLeaks records the open-fd count now and checks at the end of the
// test (after every cleanup registered later has run) that it is back.
func checkFDLeaks(tb testing.TB) {
	tb.Helper()
	before := fdCount(tb)
	tb.Cleanup(func() {
		assert.Equal(tb, before, fdCount(tb), "open fds after the test (leak?)")
	})
}

func listenT(tb testing.TB, path string, cfg ListenConfig) *Listener {
	tb.Helper()
	l, err := Listen(path, cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { l.Close() })
	return l
}

func dialT(tb testing.TB, path string) *Conn {
	tb.Helper()
	c, err := Dial(path)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

func pairT(tb testing.TB) (*Conn, *Conn) {
	tb.Helper()
	a, b, err := Pair()
	require.NoError(tb, err)
	tb.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

func pipeT(tb testing.TB) (r, w int) {
	tb.Helper()
	var p [2]int
	require.NoError(tb, unix.Pipe2(p[:], unix.O_CLOEXEC))
	tb.Cleanup(func() {
		unix.Close(p[0])
		unix.Close(p[1])
	})
	return p[0], p[1]
}

// waitReadable polls fd until it is readable, failing after waitTimeout.
func waitReadable(tb testing.TB, fd int) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		require.NoError(tb, err)
		if n > 0 {
			return
		}
		require.Fail(tb, "fd not readable in time", "fd %d", fd)
	}
}

func acceptT(tb testing.TB, l *Listener) *Conn {
	tb.Helper()
	waitReadable(tb, l.Fd())
	c, err := l.Accept()
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

// recvT waits for one packet on c and returns it.
func recvT(tb testing.TB, c *Conn, fds []int) ([]byte, int) {
	tb.Helper()
	buf := make([]byte, 64<<10)
	waitReadable(tb, c.Fd())
	n, nfds, err := c.Recv(buf, fds)
	require.NoError(tb, err)
	return buf[:n], nfds
}

// recvErr waits for c to be readable and returns Recv's error.
func recvErr(tb testing.TB, c *Conn, bufLen int, fds []int) error {
	tb.Helper()
	waitReadable(tb, c.Fd())
	n, nfds, err := c.Recv(make([]byte, bufLen), fds)
	require.Error(tb, err)
	require.Zero(tb, n)
	require.Zero(tb, nfds)
	return err
}

// staleSocket leaves a SOCK_SEQPACKET socket file at path with nobody behind
// it, as a killed listener does.
func staleSocket(tb testing.TB, path string) {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(tb, err)
	require.NoError(tb, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	require.NoError(tb, unix.Listen(fd, 1))
	require.NoError(tb, unix.Close(fd))
	requireSocketFile(tb, path)
}

func requireSocketFile(tb testing.TB, path string) {
	tb.Helper()
	fi, err := os.Lstat(path)
	require.NoError(tb, err)
	require.Equal(tb, os.ModeSocket, fi.Mode().Type(), "%s is not a socket", path)
}

func requireNotExist(tb testing.TB, path string) {
	tb.Helper()
	_, err := os.Lstat(path)
	require.True(tb, errors.Is(err, os.ErrNotExist), "%s: want not-exist, got %v", path, err)
}

// requireWorks checks that a client can connect to l and exchange a packet.
// Connections queued before (such as those of Listen's probe, closed at once)
// are accepted and dropped.
func requireWorks(tb testing.TB, l *Listener) {
	tb.Helper()
	c := dialT(tb, l.Path())
	require.NoError(tb, c.Send([]byte("ping"), nil))
	buf := make([]byte, 16)
	for {
		waitReadable(tb, l.Fd())
		s, err := l.Accept()
		require.NoError(tb, err)
		waitReadable(tb, s.Fd())
		n, _, err := s.Recv(buf, nil)
		s.Close()
		if errors.Is(err, io.EOF) {
			continue // a connection that gave up
		}
		require.NoError(tb, err)
		require.Equal(tb, "ping", string(buf[:n]))
		break
	}
	require.NoError(tb, c.Close())
}
