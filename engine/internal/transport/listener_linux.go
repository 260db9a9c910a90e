package transport

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxPathLen is the longest socket path: sun_path is 108 bytes and we
	// always leave room for the terminating NUL.
	maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

	defaultMode        = 0o600
	defaultBacklog     = 128
	defaultLockTimeout = time.Second
)

// ListenConfig configures [Listen]. The zero value gives the defaults.
type ListenConfig struct {
	// Mode is the socket file's permission bits; 0 means 0600.
	Mode os.FileMode
	// Backlog is listen(2)'s backlog; 0 means 128.
	Backlog int
	// LockTimeout bounds how long Listen waits for another process's
	// start-up at the same path to finish; 0 means one second.
	LockTimeout time.Duration
}

// Listener is a listening SOCK_SEQPACKET socket at a filesystem path. It is
// not safe for concurrent use.
type Listener struct {
	fd          int
	path        string
	dev         uint64 // device and inode of the socket file
	ino         uint64
	lockTimeout time.Duration
}

func sockaddr(path string) (*unix.SockaddrUnix, error) {
	switch {
	case path == "" || path[0] == '@' || strings.IndexByte(path, 0) >= 0:
		return nil, fmt.Errorf("socket path %q: %w", path, ErrInvalidPath)
	case len(path) > maxPathLen:
		return nil, fmt.Errorf("socket path %q (%d bytes, at most %d): %w", path, len(path), maxPathLen, ErrPathTooLong)
	}
	return &unix.SockaddrUnix{Name: path}, nil
}

// Listen creates a listening socket at path. Start-up is race-free between
// processes (and goroutines) starting at the same path at once:
//
//  1. It takes an exclusive flock(2) on "<path>.lock", waiting up to
//     cfg.LockTimeout ([ErrLocked] after that), and checks that the lock file
//     it locked is still the one at that path (else it starts over).
//  2. If a socket at path accepts a connection, a live listener owns it:
//     [ErrAddrInUse], and it is left alone. If the path exists but is not a
//     socket: [ErrNotSocket], and it is left alone. If the connection is
//     refused, the socket is stale (its listener died) and is removed.
//  3. It binds a new socket, sets the file's mode to cfg.Mode before
//     listen(2) (a bound socket that does not listen refuses connections, so
//     no client ever connects through a wider mode), and listens.
//  4. It removes the lock file and releases the lock.
//
// The probe's connection reaches a live listener as a client that closes at
// once (its first Recv gives io.EOF); servers must tolerate such clients
// anyway.
//
// Paths longer than 107 bytes give [ErrPathTooLong].
func Listen(path string, cfg ListenConfig) (*Listener, error) {
	sa, err := sockaddr(path)
	if err != nil {
		return nil, err
	}
	mode := cfg.Mode.Perm()
	if cfg.Mode == 0 {
		mode = defaultMode
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	lockTimeout := cfg.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = defaultLockTimeout
	}

	lk, err := lockPath(path+".lock", lockTimeout)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	defer lk.release()

	if err := probe(path, sa); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}

	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, os.NewSyscallError("socket", err))
	}
	l, err := bindListen(fd, path, sa, mode, backlog)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	l.lockTimeout = lockTimeout
	return l, nil
}

func bindListen(fd int, path string, sa *unix.SockaddrUnix, mode os.FileMode, backlog int) (*Listener, error) {
	if err := unix.Bind(fd, sa); err != nil {
		if err == unix.EADDRINUSE {
			// Someone not following the lock protocol created it after
			// the probe.
			return nil, fmt.Errorf("binding: %w: %w", ErrAddrInUse, os.NewSyscallError("bind", err))
		}
		return nil, fmt.Errorf("binding: %w", os.NewSyscallError("bind", err))
	}
	var st unix.Stat_t
	err := unix.Chmod(path, uint32(mode))
	if err != nil {
		err = fmt.Errorf("setting mode %#o: %w", mode, os.NewSyscallError("chmod", err))
	} else if err = unix.Lstat(path, &st); err != nil {
		err = fmt.Errorf("inspecting socket file: %w", os.NewSyscallError("lstat", err))
	} else if err = unix.Listen(fd, backlog); err != nil {
		err = os.NewSyscallError("listen", err)
	}
	if err != nil {
		unix.Unlink(path) // ours: bound just now under the lock
		return nil, err
	}
	return &Listener{fd: fd, path: path, dev: st.Dev, ino: st.Ino}, nil
}

// probe checks what is at path (step 2 of Listen) and removes a stale socket.
func probe(path string, sa *unix.SockaddrUnix) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("probing: %w", os.NewSyscallError("lstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return ErrNotSocket
	}
	// Try the socket types in turn: a socket of another type refuses a
	// connect with EPROTOTYPE, which says nothing about whether it is alive.
	for _, typ := range []int{unix.SOCK_SEQPACKET, unix.SOCK_STREAM, unix.SOCK_DGRAM} {
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("probing: %w", os.NewSyscallError("socket", err))
		}
		err = connect(fd, sa)
		unix.Close(fd)
		switch err {
		case nil, unix.EAGAIN, unix.EINPROGRESS:
			// Connected, or queued behind a full backlog: alive.
			return ErrAddrInUse
		case unix.EPROTOTYPE:
			continue
		case unix.ECONNREFUSED:
			if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
				return fmt.Errorf("removing stale socket: %w", os.NewSyscallError("unlink", err))
			}
			return nil
		case unix.ENOENT:
			return nil // gone meanwhile
		default:
			return fmt.Errorf("probing: %w", os.NewSyscallError("connect", err))
		}
	}
	return fmt.Errorf("probing: socket of unknown type: %w", ErrAddrInUse)
}

// pathLock is an exclusive flock on a lock file that is known to be linked at
// its path.
type pathLock struct {
	fd   int
	path string
}

// lockPath opens (creating it if needed) and flocks the file at path, polling
// until timeout; after locking it checks that path still names the locked
// inode (another process may have unlinked it between our open and flock),
// and starts over if not.
func lockPath(path string, timeout time.Duration) (*pathLock, error) {
	deadline := time.Now().Add(timeout)
	backoff := time.Millisecond
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening lock file %s: %w", path, os.NewSyscallError("open", err))
		}
		err = flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			var fst, st unix.Stat_t
			if err := unix.Fstat(fd, &fst); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("inspecting lock file: %w", os.NewSyscallError("fstat", err))
			}
			err := unix.Lstat(path, &st)
			if err == nil && st.Dev == fst.Dev && st.Ino == fst.Ino {
				return &pathLock{fd: fd, path: path}, nil
			}
			unix.Close(fd)
			if err != nil && err != unix.ENOENT {
				return nil, fmt.Errorf("inspecting lock file: %w", os.NewSyscallError("lstat", err))
			}
			continue // unlinked (or replaced) under us: start over
		}
		unix.Close(fd)
		if err != unix.EWOULDBLOCK {
			return nil, fmt.Errorf("locking %s: %w", path, os.NewSyscallError("flock", err))
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("locking %s: %w", path, ErrLocked)
		}
		time.Sleep(min(backoff, time.Until(deadline)))
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// release unlinks the lock file while still holding the lock (so a waiter
// that then gets the lock sees it is stale and starts over), then unlocks it.
func (lk *pathLock) release() {
	unix.Unlink(lk.path)
	unix.Close(lk.fd) // releases the flock
}

// Fd returns the listening socket's file descriptor, or -1 after Close.
// Register it with a [Poller]: it is readable when Accept has a connection.
func (l *Listener) Fd() int { return l.fd }

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Accept accepts one pending connection without blocking and reads its
// peer's credentials. It returns [ErrWouldBlock] when none is pending.
func (l *Listener) Accept() (*Conn, error) {
	if l.fd < 0 {
		return nil, ErrClosed
	}
	for {
		fd, _, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EAGAIN:
			return nil, ErrWouldBlock
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default:
			return nil, fmt.Errorf("accepting on %s: %w", l.path, os.NewSyscallError("accept4", err))
		}
		c, err := newConn(fd)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("accepting on %s: %w", l.path, err)
		}
		return c, nil
	}
}

// Close closes the listening socket and removes the socket file, but only if
// the file at the path is still the socket this listener created (same
// device and inode): a socket that another listener has put at the path
// since is left alone. The check and removal happen under the start-up lock
// when it can be had within the configured LockTimeout. Close is idempotent: later calls return nil.
func (l *Listener) Close() error {
	if l.fd < 0 {
		return nil
	}
	fd := l.fd
	l.fd = -1
	var errs []error
	if err := unix.Close(fd); err != nil {
		errs = append(errs, fmt.Errorf("closing listener %s: %w", l.path, os.NewSyscallError("close", err)))
	}
	lk, err := lockPath(l.path+".lock", l.lockTimeout)
	switch {
	case err == nil:
		defer lk.release()
	case errors.Is(err, ErrLocked):
		// Another process is starting up at the path and will find our
		// socket stale; leave the file to it.
		return errors.Join(errs...)
	default:
		// The directory may be read-only or gone; remove without the lock.
	}
	var st unix.Stat_t
	if err := unix.Lstat(l.path, &st); err == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFSOCK && st.Dev == l.dev && st.Ino == l.ino {
		if err := unix.Unlink(l.path); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("removing socket file %s: %w", l.path, os.NewSyscallError("unlink", err)))
		}
	}
	return errors.Join(errs...)
}
