package simpleipc

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// ActiveState is the result of [GetActiveState], with Git's numeric values
// (enum ipc_active_state).
type ActiveState int

const (
	// Listening: a server accepted a connection at the path.
	Listening ActiveState = 0
	// NotListening: nothing at the path, or a socket nobody listens on
	// (a stale socket left by a killed server).
	NotListening ActiveState = 1
	// InvalidPath: something other than a socket is at the path, or the
	// path could not be examined.
	InvalidPath ActiveState = 2
	// PathNotFound: the socket vanished between lstat and connect.
	PathNotFound ActiveState = 3
	// OtherError: connect failed for another reason.
	OtherError ActiveState = 4
)

// String returns the state's name, e.g. "listening".
func (s ActiveState) String() string {
	switch s {
	case Listening:
		return "listening"
	case NotListening:
		return "not listening"
	case InvalidPath:
		return "invalid path"
	case PathNotFound:
		return "path not found"
	case OtherError:
		return "other error"
	}
	return "unknown state"
}

// GetActiveState reports whether a server listens at path, with exactly
// Git's algorithm (ipc_get_active_state): lstat failing with ENOENT or
// ENOTDIR gives NotListening (not PathNotFound) and any other lstat
// failure InvalidPath; an object that is not a socket gives InvalidPath;
// otherwise one connect attempt without waiting decides: success gives
// Listening (the connection is closed at once without sending anything),
// ENOENT PathNotFound, ECONNREFUSED or ETIMEDOUT NotListening, anything
// else OtherError.
func GetActiveState(path string) ActiveState {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
			return NotListening
		}
		return InvalidPath
	}
	if fi.Mode().Type() != os.ModeSocket {
		return InvalidPath
	}
	c, err := connect(context.Background(), path, false, false)
	if err != nil {
		var ce *ConnectError
		if errors.As(err, &ce) {
			return ce.State
		}
		return OtherError
	}
	c.Close()
	return Listening
}
