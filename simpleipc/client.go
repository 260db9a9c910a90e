package simpleipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connect retry timing, as Git's connect_to_server: one attempt every
// connectStep for at most connectWindow.
const (
	connectStep   = 50 * time.Millisecond
	connectWindow = 1000 * time.Millisecond
)

// ClientOptions configures [Send] and [SendStream]. A nil *ClientOptions
// means the zero value, which is Git's IPC_CLIENT_CONNECT_OPTIONS_INIT: no
// waiting, no response size limit.
type ClientOptions struct {
	// WaitIfBusy retries the connect every 50 ms, for up to 1 s in total,
	// while it fails with ECONNREFUSED or ETIMEDOUT (Git's wait_if_busy).
	// Git's test-tool clients set it.
	WaitIfBusy bool

	// WaitIfNotFound retries the connect the same way while the socket
	// path does not exist (ENOENT), for a server that is starting (Git's
	// wait_if_not_found).
	WaitIfNotFound bool

	// MaxResponseSize bounds the response; a larger one fails with
	// ErrTooLarge. Zero means no limit, as in Git.
	MaxResponseSize int64
}

// Send sends one request to the server at path and returns the whole
// response. An empty response (the server answered only with the flush
// packet) is a non-nil empty slice. A server that closes the connection
// before the flush packet yields an error matching ErrTruncated. When no
// conversation could be started the error is a *ConnectError.
//
// ctx bounds the whole call, connect retries included; by default, like
// Git, the client waits for the response forever.
func Send(ctx context.Context, path string, request []byte, opts *ClientOptions) ([]byte, error) {
	var resp []byte
	err := converse(ctx, path, opts, func(c *net.UnixConn, o *ClientOptions) error {
		pw := packetWriter{w: c}
		if err := pw.WriteMessage(request); err != nil {
			return fmt.Errorf("sending request: %w", err)
		}
		pr := packetReader{r: c}
		msg, err := pr.readMessage(o.MaxResponseSize)
		if err != nil {
			return fmt.Errorf("reading response: %w", responseErr(err))
		}
		resp = msg
		return nil
	})
	return resp, err
}

// SendStream is the streaming form of [Send]: the request is read from
// request until io.EOF and sent in packets of up to MaxPacketData bytes,
// and each response packet is written to response as soon as it arrives.
// It returns the number of response bytes written. When it fails after
// writing some of them, response holds an incomplete response.
func SendStream(ctx context.Context, path string, request io.Reader, response io.Writer, opts *ClientOptions) (int64, error) {
	var n int64
	err := converse(ctx, path, opts, func(c *net.UnixConn, o *ClientOptions) error {
		buf := make([]byte, MaxPacketData)
		pw := packetWriter{w: c}
		for {
			m, rerr := io.ReadFull(request, buf)
			if m > 0 {
				if _, err := pw.Write(buf[:m]); err != nil {
					return fmt.Errorf("sending request: %w", err)
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("reading request: %w", rerr)
			}
		}
		if err := pw.Flush(); err != nil {
			return fmt.Errorf("sending request: %w", err)
		}
		pr := packetReader{r: c}
		var err error
		n, err = pr.copyMessage(response, o.MaxResponseSize, buf)
		if err != nil {
			return fmt.Errorf("reading response: %w", responseErr(err))
		}
		return nil
	})
	return n, err
}

// responseErr maps "server closed without sending anything" to a
// truncation error: Git's client fails the same way in both cases.
func responseErr(err error) error {
	if err == io.EOF {
		return errTruncFlush
	}
	return err
}

// converse connects, runs fn on the connection with ctx cancellation
// mapped onto a past deadline, and closes the connection.
func converse(ctx context.Context, path string, opts *ClientOptions, fn func(*net.UnixConn, *ClientOptions) error) error {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	c, err := connect(ctx, path, o.WaitIfBusy, o.WaitIfNotFound)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer stop()
	err = fn(c, &o)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("simpleipc: conversation with %q: %w", path, ctx.Err())
	}
	return err
}

// connect implements Git's connect_to_server: retry every 50 ms for up to
// 1 s, but only for the errors the options allow. EAGAIN (the listen
// backlog is full; Go connects in non-blocking mode where Git's blocking
// connect would simply wait) is always retried within the window.
func connect(ctx context.Context, path string, waitIfBusy, waitIfNotFound bool) (*net.UnixConn, error) {
	var lastErr error
	for k := time.Duration(0); k < connectWindow; k += connectStep {
		c, err := dialUnix(ctx, path)
		if err == nil {
			return c, nil
		}
		lastErr = err
		var state ActiveState
		retry := false
		switch {
		case ctx.Err() != nil:
			return nil, &ConnectError{Path: path, State: OtherError, Err: ctx.Err()}
		case errors.Is(err, syscall.ENOENT):
			state, retry = PathNotFound, waitIfNotFound
		case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.ECONNREFUSED):
			state, retry = NotListening, waitIfBusy
		case errors.Is(err, syscall.EAGAIN):
			state, retry = NotListening, true
		default:
			state = OtherError
		}
		if !retry {
			return nil, &ConnectError{Path: path, State: state, Err: err}
		}
		t := time.NewTimer(connectStep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &ConnectError{Path: path, State: OtherError, Err: ctx.Err()}
		case <-t.C:
		}
	}
	return nil, &ConnectError{Path: path, State: NotListening, Err: lastErr}
}

// maxSunPath is the longest path bind/connect take directly: sun_path is
// 108 bytes on Linux and Git keeps room for the NUL terminator.
const maxSunPath = 107

// withSockaddrPath calls fn with a name usable in a sockaddr_un for path.
// Git chdirs into the directory of a longer path; a Go program cannot
// change its working directory safely, so the directory is opened with
// O_PATH and reached through /proc/self/fd/N/ instead.
func withSockaddrPath(path string, fn func(addr string) error) error {
	if len(path) <= maxSunPath {
		return fn(path)
	}
	dir, base := splitPath(path)
	d, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), base)
	if len(addr) > maxSunPath {
		return &os.PathError{Op: "connect", Path: path, Err: syscall.ENAMETOOLONG}
	}
	return fn(addr)
}

func splitPath(path string) (dir, base string) {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == 0 {
				return "/", path[1:]
			}
			return path[:i], path[i+1:]
		}
	}
	return ".", path
}

func dialUnix(ctx context.Context, path string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := withSockaddrPath(path, func(addr string) error {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", addr)
		if err != nil {
			return err
		}
		c = nc.(*net.UnixConn)
		return nil
	})
	return c, err
}
