package engine

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gwipc/gwipc/engine/wire"
	"github.com/gwipc/gwipc/shm"
)

// Config configures a Node. A nil *Config means all defaults.
type Config struct {
	// Name is sent to peers in the handshake and shown in their status.
	Name string
	// Logger receives the node's log records. Nil discards them.
	Logger *slog.Logger
	// SocketMode is the listener's socket file mode (default 0600).
	SocketMode os.FileMode
	// MaxPacket is the largest control packet the node accepts
	// (default wire.MaxPacket, at least wire.MinPacket).
	MaxPacket int
	// HandshakeTimeout bounds the Connect/Connect_reply exchange (default 5s).
	HandshakeTimeout time.Duration
	// ReconnectMin and ReconnectMax bound a dialler's reconnect back-off
	// (defaults 10ms and 2s). The delay doubles after each failed attempt.
	ReconnectMin, ReconnectMax time.Duration
	// MaxOutput bounds the bytes queued for a peer that does not read; past
	// it the peer is disconnected (default 4 MiB). Event updates are dropped
	// for a peer whose socket is full instead of being queued.
	MaxOutput int
	// Pools are sent by a dialler in Connect: sizes for pools the listener
	// creates for the services named. A listener ignores this field.
	Pools []PoolConfig
	// OnPeerConnected runs (inside Dispatch) when a peer completes the
	// handshake. Use Peer.SetPrivate to attach per-peer data.
	OnPeerConnected func(*Peer)
	// OnPeerDisconnected runs (inside Dispatch) when a connected peer is
	// lost; err says why (nil for an orderly close).
	OnPeerDisconnected func(p *Peer, err error)

	// AllowUIDs and AllowGIDs restrict who may connect to a listener: a
	// peer is admitted if its uid or gid is listed. Both empty: anyone who
	// can open the socket (see SocketMode).
	AllowUIDs, AllowGIDs []uint32
	// Authorize, if set, is asked about every peer the allow-lists admit
	// (listener only); a non-nil error rejects it with that reason. It runs
	// on the dispatching goroutine and must not block.
	Authorize func(PeerCred) error
	// ListenerUIDs makes a dialler refuse a listener that does not run as
	// one of these users (so an imposter cannot pose as the service).
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
}

// PoolConfig sizes a pool the listener creates for a service.
type PoolConfig struct {
	ServiceID string         // the interface id
	Instance  string         // empty: every instance
	Direction wire.Direction // wire.DirProvider (events, replies) or wire.DirConsumer (calls)
	Geometry  shm.Geometry
}

// DefaultGeometry is the pool size used when neither the offer nor the
// dialler's Connect says otherwise: 64 slots of 4 KiB.
var DefaultGeometry = shm.Geometry{SlotSize: 4096, SlotCount: 64}

func (c *Config) withDefaults() (Config, error) {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.SocketMode == 0 {
		out.SocketMode = 0o600
	}
	if out.MaxPacket == 0 {
		out.MaxPacket = wire.MaxPacket
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = 5 * time.Second
	}
	if out.ReconnectMin == 0 {
		out.ReconnectMin = 10 * time.Millisecond
	}
	if out.ReconnectMax == 0 {
		out.ReconnectMax = 2 * time.Second
	}
	if out.MaxOutput == 0 {
		out.MaxOutput = 4 << 20
	}
	out.Limits = out.Limits.withDefaults()
	switch {
	case len(out.Name) > wire.MaxIDLen:
		return out, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidConfig, wire.MaxIDLen)
	case out.MaxPacket < wire.MinPacket || out.MaxPacket > wire.MaxPacket:
		return out, fmt.Errorf("%w: MaxPacket %d outside [%d, %d]", ErrInvalidConfig, out.MaxPacket, wire.MinPacket, wire.MaxPacket)
	case out.ReconnectMin < 0 || out.ReconnectMax < out.ReconnectMin:
		return out, fmt.Errorf("%w: reconnect back-off [%v, %v]", ErrInvalidConfig, out.ReconnectMin, out.ReconnectMax)
	case len(out.Pools) > wire.MaxListLen:
		return out, fmt.Errorf("%w: more than %d pool configs", ErrInvalidConfig, wire.MaxListLen)
	}
	for _, p := range out.Pools {
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
	// Methods is the number of methods (ids 0..Methods-1).
	Methods uint16
	// Geometry sizes the provider's pool (events and replies). Zero means: the
	// dialler's Connect config for this service if any, else DefaultGeometry.
	Geometry shm.Geometry
	// Fields lists the events that are fields: the latest published value is
	// kept (one slot) and sent at once to subscribers asking for it.
	Fields []uint16
	// SubscriberSlots is the most slots one peer may hold at once (0: the
	// whole pool). Updates a peer cannot take are dropped for that peer only
	// and counted; it sees the gap in the sequence numbers.
	SubscriberSlots int
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
	if c.Geometry != (shm.Geometry{}) {
		if err := c.Geometry.Validate(); err != nil {
			return err
		}
	}
	for _, f := range c.Fields {
		if f >= c.Events {
			return fmt.Errorf("field %d is not an event (the service has %d)", f, c.Events)
		}
	}
	if c.SubscriberSlots < 0 {
		return fmt.Errorf("SubscriberSlots %d is negative", c.SubscriberSlots)
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
	// CallGeometry sizes this proxy's pool for method-call payloads, created
	// when a provider with methods is bound. Zero: the default, 16 slots of
	// 4 KiB.
	CallGeometry shm.Geometry
}

// DefaultCallGeometry sizes a proxy's call pool unless ProxyConfig says
// otherwise.
var DefaultCallGeometry = shm.Geometry{SlotSize: 4096, SlotCount: 16}
