package engine

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// Proxy is this node's handle on a service instance some peer provides. The
// node asks every peer for the service; the first compatible offer is bound
// (others are kept as standbys and used if it goes away). A node never binds
// to its own offers. Subscriptions are kept across loss and rebinding: they
// are sent again whenever the service becomes available. Safe for
// concurrent use.
type Proxy struct {
	n          *Node
	svc        ServiceID
	cfg        ProxyConfig
	closed     bool
	candidates []*peer // peers offering a compatible version, in arrival order
	bind       *consBinding
	subs       []*subscription // by event id; nil where none
	available  chan struct{}   // closed when the service becomes available (or the proxy closes); nil without waiters
	stats      ProxyCounters
}

// ProxyCounters are a proxy's running totals.
type ProxyCounters struct {
	Received       uint64 `json:"received"`        // event updates delivered to handlers
	Gaps           uint64 `json:"gaps"`            // updates the provider published that never reached us (from sequence numbers)
	Binds          uint64 `json:"binds"`           // times the service became available
	Incompatible   uint64 `json:"incompatible"`    // offers ignored because their minor version is too old
	RefusedOffers  uint64 `json:"refused_offers"`  // offers ignored because policy does not let that peer offer the service
	RefusedPools   uint64 `json:"refused_pools"`   // bindings given up because the provider's pools exceed our limits
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
	handler  func(Sample)
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
	eventView  *shm.View // the provider's event pool, if we may subscribe
	replyView  *shm.View // the binding's reply pool, if we may call
	methods    uint16
	events     uint16
	callPool   *shm.Pool               // our pool for this binding's call payloads (nil: the offer has no methods)
	callReader shm.ReaderID            // the provider's reader id in it
	calls      map[uint64]*pendingCall // calls waiting for their reply
	abandoned  map[uint64]uint32       // request slots of cancelled calls, until their reply
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
	if c.CallGeometry != (shm.Geometry{}) {
		if err := c.CallGeometry.Validate(); err != nil {
			return nil, fmt.Errorf("%w: proxy %v: %w", ErrInvalidConfig, svc, err)
		}
	}
	if err := n.lockChecked(); err != nil {
		return nil, err
	}
	defer n.unlock()
	key := svc.key()
	if n.proxies[key] != nil {
		return nil, fmt.Errorf("%w: proxy %v", ErrDuplicate, svc)
	}
	px := &Proxy{n: n, svc: svc, cfg: c}
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
	return px.availableLocked()
}

func (px *Proxy) availableLocked() bool { return px.bind != nil && px.bind.connected }

// availabilityWait returns a channel closed once the service becomes
// available or the proxy closes. Called with n.mu held.
func (px *Proxy) availabilityWait() <-chan struct{} {
	if px.available == nil {
		px.available = make(chan struct{})
	}
	return px.available
}

// wakeWaiters releases everyone waiting in availabilityWait.
func (px *Proxy) wakeWaiters() {
	if px.available != nil {
		close(px.available)
		px.available = nil
	}
}

func (px *Proxy) announce(p *peer) {
	p.queue(&wire.RequestService{Service: px.svc.wire(), InUse: true})
}

func (px *Proxy) addCandidate(p *peer, offered ServiceID) {
	if px.closed {
		return
	}
	if !offered.CompatibleWith(px.svc) {
		px.stats.Incompatible++
		px.n.peerLogf(p, slog.LevelWarn, "ignoring an incompatible offer", "want", px.svc, "offered", offered)
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
// A binding to a provider with methods carries a new call pool, so no
// provider ever sees the requests sent to another.
func (px *Proxy) bindNext() {
	if px.bind != nil || px.closed || len(px.candidates) == 0 {
		return
	}
	p := px.candidates[0]
	b := &consBinding{proxy: px, peer: p, requiredID: px.n.newHandle(), calls: map[uint64]*pendingCall{}}
	m := &wire.ConnectService{Service: px.svc.wire(), RequiredID: b.requiredID, InUse: true}
	var fds []int
	if p.offers[px.svc.key()].methods > 0 && p.caps&wire.CapMethods != 0 {
		if err := b.createCallPool(); err != nil {
			px.n.peerLogf(p, slog.LevelError, "creating a call pool", "service", px.svc, "err", err)
		} else {
			m.HasPool, m.Pool = true, wireGeometry(b.callPool.Geometry())
			fds = []int{b.callPool.Fd()}
		}
	}
	p.required[b.requiredID] = b
	px.bind = b
	p.queue(m, fds...)
}

// createCallPool makes b's call pool, sized by the proxy's config, else by
// what the provider (a dialler) asked for in its Connect, else the default.
func (b *consBinding) createCallPool() error {
	px := b.proxy
	g := px.cfg.CallGeometry
	if g == (shm.Geometry{}) {
		g = b.peer.poolHint(px.svc, CallPool, DefaultCallGeometry)
	}
	pool, err := shm.NewPool(poolName(px.svc)+"-calls", g)
	if err != nil {
		return err
	}
	if b.callReader, err = pool.AddReader(0); err != nil {
		pool.Close()
		return err
	}
	b.callPool = pool
	return nil
}

// unbind drops the current binding (which the provider has already dropped,
// or is told to drop by the caller).
func (px *Proxy) unbind() {
	b := px.bind
	px.bind = nil
	px.n.failCalls(b, ErrNotAvailable)
	if b.callPool != nil {
		b.callPool.Close()
	}
	delete(b.peer.required, b.requiredID)
	// Unmapped once the last sample or reply from them is released.
	b.peer.unmapPool(b.eventView)
	b.peer.unmapPool(b.replyView)
	for _, s := range px.subs {
		if s != nil {
			s.state = SubscriptionPending
		}
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

// sub returns event's subscription, nil if there is none.
func (px *Proxy) sub(event uint16) *subscription {
	if int(event) < len(px.subs) {
		return px.subs[event]
	}
	return nil
}

// Subscribe asks for event's updates; handler runs (inside Dispatch) for
// each. The subscription is kept while the proxy lives: it is sent whenever
// the service becomes available. Subscribing again replaces the handler.
// ProxyConfig.OnSubscription reports the provider's answer.
func (px *Proxy) Subscribe(event uint16, mode SubscribeMode, handler func(Sample)) error {
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
	s := px.sub(event)
	if s == nil {
		s = &subscription{event: event}
		if int(event) >= len(px.subs) {
			px.subs = append(px.subs, make([]*subscription, int(event)+1-len(px.subs))...)
		}
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
// returns, and updates already on their way are given back unread.
// Unsubscribing an event that is not subscribed does nothing.
func (px *Proxy) Unsubscribe(event uint16) error {
	n := px.n
	if err := n.lockChecked(); err != nil {
		return err
	}
	defer n.unlock()
	if px.closed {
		return ErrClosed
	}
	s := px.sub(event)
	if s == nil {
		return nil
	}
	px.subs[event] = nil
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
	s := px.sub(event)
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
	b.peer.queue(&wire.SubscribeEvent{ProvidedID: b.providedID, Event: s.event, Mode: mode, Subscribe: on})
}

// Close stops consuming the service: the provider is told to drop the
// binding (releasing every slot we held), pending calls complete with
// ErrClosed, and peers are told the service is no longer needed. Kept
// samples stay readable until released, but the provider may reuse their
// slots. Idempotent.
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
		b.peer.queue(&wire.ConnectService{Service: px.svc.wire(), RequiredID: b.requiredID})
		px.unbind()
	}
	px.closed = true
	px.wakeWaiters()
	delete(n.proxies, px.svc.key())
	for _, p := range n.peers {
		n.forgetUnwatchedOffers(p)
		if p.state == peerReady {
			p.queue(&wire.RequestService{Service: px.svc.wire()})
		}
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
	eventFD, replyFD := -1, -1
	var ok bool
	if m.HasEventPool {
		if eventFD, ok = fds.take(); !ok {
			return protoErr("Connect_service_reply announces an event pool but carries no fd", nil)
		}
	}
	if m.HasReplyPool {
		if replyFD, ok = fds.take(); !ok {
			closeFD(eventFD)
			return protoErr("Connect_service_reply announces a reply pool but carries no fd", nil)
		}
	}
	b, err := n.consumerBinding(p, m.RequiredID, "Connect_service_reply")
	if b == nil || err != nil {
		closeFD(eventFD)
		closeFD(replyFD)
		return err
	}
	px := b.proxy
	switch {
	case b.connected:
		closeFD(eventFD)
		closeFD(replyFD)
		return protoErr("second Connect_service_reply for one binding", nil)
	case m.Status != wire.StatusOK:
		closeFD(eventFD)
		closeFD(replyFD)
		n.peerLogf(p, slog.LevelWarn, "provider refused the binding", "service", px.svc, "status", m.Status)
		px.dropCandidate(p)
		return nil
	}
	// Map the pools (each call takes its fd), within our limits.
	if eventFD >= 0 {
		b.eventView, err = p.mapPool(eventFD, shmGeometry(m.EventPool))
	}
	if err == nil && replyFD >= 0 {
		b.replyView, err = p.mapPool(replyFD, shmGeometry(m.ReplyPool))
		replyFD = -1
	}
	closeFD(replyFD)
	switch {
	case errors.Is(err, ErrQuotaExceeded):
		// Too large for us: give the binding up and try another provider.
		px.stats.RefusedPools++
		n.peerLogf(p, slog.LevelWarn, "refusing a provider's pools", "service", px.svc, "err", err)
		p.queue(&wire.ConnectService{Service: px.svc.wire(), RequiredID: b.requiredID})
		px.dropCandidate(p)
		return nil
	case err != nil:
		return protoErr("mapping the provider's pools", err)
	}
	b.connected = true
	b.providedID = m.ProvidedID
	b.methods, b.events = m.Methods, m.Events
	px.stats.Binds++
	px.notifyAvailability(true)
	px.wakeWaiters()
	for _, s := range px.subs {
		if s != nil {
			s.state = SubscriptionPending
			s.lastSeq = 0
			px.sendSubscribe(s, true)
		}
	}
	return nil
}

func (n *Node) onSubscribeEventReply(p *peer, m *wire.SubscribeEventReply) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Subscribe_event_reply")
	if b == nil || !b.connected {
		return err
	}
	px := b.proxy
	s := px.sub(m.Event)
	if s == nil {
		return nil // unsubscribed meanwhile
	}
	var cbErr error
	if m.Status == wire.StatusOK {
		s.state = SubscriptionActive
	} else {
		s.state = SubscriptionRefused
		cbErr = &SubscriptionError{Event: m.Event, Status: StatusCode(m.Status)}
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
	Status StatusCode
}

func (e *SubscriptionError) Error() string {
	return fmt.Sprintf("engine: subscription to event %d refused: %v", e.Event, e.Status)
}

// Is matches the refusal's status to the engine's sentinels
// (ErrUnknownEvent, ErrPermissionDenied, ErrQuotaExceeded).
func (e *SubscriptionError) Is(target error) bool {
	return target != nil && e.Status.sentinel() == target
}

func (n *Node) onEventUpdate(p *peer, m *wire.EventUpdate) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Event_update")
	if b == nil {
		return err
	}
	if !b.connected || b.eventView == nil {
		return protoErr("Event_update without an established binding holding an event pool", nil)
	}
	if m.Requested && p.caps&wire.CapFields == 0 {
		return protoErr("requested Event_update without the fields capability", nil)
	}
	if m.Inline {
		return n.onInlineUpdate(p, b, m)
	}
	data, err := b.eventView.Bytes(shm.Handle{Slot: m.Payload.Slot, Len: m.Payload.Len})
	if err != nil {
		return protoErr("Event_update payload", err)
	}
	s := n.countUpdate(b, m)
	if s == nil {
		n.consume(b, m.Payload, false) // not (any more) subscribed: give it back
		return nil
	}
	if err := b.eventView.Acquire(); err != nil {
		n.consume(b, m.Payload, false)
		return nil
	}
	r := n.newSample()
	r.received = received{n: n, b: b, view: b.eventView, payload: m.Payload}
	r.data, r.event, r.seq, r.requested = data, m.Event, m.Seq, m.Requested
	n.enqueue(callback{sample: r})
	return nil
}

// onInlineUpdate delivers an update whose payload came inline in the ring
// (§10.13): the sample holds a copy, and there is nothing to consume (our
// ring head gives the provider its slot back).
func (n *Node) onInlineUpdate(p *peer, b *consBinding, m *wire.EventUpdate) error {
	if p.caps&wire.CapInline == 0 || n.in.inline == nil {
		return protoErr("inline Event_update without the inline capability", nil)
	}
	if n.countUpdate(b, m) == nil {
		return nil
	}
	r := n.newSample()
	r.received = received{n: n, b: b, payload: wire.Payload{Slot: wire.NoSlot}}
	if r.inline == nil {
		if r.inline = n.arena.get(); r.inline == nil {
			r.releaseLocked()
			n.peerLogf(p, slog.LevelError, "no memory for an inline update: dropped (the subscriber sees the gap)")
			return nil
		}
	}
	r.data = r.inline[:copy(r.inline, n.in.inline)]
	r.event, r.seq, r.requested = m.Event, m.Seq, m.Requested
	n.enqueue(callback{sample: r})
	return nil
}

// countUpdate returns the subscription an update is for, nil if there is
// none (any more), and counts the gap to its last update.
func (n *Node) countUpdate(b *consBinding, m *wire.EventUpdate) *subscription {
	px := b.proxy
	s := px.sub(m.Event)
	if s == nil {
		return nil
	}
	if !m.Requested {
		if s.lastSeq != 0 && m.Seq > s.lastSeq+1 {
			s.gaps += m.Seq - s.lastSeq - 1
			px.stats.Gaps += m.Seq - s.lastSeq - 1
		}
		s.lastSeq = m.Seq
	}
	return s
}

// consume tells b's provider that we are done with a payload.
func (n *Node) consume(b *consBinding, pl wire.Payload, reply bool) {
	p := b.peer
	if p.required[b.requiredID] != b {
		return // binding gone: the provider released our references itself
	}
	p.queueConsumed(b.providedID, pl, reply)
}
