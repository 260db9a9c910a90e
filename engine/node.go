package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/wire"
	"github.com/gwipc/gwipc/simpleipc"
	"golang.org/x/sys/unix"
)

// Node is one process's endpoint: a listener that accepts many peers, or a
// dialler with one peer that it reconnects to. After the handshake both kinds
// may offer, require, subscribe and publish.
//
// A Node does no work on its own: the application calls Dispatch when Fd is
// readable (or runs Run on a goroutine). Callbacks run only inside Dispatch,
// on the dispatching goroutine, one at a time. All other methods, of the Node
// and of its Offers and Proxies, are safe for concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	poller   *transport.Poller
	listener *transport.Listener // nil for a dialler
	dialPath string              // "" for a listener
	endpoint *simpleipc.Server   // the status endpoint, if configured
	commands *simpleipc.Router

	dispatching sync.Mutex // held by the one goroutine inside Dispatch

	mu         sync.Mutex
	closed     bool
	batching   bool // inside Dispatch's protocol step: flush at its end
	peers      map[uint64]*peer
	nextToken  uint64
	nextPeerID uint64
	nextHandle uint64 // binding handles, never reused
	dirty      []*peer
	doomed     []*peer
	waiters    map[*os.File]struct{} // Run's pollable duplicates of the poller fd
	offers     map[serviceKey]*Offer
	proxies    map[serviceKey]*Proxy
	finders    []*Finder
	callTimers callTimers // pending calls with a timeout, by deadline

	callbacks  []callback
	wakeNeeded bool
	timerAt    time.Time // when the timerfd is armed to fire (zero: disarmed)
	timerFired bool

	// dialler state
	dialPeer     *peer
	dialAt       time.Time // next connect attempt (zero: none scheduled)
	dialBackoff  time.Duration
	lastDialErr  error
	dialAttempts uint64

	counters nodeCounters

	// owned by the dispatching goroutine
	events    []transport.Event
	rbuf      []byte
	rfds      [transport.MaxFDs]int
	in        inbox
	run       []callback
	toRelease []*Sample

	// Reusable objects, guarded by mu.
	freeSamples []*Sample
	freeReplies []*Reply
	freeCalls   []*pendingCall
}

// token values below firstPeerToken are reserved.
const (
	listenerToken  = 1
	firstPeerToken = 16
)

type poolHintKey struct {
	id, instance string
	dir          wire.Direction
}

type nodeCounters struct {
	PeersAccepted, PeersRejected, PeersLost uint64
	ProtocolErrors                          uint64
	PolicyRejections, QuotaHits             uint64
}

// callback is one queued callback. The hot kinds (a sample, a method call,
// a completed call) are carried without allocating; the rest are closures.
type callback struct {
	sample    *Sample
	call      Call         // a method call to hand to OnCall (call.b != nil)
	ffPayload wire.Payload // the request of a fire-and-forget call, released after OnCall
	completed *pendingCall // a CallAsync to complete
	fn        func()
}

// Listen creates a node that accepts peers on a SOCK_SEQPACKET socket at
// path. It refuses to start while another listener answers there, replaces a
// stale socket file, and removes its socket on Close.
func Listen(path string, cfg *Config) (*Node, error) {
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	l, err := transport.Listen(path, transport.ListenConfig{Mode: n.cfg.SocketMode})
	if err != nil {
		n.poller.Close()
		return nil, fmt.Errorf("engine: listening on %s: %w", path, err)
	}
	if err := n.poller.Add(l.Fd(), listenerToken, false); err != nil {
		l.Close()
		n.poller.Close()
		return nil, fmt.Errorf("engine: listening on %s: %w", path, err)
	}
	n.listener = l
	n.log = n.log.With("role", "listener", "path", path)
	if err := n.startEndpoint(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Dial creates a node that connects to the listener at path. It returns at
// once; the connection is made (and remade after loss, with back-off) by
// Dispatch. Use Status or Config.OnPeerConnected to learn when it is up.
func Dial(path string, cfg *Config) (*Node, error) {
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	if path == "" || len(path) > 107 {
		n.poller.Close()
		return nil, fmt.Errorf("%w: socket path %q must be 1 to 107 bytes", ErrInvalidConfig, path)
	}
	n.dialPath = path
	n.log = n.log.With("role", "dialler", "path", path)
	if err := n.startEndpoint(); err != nil {
		n.Close()
		return nil, err
	}
	n.mu.Lock()
	n.dialAt = time.Now()
	n.rearm()
	n.mu.Unlock()
	return n, nil
}

func newNode(cfg *Config) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p, err := transport.NewPoller()
	if err != nil {
		return nil, fmt.Errorf("engine: creating poller: %w", err)
	}
	n := &Node{
		cfg:       c,
		log:       c.Logger,
		poller:    p,
		peers:     map[uint64]*peer{},
		nextToken: firstPeerToken,
		offers:    map[serviceKey]*Offer{},
		proxies:   map[serviceKey]*Proxy{},

		waiters: map[*os.File]struct{}{},
		events:  make([]transport.Event, 64),
		rbuf:    make([]byte, c.MaxPacket),
	}
	return n, nil
}

// Fd returns a file descriptor that is readable whenever Dispatch has work.
// It stays owned by the node (do not close it) and is valid until Close.
// Readiness may be spurious.
func (n *Node) Fd() int { return n.poller.Fd() }

// Dispatch waits up to timeout (negative: forever, zero: not at all) for
// work, then does all that is ready: accepts and reads peers, advances the
// protocol, flushes output and runs callbacks on the calling goroutine. It
// returns the number of callbacks run. Only one goroutine may dispatch at a
// time (others get ErrBusy).
func (n *Node) Dispatch(timeout time.Duration) (int, error) {
	_, ran, err := n.dispatch(timeout)
	return ran, err
}

// dispatch is Dispatch, also reporting how many poller events it handled.
func (n *Node) dispatch(timeout time.Duration) (events, ran int, err error) {
	if !n.dispatching.TryLock() {
		return 0, 0, ErrBusy
	}
	defer n.dispatching.Unlock()

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0, 0, ErrClosed
	}
	if len(n.callbacks) > 0 {
		timeout = 0
	}
	n.mu.Unlock()

	k, err := n.poller.Wait(n.events, timeout)
	if err != nil && !errors.Is(err, transport.ErrClosed) {
		return 0, 0, fmt.Errorf("engine: waiting for events: %w", err)
	}

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0, 0, ErrClosed
	}
	n.batching = true
	for _, ev := range n.events[:k] {
		n.handleEvent(ev)
	}
	if now := time.Now(); n.timerFired || (!n.timerAt.IsZero() && !now.Before(n.timerAt)) {
		// The timerfd is one-shot: once fired it is disarmed, due or not.
		n.timerFired, n.timerAt = false, time.Time{}
		n.handleTimers(now)
	}
	n.batching = false
	n.flushDirty()
	n.reap()
	n.run, n.callbacks = n.callbacks, n.run[:0]
	n.mu.Unlock()

	return k, n.runCallbacks(), nil
}

// runCallbacks runs the batch taken from the queue, then releases (in one
// batch of Payload_consumed messages) the samples whose handlers did not keep
// them. If a callback panics, the rest of the batch is put back in front of
// the queue before the panic goes on, so no sample (and no slot) is lost.
func (n *Node) runCallbacks() (ran int) {
	batch := n.run
	defer func() {
		n.mu.Lock()
		if ran < len(batch) {
			// A callback panicked: what it held is released (samples, and
			// fire-and-forget requests by runCall itself), the rest requeued.
			if s := batch[ran].sample; s != nil && !s.kept {
				n.toRelease = append(n.toRelease, s)
			}
			// A copy: batch is n.run's array, reused for the next batch.
			n.callbacks = append(slices.Clone(batch[ran+1:]), n.callbacks...)
		}
		n.batching = true
		for _, s := range n.toRelease {
			s.releaseSample()
		}
		clear(n.toRelease)
		n.toRelease = n.toRelease[:0]
		n.batching = false
		n.flushDirty()
		n.unlock()
		clear(batch)
	}()
	for ran < len(batch) {
		cb := &batch[ran]
		switch {
		case cb.sample != nil:
			if cb.sample.deliver() {
				n.toRelease = append(n.toRelease, cb.sample)
			}
		case cb.call.b != nil:
			n.runCall(cb.call, cb.ffPayload)
		case cb.completed != nil:
			n.runCompletion(cb.completed)
		default:
			cb.fn()
		}
		ran++
	}
	return ran
}

// Run dispatches until ctx is done or the node is closed. It returns nil
// when the node was closed, else ctx's error. While idle it parks on Go's
// network poller (no OS thread blocked in epoll_wait), so a node run this
// way wakes as fast as any Go network code.
func (n *Node) Run(ctx context.Context) error {
	rc, closeWaiter, err := n.readinessWaiter()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	if err != nil {
		return err
	}
	defer closeWaiter()
	stop := context.AfterFunc(ctx, func() { n.poller.Wake() })
	defer stop()
	var derr error
	// One closure for the whole loop: RawConn.Read takes it as an interface.
	dispatchReady := func(uintptr) bool {
		if ctx.Err() != nil {
			return true
		}
		var k, ran int
		k, ran, derr = n.dispatch(0)
		return k > 0 || ran > 0 || derr != nil
	}
	for {
		werr := rc.Read(dispatchReady)
		switch {
		case errors.Is(derr, ErrClosed) || n.isClosed():
			return nil
		case derr != nil:
			return derr
		case ctx.Err() != nil:
			return ctx.Err()
		case werr != nil:
			return fmt.Errorf("engine: waiting for events: %w", werr)
		}
	}
}

// readinessWaiter registers a duplicate of the node's epoll fd with Go's
// network poller: its RawConn.Read parks the goroutine until Fd is readable.
// Close ends a parked Read by setting a past deadline on it.
func (n *Node) readinessWaiter() (syscall.RawConn, func(), error) {
	// Under the lock, an open node's poller cannot be closed, and Close
	// finds the waiter registered.
	if err := n.lockChecked(); err != nil {
		return nil, nil, err
	}
	defer n.mu.Unlock()
	fd, err := unix.FcntlInt(uintptr(n.poller.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("engine: duplicating the poller fd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gwipc-poller")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("engine: watching the poller fd: %w", err)
	}
	n.waiters[f] = struct{}{}
	return rc, func() {
		n.mu.Lock()
		delete(n.waiters, f)
		n.mu.Unlock()
		f.Close()
	}, nil
}

// Close withdraws every offer, closes every proxy and peer, removes the
// listener's socket and releases all resources. Callbacks still queued are
// dropped (samples in them are released). Close is idempotent; afterwards
// every call returns ErrClosed.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	for _, o := range n.offers {
		o.closeLocked()
	}
	for _, p := range n.proxies {
		p.closeLocked()
	}
	n.flushDirty()
	for _, p := range n.peers {
		n.fail(p, nil)
	}
	n.reap()
	n.closed = true
	pending := n.callbacks
	n.callbacks = nil
	// A past deadline ends Run's wait at once (and does not wait for a Read
	// in progress, which may be the one running this Close from a callback);
	// Run then sees the node closed and closes its file itself.
	for f := range n.waiters {
		f.SetReadDeadline(time.Unix(1, 0))
	}
	n.mu.Unlock()

	for _, cb := range pending {
		n.dropCallback(cb)
	}
	// Closing the poller wakes a dispatcher blocked in it; that Dispatch
	// then returns ErrClosed. Close may run inside a callback.
	var errs []error
	if n.endpoint != nil {
		errs = append(errs, n.endpoint.Close())
	}
	if n.listener != nil {
		errs = append(errs, n.listener.Close())
	}
	errs = append(errs, n.poller.Close())
	return errors.Join(errs...)
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// dropCallback releases what a callback that will never run holds.
func (n *Node) dropCallback(cb callback) {
	switch {
	case cb.sample != nil:
		cb.sample.Release()
	case cb.completed != nil:
		cb.completed.reply.Release()
	case cb.call.b != nil:
		n.mu.Lock()
		if cb.call.ff {
			cb.call.b.releaseRequest(cb.ffPayload)
		} else {
			cb.call.b.abortCall(cb.call.id)
		}
		n.mu.Unlock()
	}
}

// lockChecked locks the node unless it is closed.
func (n *Node) lockChecked() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// unlock finishes an API call: tears down peers that failed during it and
// wakes the dispatcher if it has callbacks to run.
func (n *Node) unlock() {
	n.reap()
	wake := n.wakeNeeded
	n.wakeNeeded = false
	n.mu.Unlock()
	if wake {
		n.poller.Wake()
	}
}

// enqueue adds a callback for the next Dispatch.
func (n *Node) enqueue(cb callback) {
	n.callbacks = append(n.callbacks, cb)
	if !n.batching {
		n.wakeNeeded = true
	}
}

func (n *Node) newHandle() uint64 {
	n.nextHandle++
	return n.nextHandle
}

// issued reports whether h could be one of this node's handles.
func (n *Node) issued(h uint64) bool { return h != 0 && h <= n.nextHandle }

// schedule flushes p now, or at the end of the dispatch step.
func (n *Node) schedule(p *peer) {
	if !n.batching {
		p.flush()
		return
	}
	if !p.dirty {
		p.dirty = true
		n.dirty = append(n.dirty, p)
	}
}

func (n *Node) flushDirty() {
	for i, p := range n.dirty {
		p.dirty = false
		p.flush()
		n.dirty[i] = nil
	}
	n.dirty = n.dirty[:0]
}

// watch updates the poller's interest in p's writability.
func (n *Node) watch(p *peer) {
	if err := n.poller.Modify(p.conn.Fd(), p.token, p.blocked); err != nil {
		n.fail(p, err)
	}
}

// fail marks p for teardown at the next reap; err is why (nil: orderly).
func (n *Node) fail(p *peer, err error) {
	if p.state == peerClosing {
		return
	}
	p.state = peerClosing
	p.failErr = err
	n.doomed = append(n.doomed, p)
}

// reap tears down failed peers. Teardown can fail further peers (a standby
// provider that cannot be reached), so it loops until nothing is left.
func (n *Node) reap() {
	for len(n.doomed) > 0 {
		p := n.doomed[0]
		n.doomed = n.doomed[1:]
		n.teardownPeer(p)
	}
	n.doomed = n.doomed[:0]
}

func (n *Node) teardownPeer(p *peer) {
	wasReady := p.wasReady
	if err := p.failErr; err != nil {
		var pe *protocolError
		var rej *RejectedError
		switch {
		case errors.As(err, &rej) && p != n.dialPeer:
			n.log.Warn("rejected peer", "peer", p.pub.id, "pid", p.pub.cred.PID, "uid", p.pub.cred.UID, "reason", err)
		case errors.As(err, &pe):
			n.counters.ProtocolErrors++
			n.log.Warn("closing peer", "peer", p.pub.id, "name", p.pub.name, "pid", p.pub.cred.PID, "uid", p.pub.cred.UID, "reason", err)
		default:
			n.log.Info("peer lost", "peer", p.pub.id, "name", p.pub.name, "pid", p.pub.cred.PID, "reason", err)
		}
	}
	for _, b := range p.provided {
		b.offer.unbind(b)
	}
	for _, b := range p.required {
		b.proxy.dropCandidate(p)
	}
	for key, seen := range p.offers {
		if px := n.proxies[key]; px != nil {
			px.dropCandidate(p)
		}
		n.offerSeenChanged(p, seen.svc, false)
	}
	p.discardOutput()
	n.poller.Remove(p.conn.Fd())
	p.conn.Close()
	delete(n.peers, p.token)
	if p.dirty {
		for i, d := range n.dirty {
			if d == p {
				n.dirty = append(n.dirty[:i], n.dirty[i+1:]...)
				break
			}
		}
		p.dirty = false
	}
	if wasReady {
		n.counters.PeersLost++
		if cb := n.cfg.OnPeerDisconnected; cb != nil {
			pub, err := p.pub, p.failErr
			n.enqueue(callback{fn: func() { cb(pub, err) }})
		}
	}
	if p == n.dialPeer {
		n.dialPeer = nil
		if !n.closed {
			n.scheduleDial(p.failErr)
		}
	}
	n.rearm()
}

func (n *Node) handleEvent(ev transport.Event) {
	switch {
	case ev.Token == transport.TokenTimer:
		n.timerFired = true
	case ev.Token == transport.TokenWake:
		// Wakes only end the wait.
	case ev.Token == listenerToken:
		n.acceptPeers()
	default:
		p := n.peers[ev.Token]
		if p == nil {
			return
		}
		if ev.Writable {
			p.flush()
		}
		if ev.Readable || ev.Hangup {
			n.readPeer(p)
		}
	}
}

// acceptPeers accepts every pending connection.
func (n *Node) acceptPeers() {
	for range 64 {
		c, err := n.listener.Accept()
		if errors.Is(err, transport.ErrWouldBlock) {
			return
		}
		if err != nil {
			n.log.Warn("accepting a peer", "err", err)
			return
		}
		n.addPeer(c)
		n.counters.PeersAccepted++
	}
}

func (n *Node) addPeer(c channel) *peer {
	p := newPeer(n, c)
	if err := n.poller.Add(c.Fd(), p.token, false); err != nil {
		n.log.Warn("watching a peer", "err", err)
		c.Close()
		return nil
	}
	n.peers[p.token] = p
	n.rearm()
	return p
}

// maxPacketsPerRead bounds how long one peer can keep Dispatch busy.
const maxPacketsPerRead = 256

func (n *Node) readPeer(p *peer) {
	for range maxPacketsPerRead {
		if p.state == peerClosing {
			return
		}
		size, nfds, err := p.conn.Recv(n.rbuf, n.rfds[:])
		switch {
		case errors.Is(err, transport.ErrWouldBlock):
			return
		case errors.Is(err, io.EOF):
			n.fail(p, nil)
			return
		case errors.Is(err, transport.ErrTruncated), errors.Is(err, transport.ErrTooManyFDs):
			n.fail(p, protoErr("receiving", err))
			return
		case err != nil:
			n.fail(p, err)
			return
		}
		p.stats.PacketsIn++
		p.stats.BytesIn += uint64(size)
		fds := fdQueue{fds: n.rfds[:nfds]}
		if err := n.handlePacket(p, n.rbuf[:size], &fds); err != nil {
			n.fail(p, err)
		}
		fds.closeRest()
	}
}

// fdQueue hands the fds of one packet to the messages that carry them.
type fdQueue struct {
	fds  []int
	next int
}

func (q *fdQueue) take() (int, bool) {
	if q.next >= len(q.fds) {
		return -1, false
	}
	fd := q.fds[q.next]
	q.next++
	return fd, true
}

func (q *fdQueue) unused() bool { return q.next < len(q.fds) }

func (q *fdQueue) closeRest() {
	for ; q.next < len(q.fds); q.next++ {
		unix.Close(q.fds[q.next])
	}
}

// Dialler side.

func (n *Node) scheduleDial(cause error) {
	if cause != nil {
		n.lastDialErr = cause
	}
	var rej *RejectedError
	switch {
	case errors.As(cause, &rej):
		n.dialBackoff = n.cfg.ReconnectMax
	case n.dialBackoff == 0:
		n.dialBackoff = n.cfg.ReconnectMin
	default:
		n.dialBackoff = min(2*n.dialBackoff, n.cfg.ReconnectMax)
	}
	// Up to 25% jitter keeps restarted peers from reconnecting in lockstep.
	jitter := time.Duration(rand.Int64N(int64(n.dialBackoff)/4 + 1))
	n.dialAt = time.Now().Add(n.dialBackoff + jitter)
	n.rearm()
}

func (n *Node) dial() {
	n.dialAt = time.Time{}
	n.dialAttempts++
	c, err := transport.Dial(n.dialPath)
	if err != nil {
		if n.dialAttempts == 1 || !errors.Is(err, transport.ErrNoListener) {
			n.log.Debug("connecting", "err", err)
		}
		n.scheduleDial(err)
		return
	}
	p := n.addPeer(c)
	if p == nil {
		n.scheduleDial(errors.New("engine: cannot watch the connection"))
		return
	}
	n.dialPeer = p
	if len(n.cfg.ListenerUIDs) > 0 && !slices.Contains(n.cfg.ListenerUIDs, c.Cred().UID) {
		err := fmt.Errorf("engine: the listener at %s runs as uid %d, not one of %v", n.dialPath, c.Cred().UID, n.cfg.ListenerUIDs)
		n.log.Error("refusing the listener", "err", err, "pid", c.Cred().PID)
		n.counters.PolicyRejections++
		n.fail(p, &RejectedError{Status: wire.StatusPermissionDenied, Reason: err.Error()})
		return
	}
	n.sendConnect(p)
}

// Timers: handshake deadlines and the dialler's next attempt share one
// timerfd armed at the earliest of them.

func (n *Node) handleTimers(now time.Time) {
	if n.dialPath != "" && n.dialPeer == nil && !n.dialAt.IsZero() && !now.Before(n.dialAt) {
		n.dial()
	}
	n.expireCalls(now)
	for _, p := range n.peers {
		if p.state == peerHandshake && !now.Before(p.deadline) {
			n.fail(p, protoErr("handshake timed out", nil))
		}
	}
	n.rearm()
}

func (n *Node) rearm() {
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if n.dialPeer == nil {
		earliest(n.dialAt)
	}
	for _, p := range n.peers {
		if p.state == peerHandshake {
			earliest(p.deadline)
		}
	}
	if len(n.callTimers) > 0 {
		earliest(n.callTimers[0].deadline)
	}
	if at.Equal(n.timerAt) {
		return
	}
	n.timerAt = at
	if err := n.poller.SetTimer(at); err != nil {
		n.log.Error("arming timer", "err", err)
	}
}
