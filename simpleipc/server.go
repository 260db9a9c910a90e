package simpleipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for [Config].
const (
	DefaultThreads        = 5
	DefaultMaxRequestSize = 16 << 20
	DefaultIdleTimeout    = 10 * time.Second
	DefaultSocketMode     = os.FileMode(0o600)
)

// listenBacklog is Git's listen(2) backlog for Simple-IPC sockets.
const listenBacklog = 50

// stolenCheckInterval: like Git's accept thread, which polls with a 60 s
// timeout, a server that saw no connection for this long checks that its
// path still names its own socket and stops if not.
var stolenCheckInterval = 60 * time.Second

// Handler answers one request. The request is owned by the handler. The
// reply is written to w in as many pieces as wanted: each Write is sent at
// once as one or more packets, and a zero-length Write sends nothing.
// After ServeIPC returns the server writes the flush packet and closes the
// connection, whatever the handler returned, unless the reply is not
// whole: after a panic, a failed Write, or once ctx is cancelled, the
// connection is closed without the flush packet, so the client sees an
// incomplete reply rather than a partial one that looks complete.
//
// A non-nil error other than [ErrQuit] is logged and counted in
// [Stats].Errors; the client still gets the flush packet, so return an
// error after writing an error text if the client should see one, or
// [ErrAbort] if it must see the reply cut short. [ErrQuit] asks the server
// to stop once this reply is flushed.
//
// ctx is cancelled when the server is closed forcefully ([Server.Close], or
// [Server.Shutdown] whose context ended); a handler that runs long must
// watch it, since Close waits for handlers to return. Handlers run
// concurrently on up to [Config.Threads] goroutines.
type Handler interface {
	ServeIPC(ctx context.Context, req []byte, w io.Writer) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, req []byte, w io.Writer) error

// ServeIPC calls f.
func (f HandlerFunc) ServeIPC(ctx context.Context, req []byte, w io.Writer) error {
	return f(ctx, req, w)
}

// Config configures a [Server]. A nil *Config, and every zero field, means
// the default.
type Config struct {
	// Threads is the number of worker goroutines, each serving one
	// conversation at a time. Default 5, like Git; values below 1 mean 1
	// (only when set explicitly through a negative number; 0 is the
	// default). Accepted connections wait in a FIFO of Threads*100-1
	// entries (Git's ring buffer); when it is full a new connection is
	// closed at once.
	Threads int

	// MaxRequestSize bounds a request. A larger request is dropped without
	// reading it: the connection is closed without a reply. Default 16 MiB;
	// negative means no limit (Git has none).
	MaxRequestSize int64

	// IdleTimeout bounds each wait for the client: for the first byte of
	// the request, for each further read, and for each reply packet
	// written. A client silent for that long is dropped and its worker
	// freed. Default 10 s; negative means wait forever, as Git does.
	IdleTimeout time.Duration

	// SocketMode is the socket file's permission bits, set before the
	// socket listens, so no client can connect through a wider mode (Git
	// leaves the mode to the umask). Default 0600: only the owner can talk
	// to the server. Bits other than the permission bits are an error.
	SocketMode os.FileMode

	// Logger receives one record per dropped connection or handler error.
	// Default: discard. The records clients can cause (bad requests,
	// handler errors and panics, replies that failed, a full queue, accept
	// errors) are rate-limited together: a burst of 10, then one per
	// second. The next record let through after some were dropped has the
	// attribute "suppressed" with their number.
	Logger *slog.Logger
}

func (c *Config) normalized() Config {
	var n Config
	if c != nil {
		n = *c
	}
	switch {
	case n.Threads == 0:
		n.Threads = DefaultThreads
	case n.Threads < 1:
		n.Threads = 1
	}
	switch {
	case n.MaxRequestSize == 0:
		n.MaxRequestSize = DefaultMaxRequestSize
	case n.MaxRequestSize < 0:
		n.MaxRequestSize = 0 // readMessage: no limit
	}
	switch {
	case n.IdleTimeout == 0:
		n.IdleTimeout = DefaultIdleTimeout
	case n.IdleTimeout < 0:
		n.IdleTimeout = 0 // no deadline
	}
	if n.SocketMode == 0 {
		n.SocketMode = DefaultSocketMode
	}
	if n.Logger == nil {
		n.Logger = slog.New(slog.DiscardHandler)
	}
	return n
}

// Stats are a server's counters since [Start].
type Stats struct {
	// Accepted counts accepted connections, probes included.
	Accepted uint64
	// Requests counts requests read completely and handed to the handler.
	Requests uint64
	// Errors counts malformed or oversized requests, clients that went
	// idle or away in the middle of a request, handler errors and panics,
	// and replies that could not be written.
	Errors uint64
	// Rejected counts connections closed at once because the queue of
	// pending connections was full.
	Rejected uint64
	// Active is the number of conversations in progress.
	Active uint64
	// Queued is the number of accepted connections waiting for a worker.
	Queued uint64
}

// Server is a running Simple-IPC server. Its methods are safe for
// concurrent use.
type Server struct {
	path    string
	handler Handler
	cfg     Config
	log     *slog.Logger
	ln      *net.UnixListener
	dev     uint64
	ino     uint64
	stolenI time.Duration

	queue chan *net.UnixConn
	wg    sync.WaitGroup
	done  chan struct{}
	quit  chan struct{} // closed when shutdown begins

	ctx    context.Context // handlers' context
	cancel context.CancelFunc

	mu       sync.Mutex
	shutting bool
	stopped  bool // Shutdown or Close was called
	waiting  map[*net.UnixConn]struct{}
	busy     map[*net.UnixConn]struct{}

	accepted, requests, errs, rejected, active atomic.Uint64

	logs *logLimiter // for the records clients can cause
}

// Start creates the socket at path with Git's start-up rules and serves
// it in the background until a handler returns [ErrQuit] or
// [Server.Shutdown] or [Server.Close] is called:
//
//  1. create "<path>.lock" with O_CREAT|O_EXCL, retrying with randomised
//     quadratic backoff for about 100 ms, then fail with [ErrLocked];
//  2. connect to path: if a server answers, fail with [ErrInUse] and leave
//     it alone;
//  3. remove a stale socket at path; anything else there (a regular file,
//     directory, symbolic link, FIFO) fails with [ErrNotSocket] and is left
//     alone (Git unlinks whatever is there);
//  4. bind a SOCK_STREAM socket at path, set its mode to
//     [Config.SocketMode] and listen with a backlog of 50;
//  5. remember the socket's device and inode;
//  6. remove the lock.
func Start(path string, h Handler, cfg *Config) (*Server, error) {
	if h == nil {
		return nil, errors.New("simpleipc: Start: nil handler")
	}
	c := cfg.normalized()
	if c.SocketMode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("simpleipc: Start: socket mode %v has bits other than permissions", c.SocketMode)
	}
	ln, dev, ino, err := createSocket(path, c.SocketMode)
	if err != nil {
		return nil, fmt.Errorf("starting server on %q: %w", path, err)
	}
	s := &Server{
		path:    path,
		handler: h,
		logs:    newLogLimiter(),
		cfg:     c,
		log:     c.Logger.With("socket", path),
		ln:      ln,
		dev:     dev,
		ino:     ino,
		stolenI: stolenCheckInterval,
		queue:   make(chan *net.UnixConn, c.Threads*100-1),
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		waiting: make(map[*net.UnixConn]struct{}),
		busy:    make(map[*net.UnixConn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.run()
	return s, nil
}

func (s *Server) run() {
	s.wg.Add(1 + s.cfg.Threads)
	go s.acceptLoop()
	for range s.cfg.Threads {
		go s.worker()
	}
	go func() {
		s.wg.Wait()
		s.removeSocket()
		s.cancel()
		close(s.done)
	}()
}

// Path returns the socket path.
func (s *Server) Path() string { return s.path }

// Done returns a channel closed when the server has stopped: every
// goroutine has returned, every connection is closed and the socket is
// removed (if it was still ours).
func (s *Server) Done() <-chan struct{} { return s.done }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted: s.accepted.Load(),
		Requests: s.requests.Load(),
		Errors:   s.errs.Load(),
		Rejected: s.rejected.Load(),
		Active:   s.active.Load(),
		Queued:   uint64(len(s.queue)),
	}
}

// Shutdown stops the server gracefully: it stops accepting, closes the
// connections still queued and those whose client has not sent anything
// yet, and waits for the conversations in progress to finish. If ctx ends
// first, it closes everything as [Server.Close] does and returns ctx's
// error. It returns once the server has stopped; calls after the first
// return [ErrClosed].
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.markStopped() {
		<-s.done
		return ErrClosed
	}
	s.beginShutdown()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.force()
	<-s.done
	return ctx.Err()
}

// Close stops the server at once: the handlers' context is cancelled,
// every connection is closed, and Close waits for the handlers to return.
// Calls after the first (of Close or Shutdown) return [ErrClosed].
func (s *Server) Close() error {
	first := s.markStopped()
	s.beginShutdown()
	s.force()
	<-s.done
	if !first {
		return ErrClosed
	}
	return nil
}

func (s *Server) markStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.stopped
	s.stopped = true
	return first
}

// beginShutdown is Git's ipc_server_stop_async: stop accepting and wake
// the workers that wait for a first byte. It does not wait.
func (s *Server) beginShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return
	}
	s.shutting = true
	close(s.quit)
	s.ln.Close()
	for c := range s.waiting {
		c.SetReadDeadline(aLongTimeAgo)
	}
}

// force cancels the handlers' context and closes every connection. The
// context goes first: a handler that returns on ctx.Done() may find its
// connection still open, and serveConn then ends the conversation without
// the flush packet; a handler blocked in a write is freed by the close.
func (s *Server) force() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel()
	for c := range s.waiting {
		c.Close()
	}
	for c := range s.busy {
		c.Close()
	}
}

// removeSocket unlinks the socket only if the path still names the socket
// this server created (same device and inode, still a socket).
func (s *Server) removeSocket() {
	if s.wasStolen() {
		s.log.Info("simpleipc: socket path no longer ours; leaving it")
		return
	}
	os.Remove(s.path)
}

func (s *Server) wasStolen() bool {
	dev, ino, isSock, err := lstatSocket(s.path)
	return err != nil || !isSock || dev != s.dev || ino != s.ino
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	defer func() {
		// Drop the connections that were accepted but never started,
		// then let the workers run out.
		for {
			select {
			case c := <-s.queue:
				c.Close()
				continue
			default:
			}
			break
		}
		close(s.queue)
	}()
	var backoff time.Duration
	for {
		s.ln.SetDeadline(time.Now().Add(s.stolenI))
		c, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if s.wasStolen() {
					s.log.Warn("simpleipc: socket was replaced or removed; shutting down")
					s.beginShutdown()
					return
				}
				continue
			}
			// Transient (EMFILE, ECONNABORTED...): Git ignores them.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logClient(slog.LevelWarn, "simpleipc: accept", slog.Any("err", err))
			t := time.NewTimer(backoff)
			select {
			case <-s.quit:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.accepted.Add(1)
		select {
		case s.queue <- c:
		default:
			s.rejected.Add(1)
			s.logClient(slog.LevelWarn, "simpleipc: connection queue full; closing new connection")
			c.Close()
		}
	}
}

func (s *Server) worker() {
	defer s.wg.Done()
	for c := range s.queue {
		s.serveConn(c)
	}
}

// serveConn runs one conversation, Git's worker_thread_proc.
func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()

	// Wait for the first byte. Shutdown interrupts this wait (the
	// connection has not started a conversation yet), which is why the
	// deadline is set under the lock.
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		return
	}
	s.waiting[c] = struct{}{}
	if s.cfg.IdleTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	}
	s.mu.Unlock()

	var first [pktHeaderLen]byte
	n, err := c.Read(first[:])

	s.mu.Lock()
	delete(s.waiting, c)
	shutting := s.shutting
	if !shutting && n > 0 {
		s.busy[c] = struct{}{}
	}
	s.mu.Unlock()
	if shutting || n == 0 {
		// A probe (connect then close), a client that never spoke, or
		// shutdown before the conversation started: close silently.
		if n == 0 && err != nil && !errors.Is(err, io.EOF) && !shutting {
			s.logClient(slog.LevelDebug, "simpleipc: dropping silent connection", slog.Any("err", err))
		}
		return
	}
	defer func() {
		s.mu.Lock()
		delete(s.busy, c)
		s.mu.Unlock()
	}()
	s.active.Add(1)
	defer s.active.Add(^uint64(0))

	pr := packetReader{r: &idleReader{prefix: first[:n], c: c, idle: s.cfg.IdleTimeout}}
	req, err := pr.readMessage(s.cfg.MaxRequestSize)
	if err != nil {
		// Malformed, oversized or truncated: close without replying.
		s.errs.Add(1)
		s.logClient(slog.LevelWarn, "simpleipc: dropping connection: bad request", slog.Any("err", err))
		return
	}
	c.SetReadDeadline(time.Time{})
	s.requests.Add(1)

	pw := &packetWriter{w: c, dl: c, idle: s.cfg.IdleTimeout}
	herr, panicked := s.callHandler(req, pw)
	if panicked || s.ctx.Err() != nil {
		// No flush: the client must not take a partial reply for a
		// complete one. A cancelled context means force interrupted the
		// conversation, perhaps before closing this connection.
		s.errs.Add(1)
		return
	}
	if herr != nil && !errors.Is(herr, ErrQuit) {
		s.errs.Add(1)
		s.logClient(slog.LevelWarn, "simpleipc: handler error", slog.Any("err", herr))
		if errors.Is(herr, ErrAbort) {
			return // no flush: the client sees the reply cut short
		}
	}
	if err := pw.Flush(); err != nil {
		s.errs.Add(1)
		s.logClient(slog.LevelDebug, "simpleipc: writing reply", slog.Any("err", err))
	}
	if errors.Is(herr, ErrQuit) {
		c.Close() // the client sees the end of the reply before we stop
		s.beginShutdown()
	}
}

func (s *Server) callHandler(req []byte, w io.Writer) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			s.logClient(slog.LevelError, "simpleipc: handler panic", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	return s.handler.ServeIPC(s.ctx, req, w), false
}

// idleReader reads prefix first, then from c with a read deadline of
// now+idle before each read.
type idleReader struct {
	prefix []byte
	c      *net.UnixConn
	idle   time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	if r.idle > 0 {
		if err := r.c.SetReadDeadline(time.Now().Add(r.idle)); err != nil {
			return 0, err
		}
	}
	return r.c.Read(p)
}
