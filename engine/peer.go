package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"golang.org/x/sys/unix"
)

// Peer is the application's view of a connected process. It is handed to the
// OnPeerConnected and OnPeerDisconnected callbacks and stays valid (with its
// identity and private data) after the peer is gone.
type Peer struct {
	id   uint64
	name string
	cred transport.Cred

	mu      sync.Mutex
	private any
}

// ID is unique among the peers a node has had, never reused.
func (p *Peer) ID() uint64 { return p.id }

// Name is the name the peer sent in its handshake (may be empty).
func (p *Peer) Name() string { return p.name }

// PID, UID and GID are the peer process's credentials as the kernel reported
// them when the connection was made (SO_PEERCRED).
func (p *Peer) PID() int { return int(p.cred.PID) }

// UID is the peer process's user id (see PID).
func (p *Peer) UID() uint32 { return p.cred.UID }

// GID is the peer process's group id (see PID).
func (p *Peer) GID() uint32 { return p.cred.GID }

// SetPrivate attaches application data to the peer (coroipc's per-connection
// private data). Safe for concurrent use.
func (p *Peer) SetPrivate(v any) {
	p.mu.Lock()
	p.private = v
	p.mu.Unlock()
}

// Private returns what SetPrivate stored, or nil.
func (p *Peer) Private() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.private
}

// channel carries one peer's control packets: whole packets, each with up
// to transport.MaxFDs file descriptors, never blocking (ErrWouldBlock). The
// SEQPACKET socket (transport.Conn) implements it, and tests an in-memory
// link. The rings are the other carrier, beside it (ring.go): they carry
// the hot messages once both ends have them, the channel everything else.
type channel interface {
	Fd() int
	Cred() transport.Cred
	Send(pkt []byte, fds []int) error
	Recv(buf []byte, fds []int) (n, nfds int, err error)
	Close() error
}

type peerState uint8

const (
	peerHandshake peerState = iota // connected, Connect/Connect_reply not yet exchanged
	peerAdmitting                  // listener: Connect received, Config.Authorize to be asked
	peerReady                      // session established
	peerClosing                    // failed or closing; torn down at the next reap
)

func (s peerState) String() string {
	return [...]string{"handshake", "admitting", "ready", "closing"}[s]
}

// outPacket is one queued control packet and the fds (owned dups) that travel
// with it.
type outPacket struct {
	b   []byte
	fds []int
}

// peer is the node's state for one control connection. Guarded by Node.mu.
type peer struct {
	n        *Node
	token    uint64
	conn     channel
	pub      *Peer
	state    peerState
	wasReady bool      // completed the handshake at some point
	deadline time.Time // end of the handshake window
	since    time.Time
	caps     uint32
	maxOut   int // largest packet the peer accepts
	failErr  error

	inHandshake bool          // counted in Node.handshakes (an accepted peer not yet ready)
	saidGoodbye bool          // the peer announced an orderly close
	goodbyeSent bool          // we announced ours
	sendClosed  bool          // the peer closed its end: nothing more can be sent
	resetSeen   bool          // a receive reported the peer's reset; its last packets follow
	admission   *wire.Connect // while admitting: the Connect to complete
	logLimit    logLimiter
	mapped      int64 // bytes of this peer's pools this node maps

	pkts    []outPacket
	sealed  bool // a ring entry follows the last packet: the next message starts a new one
	spare   [][]byte
	queued  int
	blocked bool // socket full: waiting for EPOLLOUT
	dirty   bool // has unflushed output while the node is batching

	provided map[uint64]*provBinding     // bindings where we provide, by our provided_id
	required map[uint64]*consBinding     // bindings where we consume, by our required_id
	interest map[serviceKey]wire.Service // services this peer requested from us
	offers   map[serviceKey]offerSeen    // services this peer offers
	finds    []wire.Service              // this peer's find elements (a multiset)
	// Pool sizes this peer (a dialler) asked for in Connect, for pools its
	// own binding makes this node create.
	poolHints map[poolHintKey]shm.Geometry
	announced map[*Finder]bool // our finders this peer knows of

	pendingCalls  int // calls from this peer not yet answered
	subscriptions int // event subscriptions this peer holds with us

	stats peerStats

	out  outbox
	ring *ringLink // nil without the ring capability
}

// outbox holds one reusable message of each type sent per payload (guarded
// by Node.mu). A message built in a local and passed to queue, whose
// parameter is an interface, would escape to the heap: one allocation per
// message. The queue* methods below are the hot senders.
type outbox struct {
	update   wire.EventUpdate
	consumed wire.PayloadConsumed
	call     wire.CallMethod
	handle   wire.CallMethodHandle
	reply    wire.CallMethodReply
	cancel   wire.CancelMethodCall
}

func (p *peer) queueUpdate(m wire.EventUpdate) {
	p.out.update = m
	p.queueHot(&p.out.update, true)
}

// queueConsumed releases one payload in the peer's pool; handle is the
// peer's handle of the binding, reply says the payload is in its reply pool.
// Through a ring it wakes the peer only if it waits for a free slot.
func (p *peer) queueConsumed(handle uint64, pl wire.Payload, reply bool) {
	p.out.consumed = wire.PayloadConsumed{Handle: handle, Payload: pl, Reply: reply}
	if p.ring.ready() {
		p.ring.consumed = true
	}
	p.queueHot(&p.out.consumed, false)
}

func (p *peer) queueCall(m wire.CallMethod) {
	p.out.call = m
	p.queueHot(&p.out.call, true)
}

func (p *peer) queueCallHandle(m wire.CallMethodHandle) {
	p.out.handle = m
	p.queueHot(&p.out.handle, false)
}

func (p *peer) queueCallReply(m wire.CallMethodReply) {
	p.out.reply = m
	p.queueHot(&p.out.reply, true)
}

func (p *peer) queueCancel(m wire.CancelMethodCall) {
	p.out.cancel = m
	p.queueHot(&p.out.cancel, true)
}

// queueHot sends a hot message through the ring when there is one, else on
// the socket; urgent ones wake a parked peer.
func (p *peer) queueHot(m wire.Message, urgent bool) {
	if p.ring.ready() {
		p.pushRing(m, urgent)
		return
	}
	p.queue(m)
}

// canTakeUpdate reports whether an event update can go to the peer now: a
// full ring or socket drops it (counted) instead of queueing it.
func (p *peer) canTakeUpdate() bool {
	if p.ring.ready() {
		return len(p.ring.overflow) == 0 && p.roomInRing()
	}
	return !p.blocked
}

type offerSeen struct {
	svc     ServiceID
	methods uint16
	events  uint16
}

type peerStats struct {
	PacketsIn, PacketsOut   uint64
	MessagesIn, MessagesOut uint64
	BytesIn, BytesOut       uint64
	UpdatesDropped          uint64 // event updates not sent: socket full or slot share refused
	StaleHandles            uint64 // messages for bindings already torn down (benign races)
	PolicyRejections        uint64
	QuotaHits               uint64
	RingWakes               uint64 // wake-ups of the peer, parked on its ring (a byte to its wake pipe)
}

// poolHint returns the geometry p asked for (for the instance, else for every
// instance of the service), or def.
func (p *peer) poolHint(svc ServiceID, kind PoolKind, def shm.Geometry) shm.Geometry {
	if g, ok := p.poolHints[poolHintKey{svc.ID, svc.Instance, kind}]; ok {
		return g
	}
	if g, ok := p.poolHints[poolHintKey{svc.ID, "", kind}]; ok {
		return g
	}
	return def
}

// mapPool maps a pool p sent us, within the limits on what one peer may make
// this node map. It takes fd (closed on every path).
func (p *peer) mapPool(fd int, g shm.Geometry) (*shm.View, error) {
	lim := &p.n.cfg.Limits
	if err := lim.checkPool(g); err != nil {
		closeFD(fd)
		return nil, err
	}
	if p.mapped+g.Size() > lim.MappedBytes {
		closeFD(fd)
		return nil, fmt.Errorf("%w: mapping %d more bytes of this peer's pools would exceed %d", ErrQuotaExceeded, g.Size(), lim.MappedBytes)
	}
	v, err := shm.MapView(fd, g)
	if err != nil {
		return nil, err
	}
	p.mapped += g.Size()
	return v, nil
}

// unmapPool closes a view mapPool made (unmapped once its last reference
// goes) and gives its bytes back to p's allowance.
func (p *peer) unmapPool(v *shm.View) {
	if v == nil {
		return
	}
	p.mapped -= v.Geometry().Size()
	v.Close()
}

var errOutputFull = errors.New("engine: peer's output queue is full (peer not reading)")

func newPeer(n *Node, conn channel) *peer {
	n.nextToken++
	n.nextPeerID++
	now := n.now()
	return &peer{
		n:         n,
		token:     n.nextToken,
		conn:      conn,
		pub:       &Peer{id: n.nextPeerID, cred: conn.Cred()},
		deadline:  now.Add(n.cfg.HandshakeTimeout),
		since:     now,
		maxOut:    wire.MinPacket,
		provided:  map[uint64]*provBinding{},
		required:  map[uint64]*consBinding{},
		interest:  map[serviceKey]wire.Service{},
		offers:    map[serviceKey]offerSeen{},
		announced: map[*Finder]bool{},
		poolHints: map[poolHintKey]shm.Geometry{},
		logLimit:  newLogLimiter(),
	}
}

// queue appends m to the peer's output, with fds (dup'ed here) attached to
// the same packet. The output is flushed at once, or at the end of the
// current dispatch when the node is batching.
func (p *peer) queue(m wire.Message, fds ...int) {
	if p.state == peerClosing || p.sendClosed {
		return
	}
	i := p.tail(len(fds))
	start := len(p.pkts[i].b)
	b, err := m.Append(p.pkts[i].b)
	if err != nil {
		// Only strings and lists can fail, and the engine validates those
		// before they get here; treat a failure as a bug in this peer's session.
		p.n.fail(p, protoErr("encoding "+m.Type().String(), err))
		return
	}
	size := len(b) - start
	if len(b) > p.maxOut && start > 0 {
		msg := b[start:]
		p.pkts[i].b = b[:start]
		i = p.newPacket()
		b = append(p.pkts[i].b, msg...)
	}
	if size > p.maxOut {
		p.n.fail(p, protoErr("encoding "+m.Type().String(), wire.ErrTooLarge))
		return
	}
	p.pkts[i].b = b
	for _, fd := range fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			p.n.fail(p, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err))
			return
		}
		p.pkts[i].fds = append(p.pkts[i].fds, dup)
	}
	p.queued += size
	p.stats.MessagesOut++
	if p.queued > p.n.cfg.MaxOutput {
		p.n.fail(p, errOutputFull)
		return
	}
	p.n.schedule(p)
}

// tail returns the index of the packet to append to: the last one, if it
// has room for nfds more fds.
func (p *peer) tail(nfds int) int {
	if k := len(p.pkts); k > 0 && !p.sealed && len(p.pkts[k-1].fds)+nfds <= transport.MaxFDs {
		return k - 1
	}
	p.sealed = false
	return p.newPacket()
}

func (p *peer) newPacket() int {
	var b []byte
	if k := len(p.spare); k > 0 {
		b, p.spare = p.spare[k-1][:0], p.spare[:k-1]
	} else {
		b = make([]byte, 0, 512)
	}
	p.pkts = append(p.pkts, outPacket{b: b})
	return len(p.pkts) - 1
}

// flush sends queued packets until the socket is full, and moves what waits
// for room into the ring.
func (p *peer) flush() {
	if p.ring.ready() && p.state != peerClosing {
		p.flushRing()
	}
	for len(p.pkts) > 0 && p.state != peerClosing {
		if p.ring.holdsBack(p.stats.PacketsOut) {
			return // sent after entries that wait for room in the ring
		}
		pk := &p.pkts[0]
		err := p.conn.Send(pk.b, pk.fds)
		if errors.Is(err, transport.ErrWouldBlock) {
			if !p.blocked {
				p.blocked = true
				p.n.watch(p)
			}
			return
		}
		if errors.Is(err, transport.ErrPeerClosed) {
			// The peer has gone: read what it sent before (a rejection,
			// a Goodbye) until the end of the stream tells why.
			p.sendClosed = true
			p.discardOutput()
			return
		}
		if err != nil {
			p.n.fail(p, err)
			return
		}
		p.stats.PacketsOut++
		p.stats.BytesOut += uint64(len(pk.b))
		p.queued -= len(pk.b)
		p.popPacket()
	}
	if p.blocked {
		p.blocked = false
		p.n.watch(p)
	}
}

func (p *peer) popPacket() {
	pk := p.pkts[0]
	for _, fd := range pk.fds {
		unix.Close(fd)
	}
	if len(p.spare) < 4 && cap(pk.b) <= wire.MaxPacket {
		p.spare = append(p.spare, pk.b[:0])
	}
	n := copy(p.pkts, p.pkts[1:])
	p.pkts[n] = outPacket{}
	p.pkts = p.pkts[:n]
	if n == 0 && cap(p.pkts) > 64 {
		p.pkts = nil // a backlog is over: give its memory back
	}
}

// discardOutput drops everything queued (the peer is going away).
func (p *peer) discardOutput() {
	for len(p.pkts) > 0 {
		p.popPacket()
	}
	p.queued = 0
}
