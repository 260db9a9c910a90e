package simpleipc

import (
	"errors"
	"fmt"
)

var (
	// ErrProtocol is matched (with errors.Is) by every [*ProtocolError]: a
	// packet header that is not four hexadecimal digits, the reserved
	// length 0003, or a length above 65520.
	ErrProtocol = errors.New("simpleipc: protocol error")

	// ErrTruncated means the peer closed the connection in the middle of a
	// message: inside a packet header, inside a payload, or before the
	// terminating flush packet. A response that never arrives at all is
	// reported with this error too (Git: "could not read IPC response").
	// Errors carrying it also match io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("simpleipc: message truncated before flush packet")

	// ErrTooLarge means a message exceeded the configured size limit
	// ([Config.MaxRequestSize] or [ClientOptions.MaxResponseSize]). The
	// oversized packet is not read.
	ErrTooLarge = errors.New("simpleipc: message exceeds size limit")

	// ErrInUse is returned by [Start] when a live server already answers
	// at the socket path. That server and its socket are left untouched.
	ErrInUse = errors.New("simpleipc: socket already in use by a live server")

	// ErrNotSocket is returned by [Start] when something other than a
	// socket (a regular file, directory, symbolic link, FIFO...) is at the
	// socket path and no server answers there. It is left untouched: only
	// a stale socket is ever replaced.
	ErrNotSocket = errors.New("simpleipc: socket path exists and is not a socket")

	// ErrLocked is returned by [Start] when "<path>.lock" exists and did
	// not disappear within the lock retry window (about 100 ms, like Git):
	// another server is starting on the same path, or a crashed start left
	// the lock behind.
	ErrLocked = errors.New("simpleipc: socket path is locked")

	// ErrInvalidCommand is returned by [Router.Handle], [Router.HandleFunc]
	// and [Router.Replace] for a command name that is empty or has a space
	// or NUL, or for a nil handler. Nothing is registered.
	ErrInvalidCommand = errors.New("simpleipc: invalid command")

	// ErrCommandExists is returned by [Router.Handle] and
	// [Router.HandleFunc] for a command name that is already registered.
	// The registered handler is kept; [Router.Replace] replaces it.
	ErrCommandExists = errors.New("simpleipc: command already registered")

	// ErrClosed is returned by [Server.Shutdown] and [Server.Close] after
	// the first call has stopped the server, and by [Server.Err] when the
	// server stopped normally.
	ErrClosed = errors.New("simpleipc: server closed")

	// ErrQuit may be returned by a [Handler] to ask the server to stop, as
	// Git's SIMPLE_IPC_QUIT: the client still receives its flush packet,
	// then the server stops accepting, drops queued connections, lets the
	// conversations in progress finish and removes its socket.
	ErrQuit = errors.New("simpleipc: quit requested by handler")

	// ErrAbort may be returned (or wrapped) by a [Handler] whose reply must
	// not look complete: the connection is closed without the flush
	// packet, so the client gets [ErrTruncated] instead of what was
	// written. It is counted in [Stats].Errors like any handler error.
	ErrAbort = errors.New("simpleipc: reply aborted by handler")
)

// ProtocolError describes a malformed packet header. It matches
// [ErrProtocol] with errors.Is.
type ProtocolError struct {
	// Header is the four header bytes as read.
	Header [4]byte
	// Length is the decoded packet length, or -1 when Header is not four
	// hexadecimal digits.
	Length int
}

func (e *ProtocolError) Error() string {
	if e.Length < 0 {
		return fmt.Sprintf("simpleipc: protocol error: bad line length character: %q", e.Header[:])
	}
	// Git reports the payload length (length minus the header) for
	// oversized packets and the raw length for 0003; keep it simple and
	// report the raw header.
	return fmt.Sprintf("simpleipc: protocol error: bad line length %d (header %q)", e.Length, e.Header[:])
}

// Is reports whether target is [ErrProtocol].
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// ConnectError is returned by the client functions when no conversation
// could be started: State says why, in the terms of [GetActiveState], and
// Err is the last error from connect(2).
type ConnectError struct {
	Path  string
	State ActiveState
	Err   error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("simpleipc: connecting to %q: %s: %v", e.Path, e.State, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }
