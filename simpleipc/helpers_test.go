package simpleipc

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// shortDir returns a fresh directory with a short path: socket paths must
// stay under 108 bytes and t.TempDir includes the test name.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sipc")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func sockPath(t testing.TB) string {
	return filepath.Join(shortDir(t), "s")
}

// startServer starts a server on a fresh path and closes it at cleanup.
func startServer(t testing.TB, h Handler, cfg *Config) (*Server, string) {
	t.Helper()
	path := sockPath(t)
	s, err := Start(path, h, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// waitFor polls cond every few milliseconds until it holds or the timeout
// passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fdCount counts the open descriptors of the kinds this package opens:
// sockets, and lock files and O_PATH directories, which the tests keep
// under the temporary directory. Other descriptors are left out: under load
// a pipe and a /dev/null descriptor were seen to appear in the test process
// without any system call of the process returning them (traced with
// strace), so they are not ours to count.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	tmp := os.TempDir() + "/"
	n := 0
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, tmp)) {
			n++
		}
	}
	return n
}

// checkNoLeaks records the goroutine and fd counts and, at cleanup, waits
// (bounded) for both to come back down. Register it before anything that
// must be gone at the end.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	g0, fd0 := runtime.NumGoroutine(), fdCount(t)
	t.Cleanup(func() {
		waitFor(t, 5*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= g0 })
		waitFor(t, 5*time.Second, "descriptors to close", func() bool { return fdCount(t) <= fd0 })
	})
}

func rawDial(t testing.TB, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawExchange writes raw bytes and returns everything the server sends
// until it closes the connection.
func rawExchange(t testing.TB, path string, in string) string {
	t.Helper()
	c := rawDial(t, path)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write([]byte(in))
	require.NoError(t, err)
	out, _ := io.ReadAll(c) // ECONNRESET possible when input is left unread
	return string(out)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var pingHandler = HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
	switch string(req) {
	case "ping":
		_, err := w.Write([]byte("pong"))
		return err
	case "quit":
		return ErrQuit
	}
	return Unhandled(w, req)
})
