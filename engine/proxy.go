package engine

import (
	"fmt"

	"github.com/gwipc/gwipc/engine/wire"
	"github.com/gwipc/gwipc/shm"
)

// Proxy is this node's handle on a service instance some peer provides. The
// node asks every peer for the service; the first compatible offer is bound
// (others are kept as standbys and used if it goes away). Subscriptions are
// kept across loss and rebinding: they are sent again whenever the service
// becomes available. Safe for concurrent use.
type Proxy struct {
	n          *Node
	svc        ServiceID
	cfg        ProxyConfig
	closed     bool
	candidates []*peer // peers offering a compatible version, in arrival order
	bind       *consBinding
	subs       map[uint16]*subscription
	callPool   *shm.Pool // our pool for call payloads, created on the first bind to a provider with methods
	stats      ProxyCounters
}

// ProxyCounters are a proxy's running totals.
type ProxyCounters struct {
	Received       uint64 `json:"received"`        // event updates delivered to handlers
	Gaps           uint64 `json:"gaps"`            // updates the provider published that never reached us (from sequence numbers)
	Binds          uint64 `json:"binds"`           // times the service became available
	Incompatible   uint64 `json:"incompatible"`    // offers ignored because their minor version is too old
	RefusedOffers  uint64 `json:"refused_offers"`  // offers ignored because policy does not let that peer offer the service
	Calls          uint64 `json:"calls"`           // method calls sent
	CallErrors     uint64 `json:"call_errors"`     // replies with an application or middleware error
	CallsAbandoned uint64 `json:"calls_abandoned"` // calls cancelled or timed out before their reply
	LateReplies    uint64 `json:"late_replies"`    // replies that came after their call was abandoned
}

// SubscribeMode says what a subscriber wants.
type SubscribeMode uint8

// Subscription modes.
const (
	Updates SubscribeMode = SubscribeMode(wire.ModeUpdates) // every update from now on (see also InitialValue)
)

// SubscriptionState is where a subscription stands with the provider.
type SubscriptionState uint8

// Subscription states.
const (
	SubscriptionPending SubscriptionState = iota // not yet acknowledged (or the service is unavailable)
	SubscriptionActive                           // acknowledged by the bound provider
	SubscriptionRefused                          // refused by the bound provider
)

func (s SubscriptionState) String() string {
	return [...]string{"pending", "active", "refused"}[s]
}

type subscription struct {
	event    uint16
	mode     SubscribeMode
	handler  func(*Sample)
	state    SubscriptionState
	lastSeq  uint64
	received uint64
	gaps     uint64
}

// consBinding is our binding to one provider peer for one proxy.
type consBinding struct {
	proxy      *Proxy
	peer       *peer
	requiredID uint64
	providedID uint64
	connected  bool
	view       *shm.View
	methods    uint16
	events     uint16
	callReader shm.ReaderID            // the provider's reader id in our call pool
	calls      map[uint64]*pendingCall // calls waiting for their reply
}

// Require starts consuming svc: every peer is asked for it, now and when it
// connects later. The service is available once a peer with a compatible
// offer (same id, major and instance, minor at least svc's) has bound it.
// It fails with ErrDuplicate if the node already requires the same id, major
// and instance.
func (n *Node) Require(svc ServiceID, cfg *ProxyConfig) (*Proxy, error) {
	if err := svc.Validate(); err != nil {
		return nil, err
	}
	var c ProxyConfig
	if cfg != nil {
		c = *cfg
	}
	if err := n.lockChecked(); err != nil {
		return nil, err
	}
	defer n.unlock()
	key := svc.key()
	if n.proxies[key] != nil {
		return nil, fmt.Errorf("%w: %v", ErrDuplicate, svc)
	}
	px := &Proxy{n: n, svc: svc, cfg: c, subs: map[uint16]*subscription{}}
	n.proxies[key] = px
	for _, p := range n.peers {
		if p.state != peerReady {
			continue
		}
		px.announce(p)
		if seen, ok := p.offers[key]; ok {
			px.addCandidate(p, seen.svc)
		}
	}
	return px, nil
}

// Service returns the required service instance.
func (px *Proxy) Service() ServiceID { return px.svc }

// Available reports whether the service is bound to a provider now.
func (px *Proxy) Available() bool {
	px.n.mu.Lock()
	defer px.n.mu.Unlock()
	return px.bind != nil && px.bind.connected
}

func (px *Proxy) announce(p *peer) {
	p.queue(&wire.RequestService{Service: px.svc.wire(), InUse: true}, -1)
}

func (px *Proxy) addCandidate(p *peer, offered ServiceID) {
	if px.closed {
		return
	}
	if !offered.CompatibleWith(px.svc) {
		px.stats.Incompatible++
		px.n.log.Warn("ignoring an incompatible offer", "want", px.svc, "offered", offered, "peer", p.pub.id)
		return
	}
	if !px.n.allowed(p, px.svc, ActionOffer) {
		px.stats.RefusedOffers++
		px.n.reject(p, px.svc, ActionOffer)
		return
	}
	for _, c := range px.candidates {
		if c == p {
			return
		}
	}
	px.candidates = append(px.candidates, p)
	px.bindNext()
}

// dropCandidate forgets p as a provider; if p was bound, the proxy becomes
// unavailable and binds the next candidate, if any.
func (px *Proxy) dropCandidate(p *peer) {
	for i, c := range px.candidates {
		if c == p {
			px.candidates = append(px.candidates[:i], px.candidates[i+1:]...)
			break
		}
	}
	if px.bind != nil && px.bind.peer == p {
		px.unbind()
		px.bindNext()
	}
}

// bindNext sends Connect_service to the first candidate if nothing is bound.
func (px *Proxy) bindNext() {
	if px.bind != nil || px.closed || len(px.candidates) == 0 {
		return
	}
	p := px.candidates[0]
	b := &consBinding{proxy: px, peer: p, requiredID: px.n.newHandle(), calls: map[uint64]*pendingCall{}}
	m := &wire.ConnectService{Service: px.svc.wire(), RequiredID: b.requiredID, InUse: true}
	fd := -1
	if p.offers[px.svc.key()].methods > 0 && p.caps&wire.CapMethods != 0 {
		if pool, err := px.ensureCallPool(p); err != nil {
			px.n.log.Error("creating a call pool", "service", px.svc, "err", err)
		} else if b.callReader, err = pool.AddReader(0); err == nil {
			g := pool.Geometry()
			m.HasPool, m.Pool, fd = true, wire.Geometry{SlotSize: g.SlotSize, SlotCount: g.SlotCount}, pool.Fd()
		}
	}
	p.required[b.requiredID] = b
	px.bind = b
	p.queue(m, fd)
}

// ensureCallPool returns the proxy's call pool, creating it on first use,
// sized like Offer.ensurePool's (trigger: the provider being bound).
func (px *Proxy) ensureCallPool(trigger *peer) (*shm.Pool, error) {
	if px.callPool != nil {
		return px.callPool, nil
	}
	g := px.cfg.CallGeometry
	if g == (shm.Geometry{}) {
		g = trigger.poolHint(px.svc, wire.DirConsumer, DefaultCallGeometry)
	}
	pool, err := shm.NewPool(poolName(px.svc)+"-calls", g)
	if err != nil {
		return nil, err
	}
	px.callPool = pool
	return pool, nil
}

// unbind drops the current binding (which the provider has already dropped,
// or is told to drop by the caller).
func (px *Proxy) unbind() {
	b := px.bind
	px.bind = nil
	px.n.failCalls(b, ErrNotAvailable)
	if px.callPool != nil {
		px.callPool.RemoveReader(b.callReader)
	}
	delete(b.peer.required, b.requiredID)
	if b.view != nil {
		b.view.Close() // unmapped once the last sample from it is released
	}
	for _, s := range px.subs {
		s.state = SubscriptionPending
	}
	if b.connected {
		px.notifyAvailability(false)
	}
}

func (px *Proxy) notifyAvailability(up bool) {
	if cb := px.cfg.OnAvailability; cb != nil {
		px.n.enqueue(callback{fn: func() { cb(up) }})
	}
}

// Subscribe asks for event's updates; handler runs (inside Dispatch) for
// each. The subscription is kept while the proxy lives: it is sent whenever
// the service becomes available. Subscribing again replaces the handler.
// ProxyConfig.OnSubscription reports the provider's answer.
func (px *Proxy) Subscribe(event uint16, mode SubscribeMode, handler func(*Sample)) error {
	if handler == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidConfig)
	}
	if mode != Updates && mode != InitialValue {
		return fmt.Errorf("%w: subscribe mode %d", ErrInvalidConfig, mode)
	}
	n := px.n
	if err := n.lockChecked(); err != nil {
		return err
	}
	defer n.unlock()
	if px.closed {
		return ErrClosed
	}
	b := px.bind
	if b != nil && b.connected && event >= b.events {
		return unknownEvent(event, b.events)
	}
	s := px.subs[event]
	if s == nil {
		s = &subscription{event: event}
		px.subs[event] = s
	}
	s.handler, s.mode = handler, mode
	if b != nil && b.connected && s.state != SubscriptionActive {
		s.state = SubscriptionPending
		px.sendSubscribe(s, true)
	}
	return nil
}

// Unsubscribe stops event's updates. No handler for event runs once it
// returns. Unsubscribing an event that is not subscribed does nothing.
func (px *Proxy) Unsubscribe(event uint16) error {
	n := px.n
	if err := n.lockChecked(); err != nil {
		return err
	}
	defer n.unlock()
	if px.closed {
		return ErrClosed
	}
	s := px.subs[event]
	if s == nil {
		return nil
	}
	delete(px.subs, event)
	if b := px.bind; b != nil && b.connected {
		px.sendSubscribe(s, false)
	}
	return nil
}

// Subscription returns the state of event's subscription and whether it
// exists.
func (px *Proxy) Subscription(event uint16) (SubscriptionState, bool) {
	px.n.mu.Lock()
	defer px.n.mu.Unlock()
	s := px.subs[event]
	if s == nil {
		return SubscriptionPending, false
	}
	return s.state, true
}

func (px *Proxy) sendSubscribe(s *subscription, on bool) {
	b := px.bind
	mode := wire.Mode(s.mode)
	if b.peer.caps&wire.CapFields == 0 {
		mode = wire.ModeUpdates // the peer knows no initial values
	}
	b.peer.queue(&wire.SubscribeEvent{ProvidedID: b.providedID, Event: s.event, Mode: mode, Subscribe: on}, -1)
}

// Close stops consuming the service: the provider is told to drop the
// binding (releasing every slot we held), and peers are told the service is
// no longer needed. Samples still kept must not be read after Close (their
// slots may be reused). Idempotent.
func (px *Proxy) Close() error {
	n := px.n
	n.mu.Lock()
	defer n.unlock()
	px.closeLocked()
	return nil
}

func (px *Proxy) closeLocked() {
	if px.closed {
		return
	}
	n := px.n
	if b := px.bind; b != nil {
		n.failCalls(b, ErrClosed)
		b.peer.queue(&wire.ConnectService{Service: px.svc.wire(), RequiredID: b.requiredID}, -1)
		px.unbind()
	}
	px.closed = true
	delete(n.proxies, px.svc.key())
	for _, p := range n.peers {
		n.forgetUnwatchedOffers(p)
		if p.state == peerReady {
			p.queue(&wire.RequestService{Service: px.svc.wire()}, -1)
		}
	}
	if px.callPool != nil {
		px.callPool.Close()
	}
}

// Consumer-side message handlers.

// consumerBinding resolves a required_id a provider sent us (see
// providerBinding).
func (n *Node) consumerBinding(p *peer, h uint64, what string) (*consBinding, error) {
	if b := p.required[h]; b != nil {
		return b, nil
	}
	if n.issued(h) {
		p.stats.StaleHandles++
		return nil, nil
	}
	return nil, protoErr(fmt.Sprintf("%s for handle %d never issued", what, h), nil)
}

func (n *Node) onConnectServiceReply(p *peer, m *wire.ConnectServiceReply, fds *fdQueue) error {
	fd := -1
	if m.HasPool {
		var ok bool
		if fd, ok = fds.take(); !ok {
			return protoErr("Connect_service_reply announces a pool but carries no fd", nil)
		}
	}
	b, err := n.consumerBinding(p, m.RequiredID, "Connect_service_reply")
	if b == nil || err != nil {
		closeFD(fd)
		return err
	}
	px := b.proxy
	switch {
	case b.connected:
		closeFD(fd)
		return protoErr("second Connect_service_reply for one binding", nil)
	case m.Status != wire.StatusOK:
		closeFD(fd)
		n.log.Warn("provider refused the binding", "service", px.svc, "peer", p.pub.id, "status", m.Status)
		px.dropCandidate(p)
		return nil
	}
	if fd < 0 && (m.Events > 0 || m.Methods > 0) {
		return protoErr("Connect_service_reply without a pool for a service with events or methods", nil)
	}
	if fd >= 0 {
		v, err := shm.MapView(fd, shmGeometry(m.Pool))
		if err != nil {
			return protoErr("mapping the provider's pool", err)
		}
		b.view = v
	}
	b.connected = true
	b.providedID = m.ProvidedID
	b.methods, b.events = m.Methods, m.Events
	px.stats.Binds++
	px.notifyAvailability(true)
	for _, s := range px.subs {
		s.state = SubscriptionPending
		s.lastSeq = 0
		px.sendSubscribe(s, true)
	}
	return nil
}

func (n *Node) onSubscribeEventReply(p *peer, m *wire.SubscribeEventReply) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Subscribe_event_reply")
	if b == nil || !b.connected {
		return err
	}
	px := b.proxy
	s := px.subs[m.Event]
	if s == nil {
		return nil // unsubscribed meanwhile
	}
	var cbErr error
	if m.Status == wire.StatusOK {
		s.state = SubscriptionActive
	} else {
		s.state = SubscriptionRefused
		cbErr = &SubscriptionError{Event: m.Event, Status: m.Status}
	}
	if cb := px.cfg.OnSubscription; cb != nil {
		ev := m.Event
		n.enqueue(callback{fn: func() { cb(ev, cbErr) }})
	}
	return nil
}

// SubscriptionError is the provider's refusal of a subscription.
type SubscriptionError struct {
	Event  uint16
	Status wire.Status
}

func (e *SubscriptionError) Error() string {
	return fmt.Sprintf("engine: subscription to event %d refused: %v", e.Event, e.Status)
}

// Is makes a refusal for an unknown event match ErrUnknownEvent.
func (e *SubscriptionError) Is(target error) bool {
	return target == ErrUnknownEvent && e.Status == wire.StatusUnknownEvent
}

func (n *Node) onEventUpdate(p *peer, m *wire.EventUpdate) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Event_update")
	if b == nil {
		return err
	}
	if !b.connected || b.view == nil {
		return protoErr("Event_update before the binding is established", nil)
	}
	if m.Requested && p.caps&wire.CapFields == 0 {
		return protoErr("requested Event_update without the fields capability", nil)
	}
	data, err := b.view.Bytes(shm.Handle{Slot: m.Payload.Slot, Len: m.Payload.Len})
	if err != nil {
		return protoErr("Event_update payload", err)
	}
	px := b.proxy
	s := px.subs[m.Event]
	if s == nil {
		n.consume(b, m.Payload) // not (any more) subscribed: give it back
		return nil
	}
	if !m.Requested {
		if s.lastSeq != 0 && m.Seq > s.lastSeq+1 {
			s.gaps += m.Seq - s.lastSeq - 1
			px.stats.Gaps += m.Seq - s.lastSeq - 1
		}
		s.lastSeq = m.Seq
	}
	if err := b.view.Acquire(); err != nil {
		n.consume(b, m.Payload)
		return nil
	}
	smp := n.newSample()
	*smp = Sample{received: received{n: n, b: b, data: data, payload: m.Payload},
		event: m.Event, seq: m.Seq, requested: m.Requested, pooled: true}
	n.enqueue(callback{sample: smp})
	return nil
}

// consume tells b's provider that we are done with a payload.
func (n *Node) consume(b *consBinding, pl wire.Payload) {
	p := b.peer
	if p.required[b.requiredID] != b {
		return // binding gone: the provider released our references itself
	}
	p.queueConsumed(b.providedID, pl)
}
