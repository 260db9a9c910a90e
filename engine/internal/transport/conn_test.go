package transport

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestDialAcceptCred(t *testing.T) {
	checkFDLeaks(t)
	l := listenT(t, sockPath(t), ListenConfig{})
	c := dialT(t, l.Path())
	s := acceptT(t, l)

	want := Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	assert.Equal(t, want, c.Cred(), "dialler's view of the listener")
	assert.Equal(t, want, s.Cred(), "listener's view of the dialler")

	require.NoError(t, c.Send([]byte("hello"), nil))
	got, nfds := recvT(t, s, nil)
	assert.Equal(t, "hello", string(got))
	assert.Zero(t, nfds)
	require.NoError(t, s.Send([]byte("world"), nil))
	got, _ = recvT(t, c, nil)
	assert.Equal(t, "world", string(got))

	_, err := l.Accept()
	assert.ErrorIs(t, err, ErrWouldBlock, "second Accept with nothing pending")
}

func TestPacketBoundaries(t *testing.T) {
	a, b := pairT(t)
	sizes := []int{1, 1000, 7}
	for i, n := range sizes {
		require.NoError(t, a.Send(bytes.Repeat([]byte{byte('a' + i)}, n), nil))
	}
	for i, n := range sizes {
		got, _ := recvT(t, b, nil)
		assert.Equal(t, bytes.Repeat([]byte{byte('a' + i)}, n), got, "packet %d", i)
	}
	_, _, err := b.Recv(make([]byte, 10), nil)
	assert.ErrorIs(t, err, ErrWouldBlock)
}

// TestEmptyPacket documents why Send refuses empty packets: a zero-length
// SEQPACKET record reads exactly like end of stream.
func TestEmptyPacket(t *testing.T) {
	a, b := pairT(t)
	assert.ErrorIs(t, a.Send(nil, nil), ErrEmptyPacket)
	assert.ErrorIs(t, a.Send([]byte{}, nil), ErrEmptyPacket)

	// A foreign sender can still send one; Recv reports io.EOF although the
	// connection is alive.
	n, err := unix.Write(a.Fd(), nil)
	require.NoError(t, err)
	require.Zero(t, n)
	assert.ErrorIs(t, recvErr(t, b, 16, nil), io.EOF)
	require.NoError(t, a.Send([]byte("x"), nil))
	got, _ := recvT(t, b, nil)
	assert.Equal(t, "x", string(got))
}

func TestFDPassing(t *testing.T) {
	checkFDLeaks(t)
	a, b := pairT(t)
	r, w := pipeT(t)

	require.NoError(t, a.Send([]byte("pipe"), []int{w}))
	fds := make([]int, MaxFDs)
	got, nfds := recvT(t, b, fds)
	require.Equal(t, "pipe", string(got))
	require.Equal(t, 1, nfds)
	recvd := fds[0]
	t.Cleanup(func() { unix.Close(recvd) })
	assert.NotEqual(t, w, recvd, "a new fd number")

	flags, err := unix.FcntlInt(uintptr(recvd), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, flags&unix.FD_CLOEXEC, "received fd is close-on-exec")

	_, err = unix.Write(recvd, []byte("through"))
	require.NoError(t, err)
	buf := make([]byte, 16)
	n, err := unix.Read(r, buf)
	require.NoError(t, err)
	assert.Equal(t, "through", string(buf[:n]))
}

func TestFDPassingMax(t *testing.T) {
	checkFDLeaks(t)
	a, b := pairT(t)
	var ws []int
	for range MaxFDs {
		_, w := pipeT(t)
		ws = append(ws, w)
	}
	require.NoError(t, a.Send([]byte("max"), ws))
	fds := make([]int, MaxFDs)
	_, nfds := recvT(t, b, fds)
	require.Equal(t, MaxFDs, nfds)
	closeFDs(fds[:nfds])

	assert.ErrorIs(t, a.Send([]byte("x"), append(ws, ws[0])), ErrTooManyFDs, "Send with MaxFDs+1")
}

func TestRecvTooManyFDs(t *testing.T) {
	checkFDLeaks(t)
	a, b := pairT(t)
	var ws []int
	for range MaxFDs + 1 {
		_, w := pipeT(t)
		ws = append(ws, w)
	}

	// More fds than the caller's slice holds.
	require.NoError(t, a.Send([]byte("three"), ws[:3]))
	fds := []int{-1, -1}
	assert.ErrorIs(t, recvErr(t, b, 64, fds), ErrTooManyFDs)
	assert.Equal(t, []int{-1, -1}, fds, "closed fds are not left in fds")

	// More than MaxFDs from a foreign sender: the kernel truncates the
	// control data (MSG_CTRUNC).
	_, err := unix.SendmsgN(a.Fd(), []byte("nine"), unix.UnixRights(ws...), nil, unix.MSG_DONTWAIT)
	require.NoError(t, err)
	assert.ErrorIs(t, recvErr(t, b, 64, make([]int, MaxFDs)), ErrTooManyFDs)

	// A packet with fds but none accepted.
	require.NoError(t, a.Send([]byte("one"), ws[:1]))
	assert.ErrorIs(t, recvErr(t, b, 64, nil), ErrTooManyFDs)

	// The stream goes on.
	require.NoError(t, a.Send([]byte("next"), nil))
	got, _ := recvT(t, b, nil)
	assert.Equal(t, "next", string(got))
}

func TestTruncated(t *testing.T) {
	checkFDLeaks(t)
	a, b := pairT(t)
	_, w := pipeT(t)

	require.NoError(t, a.Send(make([]byte, 100), []int{w}))
	assert.ErrorIs(t, recvErr(t, b, 10, make([]int, 1)), ErrTruncated)

	require.NoError(t, a.Send([]byte("next"), nil))
	got, _ := recvT(t, b, nil)
	assert.Equal(t, "next", string(got))
}

func TestPeerClosed(t *testing.T) {
	checkFDLeaks(t)
	a, b := pairT(t)
	require.NoError(t, b.Send([]byte("bye"), nil))
	require.NoError(t, b.Close())

	// Queued data first, then end of stream.
	got, _ := recvT(t, a, nil)
	assert.Equal(t, "bye", string(got))
	_, _, err := a.Recv(make([]byte, 16), nil)
	assert.ErrorIs(t, err, io.EOF)

	// No SIGPIPE: the test binary would die.
	err = a.Send([]byte("anyone?"), nil)
	assert.ErrorIs(t, err, ErrPeerClosed)
	assert.ErrorIs(t, err, unix.EPIPE)
}

func TestPeerClosedViaListener(t *testing.T) {
	l := listenT(t, sockPath(t), ListenConfig{})
	c := dialT(t, l.Path())
	s := acceptT(t, l)
	require.NoError(t, s.Close())
	assert.ErrorIs(t, c.Send([]byte("x"), nil), ErrPeerClosed)
	assert.ErrorIs(t, recvErr(t, c, 16, nil), io.EOF)
}

func TestSendWouldBlock(t *testing.T) {
	a, b := pairT(t)
	pkt := make([]byte, 1024)
	sent := 0
	for ; sent < 1<<20; sent++ {
		err := a.Send(pkt, nil)
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		require.NoError(t, err)
	}
	require.Less(t, sent, 1<<20, "socket buffer never filled")
	require.Positive(t, sent)

	buf := make([]byte, 2048)
	for i := range sent {
		n, _, err := b.Recv(buf, nil)
		require.NoError(t, err, "packet %d of %d", i, sent)
		require.Equal(t, len(pkt), n)
	}
	_, _, err := b.Recv(buf, nil)
	require.ErrorIs(t, err, ErrWouldBlock)
	require.NoError(t, a.Send(pkt, nil), "send after draining")
}

func TestPacketTooLarge(t *testing.T) {
	a, _ := pairT(t)
	err := a.Send(make([]byte, 16<<20), nil)
	assert.ErrorIs(t, err, ErrPacketTooLarge)
	assert.ErrorIs(t, err, unix.EMSGSIZE)
}

func TestConnClosed(t *testing.T) {
	checkFDLeaks(t)
	a, b, err := Pair()
	require.NoError(t, err)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "second Close")
	assert.Equal(t, -1, a.Fd())
	assert.ErrorIs(t, a.Send([]byte("x"), nil), ErrClosed)
	_, _, err = a.Recv(make([]byte, 1), nil)
	assert.ErrorIs(t, err, ErrClosed)
	require.NoError(t, b.Close())
}

func TestConnAllocs(t *testing.T) {
	a, b := pairT(t)
	pkt := make([]byte, 64)
	buf := make([]byte, 256)
	fds := make([]int, MaxFDs)

	allocs := testing.AllocsPerRun(200, func() {
		if err := a.Send(pkt, nil); err != nil {
			panic(err)
		}
		if n, _, err := b.Recv(buf, fds); err != nil || n != len(pkt) {
			panic(err)
		}
	})
	assert.Zero(t, allocs, "Send+Recv without fds")

	allocs = testing.AllocsPerRun(200, func() {
		if _, _, err := b.Recv(buf, fds); err != ErrWouldBlock {
			panic(err)
		}
	})
	assert.Zero(t, allocs, "Recv with nothing queued")

	_, w := pipeT(t)
	one := []int{w}
	allocs = testing.AllocsPerRun(200, func() {
		if err := a.Send(pkt, one); err != nil {
			panic(err)
		}
		_, nfds, err := b.Recv(buf, fds)
		if err != nil || nfds != 1 {
			panic(err)
		}
		unix.Close(fds[0])
	})
	assert.Zero(t, allocs, "Send+Recv with one fd")
}

func BenchmarkSendRecv(b *testing.B) {
	x, y := pairT(b)
	pkt := make([]byte, 64)
	buf := make([]byte, 256)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if err := x.Send(pkt, nil); err != nil {
			b.Fatal(err)
		}
		if _, _, err := y.Recv(buf, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendRecvFD(b *testing.B) {
	x, y := pairT(b)
	_, w := pipeT(b)
	pkt := make([]byte, 64)
	buf := make([]byte, 256)
	one := []int{w}
	fds := make([]int, MaxFDs)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if err := x.Send(pkt, one); err != nil {
			b.Fatal(err)
		}
		if _, _, err := y.Recv(buf, fds); err != nil {
			b.Fatal(err)
		}
		unix.Close(fds[0])
	}
}

// BenchmarkRawSocketpair is the baseline: write(2)/read(2) on a
// SOCK_SEQPACKET socketpair through x/sys/unix.
func BenchmarkRawSocketpair(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(b, err)
	b.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	pkt := make([]byte, 64)
	buf := make([]byte, 256)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unix.Write(fds[0], pkt); err != nil {
			b.Fatal(err)
		}
		if _, err := unix.Read(fds[1], buf); err != nil {
			b.Fatal(err)
		}
	}
}
