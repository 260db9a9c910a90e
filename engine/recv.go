package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"unicode/utf8"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// inbox holds one reusable struct per message type so decoding allocates
// nothing. Owned by the dispatching goroutine (used under Node.mu).
type inbox struct {
	connect       wire.Connect
	connectReply  wire.ConnectReply
	request       wire.RequestService
	offer         wire.OfferService
	connService   wire.ConnectService
	connReply     wire.ConnectServiceReply
	call          wire.CallMethod
	callHandle    wire.CallMethodHandle
	callReply     wire.CallMethodReply
	cancel        wire.CancelMethodCall
	subscribe     wire.SubscribeEvent
	subReply      wire.SubscribeEventReply
	update        wire.EventUpdate
	updateRequest wire.EventUpdateRequest
	consumed      wire.PayloadConsumed
	find          wire.FindService
	goodbye       wire.Goodbye
	ring          wire.Ring

	inline    []byte               // the payload of the inline update being handled (§10.13), in inlineBuf
	inlineBuf [wire.MaxInline]byte // what the ring's payload entries held
}

func (in *inbox) message(t wire.Type) wire.Message {
	switch t {
	case wire.TypeConnect:
		return &in.connect
	case wire.TypeConnectReply:
		return &in.connectReply
	case wire.TypeRequestService:
		return &in.request
	case wire.TypeOfferService:
		return &in.offer
	case wire.TypeConnectService:
		return &in.connService
	case wire.TypeConnectServiceReply:
		return &in.connReply
	case wire.TypeCallMethod:
		return &in.call
	case wire.TypeCallMethodHandle:
		return &in.callHandle
	case wire.TypeCallMethodReply:
		return &in.callReply
	case wire.TypeCancelMethodCall:
		return &in.cancel
	case wire.TypeSubscribeEvent:
		return &in.subscribe
	case wire.TypeSubscribeEventReply:
		return &in.subReply
	case wire.TypeEventUpdate:
		return &in.update
	case wire.TypeEventUpdateRequest:
		return &in.updateRequest
	case wire.TypePayloadConsumed:
		return &in.consumed
	case wire.TypeGoodbye:
		return &in.goodbye
	case wire.TypeRing:
		return &in.ring
	}
	return &in.find
}

// handlePacket decodes and handles every message in one packet. An error
// closes the peer's connection (and only it).
func (n *Node) handlePacket(p *peer, pkt []byte, fds *fdQueue) error {
	if len(pkt) == 0 {
		return protoErr("empty packet", nil)
	}
	for len(pkt) > 0 && p.state != peerClosing {
		h, body, rest, err := wire.Split(pkt)
		if err != nil {
			return protoErr("decoding packet", err)
		}
		pkt = rest
		m := n.in.message(h.Type)
		if err := m.Decode(h, body); err != nil {
			return protoErr("decoding message", err)
		}
		p.stats.MessagesIn++
		if err := n.handle(p, m, fds); err != nil {
			return err
		}
	}
	if fds.unused() {
		return protoErr("file descriptors that no message carries", nil)
	}
	return nil
}

func (n *Node) handle(p *peer, m wire.Message, fds *fdQueue) error {
	switch p.state {
	case peerHandshake:
		return n.handleHandshake(p, m)
	case peerAdmitting:
		return protoErr(m.Type().String()+" before the handshake completed", nil)
	}
	if c := capability(m.Type()); p.caps&c != c {
		return protoErr(m.Type().String()+" without the capability being negotiated", nil)
	}
	switch m := m.(type) {
	case *wire.RequestService:
		return n.onRequestService(p, m)
	case *wire.OfferService:
		return n.onOfferService(p, m)
	case *wire.ConnectService:
		return n.onConnectService(p, m, fds)
	case *wire.ConnectServiceReply:
		return n.onConnectServiceReply(p, m, fds)
	case *wire.SubscribeEvent:
		return n.onSubscribeEvent(p, m)
	case *wire.SubscribeEventReply:
		return n.onSubscribeEventReply(p, m)
	case *wire.EventUpdate:
		return n.onEventUpdate(p, m)
	case *wire.PayloadConsumed:
		return n.onPayloadConsumed(p, m)
	case *wire.CallMethod:
		return n.onCallMethod(p, m)
	case *wire.CallMethodHandle:
		return n.onCallMethodHandle(p, m)
	case *wire.CallMethodReply:
		return n.onCallMethodReply(p, m)
	case *wire.CancelMethodCall:
		return n.onCancelMethodCall(p, m)
	case *wire.EventUpdateRequest:
		return n.onEventUpdateRequest(p, m)
	case *wire.FindService:
		return n.onFindService(p, m)
	case *wire.Ring:
		return n.onRing(p, m, fds)
	case *wire.Goodbye:
		p.saidGoodbye = true
		n.fail(p, nil) // orderly: the peer closes the connection next
		return nil
	}
	return protoErr(m.Type().String()+" after the handshake", nil)
}

// capability is the capability a message type needs, or 0.
func capability(t wire.Type) uint32 {
	switch t {
	case wire.TypeCallMethod, wire.TypeCallMethodHandle, wire.TypeCallMethodReply, wire.TypeCancelMethodCall:
		return wire.CapMethods
	case wire.TypeEventUpdateRequest:
		return wire.CapFields
	case wire.TypeFindService:
		return wire.CapFind
	case wire.TypeRing:
		return wire.CapRing
	}
	return 0
}

// Handshake.

// ourCaps is what this engine implements; a session uses what both sides
// announce.
func (n *Node) ourCaps() uint32 {
	// A peer's ring may be as large as maxRingEntries: a node whose
	// mapped-bytes budget could not take it does without rings rather than
	// refuse the peer's.
	if n.cfg.DisableRings || n.cfg.Limits.MappedBytes < int64(ringSize(maxRingEntries)) {
		return wire.CapAll &^ (wire.CapRing | wire.CapInline)
	}
	return wire.CapAll
}

// sendConnect opens the session. Find elements go along while the message
// fits the pre-handshake packet limit; the rest follow as Find_service once
// the session is up.
func (n *Node) sendConnect(p *peer) {
	m := connectMessage(&n.cfg, n.ourCaps())
	for _, f := range n.finders {
		m.Find = append(m.Find, f.pattern)
		if b, err := m.Append(nil); err != nil || len(b) > wire.MinPacket {
			m.Find = m.Find[:len(m.Find)-1]
			break
		}
		p.announced[f] = true
	}
	p.queue(m)
}

func connectMessage(cfg *Config, caps uint32) *wire.Connect {
	m := &wire.Connect{Version: wire.Version, Caps: caps, MaxPacket: uint32(cfg.MaxPacket), Name: cfg.Name}
	for _, pc := range cfg.Pools {
		m.Pools = append(m.Pools, wire.PoolConfig{ID: pc.ServiceID, Instance: pc.Instance, Dir: pc.Kind.wire(),
			Geometry: wire.Geometry{SlotSize: pc.Geometry.SlotSize, SlotCount: pc.Geometry.SlotCount}})
	}
	return m
}

func (n *Node) handleHandshake(p *peer, m wire.Message) error {
	switch m := m.(type) {
	case *wire.Connect:
		if !n.isListener {
			return protoErr("Connect sent to a dialler", nil)
		}
		return n.onConnect(p, m)
	case *wire.ConnectReply:
		if p != n.dialPeer {
			return protoErr("Connect_reply sent to a listener", nil)
		}
		return n.onConnectReply(p, m)
	}
	return protoErr(m.Type().String()+" before the handshake", nil)
}

// onConnect checks a dialler's Connect. If the node has an authorizer, the
// peer waits (admitting) for it to be asked outside the lock (see admit);
// otherwise the handshake completes at once.
func (n *Node) onConnect(p *peer, m *wire.Connect) error {
	reject := func(st wire.Status, reason string) error { return n.rejectConnect(p, st, reason) }
	if m.Version != wire.Version {
		return reject(wire.StatusVersionUnsupported, fmt.Sprintf("protocol version %d unsupported (want %d)", m.Version, wire.Version))
	}
	if m.MaxPacket < wire.MinPacket {
		return reject(wire.StatusMalformed, fmt.Sprintf("max packet %d below %d", m.MaxPacket, wire.MinPacket))
	}
	for _, pc := range m.Pools {
		if err := n.cfg.Limits.checkPool(shmGeometry(pc.Geometry)); err != nil {
			st := wire.StatusMalformed
			if errors.Is(err, ErrQuotaExceeded) {
				st = wire.StatusQuotaExceeded
			}
			return reject(st, fmt.Sprintf("pool config for %q: %v", pc.ID, err))
		}
	}
	if ready := len(n.peers) - n.handshakes; ready >= n.cfg.MaxPeers {
		return reject(wire.StatusQuotaExceeded, fmt.Sprintf("the listener has its limit of %d peers", n.cfg.MaxPeers))
	}
	if len(m.Find) > n.cfg.Limits.FindElements {
		return reject(wire.StatusQuotaExceeded, fmt.Sprintf("%d find elements, limit %d", len(m.Find), n.cfg.Limits.FindElements))
	}
	for _, el := range m.Find {
		if el.ID == "" {
			return protoErr("Connect with an empty find element", nil)
		}
	}
	c := p.cred()
	c.Name = m.Name
	if cfg := &n.cfg; (len(cfg.AllowUIDs) > 0 || len(cfg.AllowGIDs) > 0) && !credIn(c, cfg.AllowUIDs, cfg.AllowGIDs) {
		return n.refusePeer(p, c, fmt.Errorf("uid %d gid %d not allowed", c.UID, c.GID))
	}
	if n.cfg.Authorize != nil {
		// m is the inbox's reused struct: keep a copy until admit.
		a := *m
		a.Find, a.Pools = slices.Clone(m.Find), slices.Clone(m.Pools)
		p.admission = &a
		p.state = peerAdmitting
		n.admitting = append(n.admitting, p)
		return nil
	}
	n.acceptConnect(p, m)
	return nil
}

// admit asks Config.Authorize about each peer waiting for it, outside the
// lock, then completes or refuses their handshakes, and takes the callback
// batch. Called inside the dispatch's application section, without n.mu.
func (n *Node) admit(peers []*peer) {
	verdicts := make([]error, len(peers))
	for i, p := range peers {
		c := p.cred() // fixed once the peer is admitting
		c.Name = p.admission.Name
		verdicts[i] = n.authorize(c)
	}
	n.mu.Lock()
	for i, p := range peers {
		if p.state != peerAdmitting {
			continue // gone meanwhile (timed out, node closing)
		}
		m := p.admission
		p.admission = nil
		p.state = peerHandshake
		if err := verdicts[i]; err != nil {
			c := p.cred()
			c.Name = m.Name
			n.fail(p, n.refusePeer(p, c, err))
			continue
		}
		if ready := len(n.peers) - n.handshakes; ready >= n.cfg.MaxPeers {
			n.fail(p, n.rejectConnect(p, wire.StatusQuotaExceeded, fmt.Sprintf("the listener has its limit of %d peers", n.cfg.MaxPeers)))
			continue
		}
		n.acceptConnect(p, m)
	}
	n.reap()
	logs := n.takeLogs()
	n.run, n.callbacks = n.callbacks, n.run[:0]
	n.mu.Unlock()
	n.emitLogs(logs)
}

// authorize runs the application's authorizer; a panic refuses the peer.
func (n *Node) authorize(c PeerCred) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the authorizer failed: %v", r)
		}
	}()
	return n.cfg.Authorize(c)
}

// refusePeer refuses a peer the allow-lists or the authorizer do not admit.
func (n *Node) refusePeer(p *peer, c PeerCred, why error) error {
	n.counters.PolicyRejections++
	n.peerLogf(p, slog.LevelWarn, "refusing a peer", "claimed_name", c.Name, "reason", why)
	return n.rejectConnect(p, wire.StatusPermissionDenied, why.Error())
}

// rejectConnect answers a Connect with a refusal; the returned error closes
// the connection.
func (n *Node) rejectConnect(p *peer, st wire.Status, reason string) error {
	n.counters.PeersRejected++
	reason = truncate(reason, wire.MaxReasonLen)
	p.queue(&wire.ConnectReply{Status: st, Version: wire.Version, Name: n.cfg.Name, Reason: reason})
	p.flush()
	return &RejectedError{Status: StatusCode(st), Reason: reason}
}

// acceptConnect completes a listener's handshake with an admitted peer.
func (n *Node) acceptConnect(p *peer, m *wire.Connect) {
	for _, pc := range m.Pools {
		kind := ReplyPool
		if pc.Dir == wire.DirConsumer {
			kind = CallPool
		}
		p.poolHints[poolHintKey{pc.ID, pc.Instance, kind}] = shmGeometry(pc.Geometry)
	}
	p.pub.name = m.Name
	p.caps = m.Caps & n.ourCaps()
	p.maxOut = int(min(m.MaxPacket, wire.MaxPacket))
	p.queue(&wire.ConnectReply{Status: wire.StatusOK, Version: wire.Version, Caps: p.caps,
		MaxPacket: uint32(n.cfg.MaxPacket), Name: n.cfg.Name})
	n.peerReady(p)
	for _, el := range m.Find {
		n.addFind(p, el, true)
	}
}

func (n *Node) onConnectReply(p *peer, m *wire.ConnectReply) error {
	if m.Status != wire.StatusOK {
		err := &RejectedError{Status: StatusCode(m.Status), Reason: m.Reason}
		n.limitedLogf(&n.logLimit, slog.LevelError, "listener rejected the connection", "status", m.Status, "reason", m.Reason)
		n.fail(p, err)
		return nil
	}
	if m.Version != wire.Version {
		return protoErr(fmt.Sprintf("listener accepted with protocol version %d (want %d)", m.Version, wire.Version), nil)
	}
	if m.MaxPacket < wire.MinPacket {
		return protoErr(fmt.Sprintf("listener's max packet %d below %d", m.MaxPacket, wire.MinPacket), nil)
	}
	p.pub.name = m.Name
	p.caps = m.Caps & n.ourCaps()
	p.maxOut = int(min(m.MaxPacket, wire.MaxPacket))
	n.dialBackoff = 0
	n.lastDialErr = nil
	n.peerReady(p)
	return nil
}

// peerReady completes the handshake: both sides announce what they require
// ("sync state at connect"); offers answer those requests.
func (n *Node) peerReady(p *peer) {
	p.state = peerReady
	p.wasReady = true
	n.handshakeDone(p)
	if p.caps&wire.CapRing != 0 {
		if err := n.startRing(p); err != nil {
			n.peerLogf(p, slog.LevelError, "setting up the rings (staying on the socket)", "err", err)
		}
	}
	p.since = n.now()
	n.rearm()
	for _, px := range n.proxies {
		px.announce(p)
	}
	for _, f := range n.finders {
		if !p.announced[f] {
			f.announce(p, true)
		}
	}
	n.peerLogf(p, slog.LevelInfo, "peer connected")
	if cb := n.cfg.OnPeerConnected; cb != nil {
		pub := p.pub
		n.enqueue(callback{fn: func() { cb(pub) }})
	}
}

// Service discovery.

func (n *Node) onRequestService(p *peer, m *wire.RequestService) error {
	svc := serviceFromWire(m.Service)
	if err := svc.Validate(); err != nil {
		return protoErr("Request_service", err)
	}
	key := svc.key()
	if !m.InUse {
		delete(p.interest, key)
		if o := n.offers[key]; o != nil {
			if b := o.bindings[p]; b != nil {
				o.unbind(b)
			}
		}
		return nil
	}
	if !n.allowed(p, svc, ActionRequire) {
		n.reject(p, svc, ActionRequire) // and the offer stays unknown to that peer
		return nil
	}
	if _, ok := p.interest[key]; !ok && len(p.interest) >= n.cfg.Limits.Services {
		n.quotaHit(p, "services")
		return nil
	}
	p.interest[key] = m.Service
	if o := n.offers[key]; o != nil {
		o.sendOffer(p, true)
	}
	return nil
}

func (n *Node) onOfferService(p *peer, m *wire.OfferService) error {
	svc := serviceFromWire(m.Service)
	if err := svc.Validate(); err != nil {
		return protoErr("Offer_service", err)
	}
	key := svc.key()
	px := n.proxies[key]
	_, known := p.offers[key]
	if !m.Offered {
		delete(p.offers, key)
		if px != nil {
			px.dropCandidate(p)
		}
		if known {
			n.offerSeenChanged(p, svc, false)
		}
		return nil
	}
	if !known && len(p.offers) >= n.cfg.Limits.Services {
		n.quotaHit(p, "offers")
		return nil
	}
	p.offers[key] = offerSeen{svc: svc, methods: m.Methods, events: m.Events}
	if !known {
		n.offerSeenChanged(p, svc, true)
	}
	if px != nil {
		px.addCandidate(p, svc)
	}
	return nil
}

// truncate cuts s to at most max bytes without splitting a UTF-8 sequence.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
