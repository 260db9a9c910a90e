package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// Offer is a service instance this node provides. Peers that require it are
// told of it; once they bind, they may subscribe to its events, which the
// application publishes through the Offer. Safe for concurrent use.
//
// Memory: the offer's event pool (events and field values) is shared by the
// bound peers that may subscribe, so one update fanned out to N subscribers
// uses one slot; each binding of a peer that may call gets a reply pool of
// its own. A peer that may neither subscribe nor call gets no pool at all.
type Offer struct {
	n        *Node
	svc      ServiceID
	cfg      OfferConfig
	closed   bool
	pool     *shm.Pool       // the event pool, created on first use
	share    int             // slots of it one subscriber may hold
	loanGen  []atomic.Uint32 // per slot: the generation of its open loan, 0 if none
	nextGen  atomic.Uint32
	events   []*eventState
	bindings map[*peer]*provBinding
	stats    OfferCounters
}

// OfferCounters are an offer's running totals.
type OfferCounters struct {
	Published uint64 `json:"published"` // Publish and Loan.Publish calls that succeeded
	Sent      uint64 `json:"sent"`      // event updates sent (one per subscribed peer per publish)
	Dropped   uint64 `json:"dropped"`   // updates not sent to a subscriber (its socket or ring full, or its slot share refused)
	NoSlot    uint64 `json:"no_slot"`   // publishes refused because the pool was exhausted
	Calls     uint64 `json:"calls"`     // method calls handed to OnCall
}

type eventState struct {
	seq  uint64
	subs []*provBinding

	// Fields only: the cached latest value (a slot the offer holds).
	field     bool
	cached    bool
	cacheSlot uint32
	cacheLen  uint32
	cacheSeq  uint64
	// Requests for the current value waiting for the next publish.
	requesters      []*provBinding
	requestNotified bool
}

// provBinding is one consumer peer bound to one of our offers.
type provBinding struct {
	offer      *Offer
	peer       *peer
	providedID uint64
	requiredID uint64
	subscriber bool         // the peer may subscribe: it was given the event pool
	reader     shm.ReaderID // its reader id in the event pool (subscriber only)
	events     []uint16     // events this binding subscribes to
	closed     bool         // unbound: kept only by Calls still to be answered

	replies     *shm.Pool                 // the binding's reply pool (nil: the peer may not call)
	replyReader shm.ReaderID              // the peer's reader id in it
	callView    *shm.View                 // the consumer's call pool (method-call payloads), if mapped
	calls       map[uint64]pendingRequest // calls not yet answered, by invocation id
	drops       map[uint16]uint64         // updates dropped for this binding, by event
}

// Offer starts providing svc. Peers that require a compatible version (same
// id, major and instance, minor not above svc's) are told, now and whenever
// they connect later. It fails with ErrDuplicate if the node already offers
// the same id, major and instance, and with ErrInvalidConfig for an unusable
// cfg (for instance methods without OnCall).
func (n *Node) Offer(svc ServiceID, cfg *OfferConfig) (*Offer, error) {
	if err := svc.Validate(); err != nil {
		return nil, err
	}
	var c OfferConfig
	if cfg != nil {
		c = *cfg
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: offer %v: %w", ErrInvalidConfig, svc, err)
	}
	c.Fields = slices.Clone(c.Fields)
	if err := n.lockChecked(); err != nil {
		return nil, err
	}
	defer n.unlock()
	key := svc.key()
	if n.offers[key] != nil {
		return nil, fmt.Errorf("%w: offer %v", ErrDuplicate, svc)
	}
	o := &Offer{n: n, svc: svc, cfg: c, events: make([]*eventState, c.Events), bindings: map[*peer]*provBinding{}}
	for _, f := range c.Fields {
		o.event(f).field = true
	}
	n.offers[key] = o
	for _, p := range n.peers {
		if o.watchedBy(p) {
			o.sendOffer(p, true)
		}
	}
	return o, nil
}

// watchedBy reports whether p wants to hear about this offer: it requested
// the service, is bound to it, or finds it.
func (o *Offer) watchedBy(p *peer) bool {
	if p.state != peerReady {
		return false
	}
	_, asked := p.interest[o.svc.key()]
	return asked || o.bindings[p] != nil || (p.finding(o.svc) && o.n.allowed(p, o.svc, ActionRequire))
}

// Service returns the offered service instance.
func (o *Offer) Service() ServiceID { return o.svc }

func (o *Offer) sendOffer(p *peer, offered bool) {
	p.queue(&wire.OfferService{Service: o.svc.wire(), Offered: offered, Methods: o.cfg.Methods, Events: o.cfg.Events})
}

// Publish copies data into a slot and sends it to every peer subscribed to
// event. It fails with ErrNoSlot when the pool is exhausted, ErrTooLarge when
// data does not fit a slot and ErrUnknownEvent for an event out of range.
// Publishing with no subscriber succeeds and sends nothing (a field still
// caches the value).
func (o *Offer) Publish(event uint16, data []byte) error {
	return o.publishCopy(context.Background(), false, event, data)
}

// PublishWait is Publish, waiting for a free slot until ctx ends instead of
// failing at once with ErrNoSlot. Called from a callback of the same node it
// returns ErrDeadlock (slots are freed by the dispatch it would block).
func (o *Offer) PublishWait(ctx context.Context, event uint16, data []byte) error {
	return o.publishCopy(ctx, true, event, data)
}

func (o *Offer) publishCopy(ctx context.Context, wait bool, event uint16, data []byte) error {
	if wait && o.n.onAppThread() {
		return ErrDeadlock // even with a slot free: PublishWait from a callback is refused, always
	}
	if len(data) <= smallPublish {
		if done, err := o.publishSmall(event, data); done {
			return err
		}
	}
	l, err := o.loan(ctx, wait, event)
	if err != nil {
		return err
	}
	buf := l.Bytes()
	if len(data) > len(buf) {
		l.Discard()
		return tooLarge(len(data), uint32(len(buf)))
	}
	shm.Copy(buf, data)
	return l.Publish(len(data))
}

// smallPublish is the largest payload publishSmall copies under the node's
// lock: for more, the copy outside it is worth a second round.
const smallPublish = 4096

// publishSmall is Publish of a small payload in one hold of the node's
// lock: take a slot, copy, fan out. It reports false, having done nothing,
// when no slot is free at once (the caller then reclaims, waits or fails
// as a loan does).
func (o *Offer) publishSmall(event uint16, data []byte) (done bool, err error) {
	n := o.n
	if err := n.lockChecked(); err != nil {
		return true, err
	}
	defer n.unlock()
	pool, err := o.usablePool(event)
	if err != nil {
		return true, err
	}
	if size := pool.Geometry().SlotSize; len(data) > int(size) {
		return true, tooLarge(len(data), size)
	}
	slot, err := pool.Alloc()
	if err != nil {
		return !errors.Is(err, shm.ErrNoSlot), mapShmErr(err)
	}
	copy(pool.HeldSlot(slot), data)
	o.fanout(event, slot, uint32(len(data)))
	return true, nil
}

// Loan is a slot lent to the application to write an event in place. It is a
// small value; copies refer to the same loan, and once one copy is published
// or discarded every copy fails with ErrLoanDone.
type Loan struct {
	o     *Offer
	event uint16
	slot  uint32
	gen   uint32
}

// Loan takes a free slot for event. Write the payload into Bytes, then
// Publish (or Discard) it. It fails with ErrNoSlot when the pool is
// exhausted.
func (o *Offer) Loan(event uint16) (Loan, error) { return o.loan(context.Background(), false, event) }

// LoanWait is Loan, waiting for a free slot until ctx ends (ErrDeadlock
// from a callback of the same node, as PublishWait).
func (o *Offer) LoanWait(ctx context.Context, event uint16) (Loan, error) {
	return o.loan(ctx, true, event)
}

// loan takes a slot; with wait it waits for one until ctx ends.
func (o *Offer) loan(ctx context.Context, wait bool, event uint16) (Loan, error) {
	n := o.n
	if wait && n.onAppThread() {
		return Loan{}, ErrDeadlock
	}
	if err := n.lockChecked(); err != nil {
		return Loan{}, err
	}
	pool, err := o.usablePool(event)
	n.unlock()
	if err != nil {
		return Loan{}, err
	}
	slot, err := n.takeSlot(ctx, wait, pool)
	if err != nil {
		if errors.Is(err, shm.ErrNoSlot) {
			n.mu.Lock()
			o.stats.NoSlot++
			n.mu.Unlock()
		}
		return Loan{}, mapShmErr(err)
	}
	gen := o.nextGen.Add(1)
	if gen == 0 {
		gen = o.nextGen.Add(1)
	}
	o.loanGen[slot].Store(gen)
	return Loan{o: o, event: event, slot: slot, gen: gen}, nil
}

// usablePool checks the offer and event and returns the event pool,
// creating it on first use. Called with n.mu held.
func (o *Offer) usablePool(event uint16) (*shm.Pool, error) {
	if o.closed {
		return nil, ErrClosed
	}
	if event >= o.cfg.Events {
		return nil, unknownEvent(event, o.cfg.Events)
	}
	return o.ensurePool()
}

// ensurePool returns the offer's event pool, creating it on first use,
// sized by the offer's config (never by a peer: it is shared).
func (o *Offer) ensurePool() (*shm.Pool, error) {
	if o.pool != nil {
		return o.pool, nil
	}
	g := o.cfg.Geometry
	if g == (shm.Geometry{}) {
		g = DefaultGeometry
	}
	pool, err := shm.NewPool(poolName(o.svc), g)
	if err != nil {
		return nil, fmt.Errorf("engine: creating the event pool of %v: %w", o.svc, err)
	}
	o.pool = pool
	o.share = o.cfg.SubscriberSlots
	if o.share == 0 {
		o.share = int(g.SlotCount+1) / 2
	}
	o.loanGen = make([]atomic.Uint32, g.SlotCount)
	return pool, nil
}

// poolName is the memfd name (visible in /proc/PID/maps): the service with
// anything but [A-Za-z0-9._-] replaced.
func poolName(svc ServiceID) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, svc.ID+"-"+svc.Instance)
}

// Bytes is the whole slot, writable. It is nil once the loan is done. Do
// not keep the slice past Publish or Discard: the slot is reused.
func (l Loan) Bytes() []byte {
	if !l.open() {
		return nil
	}
	return l.o.pool.Slot(l.slot)
}

func (l Loan) open() bool { return l.o != nil && l.o.loanGen[l.slot].Load() == l.gen }

// close ends the loan; false if it was already done.
func (l Loan) close() bool { return l.o != nil && l.o.loanGen[l.slot].CompareAndSwap(l.gen, 0) }

// Publish sends the first size bytes of the slot to every subscriber of the
// loan's event and ends the loan.
func (l Loan) Publish(size int) error {
	if l.o == nil {
		return ErrLoanDone
	}
	o, n := l.o, l.o.n
	n.mu.Lock()
	defer n.unlock()
	if size < 0 || size > int(o.pool.Geometry().SlotSize) {
		return tooLarge(size, o.pool.Geometry().SlotSize)
	}
	if !l.close() {
		return ErrLoanDone
	}
	if o.closed || n.closed {
		o.pool.Free(l.slot)
		return ErrClosed
	}
	o.fanout(l.event, l.slot, uint32(size))
	return nil
}

// Discard ends the loan without publishing; the slot is free again.
func (l Loan) Discard() error {
	if !l.close() {
		return ErrLoanDone
	}
	return l.o.pool.Free(l.slot)
}

// fanout shares one slot with every subscriber of event, sends each an
// Event_update, and drops the writer's own reference: the slot is free once
// the last subscriber has consumed it. Called with n.mu held.
// A new value also answers every waiting request for the current value, and
// becomes the cached value of a field.
func (o *Offer) fanout(event uint16, slot, size uint32) {
	es := o.event(event)
	es.seq++
	o.stats.Published++
	for _, b := range es.subs {
		o.sendUpdate(b, event, es.seq, slot, size, false)
	}
	for _, b := range es.requesters {
		if !slices.Contains(es.subs, b) {
			o.sendUpdate(b, event, es.seq, slot, size, true)
		}
	}
	clear(es.requesters)
	es.requesters, es.requestNotified = es.requesters[:0], false
	if es.field {
		o.keepCache(es, slot, size)
	} else {
		o.pool.Free(slot)
	}
}

// shareWith gives b a hold on slot. A share that is full may only look full:
// the subscriber's consumes can be waiting in its ring, so they are taken
// first.
func (o *Offer) shareWith(slot uint32, b *provBinding) error {
	err := o.pool.Share(slot, b.reader)
	if errors.Is(err, shm.ErrReaderQuota) && b.peer.ring.ready() {
		o.n.readRing(b.peer, maxRoundCallbacks)
		err = o.pool.Share(slot, b.reader)
	}
	return err
}

func (o *Offer) event(ev uint16) *eventState {
	es := o.events[ev]
	if es == nil {
		es = &eventState{}
		o.events[ev] = es
	}
	return es
}

func (o *Offer) sendUpdate(b *provBinding, event uint16, seq uint64, slot, size uint32, requested bool) {
	p := b.peer
	if !b.subscriber || p.state != peerReady || !p.canTakeUpdate() || o.shareWith(slot, b) != nil {
		p.stats.UpdatesDropped++
		o.stats.Dropped++
		if b.drops == nil {
			b.drops = map[uint16]uint64{}
		}
		b.drops[event]++
		return
	}
	u := wire.EventUpdate{RequiredID: b.requiredID, Event: event, Seq: seq, Requested: requested, Payload: wire.Payload{Slot: slot, Len: size}}
	if o.cfg.NoInline || !p.inlines(size) || !p.pushInline(b, u, o.pool.HeldSlot(slot)[:size]) {
		p.queueUpdate(u)
	}
	o.stats.Sent++
}

// Close withdraws the offer: bound peers see the service unavailable and
// every slot they held is released. Loans still open fail with ErrClosed.
// Idempotent.
func (o *Offer) Close() error {
	n := o.n
	n.mu.Lock()
	defer n.unlock()
	o.closeLocked()
	return nil
}

func (o *Offer) closeLocked() {
	if o.closed {
		return
	}
	o.closed = true
	n := o.n
	for _, p := range n.peers {
		if o.watchedBy(p) {
			o.sendOffer(p, false)
		}
	}
	for _, b := range o.bindings {
		o.unbind(b)
	}
	delete(n.offers, o.svc.key())
	if o.pool != nil {
		o.dropCaches()
		o.pool.Close()
	}
}

// unbind removes one consumer's binding and releases every slot it held.
// Calls still pending are cancelled; they keep the consumer's pool mapped
// until the application answers them, or until the node closes.
func (o *Offer) unbind(b *provBinding) {
	for _, ev := range b.events {
		o.removeSubscriber(b, ev)
		b.peer.subscriptions--
	}
	b.events = nil
	o.forgetRequests(b)
	for id := range b.calls {
		b.cancelCall(id)
	}
	if o.n.closed {
		for id, req := range b.calls {
			b.endCall(id, req)
		}
	}
	b.closed = true
	if b.subscriber {
		b.peer.ring.forgetHolds(b)
		o.pool.RemoveReader(b.reader)
	}
	if b.replies != nil {
		b.replies.Close()
	}
	delete(b.peer.provided, b.providedID)
	delete(o.bindings, b.peer)
	b.peer.unmapPool(b.callView)
}

func (o *Offer) removeSubscriber(b *provBinding, ev uint16) {
	es := o.event(ev)
	for i, s := range es.subs {
		if s == b {
			es.subs = append(es.subs[:i], es.subs[i+1:]...)
			if len(es.subs) == 0 {
				o.notifySubscription(ev, false)
			}
			return
		}
	}
}

func (o *Offer) notifySubscription(ev uint16, subscribed bool) {
	if cb := o.cfg.OnSubscription; cb != nil {
		o.n.enqueue(callback{fn: func() { cb(ev, subscribed) }})
	}
}

// Provider-side message handlers.

func (n *Node) onConnectService(p *peer, m *wire.ConnectService, fds *fdQueue) error {
	fd := -1
	if m.HasPool {
		var ok bool
		if fd, ok = fds.take(); !ok {
			return protoErr("Connect_service announces a pool but carries no fd", nil)
		}
		if p.caps&wire.CapMethods == 0 || !m.InUse {
			closeFD(fd)
			return protoErr("Connect_service carries a call pool without the methods capability or in_use", nil)
		}
	}
	svc := serviceFromWire(m.Service)
	if err := svc.Validate(); err != nil {
		closeFD(fd)
		return protoErr("Connect_service", err)
	}
	o := n.offers[svc.key()]
	if !m.InUse {
		if o != nil {
			if b := o.bindings[p]; b != nil && b.requiredID == m.RequiredID {
				o.unbind(b)
			}
		}
		return nil
	}
	reply := func(st wire.Status) error {
		closeFD(fd)
		p.queue(&wire.ConnectServiceReply{RequiredID: m.RequiredID, Status: st})
		return nil
	}
	switch {
	case o == nil:
		return reply(wire.StatusUnknownService)
	case !o.svc.CompatibleWith(svc):
		return reply(wire.StatusIncompatibleVersion)
	case o.bindings[p] != nil:
		return reply(wire.StatusDuplicate)
	case !n.allowed(p, o.svc, ActionRequire):
		n.reject(p, o.svc, ActionRequire)
		return reply(wire.StatusPermissionDenied)
	case len(p.provided) >= n.cfg.Limits.Services:
		n.quotaHit(p, "bindings")
		return reply(wire.StatusQuotaExceeded)
	}
	b := &provBinding{offer: o, peer: p, providedID: n.newHandle(), requiredID: m.RequiredID, calls: map[uint64]pendingRequest{}}
	mayCall := o.cfg.Methods > 0 && p.caps&wire.CapMethods != 0 && n.allowed(p, o.svc, ActionCall)
	if fd >= 0 && mayCall {
		v, err := p.mapPool(fd, shmGeometry(m.Pool)) // takes the fd
		fd = -1
		switch {
		case errors.Is(err, ErrQuotaExceeded):
			n.quotaHit(p, "mapped pools")
			return reply(wire.StatusQuotaExceeded)
		case err != nil:
			return protoErr("mapping the consumer's call pool", err)
		}
		b.callView = v
	}
	closeFD(fd) // a pool we will never read (the peer may not call) is not mapped
	fd = -1
	if err := o.setupBinding(b, mayCall); err != nil {
		p.unmapPool(b.callView)
		n.peerLogf(p, slog.LevelError, "setting up a binding", "service", o.svc, "err", err)
		return reply(wire.StatusNotAvailable)
	}
	o.bind(b)
	return nil
}

// setupBinding gives b the pools it is entitled to: the event pool if the
// peer may subscribe, a reply pool of its own if it may call.
func (o *Offer) setupBinding(b *provBinding, mayCall bool) error {
	n, p := o.n, b.peer
	if o.cfg.Events > 0 && n.allowed(p, o.svc, ActionSubscribe) {
		pool, err := o.ensurePool()
		if err != nil {
			return err
		}
		if b.reader, err = pool.AddReader(o.share); err != nil {
			return err
		}
		b.subscriber = true
	}
	if !mayCall {
		return nil
	}
	g := o.cfg.ReplyGeometry
	if g == (shm.Geometry{}) {
		g = p.poolHint(o.svc, ReplyPool, DefaultReplyGeometry)
	}
	pool, err := shm.NewPool(poolName(o.svc)+"-replies", g)
	if err == nil {
		b.replyReader, err = pool.AddReader(0)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		if b.subscriber {
			o.pool.RemoveReader(b.reader)
		}
		return fmt.Errorf("creating a reply pool: %w", err)
	}
	b.replies = pool
	return nil
}

// bind registers b and answers the consumer with its pools.
func (o *Offer) bind(b *provBinding) {
	p := b.peer
	p.provided[b.providedID] = b
	o.bindings[p] = b
	m := &wire.ConnectServiceReply{RequiredID: b.requiredID, ProvidedID: b.providedID, Status: wire.StatusOK,
		Methods: o.cfg.Methods, Events: o.cfg.Events}
	var fds [2]int
	k := 0
	if b.subscriber {
		m.HasEventPool, m.EventPool = true, wireGeometry(o.pool.Geometry())
		fds[k] = o.pool.Fd()
		k++
	}
	if b.replies != nil {
		m.HasReplyPool, m.ReplyPool = true, wireGeometry(b.replies.Geometry())
		fds[k] = b.replies.Fd()
		k++
	}
	p.queue(m, fds[:k]...)
}

// providerBinding resolves a handle a consumer sent us. A handle we issued
// earlier but no longer use is a benign race (nil, nil); one we never issued
// is a protocol error.
func (n *Node) providerBinding(p *peer, h uint64, what string) (*provBinding, error) {
	if b := p.provided[h]; b != nil {
		return b, nil
	}
	if n.issued(h) {
		p.stats.StaleHandles++
		return nil, nil
	}
	return nil, protoErr(fmt.Sprintf("%s for handle %d never issued", what, h), nil)
}

func (n *Node) onSubscribeEvent(p *peer, m *wire.SubscribeEvent) error {
	b, err := n.providerBinding(p, m.ProvidedID, "Subscribe_event")
	if b == nil {
		return err
	}
	if m.Mode != wire.ModeUpdates && p.caps&wire.CapFields == 0 {
		return protoErr("Subscribe_event with initial value without the fields capability", nil)
	}
	o := b.offer
	if !m.Subscribe {
		if i := slices.Index(b.events, m.Event); i >= 0 {
			b.events = slices.Delete(b.events, i, i+1)
			p.subscriptions--
			o.removeSubscriber(b, m.Event)
		}
		return nil
	}
	status := wire.StatusOK
	switch {
	case m.Event >= o.cfg.Events:
		status = wire.StatusUnknownEvent
	case !b.subscriber:
		n.reject(p, o.svc, ActionSubscribe)
		status = wire.StatusPermissionDenied
	case slices.Contains(b.events, m.Event):
	case p.subscriptions >= n.cfg.Limits.Subscriptions:
		n.quotaHit(p, "subscriptions")
		status = wire.StatusQuotaExceeded
	default:
		b.events = append(b.events, m.Event)
		p.subscriptions++
		es := o.event(m.Event)
		es.subs = append(es.subs, b)
		if len(es.subs) == 1 {
			o.notifySubscription(m.Event, true)
		}
	}
	p.queue(&wire.SubscribeEventReply{RequiredID: b.requiredID, Event: m.Event, Status: status})
	if status == wire.StatusOK && m.Mode == wire.ModeInitialValue {
		o.requestValue(b, m.Event)
	}
	return nil
}

// onPayloadConsumed releases a slot of one of our pools: the offer's event
// pool, a binding's reply pool, or a consumer binding's call pool.
func (n *Node) onPayloadConsumed(p *peer, m *wire.PayloadConsumed) error {
	var err error
	b, cb := p.provided[m.Handle], p.required[m.Handle]
	switch {
	case b != nil && m.Reply && b.replies != nil:
		err = b.replies.Release(m.Payload.Slot, b.replyReader)
	case b != nil && !m.Reply && b.subscriber:
		err = b.offer.pool.Release(m.Payload.Slot, b.reader)
	case b != nil:
		err = errors.New("the binding holds no such pool")
	case cb != nil && !m.Reply && cb.callPool != nil:
		err = cb.callPool.Release(m.Payload.Slot, cb.callReader)
	case cb != nil:
		err = errors.New("no call pool was shared")
	default:
		if !n.issued(m.Handle) {
			return protoErr(fmt.Sprintf("Payload_consumed for handle %d never issued", m.Handle), nil)
		}
		p.stats.StaleHandles++
	}
	if err != nil {
		return protoErr("Payload_consumed", err)
	}
	if b != nil || cb != nil {
		n.slotReturned() // a stale handle gave nothing back
	}
	return nil
}

func shmGeometry(g wire.Geometry) shm.Geometry {
	return shm.Geometry{SlotSize: g.SlotSize, SlotCount: g.SlotCount}
}

func wireGeometry(g shm.Geometry) wire.Geometry {
	return wire.Geometry{SlotSize: g.SlotSize, SlotCount: g.SlotCount}
}

func mapShmErr(err error) error {
	if errors.Is(err, shm.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
