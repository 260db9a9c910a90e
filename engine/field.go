package engine

import (
	"fmt"
	"slices"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// Fields: an event declared a field (OfferConfig.Fields) keeps its latest
// value in one slot held by the provider. A subscriber in InitialValue mode,
// or a consumer calling RequestUpdate, gets that value at once as a
// requested update. Without a cached value the requests wait, coalesced: the
// application's OnUpdateRequest runs once per event until the next publish,
// which answers every waiting requester.

// InitialValue subscribes to updates and asks for the current value at once
// (a field's cached value, or the next publish).
const InitialValue SubscribeMode = SubscribeMode(wire.ModeInitialValue)

// requestValue answers (or queues) b's request for ev's current value.
// Called with n.mu held.
func (o *Offer) requestValue(b *provBinding, ev uint16) {
	es := o.event(ev)
	if es.cached {
		o.sendUpdate(b, ev, es.cacheSeq, es.cacheSlot, es.cacheLen, true)
		return
	}
	if !slices.Contains(es.requesters, b) {
		es.requesters = append(es.requesters, b)
	}
	if !es.requestNotified {
		es.requestNotified = true
		if cb := o.cfg.OnUpdateRequest; cb != nil {
			o.n.enqueue(callback{fn: func() { cb(ev) }})
		}
	}
}

// keepCache makes slot the field's cached value (the writer's reference is
// kept) and releases the previous one.
func (o *Offer) keepCache(es *eventState, slot, size uint32) {
	if es.cached {
		o.pool.Free(es.cacheSlot)
	}
	es.cached, es.cacheSlot, es.cacheLen, es.cacheSeq = true, slot, size, es.seq
}

// dropCaches releases every cached field value (the offer is closing).
func (o *Offer) dropCaches() {
	for _, es := range o.events {
		if es != nil && es.cached {
			o.pool.Free(es.cacheSlot)
			es.cached = false
		}
	}
}

// forgetRequests removes b from every event's waiting requesters.
func (o *Offer) forgetRequests(b *provBinding) {
	for _, es := range o.events {
		if es != nil {
			if i := slices.Index(es.requesters, b); i >= 0 {
				es.requesters = slices.Delete(es.requesters, i, i+1)
			}
		}
	}
}

func (n *Node) onEventUpdateRequest(p *peer, m *wire.EventUpdateRequest) error {
	b, err := n.providerBinding(p, m.ProvidedID, "Event_update_request")
	if b == nil {
		return err
	}
	o := b.offer
	if m.Event >= o.cfg.Events {
		return protoErr(fmt.Sprintf("Event_update_request for event %d of %d", m.Event, o.cfg.Events), nil)
	}
	if !n.allowed(p, o.svc, ActionSubscribe) {
		n.reject(p, o.svc, ActionSubscribe)
		return nil
	}
	o.requestValue(b, m.Event)
	return nil
}

// RequestUpdate asks the provider for event's current value; it arrives at
// the event's subscription handler with Sample.Requested set. The event
// must be subscribed and the service available.
func (px *Proxy) RequestUpdate(event uint16) error {
	n := px.n
	if err := n.lockChecked(); err != nil {
		return err
	}
	defer n.unlock()
	b := px.bind
	switch {
	case px.closed:
		return ErrClosed
	case px.sub(event) == nil:
		return fmt.Errorf("%w: event %d is not subscribed", ErrInvalidConfig, event)
	case b == nil || !b.connected:
		return ErrNotAvailable
	case event >= b.events:
		return unknownEvent(event, b.events)
	case b.peer.caps&wire.CapFields == 0:
		return fmt.Errorf("%w: fields", ErrUnsupported)
	}
	b.peer.queue(&wire.EventUpdateRequest{ProvidedID: b.providedID, Event: event})
	return nil
}
