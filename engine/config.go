package engine

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// Config configures a Node. A nil *Config means all defaults.
type Config struct {
	// Name is sent to peers in the handshake and shown in their status.
	Name string
	// Logger receives the node's log records. Nil discards them. Records are
	// emitted outside the node's lock, and the ones a peer can cause
	// (protocol errors, refusals) are rate-limited per peer, so a handler may
	// call back into the node and a hostile peer cannot flood the log.
	Logger *slog.Logger
	// SocketMode is the listener's socket file mode (default 0600).
	SocketMode os.FileMode
	// MaxPacket is the largest control packet the node accepts
	// (default 65536, at least 4096).
	MaxPacket int
	// HandshakeTimeout bounds the Connect/Connect_reply exchange (default 5s).
	HandshakeTimeout time.Duration
	// ReconnectMin and ReconnectMax bound a dialler's reconnect back-off
	// (defaults 10ms and 2s). The delay doubles after each failed attempt
	// and starts again from ReconnectMin once a session is established.
	ReconnectMin, ReconnectMax time.Duration
	// MaxOutput bounds the bytes queued for a peer that does not read; past
	// it the peer is disconnected (default 4 MiB). Event updates are dropped
	// for a peer whose socket is full instead of being queued.
	MaxOutput int
	// MaxPeers bounds a listener's connected peers (default 1024); a peer
	// connecting beyond it is refused with StatusQuotaExceeded.
	MaxPeers int
	// MaxHandshakes bounds a listener's connections still in the handshake
	// (default 64); beyond it the listener stops accepting until one
	// completes or times out, and new connections wait in the backlog.
	MaxHandshakes int
	// Pools are sent by a dialler in Connect: sizes for pools the listener
	// creates for this dialler alone (see PoolConfig). A listener ignores
	// this field.
	Pools []PoolConfig
	// OnPeerConnected runs (inside Dispatch) when a peer completes the
	// handshake. Use Peer.SetPrivate to attach per-peer data.
	OnPeerConnected func(*Peer)
	// OnPeerDisconnected runs (inside Dispatch) when a connected peer is
	// lost. err is nil for an orderly departure (the peer said Goodbye),
	// ErrPeerLost when the connection ended without one (a crash or a kill),
	// or the protocol error or rejection that ended it.
	OnPeerDisconnected func(p *Peer, err error)

	// AllowUIDs and AllowGIDs restrict who may connect to a listener: a
	// peer is admitted if its uid or gid is listed. Both empty: anyone who
	// can open the socket (see SocketMode).
	AllowUIDs, AllowGIDs []uint32
	// Authorize, if set, is asked about every peer the allow-lists admit
	// (listener only); a non-nil error rejects it with that reason. It runs
	// inside Dispatch, on the dispatching goroutine, outside the node's lock
	// (it may call the node), and should not block: the peer waits for it.
	Authorize func(PeerCred) error
	// ListenerUIDs makes a dialler refuse a listener that does not run as
	// one of these users (so an imposter cannot pose as the service). The
	// uid is the kernel's SO_PEERCRED of the process that created the
	// listening socket.
	ListenerUIDs []uint32
	// Policy decides which peers may offer, require, subscribe to and call
	// which services; see Rule.
	Policy []Rule
	// Limits bound what one peer may make the node hold.
	Limits Limits
	// StatusPath, if set, is where the node serves its status endpoint:
	// Git's Simple-IPC protocol on a stream socket, answering ping, version,
	// status (JSON) and the commands added with Node.HandleCommand.
	StatusPath string
	// StatusMode is the status endpoint's socket file mode (default 0600:
	// the status names peers' pids and uids, and commands may act).
	StatusMode os.FileMode
	// DisableRings keeps every connection on the socket: the node does not
	// announce the ring capability (see docs/PROTOCOL.md §10). A node whose
	// Limits.MappedBytes is below what the largest ring needs (2 MiB + 4 KiB)
	// does not announce it either.
	DisableRings bool
	// RingEntries is the size of this node's ring per connection, a power of
	// two in [64, 65536] (default 4096 entries of 32 bytes).
	RingEntries int
	// Spin is how long a dispatch with nothing to do polls its rings before
	// it parks in epoll_wait (default 0: never). A peer's next message then
	// costs no wake-up: sub-microsecond hand-offs for a CPU spent spinning.
	// The spin adapts: it shrinks while it keeps finding nothing and grows
	// back when it pays. A node never spins when it and its ring peers may
	// run only on one and the same CPU (spinning would only steal the
	// peer's time).
	Spin time.Duration
}

// PoolKind names which pool a PoolConfig sizes.
type PoolKind uint8

// Pool kinds a dialler may size. Both are pools the listener creates for
// this dialler's bindings alone; the pools a service shares among its
// subscribers are sized by the listener's own OfferConfig.
const (
	// ReplyPool is the listener's pool for method replies to this dialler
	// (one per binding to a listener's offer).
	ReplyPool PoolKind = iota
	// CallPool is the listener's pool for method calls it makes to this
	// dialler's offers (one per binding).
	CallPool
)

func (k PoolKind) String() string {
	switch k {
	case ReplyPool:
		return "reply pool"
	case CallPool:
		return "call pool"
	}
	return fmt.Sprintf("PoolKind(%d)", uint8(k))
}

func (k PoolKind) wire() wire.Direction {
	if k == CallPool {
		return wire.DirConsumer
	}
	return wire.DirProvider
}

// PoolConfig asks the listener to size a pool it creates for this dialler.
// The listener refuses the session if a geometry exceeds its Limits.
type PoolConfig struct {
	ServiceID string // the interface id
	Instance  string // empty: every instance
	Kind      PoolKind
	Geometry  shm.Geometry
}

// Default pool sizes, used when neither the offer (or proxy) nor the
// dialler's Connect says otherwise.
var (
	// DefaultGeometry sizes an offer's event pool: 64 slots of 4 KiB.
	DefaultGeometry = shm.Geometry{SlotSize: 4096, SlotCount: 64}
	// DefaultReplyGeometry sizes a binding's reply pool: 16 slots of 4 KiB.
	DefaultReplyGeometry = shm.Geometry{SlotSize: 4096, SlotCount: 16}
	// DefaultCallGeometry sizes a binding's call pool: 16 slots of 4 KiB.
	DefaultCallGeometry = shm.Geometry{SlotSize: 4096, SlotCount: 16}
)

func (c *Config) withDefaults() (Config, error) {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if out.SocketMode == 0 {
		out.SocketMode = 0o600
	}
	if out.StatusMode == 0 {
		out.StatusMode = 0o600
	}
	def(&out.MaxPacket, wire.MaxPacket)
	def(&out.MaxOutput, 4<<20)
	def(&out.MaxPeers, 1024)
	def(&out.MaxHandshakes, 64)
	def(&out.RingEntries, defaultRingEntries)
	defDur(&out.HandshakeTimeout, 5*time.Second)
	defDur(&out.ReconnectMin, 10*time.Millisecond)
	defDur(&out.ReconnectMax, 2*time.Second)
	out.Limits = out.Limits.withDefaults()
	switch {
	case len(out.Name) > wire.MaxIDLen:
		return out, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidConfig, wire.MaxIDLen)
	case out.MaxPacket < wire.MinPacket || out.MaxPacket > wire.MaxPacket:
		return out, fmt.Errorf("%w: MaxPacket %d outside [%d, %d]", ErrInvalidConfig, out.MaxPacket, wire.MinPacket, wire.MaxPacket)
	case out.ReconnectMin < 0 || out.ReconnectMax < out.ReconnectMin:
		return out, fmt.Errorf("%w: reconnect back-off [%v, %v]", ErrInvalidConfig, out.ReconnectMin, out.ReconnectMax)
	case out.Spin < 0:
		return out, fmt.Errorf("%w: negative Spin %v", ErrInvalidConfig, out.Spin)
	case out.HandshakeTimeout < 0:
		return out, fmt.Errorf("%w: negative HandshakeTimeout %v", ErrInvalidConfig, out.HandshakeTimeout)
	case out.MaxOutput < 0 || out.MaxPeers < 0 || out.MaxHandshakes < 0:
		return out, fmt.Errorf("%w: negative MaxOutput, MaxPeers or MaxHandshakes", ErrInvalidConfig)
	case out.RingEntries < minRingEntries || out.RingEntries > maxRingEntries || out.RingEntries&(out.RingEntries-1) != 0:
		return out, fmt.Errorf("%w: RingEntries %d is not a power of two in [%d, %d]", ErrInvalidConfig, out.RingEntries, minRingEntries, maxRingEntries)
	case out.SocketMode&^os.ModePerm != 0 || out.StatusMode&^os.ModePerm != 0:
		return out, fmt.Errorf("%w: socket modes must be permission bits only", ErrInvalidConfig)
	case len(out.Pools) > wire.MaxListLen:
		return out, fmt.Errorf("%w: more than %d pool configs", ErrInvalidConfig, wire.MaxListLen)
	}
	if err := out.Limits.validate(); err != nil {
		return out, err
	}
	for _, p := range out.Pools {
		if p.Kind > CallPool {
			return out, fmt.Errorf("%w: pool for %q: unknown kind %v", ErrInvalidConfig, p.ServiceID, p.Kind)
		}
		if err := p.Geometry.Validate(); err != nil {
			return out, fmt.Errorf("%w: pool for %q: %w", ErrInvalidConfig, p.ServiceID, err)
		}
	}
	// Connect goes out before the listener has said how large a packet it
	// takes, so it must fit the minimum.
	if b, err := connectMessage(&out, 0).Append(nil); err != nil || len(b) > wire.MinPacket {
		return out, fmt.Errorf("%w: the handshake (name and %d pool configs) must encode in %d bytes", ErrInvalidConfig, len(out.Pools), wire.MinPacket)
	}
	return out, nil
}

// OfferConfig describes a service a node provides.
type OfferConfig struct {
	// Events is the number of events (ids 0..Events-1).
	Events uint16
	// Methods is the number of methods (ids 0..Methods-1). An offer with
	// methods needs OnCall.
	Methods uint16
	// Geometry sizes the offer's event pool, shared by its subscribers
	// (events and field values). Zero: DefaultGeometry.
	Geometry shm.Geometry
	// ReplyGeometry sizes each binding's reply pool (method replies go to
	// the calling binding alone). Zero: the dialler's Connect config for this
	// service if any (within Limits), else DefaultReplyGeometry.
	ReplyGeometry shm.Geometry
	// Fields lists the events that are fields: the latest published value is
	// kept (one slot) and sent at once to subscribers asking for it.
	Fields []uint16
	// SubscriberSlots is the most slots of the event pool one subscriber may
	// hold at once (0: half the pool, rounded up, so a subscriber that stops
	// releasing leaves the other half to everyone else). Updates a peer
	// cannot take are dropped for that peer only and counted; it sees the
	// gap in the sequence numbers.
	SubscriberSlots int
	// NoInline sends every update by slot, however small. By default an
	// update of at most 224 bytes (the ring's inline limit) to a peer
	// connected through rings travels as a copy inside the ring: cheaper
	// for both sides, and its slot comes back as soon as the subscriber's
	// dispatch has read it, before the handler runs, so a sample kept or
	// still being handled holds no slot. With NoInline a subscriber reads
	// every payload in place, and its slot stays held (counting against
	// SubscriberSlots) until the handler returns or the kept sample is
	// released: the pool then also bounds samples not yet handled.
	NoInline bool
	// OnSubscription runs (inside Dispatch) when the first subscriber of an
	// event arrives (true) or the last one leaves (false).
	OnSubscription func(event uint16, subscribed bool)
	// OnCall runs (inside Dispatch) for each method call. Answer it there or
	// later, from any goroutine, with Call.Reply or Call.Fail.
	OnCall func(Call)
	// OnCancel runs (inside Dispatch) when the caller of a pending call
	// cancels it, times out or goes away. The call must still be answered
	// (the answer is dropped) to release its request.
	OnCancel func(Call)
	// OnUpdateRequest runs (inside Dispatch) when a peer asks for the current
	// value of an event that has none cached: publish to answer. Requests
	// from several peers are coalesced into one call until the next publish.
	OnUpdateRequest func(event uint16)
}

func (c *OfferConfig) validate() error {
	for _, g := range []shm.Geometry{c.Geometry, c.ReplyGeometry} {
		if g != (shm.Geometry{}) {
			if err := g.Validate(); err != nil {
				return err
			}
		}
	}
	for _, f := range c.Fields {
		if f >= c.Events {
			return fmt.Errorf("field %d is not an event (the service has %d)", f, c.Events)
		}
	}
	switch {
	case c.SubscriberSlots < 0:
		return fmt.Errorf("SubscriberSlots %d is negative", c.SubscriberSlots)
	case c.Methods > 0 && c.OnCall == nil:
		return fmt.Errorf("%d methods but no OnCall handler", c.Methods)
	}
	return nil
}

// ProxyConfig describes how a node consumes a service.
type ProxyConfig struct {
	// OnAvailability runs (inside Dispatch) when the service becomes
	// available (bound to a provider) or stops being available.
	OnAvailability func(available bool)
	// OnSubscription runs (inside Dispatch) when a provider acknowledges
	// (nil) or refuses (non-nil) a subscription.
	OnSubscription func(event uint16, err error)
	// CallGeometry sizes the pool for this proxy's method-call payloads, one
	// per binding (a provider never sees calls made to another). Zero: the
	// dialler's Connect config if this node is a listener and has one, else
	// DefaultCallGeometry.
	CallGeometry shm.Geometry
}
