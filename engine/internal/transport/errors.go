package transport

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (where
// one applies) and, for failed system calls, an [os.SyscallError] carrying
// the errno, so both errors.Is(err, ErrPeerClosed) and
// errors.Is(err, unix.EPIPE) work.
var (
	// ErrClosed is returned by every method of a Listener, Conn or Poller
	// after its Close.
	ErrClosed = errors.New("transport: use of closed transport object")

	// ErrWouldBlock is returned (unwrapped, so it costs no allocation) when a
	// non-blocking operation cannot proceed now: no packet to read, no room
	// in the socket buffer, no pending connection. Wait for readiness and
	// retry.
	ErrWouldBlock = errors.New("transport: operation would block")

	// ErrPeerClosed means the other end has gone (EPIPE, ECONNRESET,
	// ENOTCONN). The connection should be closed.
	ErrPeerClosed = errors.New("transport: peer closed the connection")

	// ErrTruncated means a received packet was larger than the buffer given
	// to Recv; the packet is discarded (and any fds it carried are closed).
	// The next packet can still be read.
	ErrTruncated = errors.New("transport: packet truncated: buffer too small")

	// ErrTooManyFDs means a packet carried more file descriptors than the
	// receiver accepts (more than the fds slice holds, or more than MaxFDs),
	// or Send was given more than MaxFDs. On receive, the packet is
	// discarded and every fd it carried is closed.
	ErrTooManyFDs = errors.New("transport: too many file descriptors")

	// ErrEmptyPacket is returned by Send for a zero-length packet, which the
	// receiver could not tell apart from end of stream.
	ErrEmptyPacket = errors.New("transport: empty packet")

	// ErrPacketTooLarge means a packet does not fit in the socket's send
	// buffer (EMSGSIZE).
	ErrPacketTooLarge = errors.New("transport: packet too large")

	// ErrNoListener is returned by Dial when nothing listens at the path
	// (ENOENT or ECONNREFUSED).
	ErrNoListener = errors.New("transport: no listener at path")

	// ErrAddrInUse is returned by Listen when a live listener already
	// answers at the path.
	ErrAddrInUse = errors.New("transport: address in use by a live listener")

	// ErrNotSocket is returned by Listen when something other than a socket
	// exists at the path; it is left untouched.
	ErrNotSocket = errors.New("transport: path exists and is not a socket")

	// ErrLocked is returned by Listen when another process holds the
	// start-up lock ("<path>.lock") for longer than the lock timeout.
	ErrLocked = errors.New("transport: start-up lock held by another process")

	// ErrPathTooLong is returned when a socket path does not fit in
	// sockaddr_un's sun_path (107 bytes plus the terminating NUL).
	ErrPathTooLong = errors.New("transport: socket path too long")

	// ErrInvalidPath is returned for an empty path, a path containing a NUL
	// byte, or one starting with '@' (the abstract namespace is not
	// supported: it has no file permissions).
	ErrInvalidPath = errors.New("transport: invalid socket path")

	// ErrReservedToken is returned by Poller.Add and Poller.Modify for the
	// tokens the poller reserves for itself (TokenWake, TokenTimer).
	ErrReservedToken = errors.New("transport: reserved poller token")
)
