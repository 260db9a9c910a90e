package simpleipc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestPingPongWireBytes(t *testing.T) {
	checkNoLeaks(t)
	_, path := startServer(t, pingHandler, nil)

	assert.Equal(t, "0008pong0000", rawExchange(t, path, "0008ping0000"))
	// An empty request reaches the handler as an empty request.
	assert.Equal(t, "0017unhandled command: 0000", rawExchange(t, path, "0000"))
	// 0004 ends the request: the handler sees an empty request.
	assert.Equal(t, "0017unhandled command: 0000", rawExchange(t, path, "00040008ping0000"))
	// Upper-case hex is accepted.
	assert.Equal(t, "0008pong0000", rawExchange(t, path, "0008ping0000"))
	assert.Equal(t, "001cunhandled command: ping\n0000", rawExchange(t, path, "0009ping\n0000"))
	// The reply stops at the first NUL, as Git's test-tool.
	assert.Equal(t, "0019unhandled command: ab0000", rawExchange(t, path, "0009ab\x00cd0000"))

	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
}

func TestQuitFlow(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)

	// quit gets an empty reply (only the flush packet), then the server
	// stops by itself and removes its socket.
	assert.Equal(t, "0000", rawExchange(t, path, "0008quit0000"))
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop after quit")
	}
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, NotListening, GetActiveState(path))
	assert.NoError(t, s.Close(), "first Close after quit")
	assert.ErrorIs(t, s.Close(), ErrClosed)
	assert.ErrorIs(t, s.Shutdown(context.Background()), ErrClosed)
}

func TestEmptyResponse(t *testing.T) {
	_, path := startServer(t, HandlerFunc(func(context.Context, []byte, io.Writer) error { return nil }), nil)
	resp, err := Send(ctxT(t), path, []byte("anything"), nil)
	require.NoError(t, err)
	assert.NotNil(t, resp)
	assert.Empty(t, resp)
}

var echoHandler = HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
	_, err := w.Write(req)
	return err
})

func TestMultiMegabyteRoundTrip(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, echoHandler, &Config{MaxRequestSize: 64 << 20})
	req := make([]byte, 9<<20+12345)
	for i := range req {
		req[i] = byte(i ^ i>>11)
	}
	resp, err := Send(ctxT(t), path, req, nil)
	require.NoError(t, err)
	require.True(t, bytes.Equal(req, resp), "echoed %d bytes, got %d", len(req), len(resp))

	// Streaming client.
	var out bytes.Buffer
	n, err := SendStream(ctxT(t), path, bytes.NewReader(req), &out, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(len(req)), n)
	require.True(t, bytes.Equal(req, out.Bytes()))
	require.NoError(t, s.Close())
}

func TestLargeResponse(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 3<<20/10*10) // 30 MB
	_, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := w.Write(payload)
		return err
	}), nil)
	resp, err := Send(ctxT(t), path, nil, nil)
	require.NoError(t, err)
	require.True(t, bytes.Equal(payload, resp))

	_, err = Send(ctxT(t), path, nil, &ClientOptions{MaxResponseSize: 1 << 20})
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestStreamingReplyInPieces(t *testing.T) {
	var want bytes.Buffer
	pieces := make([][]byte, 0, 2000)
	for i := range 2000 {
		p := []byte(fmt.Sprintf("line %d\n", i))
		if i%10 == 0 {
			p = nil // zero-length writes send nothing
		}
		pieces = append(pieces, p)
		want.Write(p)
	}
	_, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		for _, p := range pieces {
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		return nil
	}), nil)

	var got bytes.Buffer
	_, err := SendStream(ctxT(t), path, strings.NewReader("go"), &got, nil)
	require.NoError(t, err)
	assert.Equal(t, want.String(), got.String())

	// On the wire: one packet per non-empty write, never 0004.
	raw := rawExchange(t, path, "0006go0000")
	pr := packetReader{r: strings.NewReader(raw)}
	count := 0
	for {
		n, end, err := pr.readHeader()
		require.NoError(t, err)
		if end {
			break
		}
		require.NotZero(t, n)
		_, err = io.CopyN(io.Discard, pr.r, int64(n))
		require.NoError(t, err)
		count++
	}
	assert.Equal(t, 1800, count)
	assert.True(t, strings.HasSuffix(raw, "0000"))
}

func TestConcurrentClientsBeyondWorkers(t *testing.T) {
	checkNoLeaks(t)
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		_, err := w.Write(append([]byte("re:"), req...))
		return err
	}), &Config{Threads: 4})

	const clients = 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := []byte(fmt.Sprintf("client-%d-%s", i, strings.Repeat("x", i*5000)))
			resp, err := Send(ctxT(t), path, req, &ClientOptions{WaitIfBusy: true})
			if err != nil {
				errs <- err
				return
			}
			if string(resp) != "re:"+string(req) {
				errs <- fmt.Errorf("client %d: wrong response", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.LessOrEqual(t, maxInFlight, 4)
	assert.Equal(t, uint64(clients), s.Stats().Requests)
	require.NoError(t, s.Close())
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, pingHandler, &Config{Threads: 2, MaxRequestSize: 1000})

	// A slow client holds one worker with a half-sent request.
	slow := rawDial(t, path)
	_, err := slow.Write([]byte("0008pi"))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "slow client in flight", func() bool { return s.Stats().Active == 1 })

	bad := []struct{ name, in string }{
		{"non-hex", "00g8ping0000"},
		{"0003", "0003"},
		{"fff1", "fff1" + strings.Repeat("a", 100)},
		{"oversize", "03ec" + strings.Repeat("a", 1000) + "03ec" + strings.Repeat("b", 1000) + "0000"},
		{"eof before flush", "0008ping"},
		{"eof inside payload", "0008pi"},
		{"eof inside header", "00"},
	}
	for i, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			c := rawDial(t, path)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Write([]byte(b.in))
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			out, _ := io.ReadAll(c)
			assert.Empty(t, out, "server must close without replying")
			waitFor(t, 5*time.Second, "error counted", func() bool { return s.Stats().Errors == uint64(i+1) })

			resp, err := Send(ctxT(t), path, []byte("ping"), nil)
			require.NoError(t, err)
			assert.Equal(t, "pong", string(resp))
		})
	}
	// The slow client can still finish its conversation.
	_, err = slow.Write([]byte("ng0000"))
	require.NoError(t, err)
	out, err := io.ReadAll(slow)
	require.NoError(t, err)
	assert.Equal(t, "0008pong0000", string(out))
	require.NoError(t, s.Close())
}

func TestProbeTolerated(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, pingHandler, &Config{Threads: 1})
	for range 20 {
		assert.Equal(t, Listening, GetActiveState(path))
	}
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	st := s.Stats()
	assert.Zero(t, st.Errors)
	assert.Equal(t, uint64(1), st.Requests)
	assert.Equal(t, uint64(21), st.Accepted)
	require.NoError(t, s.Close())
}

func TestIdleClientDropped(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, pingHandler, &Config{Threads: 1, IdleTimeout: 150 * time.Millisecond})

	// Silent before the first byte: dropped quietly.
	silent := rawDial(t, path)
	// Silent in the middle of a request: dropped and counted.
	half := rawDial(t, path)
	_, err := half.Write([]byte("0008pi"))
	require.NoError(t, err)

	start := time.Now()
	resp, err := Send(ctxT(t), path, []byte("ping"), nil) // queued behind both
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)

	for _, c := range []*net.UnixConn{silent, half} {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		out, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Empty(t, out)
	}
	assert.Equal(t, uint64(1), s.Stats().Errors)
	require.NoError(t, s.Close())
}

func TestQueueFull(t *testing.T) {
	checkNoLeaks(t)
	release := make(chan struct{})
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		if string(req) == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		_, err := w.Write(req)
		return err
	}), &Config{Threads: 1})

	blocked := make(chan error, 1)
	go func() {
		_, err := Send(context.Background(), path, []byte("block"), nil)
		blocked <- err
	}()
	waitFor(t, 5*time.Second, "worker busy", func() bool { return s.Stats().Active == 1 })

	// Threads*100-1 = 99 connections fit in the queue.
	queued := make([]*net.UnixConn, 0, 99)
	for i := range 99 {
		queued = append(queued, rawDial(t, path))
		// Stay under the listen backlog of 50.
		waitFor(t, 5*time.Second, "accept", func() bool { return s.Stats().Accepted == uint64(i+2) })
	}
	over := rawDial(t, path)
	waitFor(t, 5*time.Second, "rejection", func() bool { return s.Stats().Rejected == 1 })
	over.SetDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(over)
	assert.Empty(t, out)

	for _, c := range queued {
		c.Close() // probes: closed silently
	}
	close(release)
	require.NoError(t, <-blocked)
	waitFor(t, 5*time.Second, "queue drained", func() bool { return s.Stats().Queued == 0 })
	resp, err := Send(ctxT(t), path, []byte("after"), nil)
	require.NoError(t, err)
	assert.Equal(t, "after", string(resp))
	require.NoError(t, s.Close())
}

func TestHandlerErrorAndPanic(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		switch string(req) {
		case "err":
			w.Write([]byte("partial"))
			return errors.New("boom")
		case "panic":
			w.Write([]byte("partial"))
			panic("boom")
		}
		_, err := w.Write([]byte("ok"))
		return err
	}), nil)
	// A handler error still ends with the flush packet.
	resp, err := Send(ctxT(t), path, []byte("err"), nil)
	require.NoError(t, err)
	assert.Equal(t, "partial", string(resp))
	// A panic closes without the flush packet: the client sees truncation.
	_, err = Send(ctxT(t), path, []byte("panic"), nil)
	require.ErrorIs(t, err, ErrTruncated)
	resp, err = Send(ctxT(t), path, []byte("x"), nil)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(resp))
	assert.Equal(t, uint64(2), s.Stats().Errors)
	require.NoError(t, s.Close())
}

func TestGracefulShutdown(t *testing.T) {
	checkNoLeaks(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	path := sockPath(t)
	s, err := Start(path, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		entered <- struct{}{}
		<-release
		_, err := w.Write([]byte("done:" + string(req)))
		return err
	}), &Config{Threads: 1})
	require.NoError(t, err)

	inFlight := make(chan error, 1)
	var inFlightResp []byte
	go func() {
		var err error
		inFlightResp, err = Send(context.Background(), path, []byte("A"), nil)
		inFlight <- err
	}()
	<-entered
	// B is queued: it sent its request but no worker is free.
	queued := make(chan error, 1)
	b := rawDial(t, path)
	_, err = b.Write([]byte("0005B0000"))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "B accepted", func() bool { return s.Stats().Accepted == 2 })
	go func() {
		b.SetDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(b)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with our request unread
		}
		if err == nil && len(out) > 0 {
			err = fmt.Errorf("queued client got %q", out)
		}
		queued <- err
	}()

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Stops accepting at once, drops B without a reply...
	waitFor(t, 5*time.Second, "listener closed", func() bool { return GetActiveState(path) != Listening })
	require.NoError(t, <-queued)
	// ...and lets A finish.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a conversation in flight", err)
	default:
	}
	close(release)
	require.NoError(t, <-inFlight)
	assert.Equal(t, "done:A", string(inFlightResp))
	require.NoError(t, <-shut)
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorIs(t, s.Shutdown(context.Background()), ErrClosed)
}

func TestShutdownDeadlineForcesClose(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	s, err := Start(path, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		w.Write([]byte("partial"))
		<-ctx.Done()
		return ctx.Err()
	}), nil)
	require.NoError(t, err)
	res := make(chan error, 1)
	go func() {
		_, err := Send(context.Background(), path, []byte("x"), nil)
		res <- err
	}()
	waitFor(t, 5*time.Second, "in flight", func() bool { return s.Stats().Active == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	require.ErrorIs(t, <-res, ErrTruncated)
	assert.ErrorIs(t, s.Close(), ErrClosed)
}

// TestShutdownCancelledHandlerGetsNoFlush: a forced stop cancels the
// handlers' context, then closes their connections. A handler that writes
// part of its reply and returns on ctx.Done() in between must not have the
// flush packet written after it: the client would take the partial reply
// for a complete one. Cancelling the context alone holds that window open,
// so the test does not depend on which goroutine wins.
func TestShutdownCancelledHandlerGetsNoFlush(t *testing.T) {
	checkNoLeaks(t)
	entered := make(chan struct{})
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		if _, err := w.Write([]byte("partial")); err != nil {
			return err
		}
		close(entered)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("context never cancelled")
		}
	}), nil)
	type result struct {
		resp []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := Send(ctxT(t), path, []byte("x"), nil)
		res <- result{resp, err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	s.cancel() // the first half of force
	select {
	case r := <-res:
		require.ErrorIs(t, r.err, ErrTruncated, "got %q as a complete reply", r.resp)
		assert.Nil(t, r.resp)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	assert.Equal(t, uint64(1), s.Stats().Errors)
	require.NoError(t, s.Close())
}

func TestCloseIdleServer(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	s, err := Start(path, pingHandler, &Config{Threads: 3, IdleTimeout: -1})
	require.NoError(t, err)
	c := rawDial(t, path) // waits for a first byte forever (no idle timeout)
	waitFor(t, 5*time.Second, "accepted", func() bool { return s.Stats().Accepted == 1 })
	require.NoError(t, s.Close())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	out, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Empty(t, out)
	c.Close()
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// --- start-up rules ---

func TestSecondServerRefused(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, pingHandler, nil)
	fi1, err := os.Lstat(path)
	require.NoError(t, err)

	_, err = Start(path, pingHandler, nil)
	require.ErrorIs(t, err, ErrInUse)
	_, err = os.Lstat(path + ".lock")
	assert.ErrorIs(t, err, os.ErrNotExist, "lock removed")

	fi2, err := os.Lstat(path)
	require.NoError(t, err)
	assert.True(t, os.SameFile(fi1, fi2), "first server's socket untouched")
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	require.NoError(t, s.Close())
}

// staleSocket leaves a socket nobody listens on at path.
func staleSocket(t testing.TB, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	require.NoError(t, unix.Listen(fd, 1))
	require.NoError(t, unix.Close(fd))
}

func TestStaleSocketTakenOver(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	staleSocket(t, path)
	assert.Equal(t, NotListening, GetActiveState(path))
	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	require.NoError(t, s.Close())
}

// dirEntries maps the names in dir to their file info.
func dirEntries(t *testing.T, dir string) map[string]os.FileInfo {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	m := make(map[string]os.FileInfo, len(ents))
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		m[e.Name()] = fi
	}
	return m
}

func TestNonSocketAtPathRefused(t *testing.T) {
	kinds := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("in the way"), 0o644))
		}},
		{"directory", func(t *testing.T, path string) { require.NoError(t, os.Mkdir(path, 0o755)) }},
		{"FIFO", func(t *testing.T, path string) { require.NoError(t, unix.Mkfifo(path, 0o644)) }},
		{"symlink to a stale socket", func(t *testing.T, path string) {
			target := path + "-target"
			staleSocket(t, target)
			require.NoError(t, os.Symlink(target, path))
		}},
		{"dangling symlink", func(t *testing.T, path string) {
			require.NoError(t, os.Symlink(path+"-nowhere", path))
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			checkNoLeaks(t)
			path := sockPath(t)
			k.make(t, path)
			before := dirEntries(t, filepath.Dir(path))

			s, err := Start(path, pingHandler, nil)
			if err == nil {
				s.Close()
			}
			require.ErrorIs(t, err, ErrNotSocket)
			assert.Contains(t, err.Error(), path)

			// Nothing replaced, changed, added (the lock is gone) or removed.
			after := dirEntries(t, filepath.Dir(path))
			require.Len(t, after, len(before))
			for name, fi := range before {
				require.Contains(t, after, name)
				assert.True(t, os.SameFile(fi, after[name]), "%s replaced", name)
				assert.Equal(t, fi.Mode(), after[name].Mode(), name)
				assert.Equal(t, fi.Size(), after[name].Size(), name)
			}
		})
	}
}

// TestSocketMode runs under umask 000, where bind alone gives 0777. The
// umask is process-wide: this test must not run in parallel with others
// (no test in this package calls t.Parallel).
func TestSocketMode(t *testing.T) {
	checkNoLeaks(t)
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	for _, tt := range []struct {
		mode, want os.FileMode
	}{
		{0, 0o600},
		{0o660, 0o660},
		{0o777, 0o777},
		{0o400, 0o400},
	} {
		s, path := startServer(t, pingHandler, &Config{SocketMode: tt.mode})
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		assert.Equal(t, tt.want, fi.Mode().Perm(), "SocketMode %#o", tt.mode)
		require.NoError(t, s.Close())
	}

	path := sockPath(t)
	_, err := Start(path, pingHandler, &Config{SocketMode: os.ModeSetuid | 0o600})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "socket mode")
	assert.Empty(t, dirEntries(t, filepath.Dir(path)), "nothing created")
}

func TestLockHeld(t *testing.T) {
	path := sockPath(t)
	require.NoError(t, os.WriteFile(path+".lock", nil, 0o644))
	start := time.Now()
	_, err := Start(path, pingHandler, nil)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, ErrLocked)
	assert.Contains(t, err.Error(), "locked")
	assert.GreaterOrEqual(t, elapsed, 90*time.Millisecond)
	assert.Less(t, elapsed, 2*time.Second)
	_, err = os.Lstat(path + ".lock")
	assert.NoError(t, err, "someone else's lock is left alone")
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)

	// Released within the window: start succeeds.
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.Remove(path + ".lock")
	}()
	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestSocketRemovedOnlyIfOurs(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	a, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path)) // A's socket is gone...
	b, err := Start(path, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := w.Write([]byte("B"))
		return err
	}), nil) // ...and B took the path.
	require.NoError(t, err)

	require.NoError(t, a.Close())
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err, "B's socket must survive A's shutdown")
	assert.Equal(t, "B", string(resp))

	// Same with a regular file put in place of the socket.
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o644))
	require.NoError(t, b.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "x", string(data))
}

func TestStolenSocketDetected(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	// Make the accept loop check often (Git: every 60 s of inactivity).
	old := stolenCheckInterval
	stolenCheckInterval = 20 * time.Millisecond
	t.Cleanup(func() { stolenCheckInterval = old })
	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	defer s.Close()

	require.NoError(t, os.Remove(path))
	staleSocket(t, path)
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server did not notice its socket was replaced")
	}
	fi, err := os.Lstat(path)
	require.NoError(t, err, "the new socket is left alone")
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())
}

func TestKilledServerSocketTakenOver(t *testing.T) {
	if os.Getenv("GWIPC_SIPC_HELPER_PATH") != "" {
		t.Skip("in helper")
	}
	path := sockPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServerProcess$")
	cmd.Env = append(os.Environ(), "GWIPC_SIPC_HELPER_PATH="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	assert.Equal(t, Listening, GetActiveState(path))

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	assert.Equal(t, NotListening, GetActiveState(path), "stale socket after SIGKILL")

	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	defer s.Close()
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
}

// TestHelperServerProcess is the child of TestKilledServerSocketTakenOver.
func TestHelperServerProcess(t *testing.T) {
	path := os.Getenv("GWIPC_SIPC_HELPER_PATH")
	if path == "" {
		t.Skip("helper process only")
	}
	_, err := Start(path, pingHandler, nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

func TestLongSocketPath(t *testing.T) {
	checkNoLeaks(t)
	dir := shortDir(t)
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	require.NoError(t, os.MkdirAll(long, 0o755))
	path := filepath.Join(long, "sock")
	require.Greater(t, len(path), maxSunPath)

	s, err := Start(path, pingHandler, nil)
	require.NoError(t, err)
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())
	assert.Equal(t, DefaultSocketMode, fi.Mode().Perm(), "mode set through /proc/self/fd")
	assert.Equal(t, Listening, GetActiveState(path))
	resp, err := Send(ctxT(t), path, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	_, err = Start(path, pingHandler, nil)
	require.ErrorIs(t, err, ErrInUse)
	require.NoError(t, s.Close())
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// --- active state ---

func TestGetActiveState(t *testing.T) {
	dir := shortDir(t)
	_, live := startServer(t, pingHandler, nil)

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	stale := filepath.Join(dir, "stale")
	staleSocket(t, stale)
	dgram := filepath.Join(dir, "dgram")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{Name: dgram}))

	tests := []struct {
		name string
		path string
		want ActiveState
	}{
		{"listening", live, Listening},
		{"missing path", filepath.Join(dir, "missing"), NotListening},
		{"ENOTDIR", filepath.Join(file, "sub"), NotListening},
		{"regular file", file, InvalidPath},
		{"directory", dir, InvalidPath},
		{"ENAMETOOLONG", filepath.Join(dir, strings.Repeat("n", 300)), InvalidPath},
		{"stale socket", stale, NotListening},
		{"datagram socket (EPROTOTYPE)", dgram, OtherError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, GetActiveState(tt.path))
		})
	}
	// Git's numeric values.
	assert.Equal(t, []int{0, 1, 2, 3, 4}, []int{int(Listening), int(NotListening), int(InvalidPath), int(PathNotFound), int(OtherError)})
	assert.Equal(t, "path not found", PathNotFound.String())
}

// --- client ---

func TestClientConnectErrors(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing")
	start := time.Now()
	_, err := Send(ctxT(t), missing, []byte("ping"), nil)
	var ce *ConnectError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, PathNotFound, ce.State)
	assert.ErrorIs(t, err, syscall.ENOENT)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "no waiting without WaitIfNotFound")

	stale := filepath.Join(dir, "stale")
	staleSocket(t, stale)
	_, err = Send(ctxT(t), stale, []byte("ping"), nil)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, NotListening, ce.State)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)

	// WaitIfBusy retries for about 1 s.
	start = time.Now()
	_, err = Send(ctxT(t), stale, []byte("ping"), &ClientOptions{WaitIfBusy: true})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, NotListening, ce.State)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	assert.Less(t, time.Since(start), 3*time.Second)

	// A context ends the retries.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Send(ctx, stale, []byte("ping"), &ClientOptions{WaitIfBusy: true})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestClientWaitIfNotFound(t *testing.T) {
	checkNoLeaks(t)
	path := sockPath(t)
	started := make(chan *Server, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the server appears later
		s, err := Start(path, pingHandler, nil)
		if err != nil {
			panic(err)
		}
		started <- s
	}()
	// Both flags: between bind and listen a starting server refuses
	// connections (ECONNREFUSED), in Git too.
	resp, err := Send(ctxT(t), path, []byte("ping"), &ClientOptions{WaitIfNotFound: true, WaitIfBusy: true})
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp))
	require.NoError(t, (<-started).Close())
}

// fakeServer accepts connections and answers each with reply (raw bytes)
// after reading the request, then closes.
func fakeServer(t testing.TB, reply string) string {
	t.Helper()
	path := sockPath(t)
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			pr := packetReader{r: c}
			pr.readMessage(0)
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return path
}

func TestClientResponseEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		want    string
		wantErr error
	}{
		{"immediate flush is an empty response", "0000", "", nil},
		{"data then flush", "0006ok0000", "ok", nil},
		{"bytes after flush ignored", "0006ok0000garbage", "ok", nil},
		{"0001 ends the response", "0006ok0001", "ok", nil},
		{"close without any byte", "", "", ErrTruncated},
		{"data without flush", "0006ok", "", ErrTruncated},
		{"EOF inside header", "0006ok00", "", ErrTruncated},
		{"EOF inside payload", "0009ok", "", ErrTruncated},
		{"bad hex", "zzzz", "", ErrProtocol},
		{"oversize packet", "fff1", "", ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fakeServer(t, tt.reply)
			resp, err := Send(ctxT(t), path, []byte("q"), nil)
			var out bytes.Buffer
			_, serr := SendStream(ctxT(t), path, strings.NewReader("q"), &out, nil)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorIs(t, serr, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, serr)
			assert.NotNil(t, resp)
			assert.Equal(t, tt.want, string(resp))
			assert.Equal(t, tt.want, out.String())
		})
	}
}

func TestClientContextCancelsConversation(t *testing.T) {
	checkNoLeaks(t)
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		<-ctx.Done()
		return nil
	}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Send(ctx, path, []byte("x"), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, s.Close())
}

// A handler returning ErrAbort (wrapped or not) ends the conversation
// without the flush packet: the client sees the reply cut short, not what
// was written as if it were whole.
func TestHandlerAbortCutsTheReplyShort(t *testing.T) {
	s, path := startServer(t, HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
		io.WriteString(w, "partial")
		return fmt.Errorf("command failed: %w", ErrAbort)
	}), nil)
	_, err := Send(context.Background(), path, []byte("x"), nil)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Equal(t, uint64(1), s.Stats().Errors)
}
