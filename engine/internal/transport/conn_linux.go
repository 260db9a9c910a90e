package transport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxFDs is the most file descriptors one packet may carry.
const MaxFDs = 8

const (
	wordSize  = int(unsafe.Sizeof(uintptr(0)))
	cmsgHdrSz = (unix.SizeofCmsghdr + wordSize - 1) &^ (wordSize - 1) // CMSG_LEN(0)
	// oobSize is CMSG_SPACE(MaxFDs * sizeof(int32)).
	oobSize  = cmsgHdrSz + (4*MaxFDs+wordSize-1)&^(wordSize-1)
	oobWords = (oobSize + 7) / 8
)

// cmsgAlign rounds n up as CMSG_ALIGN does.
func cmsgAlign(n int) int { return (n + wordSize - 1) &^ (wordSize - 1) }

// Cred is a peer's credentials, read with SO_PEERCRED when the connection
// was made: the process that called connect(2) (seen by the listener) or
// listen(2) (seen by the dialler).
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

// Conn is one connected SOCK_SEQPACKET socket in non-blocking mode.
//
// A Conn is not safe for concurrent use: the caller serialises Send, Recv and
// Close.
type Conn struct {
	fd   int
	cred Cred
	// Control-message buffers, uint64-backed so that the cmsghdr inside is
	// aligned. Kept here so that Send and Recv do not allocate.
	sendOOB [oobWords]uint64
	recvOOB [oobWords]uint64
}

func newConn(fd int) (*Conn, error) {
	uc, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil, fmt.Errorf("reading peer credentials: %w", os.NewSyscallError("getsockopt", err))
	}
	return &Conn{fd: fd, cred: Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}}, nil
}

// Dial connects to the listener at path. The connection is complete when Dial
// returns (AF_UNIX connects do not go through EINPROGRESS) and its peer
// credentials are those of the listening process.
//
// When nothing listens at path the error matches both [ErrNoListener] and the
// errno (unix.ENOENT or unix.ECONNREFUSED). When the listener's backlog is
// full the error matches unix.EAGAIN; retry later.
func Dial(path string) (*Conn, error) {
	sa, err := sockaddr(path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", path, os.NewSyscallError("socket", err))
	}
	if err := connect(fd, sa); err != nil {
		unix.Close(fd)
		serr := os.NewSyscallError("connect", err)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("dialing %s: %w: %w", path, ErrNoListener, serr)
		}
		return nil, fmt.Errorf("dialing %s: %w", path, serr)
	}
	c, err := newConn(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dialing %s: %w", path, err)
	}
	return c, nil
}

// connect calls connect(2), retrying on EINTR.
func connect(fd int, sa *unix.SockaddrUnix) error {
	for {
		err := unix.Connect(fd, sa)
		if err != unix.EINTR {
			return err
		}
	}
}

// Pair returns two connected Conns (socketpair(2)), each with this process's
// credentials. It is meant for tests and in-process links.
func Pair() (*Conn, *Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating socket pair: %w", os.NewSyscallError("socketpair", err))
	}
	a, err := newConn(fds[0])
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := newConn(fds[1])
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	return a, b, nil
}

// Fd returns the socket's file descriptor, or -1 after Close. The Conn owns
// it: do not close it or change its flags. Register it with a [Poller] to
// learn when Recv or Send can proceed.
func (c *Conn) Fd() int { return c.fd }

// Cred returns the peer's credentials, read when the connection was made.
func (c *Conn) Cred() Cred { return c.cred }

// Send sends pkt as exactly one packet, with fds (at most [MaxFDs]) attached
// through SCM_RIGHTS when fds is not empty. The fds stay owned by the caller:
// the receiver gets duplicates, so the caller may close its copies once Send
// returns.
//
// Send never blocks and never raises SIGPIPE. It returns [ErrWouldBlock] when
// the socket buffer is full (nothing was sent), an error matching
// [ErrPeerClosed] when the peer has gone, [ErrPacketTooLarge] when the packet
// can never fit, and [ErrEmptyPacket] for an empty pkt (see the package
// documentation). It does not allocate.
func (c *Conn) Send(pkt []byte, fds []int) error {
	if c.fd < 0 {
		return ErrClosed
	}
	if len(pkt) == 0 {
		return ErrEmptyPacket
	}
	if len(fds) > MaxFDs {
		return ErrTooManyFDs
	}
	iov := unix.Iovec{Base: &pkt[0]}
	iov.SetLen(len(pkt))
	msg := unix.Msghdr{Iov: &iov}
	msg.SetIovlen(1)
	if len(fds) > 0 {
		oob := unsafe.Slice((*byte)(unsafe.Pointer(&c.sendOOB[0])), oobSize)
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level = unix.SOL_SOCKET
		h.Type = unix.SCM_RIGHTS
		h.SetLen(cmsgHdrSz + 4*len(fds))
		for i, fd := range fds {
			*(*int32)(unsafe.Pointer(&oob[cmsgHdrSz+4*i])) = int32(fd)
		}
		msg.Control = &oob[0]
		msg.SetControllen(cmsgHdrSz + cmsgAlign(4*len(fds)))
	}
	for {
		n, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		switch errno {
		case 0:
			if int(n) != len(pkt) {
				return fmt.Errorf("sending: %w", io.ErrShortWrite)
			}
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return ErrWouldBlock
		case unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN:
			return fmt.Errorf("sending: %w: %w", ErrPeerClosed, os.NewSyscallError("sendmsg", errno))
		case unix.EMSGSIZE:
			return fmt.Errorf("sending %d bytes: %w: %w", len(pkt), ErrPacketTooLarge, os.NewSyscallError("sendmsg", errno))
		default:
			return fmt.Errorf("sending: %w", os.NewSyscallError("sendmsg", errno))
		}
	}
}

// Recv receives exactly one packet into buf and the file descriptors it
// carried into fds[:nfds]. The received fds are close-on-exec and owned by
// the caller from then on.
//
// Recv never blocks. It returns [ErrWouldBlock] when no packet is queued,
// [io.EOF] when the peer has shut down (a read of zero bytes with no fds),
// [ErrTruncated] when the packet was larger than buf, and [ErrTooManyFDs] when
// it carried more fds than fds holds (or more than [MaxFDs]). A packet that
// fails is consumed and dropped, and on any error every fd received in the
// call has been closed; after ErrTruncated or ErrTooManyFDs the next packet
// can still be read. It does not allocate.
func (c *Conn) Recv(buf []byte, fds []int) (n int, nfds int, err error) {
	if c.fd < 0 {
		return 0, 0, ErrClosed
	}
	var iov unix.Iovec
	if len(buf) > 0 {
		iov.Base = &buf[0]
		iov.SetLen(len(buf))
	}
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c.recvOOB[0])), oobSize)
	msg := unix.Msghdr{Iov: &iov, Control: &oob[0]}
	msg.SetIovlen(1)
	msg.SetControllen(oobSize)
	var r uintptr
	var errno unix.Errno
	for {
		r, _, errno = unix.Syscall(unix.SYS_RECVMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)),
			unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if errno != unix.EINTR {
			break
		}
	}
	switch errno {
	case 0:
	case unix.EAGAIN:
		return 0, 0, ErrWouldBlock
	case unix.ECONNRESET:
		return 0, 0, fmt.Errorf("receiving: %w: %w", ErrPeerClosed, os.NewSyscallError("recvmsg", errno))
	default:
		return 0, 0, fmt.Errorf("receiving: %w", os.NewSyscallError("recvmsg", errno))
	}
	n = int(r)

	// Collect every SCM_RIGHTS fd; those that do not fit in fds are closed
	// at once.
	tooMany := false
	oobn := int(msg.Controllen)
	for off := 0; off+unix.SizeofCmsghdr <= oobn; {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || off+l > oobn {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			for i := off + cmsgHdrSz; i+4 <= off+l; i += 4 {
				fd := int(*(*int32)(unsafe.Pointer(&oob[i])))
				if nfds < len(fds) {
					fds[nfds] = fd
					nfds++
				} else {
					unix.Close(fd)
					tooMany = true
				}
			}
		}
		off += cmsgAlign(l)
	}

	switch {
	case msg.Flags&unix.MSG_CTRUNC != 0 || tooMany:
		err = ErrTooManyFDs
	case msg.Flags&unix.MSG_TRUNC != 0:
		err = ErrTruncated
	case n == 0 && nfds == 0:
		err = io.EOF
	default:
		return n, nfds, nil
	}
	closeFDs(fds[:nfds])
	return 0, 0, err
}

func closeFDs(fds []int) {
	for i, fd := range fds {
		unix.Close(fd)
		fds[i] = -1
	}
}

// Close closes the socket. It is idempotent: later calls return nil.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	fd := c.fd
	c.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("closing connection: %w", os.NewSyscallError("close", err))
	}
	return nil
}
