package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/simpleipc"
	"golang.org/x/sys/unix"
)

// Node is one process's endpoint: a listener that accepts many peers, or a
// dialler with one peer that it reconnects to. After the handshake both kinds
// may offer, require, subscribe and publish.
//
// A Node does no work on its own: the application calls Dispatch when Fd is
// readable (or runs Run on a goroutine). Callbacks run only inside Dispatch
// (or Run), on the dispatching goroutine, one at a time, and never while
// the node's lock is held: a callback may call any method of the node,
// except Dispatch (ErrBusy) and blocking calls that need the node to be
// dispatched (Proxy.Call). All other methods, of the Node and of its Offers
// and Proxies, are safe for concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	poller   *transport.Poller
	listener *transport.Listener // nil for a dialler
	dialPath string              // "" for a listener
	// isListener is the node's role in the protocol: peers dial it and
	// send Connect. (A node driven by tests over in-memory channels has a
	// role but neither a listener socket nor a path to dial.)
	isListener bool
	// clock is what the protocol's timers read (time.Now; tests drive a
	// node with a clock of their own).
	clock    func() time.Time
	endpoint *simpleipc.Server // the status endpoint, if configured
	commands *commandTable

	// dispatching is held by the loop that owns the node: Dispatch for its
	// duration, Run for its whole life.
	dispatching sync.Mutex
	// appTid is the OS thread running this node's application code inside
	// a dispatch (callbacks, the authorizer, log handlers), 0 when none: it
	// tells Close whether it was called from one of them.
	appTid atomic.Int32
	// closedFlag mirrors closed, for the checks between callbacks.
	closedFlag atomic.Bool
	// closeDone is closed when the first Close has released everything, so
	// that a concurrent Close returns no earlier.
	closeDone chan struct{}

	mu          sync.Mutex
	closed      bool
	shutting    bool // Shutdown in progress: no new peers, no dials
	batching    bool // inside Dispatch's protocol step: flush at its end
	peers       map[uint64]*peer
	nextToken   uint64
	nextPeerID  uint64
	nextHandle  uint64 // binding handles, never reused
	nextGen     uint64 // generations of delivered samples and replies, never reused
	dirty       []*peer
	doomed      []*peer
	admitting   []*peer // peers whose Connect waits for Config.Authorize
	handshakes  int     // accepted peers still in the handshake
	accept      acceptState
	offers      map[serviceKey]*Offer
	proxies     map[serviceKey]*Proxy
	finders     []*Finder
	callTimers  callTimers // pending calls with a timeout, by deadline
	rings       []*peer    // peers whose hot messages come through rings
	slotWaiters int        // LoanWait and PublishWait calls blocked for a free slot
	slotWanted  bool       // a Loan or Publish failed with ErrNoSlot since the last slot came back
	drain       [4096]byte // scratch for draining ring wake pipes
	inRun       bool       // Run is the dispatching loop (set and read with n.mu held)
	lastYield   time.Time  // when the dispatching goroutine last went through Go's scheduler

	// adaptive spin (spin.go)
	cpus       uint64        // the CPUs this process may run on
	spin       time.Duration // the current budget
	spinSkips  int           // parks without a spin since the budget decayed
	spinning   bool          // a dispatch polls spinSet without the lock
	spinSet    []spinRing    // the rings a spin polls (kept mapped meanwhile)
	lateUnmaps []*ringLink   // rings closed while spinning, unmapped after
	wakes      atomic.Uint64 // Wake calls, so a spin notices posted work

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
	logs     []logRecord
	logLimit logLimiter // for records not caused by one peer

	// owned by the dispatching goroutine
	events     []transport.Event
	rbuf       []byte
	rfds       [transport.MaxFDs]int
	in         inbox
	run        []callback
	toRelease  []*sampleRec
	more       bool        // this round left work behind (the read budget ran out)
	freshCalls []freshCall // calls received this round, acknowledged if still unanswered at its end
	lastMore   bool        // set by runCallbacks: work is pending for the next round

	// Reusable objects, guarded by mu.
	freeSamples []*sampleRec
	arena       inlineArena // the payloads of inline samples
	headWakes   []*peer     // peers whose inline updates our head passed this round (see wakeForHeads)
	freeReplies []*replyRec
	freeCalls   []*pendingCall
}

// token values below firstPeerToken are reserved.
const (
	listenerToken  = 1
	firstPeerToken = 16
)

// Bounds on the work of one dispatch round, so a flood from one peer is
// taken in bounded slices (the rest stays in the socket, which epoll reports
// again) and the memory a burst leaves behind is given back.
const (
	maxPacketsPerPeer = 16                // packets read from one peer per round
	maxRoundCallbacks = 1024              // stop reading once this many callbacks are queued
	retainCallbacks   = 4096              // larger callback queues are dropped once empty
	maxFreeObjects    = 256               // reusable replies and calls kept
	maxFreeSamples    = maxRoundCallbacks // reusable samples kept: a round's worth, so a full round allocates none
)

// acceptState is a listener's accept throttle.
type acceptState struct {
	paused  bool          // the listening socket is out of the poller
	retryAt time.Time     // resume then (zero: when a handshake ends)
	backoff time.Duration // after running out of file descriptors
}

type poolHintKey struct {
	id, instance string
	kind         PoolKind
}

type nodeCounters struct {
	PeersAccepted, PeersRejected, PeersLost uint64
	AcceptErrors                            uint64
	ProtocolErrors                          uint64
	PolicyRejections, QuotaHits             uint64
}

// callback is one queued callback. The hot kinds (a sample, a method call,
// a completed call) are carried without allocating; the rest are closures.
type callback struct {
	sample    *sampleRec
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
		if errors.Is(err, transport.ErrInvalidPath) || errors.Is(err, transport.ErrPathTooLong) {
			err = fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return nil, fmt.Errorf("engine: listening on %s: %w", path, err)
	}
	if err := n.poller.Add(l.Fd(), listenerToken, false); err != nil {
		l.Close()
		n.poller.Close()
		return nil, fmt.Errorf("engine: listening on %s: %w", path, err)
	}
	n.listener, n.isListener = l, true
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
	n.dialAt = n.now()
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

		events:   make([]transport.Event, 64),
		rbuf:     make([]byte, c.MaxPacket),
		logLimit: newLogLimiter(),
		cpus:     cpuMask(),
		clock:    time.Now,

		closeDone: make(chan struct{}),
	}
	return n, nil
}

// now is the protocol's time: handshake and call deadlines, the dialler's
// next attempt, the accept back-off.
func (n *Node) now() time.Time { return n.clock() }

// Fd returns a file descriptor that is readable whenever Dispatch has work:
// peer traffic, a timer (handshake deadlines, call timeouts, reconnects) or
// work posted with Post. It is level-triggered, stays owned by the node (do
// not read, write or close it) and is valid until Close. Readiness may be
// spurious.
func (n *Node) Fd() int { return n.poller.Fd() }

// Dispatch waits up to timeout (negative: forever, zero: not at all) for
// work, then does what is ready: accepts and reads peers, advances the
// protocol, flushes output and runs callbacks on the calling goroutine. It
// returns the number of callbacks run, and more = true when it left work
// for another call (a flood is taken in bounded slices, or ring entries
// arrived as it finished): call it again before waiting on Fd, which need
// not be readable for that work. Only one goroutine may dispatch at a time: a second one, Run,
// or a callback of this node calling Dispatch gets ErrBusy.
func (n *Node) Dispatch(timeout time.Duration) (ran int, more bool, err error) {
	if !n.dispatching.TryLock() {
		return 0, false, n.busy()
	}
	defer n.dispatching.Unlock()
	_, ran, more, err = n.dispatchStep(timeout)
	return ran, more, err
}

// dispatchStep is one round of Dispatch, with n.dispatching held. It also
// reports how many poller events it handled.
func (n *Node) dispatchStep(timeout time.Duration) (events, ran int, more bool, err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0, 0, false, ErrClosed
	}
	n.unpark() // parked since the last dispatch returned
	if len(n.callbacks) > 0 || n.more {
		timeout = 0
	}
	k := -1 // poller events not taken yet
	if timeout != 0 {
		if found, spun := n.spinBeforeParking(); spun > 0 {
			k = spun
		} else if found {
			timeout = 0
		}
	}
	parked := k < 0 && timeout != 0 && len(n.rings) > 0
	if parked && n.park() {
		timeout = 0 // entries came while we announced the park
	}
	n.mu.Unlock()

	if k < 0 && timeout != 0 {
		n.yieldNowAndThen()
	}
	if k < 0 {
		var err error
		if k, err = n.poller.Wait(n.events, timeout); err != nil && !errors.Is(err, transport.ErrClosed) {
			return 0, 0, false, fmt.Errorf("engine: waiting for events: %w", err)
		}
	}

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0, 0, false, ErrClosed
	}
	if parked {
		n.unpark()
	}
	n.more = false
	n.batching = true
	for _, ev := range n.events[:k] {
		n.handleEvent(ev)
	}
	n.readRings()
	if now := n.now(); n.timerFired || (!n.timerAt.IsZero() && !now.Before(n.timerAt)) {
		// The timerfd is one-shot: once fired it is disarmed, due or not.
		n.timerFired, n.timerAt = false, time.Time{}
		n.handleTimers(now)
	}
	n.batching = false
	n.flushDirty()
	n.reap()
	admitting := n.admitting
	n.admitting = nil
	logs := n.takeLogs()
	if len(admitting) == 0 {
		n.run, n.callbacks = n.callbacks, n.run[:0]
	}
	n.mu.Unlock()

	if len(logs) > 0 || len(admitting) > 0 || len(n.run) > 0 {
		n.enterApp()
		defer n.leaveApp()
	}
	n.emitLogs(logs)
	if len(admitting) > 0 {
		n.admit(admitting) // runs Authorize outside the lock, then takes the batch
	}
	ran = n.runCallbacks()
	return k, ran, n.lastMore, nil
}

// yieldEvery is how often a dispatching goroutine that only ever blocks in
// system calls goes through Go's scheduler before it blocks. Without it the
// runtime's monitor, finding the goroutine unscheduled for 10 ms, takes its
// P at every wait and wakes another thread to hold it: a futex wake and two
// context switches per message. Once every 5 ms costs one hand-off.
const yieldEvery = 5 * time.Millisecond

// yieldNowAndThen yields, before a blocking wait, if the dispatching
// goroutine has not been through the scheduler for yieldEvery.
func (n *Node) yieldNowAndThen() {
	if now := time.Now(); now.Sub(n.lastYield) >= yieldEvery {
		n.lastYield = now
		runtime.Gosched()
	}
}

// busy is why the dispatching lock could not be had: ErrClosed once the
// node is closed (Close briefly takes the lock to wait for dispatchers),
// else ErrBusy.
func (n *Node) busy() error {
	if n.closedFlag.Load() {
		return ErrClosed
	}
	return ErrBusy
}

// enterApp marks the calling thread as the one running this node's
// application code (see appTid); the goroutine stays on it until leaveApp.
func (n *Node) enterApp() {
	runtime.LockOSThread()
	n.appTid.Store(int32(unix.Gettid()))
}

// threadID is the OS thread the calling goroutine runs on. A goroutine not
// locked to its thread may move right after; that is harmless where it is
// compared with appTid, whose thread no other goroutine can run on.
func threadID() int32 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return int32(unix.Gettid())
}

func (n *Node) leaveApp() {
	n.appTid.Store(0)
	runtime.UnlockOSThread()
}

// runCallbacks runs the batch taken from the queue, then releases (in one
// batch of Payload_consumed messages) the samples whose handlers did not keep
// them. Once the node is closed the rest of the batch is dropped. If a
// callback panics, the rest of the batch is put back in front of the queue
// before the panic goes on, so no sample (and no slot) is lost.
func (n *Node) runCallbacks() (ran int) {
	batch := n.run
	finished := false
	defer func() {
		n.mu.Lock()
		switch {
		case ran < len(batch) && (finished || n.closed):
			// Stopped by Close: nothing more of this batch runs.
			for _, cb := range batch[ran:] {
				n.dropLocked(cb)
			}
		case !finished:
			// A callback panicked: what it held is released (samples are in
			// toRelease already; fire-and-forget requests are released by
			// runCall itself), the rest requeued.
			// A copy: batch is n.run's array, reused for the next batch.
			n.callbacks = append(slices.Clone(batch[ran+1:]), n.callbacks...)
		}
		n.acknowledgeLateCalls()
		n.releaseBatch()
		n.wakeForHeads()
		n.parkUntilNextDispatch()
		n.lastMore = n.more || len(n.callbacks) > 0
		clear(batch)
		if cap(n.run) > retainCallbacks {
			n.run = nil
		}
		if cap(n.callbacks) > retainCallbacks && len(n.callbacks) == 0 {
			n.callbacks = nil
		}
		if cap(n.toRelease) > retainCallbacks {
			n.toRelease = nil
		}
		n.unlock()
	}()
	for ran < len(batch) && !n.closedFlag.Load() {
		cb := &batch[ran]
		switch {
		case cb.sample != nil:
			n.toRelease = append(n.toRelease, cb.sample)
			if cb.sample.deliver() {
				n.releaseNow() // through a ring the slot goes back at once, for free
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
	finished = true
	return ran
}

// releaseNow gives back the samples of the batch so far that were not kept.
func (n *Node) releaseNow() {
	n.mu.Lock()
	n.releaseBatch()
	n.unlock()
}

// releaseBatch gives back the batch's samples that were not kept, in one
// batch of consumes. Called with n.mu held.
func (n *Node) releaseBatch() {
	n.batching = true
	for _, s := range n.toRelease {
		if !s.kept {
			s.releaseLocked()
		}
	}
	clear(n.toRelease)
	n.toRelease = n.toRelease[:0]
	n.batching = false
	n.flushDirty()
}

// Run dispatches until ctx is done or the node is closed. It returns nil
// when the node was closed, else ctx's error; ErrBusy if another loop
// already dispatches the node. While Run runs, the node belongs to it:
// Dispatch from elsewhere returns ErrBusy. It waits in the node's own
// epoll_wait (not Go's network poller, which measured slower), and yields
// between rounds so that the goroutines a round woke run before it blocks.
func (n *Node) Run(ctx context.Context) error {
	if !n.dispatching.TryLock() {
		if errors.Is(n.busy(), ErrClosed) {
			return nil
		}
		return ErrBusy
	}
	defer n.dispatching.Unlock()
	n.mu.Lock()
	n.inRun = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.inRun = false
		if !n.closed {
			n.parkUntilNextDispatch() // whoever dispatches next may wait on Fd
		}
		n.unlock()
	}()
	stop := context.AfterFunc(ctx, func() { n.poller.Wake() })
	defer stop()
	for ctx.Err() == nil {
		// Goroutines the last round woke (a blocked Proxy.Call, LoanWait)
		// run now: blocked in epoll_wait, Run would hold the P they need
		// (with GOMAXPROCS=1 until the runtime's monitor takes it, 20 µs
		// to 10 ms later).
		runtime.Gosched()
		n.lastYield = time.Now()
		if _, _, _, err := n.dispatchStep(-1); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return err
		}
	}
	return ctx.Err()
}

// Post runs fn inside the next Dispatch, on the dispatching goroutine,
// after the callbacks already queued, and makes Fd readable. It is safe
// from any goroutine (and from callbacks). Functions still queued when the
// node closes never run. It returns ErrClosed after Close.
func (n *Node) Post(fn func()) error {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidConfig)
	}
	if err := n.lockChecked(); err != nil {
		return err
	}
	n.callbacks = append(n.callbacks, callback{fn: fn})
	n.wakeNeeded = true
	n.unlock()
	return nil
}

// Close withdraws every offer, closes every proxy, says Goodbye to every
// peer (best effort: what the sockets take now), closes the connections,
// removes the listener's socket and releases every resource, including the
// request memory of calls the application has not answered (Call.Reply
// then returns ErrClosed, and Call.Data must no longer be read). Kept
// samples and replies stay readable until released.
//
// Close waits for a Dispatch (or Run) in progress on another goroutine to
// return before it tears anything down: the callback such a dispatch is
// running may go on reading what it was handed (a call's request, a
// sample), and no further callback runs. No callback runs after Close
// returns. Called from one of the
// node's own callbacks, it returns at once and the dispatch ends after that
// callback. Close is idempotent: a concurrent or later Close returns once
// the first has released everything. Afterwards every call returns ErrClosed.
// Shutdown is the graceful variant.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		if !n.onAppThread() {
			<-n.closeDone // the first Close may be waiting for this callback
		}
		return nil
	}
	defer close(n.closeDone)
	n.closed = true // first: teardown below releases what closing nodes hold
	n.closedFlag.Store(true)
	n.mu.Unlock()
	// A dispatch in progress runs no further callback once closedFlag is
	// set, and returns when woken; the callback it may be running still
	// reads what it was handed (a call's request in the caller's pool, a
	// sample), so the teardown waits for it to leave. From a callback of
	// this node it cannot: that callback's dispatch ends after it.
	n.poller.Wake()
	n.waitDispatcher()
	n.mu.Lock()
	for _, o := range n.offers {
		o.closeLocked()
	}
	for _, p := range n.proxies {
		p.closeLocked()
	}
	n.sayGoodbye()
	n.flushDirty()
	for _, p := range n.peers {
		n.fail(p, nil)
	}
	n.reap()
	for _, cb := range n.callbacks {
		n.dropLocked(cb)
	}
	n.callbacks = nil
	for _, r := range n.freeSamples {
		if r.inline != nil {
			n.arena.put(r.inline)
		}
	}
	n.freeSamples = nil
	n.arena.close()   // once kept samples are released too
	n.admitting = nil // torn down with every other peer
	logs := n.takeLogs()
	n.mu.Unlock()
	n.emitLogs(logs)

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

// waitDispatcher waits until no Dispatch or Run is in progress, unless the
// caller is one of this node's callbacks (which that dispatch is running).
func (n *Node) waitDispatcher() {
	if n.dispatching.TryLock() {
		n.dispatching.Unlock()
		return
	}
	if n.onAppThread() {
		return // called from a callback: the dispatch ends after it
	}
	n.dispatching.Lock() // held until the dispatcher leaves
	defer n.dispatching.Unlock()
}

// Shutdown closes the node gracefully: it withdraws every offer, releases
// every binding, says Goodbye to every peer and waits, until ctx ends, for
// all of that to reach the peers, then closes the node as Close does. It
// returns ctx's error if the output could not be flushed in time (the node
// is closed anyway). It drives its own writes, so it works whether or not
// the node is being dispatched; call it from any goroutine but not from a
// callback of this node.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return n.Close()
	}
	n.shutting = true
	for _, o := range n.offers {
		o.closeLocked()
	}
	for _, p := range n.proxies {
		p.closeLocked()
	}
	n.sayGoodbye()
	n.flushDirty()
	n.unlock()

	var werr error
	for werr == nil {
		n.mu.Lock()
		var fds []unix.PollFd
		for _, p := range n.peers {
			if len(p.pkts) > 0 && p.state != peerClosing {
				p.flush()
				if len(p.pkts) > 0 {
					fds = append(fds, unix.PollFd{Fd: int32(p.conn.Fd()), Events: unix.POLLOUT})
				}
			}
		}
		n.unlock()
		if len(fds) == 0 {
			break
		}
		werr = pollUntil(ctx, fds)
	}
	return errors.Join(werr, n.Close())
}

// pollUntil waits until one of fds is ready or ctx ends (its error).
func pollUntil(ctx context.Context, fds []unix.PollFd) error {
	wait := 100 * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("engine: flushing before shutdown: %w", err)
	}
	_, err := unix.Poll(fds, int(max(wait, time.Millisecond)/time.Millisecond))
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("engine: flushing before shutdown: %w", os.NewSyscallError("poll", err))
	}
	return nil
}

// sayGoodbye queues a Goodbye to every established peer that has not had
// one. Called with n.mu held.
func (n *Node) sayGoodbye() {
	for _, p := range n.peers {
		if p.state == peerReady && !p.goodbyeSent {
			p.goodbyeSent = true
			p.queue(&wire.Goodbye{Status: wire.StatusShuttingDown})
		}
	}
}

// dropLocked releases what a callback that will never run holds. Called
// with n.mu held.
func (n *Node) dropLocked(cb callback) {
	switch {
	case cb.sample != nil:
		cb.sample.releaseLocked()
	case cb.completed != nil:
		cb.completed.reply.releaseLocked()
		n.recycleCallLocked(cb.completed)
	case cb.call.b != nil:
		if cb.call.ff {
			cb.call.b.endFireAndForget(cb.ffPayload)
		} else {
			cb.call.b.abortCall(cb.call.id)
		}
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

// unlock finishes an API call: tears down peers that failed during it,
// releases the lock, emits queued log records and wakes the dispatcher if
// it has callbacks to run.
func (n *Node) unlock() {
	n.reap()
	wake := n.wakeNeeded
	n.wakeNeeded = false
	logs := n.takeLogs()
	n.mu.Unlock()
	n.emitLogs(logs)
	if wake {
		n.wakes.Add(1)
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
	if err := p.failErr; err != nil {
		var pe *protocolError
		var rej *RejectedError
		switch {
		case errors.As(err, &rej) && p != n.dialPeer:
			n.peerLogf(p, slog.LevelWarn, "rejected peer", "reason", err)
		case errors.As(err, &pe):
			n.counters.ProtocolErrors++
			n.peerLogf(p, slog.LevelWarn, "closing peer", "reason", err)
		default:
			n.peerLogf(p, slog.LevelInfo, "peer lost", "reason", err)
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
	n.closeRing(p)
	n.poller.Remove(p.conn.Fd())
	p.conn.Close()
	delete(n.peers, p.token)
	if p.dirty {
		n.dirty = slices.DeleteFunc(n.dirty, func(d *peer) bool { return d == p })
		p.dirty = false
	}
	n.handshakeDone(p)
	if p.wasReady {
		n.counters.PeersLost++
		if cb := n.cfg.OnPeerDisconnected; cb != nil {
			pub, err := p.pub, p.failErr
			n.enqueue(callback{fn: func() { cb(pub, err) }})
		}
	}
	if p == n.dialPeer {
		n.dialPeer = nil
		if !n.closed && !n.shutting {
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
	case ev.Token&ringTokenBit != 0:
		// A ring peer woke us; the rings are read every round.
		if p := n.peers[ev.Token&^ringTokenBit]; p != nil && p.ring != nil {
			n.tookWake(p.ring)
		}
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

// acceptPeers accepts pending connections, within the node's limits: at
// MaxHandshakes, or out of file descriptors, the listener pauses (the rest
// waits in the backlog). MaxPeers is applied to the Connect (onConnect), so
// the refusal reaches the peer after its Connect was read.
func (n *Node) acceptPeers() {
	for range 64 {
		if n.shutting || n.accept.paused {
			return
		}
		if n.handshakes >= n.cfg.MaxHandshakes {
			n.pauseAccept(time.Time{})
			return
		}
		c, err := n.listener.Accept()
		if errors.Is(err, transport.ErrWouldBlock) {
			return
		}
		if err != nil {
			n.counters.AcceptErrors++
			if resourceExhausted(err) {
				n.accept.backoff = min(max(2*n.accept.backoff, 10*time.Millisecond), time.Second)
				n.pauseAccept(n.now().Add(n.accept.backoff))
				n.limitedLogf(&n.logLimit, slog.LevelWarn, "accepting peers paused", "err", err, "retry_in", n.accept.backoff)
			} else {
				n.limitedLogf(&n.logLimit, slog.LevelWarn, "accepting a peer", "err", err)
			}
			return
		}
		n.accept.backoff = 0
		n.acceptChannel(c)
	}
}

// acceptChannel takes a dialler's new connection: the peer is in its
// handshake until its Connect is answered.
func (n *Node) acceptChannel(c channel) {
	if p := n.addPeer(c); p != nil {
		p.inHandshake = true
		n.handshakes++
		n.counters.PeersAccepted++
	}
}

// resourceExhausted reports whether an accept failed for lack of file
// descriptors or memory, which only time (or a departing peer) cures.
func resourceExhausted(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// pauseAccept takes the listening socket out of the poller until at (or,
// with a zero at, until a handshake ends).
func (n *Node) pauseAccept(at time.Time) {
	if !n.accept.paused {
		n.accept.paused = true
		n.poller.Remove(n.listener.Fd())
	}
	n.accept.retryAt = at
	n.rearm()
}

func (n *Node) resumeAccept() {
	if !n.accept.paused || n.closed {
		return
	}
	n.accept.paused, n.accept.retryAt = false, time.Time{}
	if err := n.poller.Add(n.listener.Fd(), listenerToken, false); err != nil {
		n.limitedLogf(&n.logLimit, slog.LevelError, "resuming accept", "err", err)
	}
	n.rearm()
}

// handshakeDone ends p's handshake accounting (once): a listener paused at
// MaxHandshakes may accept again.
func (n *Node) handshakeDone(p *peer) {
	if !p.inHandshake {
		return
	}
	p.inHandshake = false
	n.handshakes--
	if n.accept.paused && n.accept.retryAt.IsZero() {
		n.resumeAccept()
	}
}

func (n *Node) addPeer(c channel) *peer {
	p := newPeer(n, c)
	if err := n.poller.Add(c.Fd(), p.token, false); err != nil {
		n.limitedLogf(&n.logLimit, slog.LevelWarn, "watching a peer", "err", err)
		c.Close()
		return nil
	}
	n.peers[p.token] = p
	n.rearm()
	return p
}

func (n *Node) readPeer(p *peer) {
	for range maxPacketsPerPeer {
		if p.state == peerClosing || p.state == peerAdmitting {
			return
		}
		if len(n.callbacks) >= maxRoundCallbacks {
			n.more = true
			return
		}
		// The ring entries written before the next packet come first.
		if p.ring != nil && n.readRing(p, maxRoundCallbacks-len(n.callbacks)) {
			n.more = true
			return
		}
		size, nfds, err := p.conn.Recv(n.rbuf, n.rfds[:])
		switch {
		case errors.Is(err, transport.ErrWouldBlock):
			return
		case errors.Is(err, io.EOF):
			if p.ring != nil {
				n.readRing(p, int(p.ring.peerEntries)) // what it wrote before it went
			}
			if p.saidGoodbye {
				n.fail(p, nil)
			} else {
				n.fail(p, ErrPeerLost)
			}
			return
		case errors.Is(err, transport.ErrTruncated), errors.Is(err, transport.ErrTooManyFDs):
			n.fail(p, protoErr("receiving", err))
			return
		case errors.Is(err, transport.ErrPeerClosed) && !p.resetSeen:
			// The peer closed with our data unread: Linux reports the reset
			// before the packets it sent first (a Goodbye, a rejection).
			p.resetSeen = true
			continue
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
	n.more = true // the peer may have more: epoll reports it again
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
	n.dialAt = n.now().Add(n.dialBackoff + jitter)
	n.rearm()
}

func (n *Node) dial() {
	n.dialAt = time.Time{}
	n.dialAttempts++
	c, err := transport.Dial(n.dialPath)
	if err != nil {
		if n.dialAttempts == 1 || !errors.Is(err, transport.ErrNoListener) {
			n.limitedLogf(&n.logLimit, slog.LevelDebug, "connecting", "err", err)
		}
		n.scheduleDial(err)
		return
	}
	n.connectChannel(c)
}

// connectChannel starts the session on a dialler's new connection to the
// listener: it checks the listener's identity and sends Connect.
func (n *Node) connectChannel(c channel) {
	p := n.addPeer(c)
	if p == nil {
		n.scheduleDial(errors.New("engine: cannot watch the connection"))
		return
	}
	n.dialPeer = p
	if len(n.cfg.ListenerUIDs) > 0 && !slices.Contains(n.cfg.ListenerUIDs, c.Cred().UID) {
		err := fmt.Errorf("engine: the listener at %s runs as uid %d, not one of %v", n.dialPath, c.Cred().UID, n.cfg.ListenerUIDs)
		n.limitedLogf(&n.logLimit, slog.LevelError, "refusing the listener", "err", err, "pid", c.Cred().PID)
		n.counters.PolicyRejections++
		n.fail(p, &RejectedError{Status: StatusPermissionDenied, Reason: err.Error()})
		return
	}
	n.sendConnect(p)
}

// Timers: handshake deadlines, call timeouts, the dialler's next attempt
// and the listener's accept back-off share one timerfd armed at the
// earliest of them.

func (n *Node) handleTimers(now time.Time) {
	if n.dialPath != "" && n.dialPeer == nil && !n.dialAt.IsZero() && !now.Before(n.dialAt) && !n.shutting {
		n.dial()
	}
	if n.accept.paused && !n.accept.retryAt.IsZero() && !now.Before(n.accept.retryAt) {
		n.resumeAccept()
	}
	n.expireCalls(now)
	for _, p := range n.peers {
		if (p.state == peerHandshake || p.state == peerAdmitting) && !now.Before(p.deadline) {
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
	if n.accept.paused {
		earliest(n.accept.retryAt)
	}
	for _, p := range n.peers {
		if p.state == peerHandshake || p.state == peerAdmitting {
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
		n.limitedLogf(&n.logLimit, slog.LevelError, "arming timer", "err", err)
	}
}
