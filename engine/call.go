package engine

import (
	"errors"
	"fmt"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// The provider side of method calls: a consumer's Call_method becomes a
// Call handed to OfferConfig.OnCall, answered with Call.Reply or Call.Fail.
// The request payload lives in the consumer's call pool (one per binding),
// the reply in the binding's own reply pool. A call is two messages: every
// call that is not fire-and-forget gets exactly one Call_method_reply (also
// a refused or cancelled one), and that reply gives the request's slot
// back; Call_method_handle is sent only for a call its dispatch step did
// not answer.

// Call is one method invocation received by an Offer's OnCall handler. It is
// a small value: keep a copy to answer later, from any goroutine. Every call
// that is not fire-and-forget must be answered exactly once with Reply or
// Fail — also after the caller cancelled it (then nothing is sent, but the
// request's slot is released). Once the node is closed, Reply and Fail
// return ErrClosed: Close has released the request already.
type Call struct {
	b      *provBinding
	id     uint64
	method uint16
	ff     bool
	data   []byte
}

// pendingRequest is a received call not yet answered.
type pendingRequest struct {
	payload   wire.Payload
	method    uint16
	cancelled bool
}

// CallKey identifies a received call among all the calls a node has
// received: comparable, so usable as a map key. The Call handed to
// OnCancel has the key of the one OnCall got.
type CallKey struct {
	b  *provBinding
	id uint64
}

// Key returns the call's identity.
func (c Call) Key() CallKey { return CallKey{c.b, c.id} }

// Method is the method id.
func (c Call) Method() uint16 { return c.method }

// Data is the request payload: a read-only view of the caller's shared
// memory, valid until the call is answered (fire-and-forget: until the
// handler returns) or the node is closed, whichever comes first. Empty when
// the caller sent no payload.
func (c Call) Data() []byte { return c.data }

// FireAndForget reports whether the caller wants no reply.
func (c Call) FireAndForget() bool { return c.ff }

// Peer is the calling peer.
func (c Call) Peer() *Peer { return c.b.peer.pub }

// Cancelled reports whether the caller cancelled the call, timed out or
// went away: a reply would no longer be delivered.
func (c Call) Cancelled() bool {
	n := c.b.offer.n
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := c.b.calls[c.id]
	return !ok || r.cancelled || c.b.closed
}

// Reply answers the call with data (copied into the binding's reply pool).
// On ErrNoSlot or ErrTooLarge the call stays pending and may be answered
// again (for instance with Fail). It returns ErrCancelled if the caller no
// longer waits, ErrCallDone for a call already answered, ErrClosed after the
// node closed.
func (c Call) Reply(data []byte) error { return c.finish(wire.ResultReturn, 0, data) }

// Fail answers the call with an application error code and optional data,
// as Reply.
func (c Call) Fail(code int32, data []byte) error { return c.finish(wire.ResultAppError, code, data) }

func (c Call) finish(result wire.Result, code int32, data []byte) error {
	if c.b == nil || c.ff {
		return ErrCallDone
	}
	b := c.b
	n := b.offer.n
	n.mu.Lock()
	defer n.unlock()
	if n.closed {
		return ErrClosed
	}
	req, ok := b.calls[c.id]
	if !ok {
		return ErrCallDone
	}
	if req.cancelled || b.closed {
		b.endCall(c.id, req)
		b.failCall(c.id, wire.StatusCancelled) // frees the request; the caller drops it
		return ErrCancelled
	}
	pl, err := shareCopy(b.replies, data, b.replyReader)
	for errors.Is(err, ErrNoSlot) && n.wantSlot() { // the caller's consumes of earlier replies may wait in the ring
		pl, err = shareCopy(b.replies, data, b.replyReader)
	}
	if err != nil {
		return fmt.Errorf("engine: replying: %w", err)
	}
	b.endCall(c.id, req)
	b.peer.queueCallReply(wire.CallMethodReply{RequiredID: b.requiredID, InvocationID: c.id, Result: result, Code: code, Payload: pl})
	return nil
}

// endCall ends a received call: it no longer counts against the peer's
// pending-call limit (cancelled calls count until answered, so a peer cannot
// grow this map by cancelling) and our view of its request is dropped. The
// reply the caller of endCall sends gives the request's slot back.
func (b *provBinding) endCall(id uint64, req pendingRequest) {
	delete(b.calls, id)
	b.peer.pendingCalls--
	if req.payload.Slot != wire.NoSlot {
		b.callView.Unref()
	}
}

// shareCopy copies data into a new slot of pool held for reader alone (the
// writer keeps no reference): the payload of a call or a reply. Empty data
// needs no slot.
func shareCopy(pool *shm.Pool, data []byte, reader shm.ReaderID) (wire.Payload, error) {
	if len(data) == 0 {
		return wire.Payload{Slot: wire.NoSlot}, nil
	}
	if size := pool.Geometry().SlotSize; len(data) > int(size) {
		return wire.Payload{}, tooLarge(len(data), size)
	}
	slot, err := pool.Alloc()
	if err != nil {
		return wire.Payload{}, mapShmErr(err)
	}
	shm.Copy(pool.Slot(slot), data)
	err = pool.Share(slot, reader)
	pool.Free(slot)
	if err != nil {
		return wire.Payload{}, err
	}
	return wire.Payload{Slot: slot, Len: uint32(len(data))}, nil
}

// giveBack returns the request of a fire-and-forget call (which gets no
// reply) to the caller's pool.
func (b *provBinding) giveBack(pl wire.Payload) {
	if pl.Slot != wire.NoSlot && !b.closed {
		b.peer.queueConsumed(b.requiredID, pl, false)
	}
}

// endFireAndForget ends a fire-and-forget call we accepted: its request (our
// view reference taken in onCallMethod) goes back.
func (b *provBinding) endFireAndForget(pl wire.Payload) {
	b.peer.pendingCalls--
	if pl.Slot != wire.NoSlot {
		b.giveBack(pl)
		b.callView.Unref()
	}
}

// refuseCall answers a call with a middleware error without running any
// handler: the reply gives the (unread) request back, or Payload_consumed
// does for a fire-and-forget call.
func (b *provBinding) refuseCall(m *wire.CallMethod, st wire.Status) {
	if m.FireAndForget {
		b.giveBack(m.Payload)
		return
	}
	b.failCall(m.InvocationID, st)
}

// failCall answers a call with a middleware error and no payload (unless
// the binding is gone, when there is nobody to answer).
func (b *provBinding) failCall(id uint64, st wire.Status) {
	if b.closed {
		return
	}
	b.peer.queueCallReply(wire.CallMethodReply{RequiredID: b.requiredID, InvocationID: id,
		Result: wire.ResultMiddleware, Code: int32(st), Payload: wire.Payload{Slot: wire.NoSlot}})
}

func (n *Node) onCallMethod(p *peer, m *wire.CallMethod) error {
	b, err := n.providerBinding(p, m.ProvidedID, "Call_method")
	if b == nil {
		return err
	}
	o := b.offer
	if _, dup := b.calls[m.InvocationID]; dup {
		return protoErr("Call_method reuses a pending invocation id", nil)
	}
	switch {
	case m.Method >= o.cfg.Methods:
		b.refuseCall(m, wire.StatusUnknownMethod)
		return nil
	case !n.allowed(p, o.svc, ActionCall):
		// Such a peer got no reply pool, and its call pool is not mapped.
		n.reject(p, o.svc, ActionCall)
		b.refuseCall(m, wire.StatusPermissionDenied)
		return nil
	case p.pendingCalls >= n.cfg.Limits.PendingCalls:
		n.quotaHit(p, "pending calls")
		b.refuseCall(m, wire.StatusQuotaExceeded)
		return nil
	}
	var data []byte
	if m.Payload.Slot != wire.NoSlot {
		if b.callView == nil {
			return protoErr("Call_method payload without a call pool", nil)
		}
		if data, err = b.callView.Bytes(shm.Handle{Slot: m.Payload.Slot, Len: m.Payload.Len}); err != nil {
			return protoErr("Call_method payload", err)
		}
		if err := b.callView.Acquire(); err != nil {
			return nil // the binding is being torn down
		}
	}
	p.pendingCalls++
	if !m.FireAndForget {
		b.calls[m.InvocationID] = pendingRequest{payload: m.Payload, method: m.Method}
		n.freshCalls = append(n.freshCalls, freshCall{b, m.InvocationID})
	}
	o.stats.Calls++
	n.enqueue(callback{call: Call{b: b, id: m.InvocationID, method: m.Method, ff: m.FireAndForget, data: data}, ffPayload: m.Payload})
	return nil
}

// runCall runs the OnCall handler; a fire-and-forget request is released
// (and stops counting against the peer's limit) when it returns.
func (n *Node) runCall(c Call, ffPayload wire.Payload) {
	returned := false
	defer func() {
		n.mu.Lock()
		defer n.unlock()
		switch {
		case c.ff:
			c.b.endFireAndForget(ffPayload)
		case !returned:
			// The handler panicked: the caller gets an answer, not silence.
			c.b.abortCall(c.id)
		}
	}()
	c.b.offer.cfg.OnCall(c)
	returned = true
}

// abortCall answers a pending call with a middleware error (its handler
// failed, or the node is closing) and releases it. Called with n.mu held.
func (b *provBinding) abortCall(id uint64) {
	req, ok := b.calls[id]
	if !ok {
		return
	}
	b.endCall(id, req)
	if req.cancelled {
		b.failCall(id, wire.StatusCancelled)
	} else {
		b.failCall(id, wire.StatusHandlerFailed)
	}
}

// freshCall is a call received in the current dispatch step: if it is
// still unanswered at the end of the step, Call_method_handle says it was
// accepted.
type freshCall struct {
	b  *provBinding
	id uint64
}

// acknowledgeLateCalls sends Call_method_handle for the calls received in
// this dispatch step that are still unanswered. Called with n.mu held.
func (n *Node) acknowledgeLateCalls() {
	for _, f := range n.freshCalls {
		if _, pending := f.b.calls[f.id]; pending && !f.b.closed {
			f.b.peer.queueCallHandle(wire.CallMethodHandle{RequiredID: f.b.requiredID, InvocationID: f.id})
		}
	}
	clear(n.freshCalls)
	n.freshCalls = n.freshCalls[:0]
}

func (n *Node) onCancelMethodCall(p *peer, m *wire.CancelMethodCall) error {
	b, err := n.providerBinding(p, m.ProvidedID, "Cancel_method_call")
	if b == nil {
		return err
	}
	b.cancelCall(m.InvocationID)
	return nil
}

// cancelCall marks a pending call cancelled (its answer will be dropped) and
// tells the application.
func (b *provBinding) cancelCall(id uint64) {
	req, ok := b.calls[id]
	if !ok || req.cancelled {
		return
	}
	req.cancelled = true
	b.calls[id] = req
	if cb := b.offer.cfg.OnCancel; cb != nil {
		c := Call{b: b, id: id, method: req.method}
		b.offer.n.enqueue(callback{fn: func() { cb(c) }})
	}
}
