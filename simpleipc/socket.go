package simpleipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockTimeout is Git's DEFAULT_LOCK_TIMEOUT for "<path>.lock".
const lockTimeout = 100 * time.Millisecond

// createSocket is Git's unix_ss_create, except that only a stale socket
// is replaced; see Start.
func createSocket(path string, mode os.FileMode) (ln *net.UnixListener, dev, ino uint64, err error) {
	lock, err := acquireLock(path)
	if err != nil {
		return nil, 0, 0, err
	}
	// Rollback, never commit: the lock only serialises start-up.
	defer os.Remove(lock)

	if c, err := dialUnix(context.Background(), path); err == nil {
		c.Close()
		return nil, 0, 0, ErrInUse
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, 0, 0, err
	}
	ln, err = listenUnix(path, mode)
	if err != nil {
		return nil, 0, 0, err
	}
	dev, ino, _, err = lstatSocket(path)
	if err != nil {
		ln.Close()
		return nil, 0, 0, err
	}
	return ln, dev, ino, nil
}

// removeStaleSocket removes the socket at path, which the caller could not
// connect to. A missing path is fine; anything but a socket (a regular
// file, directory, symbolic link, FIFO...) is left alone: [ErrNotSocket].
func removeStaleSocket(path string) error {
	_, _, isSock, err := lstatSocket(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("inspecting socket path: %w", err)
	case !isSock:
		return ErrNotSocket
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// lockPath names the lock file; like Git's lockfile code, a symlink at
// path is resolved first.
func lockPath(path string) string {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSymlink {
		if r, err := filepath.EvalSymlinks(path); err == nil {
			path = r
		}
	}
	return path + ".lock"
}

// acquireLock creates "<path>.lock" with O_CREAT|O_EXCL, retrying with
// Git's randomised quadratic backoff (lock_file_timeout) for lockTimeout.
func acquireLock(path string) (string, error) {
	name := lockPath(path)
	remaining := lockTimeout
	multiplier, n := 1, 1
	for {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err == nil {
			f.Close()
			return name, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("creating lock file: %w", err)
		}
		if remaining <= 0 {
			return "", fmt.Errorf("%w: %s exists", ErrLocked, name)
		}
		backoff := time.Duration(multiplier) * time.Millisecond
		wait := backoff * time.Duration(750+rand.IntN(500)) / 1000
		time.Sleep(wait)
		remaining -= wait
		multiplier += 2*n + 1
		if multiplier > 1000 {
			multiplier = 1000
		} else {
			n++
		}
	}
}

// listenUnix binds a socket at path, gives it mode and listens with Git's
// backlog of 50 (the net package would use somaxconn). The mode is set
// between bind and listen: a socket that does not listen yet refuses every
// connection, so no client ever reaches it through the umask's mode.
func listenUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	var ln *net.UnixListener
	err := withSockaddrPath(path, func(addr string) (err error) {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		f := os.NewFile(uintptr(fd), path)
		defer f.Close() // FileListener dups the descriptor
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
			return os.NewSyscallError("bind", err)
		}
		defer func() {
			if err != nil {
				unix.Unlink(addr) // ours: bound just now under the lock
			}
		}()
		if err := unix.Chmod(addr, uint32(mode)); err != nil {
			return fmt.Errorf("setting socket mode %#o: %w", mode, os.NewSyscallError("chmod", err))
		}
		if err := unix.Listen(fd, listenBacklog); err != nil {
			return os.NewSyscallError("listen", err)
		}
		l, err := net.FileListener(f)
		if err != nil {
			return err
		}
		ln = l.(*net.UnixListener)
		return nil
	})
	return ln, err
}

// lstatSocket returns the device and inode at path and whether it is a
// socket.
func lstatSocket(path string) (dev, ino uint64, isSock bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, 0, false, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return st.Dev, st.Ino, st.Mode&unix.S_IFMT == unix.S_IFSOCK, nil
}
