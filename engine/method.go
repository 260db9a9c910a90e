package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gwipc/gwipc/engine/wire"
	"github.com/gwipc/gwipc/shm"
)

// Errors of method calls.
var (
	// ErrUnknownMethod is returned for a method id outside the service's range.
	ErrUnknownMethod = errors.New("engine: unknown method id")
	// ErrTimeout completes a call whose deadline passed before the reply.
	ErrTimeout = errors.New("engine: call timed out")
	// ErrCancelled completes a call its caller cancelled, and is returned by
	// Call.Reply and Call.Fail for a call whose caller cancelled or went away.
	ErrCancelled = errors.New("engine: call cancelled")
	// ErrCallDone is returned when a call is answered twice.
	ErrCallDone = errors.New("engine: call already answered")
	// ErrPermissionDenied is a refusal by the other side's access policy.
	ErrPermissionDenied = errors.New("engine: permission denied")
	// ErrQuotaExceeded is a refusal because a per-peer limit was reached.
	ErrQuotaExceeded = errors.New("engine: quota exceeded")
)

// CallError is a call's failure as reported by the provider: an application
// error (Result wire.ResultAppError, Code chosen by the application) or a
// middleware error (Result wire.ResultMiddleware, Code a wire.Status).
type CallError struct {
	Method uint16
	Result wire.Result
	Code   int32
}

func (e *CallError) Error() string {
	if e.Result == wire.ResultAppError {
		return fmt.Sprintf("engine: method %d failed with application error %d", e.Method, e.Code)
	}
	return fmt.Sprintf("engine: method %d failed: %v", e.Method, wire.Status(e.Code))
}

// Is matches middleware errors to the engine's sentinels (ErrUnknownMethod,
// ErrNotAvailable, ErrNoSlot, ErrPermissionDenied, ErrQuotaExceeded).
func (e *CallError) Is(target error) bool {
	if e.Result != wire.ResultMiddleware {
		return false
	}
	return statusError(wire.Status(e.Code)) == target
}

func statusError(st wire.Status) error {
	switch st {
	case wire.StatusUnknownMethod:
		return ErrUnknownMethod
	case wire.StatusNotAvailable, wire.StatusUnknownService:
		return ErrNotAvailable
	case wire.StatusNoSlot:
		return ErrNoSlot
	case wire.StatusPermissionDenied:
		return ErrPermissionDenied
	case wire.StatusQuotaExceeded:
		return ErrQuotaExceeded
	case wire.StatusUnknownEvent:
		return ErrUnknownEvent
	}
	return nil
}

// AppErrorCode returns the application's error code if err is an
// application error reported by the provider.
func AppErrorCode(err error) (int32, bool) {
	var ce *CallError
	if errors.As(err, &ce) && ce.Result == wire.ResultAppError {
		return ce.Code, true
	}
	return 0, false
}

// Provider side.

// Call is one method invocation received by an Offer's OnCall handler. It is
// a small value: keep a copy to answer later, from any goroutine. Every call
// that is not fire-and-forget must be answered exactly once with Reply or
// Fail — also after the caller cancelled it (then nothing is sent, but the
// request's slot is released).
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

// Method is the method id.
func (c Call) Method() uint16 { return c.method }

// Data is the request payload: a read-only view of the caller's shared
// memory, valid until the call is answered (fire-and-forget: until the
// handler returns). Empty when the caller sent no payload.
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

// Reply answers the call with data (copied into the provider's pool). On
// ErrNoSlot or ErrTooLarge the call stays pending and may be answered again
// (for instance with Fail).
func (c Call) Reply(data []byte) error { return c.finish(wire.ResultReturn, 0, data) }

// Fail answers the call with an application error code and optional data.
func (c Call) Fail(code int32, data []byte) error { return c.finish(wire.ResultAppError, code, data) }

func (c Call) finish(result wire.Result, code int32, data []byte) error {
	if c.b == nil || c.ff {
		return ErrCallDone
	}
	b := c.b
	o, n := b.offer, b.offer.n
	n.mu.Lock()
	defer n.unlock()
	req, ok := b.calls[c.id]
	if !ok {
		return ErrCallDone
	}
	if req.cancelled || b.closed {
		b.forgetCall(c.id, req)
		return ErrCancelled
	}
	pool, err := o.ensurePool(nil)
	if err != nil {
		return err
	}
	pl, err := shareCopy(pool, data, b.reader)
	if err != nil {
		return fmt.Errorf("engine: replying: %w", err)
	}
	b.forgetCall(c.id, req)
	b.peer.queueCallReply(wire.CallMethodReply{RequiredID: b.requiredID, InvocationID: c.id, Result: result, Code: code, Payload: pl})
	return nil
}

// forgetCall ends a received call: it no longer counts against the peer's
// pending-call limit (cancelled calls count until answered, so a peer cannot
// grow this map by cancelling), and its request goes back.
func (b *provBinding) forgetCall(id uint64, req pendingRequest) {
	delete(b.calls, id)
	b.peer.pendingCalls--
	b.releaseRequest(req.payload)
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
	copy(pool.Slot(slot), data)
	err = pool.Share(slot, reader)
	pool.Free(slot)
	if err != nil {
		return wire.Payload{}, err
	}
	return wire.Payload{Slot: slot, Len: uint32(len(data))}, nil
}

// releaseRequest gives a request payload back to the caller's pool.
func (b *provBinding) releaseRequest(pl wire.Payload) {
	if pl.Slot == wire.NoSlot {
		return
	}
	if !b.closed {
		b.peer.queueConsumed(b.requiredID, pl)
	}
	b.callView.Unref()
}

// middlewareReply refuses a call without running any handler.
func (b *provBinding) middlewareReply(m *wire.CallMethod, st wire.Status) {
	b.releaseRequest(m.Payload)
	if !m.FireAndForget {
		b.failCall(m.InvocationID, st)
	}
}

// failCall answers a call with a middleware error and no payload.
func (b *provBinding) failCall(id uint64, st wire.Status) {
	b.peer.queueCallReply(wire.CallMethodReply{RequiredID: b.requiredID, InvocationID: id,
		Result: wire.ResultMiddleware, Code: int32(st), Payload: wire.Payload{Slot: wire.NoSlot}})
}

func (n *Node) onCallMethod(p *peer, m *wire.CallMethod) error {
	b, err := n.providerBinding(p, m.ProvidedID, "Call_method")
	if b == nil {
		return err
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
	o := b.offer
	_, dup := b.calls[m.InvocationID]
	switch {
	case dup:
		b.releaseRequest(m.Payload)
		return protoErr("Call_method reuses a pending invocation id", nil)
	case m.Method >= o.cfg.Methods || o.cfg.OnCall == nil:
		b.middlewareReply(m, wire.StatusUnknownMethod)
		return nil
	case !n.allowed(p, o.svc, ActionCall):
		n.reject(p, o.svc, ActionCall)
		b.middlewareReply(m, wire.StatusPermissionDenied)
		return nil
	case !m.FireAndForget && p.pendingCalls >= n.cfg.Limits.PendingCalls:
		n.quotaHit(p, "pending calls")
		b.middlewareReply(m, wire.StatusQuotaExceeded)
		return nil
	}
	if !m.FireAndForget {
		b.calls[m.InvocationID] = pendingRequest{payload: m.Payload, method: m.Method}
		p.pendingCalls++
		p.queueCallHandle(wire.CallMethodHandle{RequiredID: b.requiredID, InvocationID: m.InvocationID})
	}
	o.stats.Calls++
	n.enqueue(callback{call: Call{b: b, id: m.InvocationID, method: m.Method, ff: m.FireAndForget, data: data}, ffPayload: m.Payload})
	return nil
}

// runCall runs the OnCall handler; a fire-and-forget request is released
// when it returns.
func (n *Node) runCall(c Call, ffPayload wire.Payload) {
	returned := false
	defer func() {
		n.mu.Lock()
		defer n.unlock()
		switch {
		case c.ff:
			c.b.releaseRequest(ffPayload)
		case !returned:
			// The handler panicked: the caller gets an answer, not silence.
			c.b.abortCall(c.id)
		}
	}()
	if h := c.b.offer.cfg.OnCall; h != nil {
		h(c)
	}
	returned = true
}

// abortCall answers a pending call with a middleware error (its handler
// failed) and releases it. Called with n.mu held.
func (b *provBinding) abortCall(id uint64) {
	req, ok := b.calls[id]
	if !ok {
		return
	}
	b.forgetCall(id, req)
	if !req.cancelled && !b.closed {
		b.failCall(id, wire.StatusHandlerFailed)
	}
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

// Consumer side.

// Reply is a method's answer: a read-only view of the provider's shared
// memory. From Call it stays valid until Release; in a CallAsync completion
// it is valid until the completion returns, unless Keep is called there.
type Reply struct {
	received
	kept   bool
	pooled bool
}

// Data is the reply payload, read-only, valid until the reply is released.
func (r *Reply) Data() []byte { return r.data }

// Keep keeps a reply past the CallAsync completion that received it; it
// must then be released with Release.
func (r *Reply) Keep() {
	r.kept = true
	r.pooled = false
}

// Release gives the slot back to the provider. Idempotent, any goroutine;
// a nil reply is ignored.
func (r *Reply) Release() {
	if r == nil {
		return
	}
	n := r.n
	n.mu.Lock()
	r.releaseReply()
	n.unlock()
}

func (r *Reply) releaseReply() {
	if r.released {
		return
	}
	r.releaseLocked()
	if r.pooled {
		r.n.freeReplies = append(r.n.freeReplies, r)
	}
}

// pendingCall is a call this node made and is waiting for.
type pendingCall struct {
	b         *consBinding
	id        uint64
	method    uint16
	deadline  time.Time
	heapIndex int                 // in Node.callTimers, -1 when not there
	done      func(*Reply, error) // CallAsync completion; nil for Call
	blocking  bool                // Call: completion signals ch
	ch        chan struct{}       // kept across reuse, so made once per pooled call
	reply     *Reply
	err       error
	finished  bool
}

// PendingCall identifies a call made with CallAsync, to cancel it.
type PendingCall struct {
	pc *pendingCall
	id uint64
	n  *Node
}

// Cancel completes the call with ErrCancelled (unless it completed already)
// and tells the provider. Safe from any goroutine.
func (h PendingCall) Cancel() {
	if h.pc == nil {
		return
	}
	h.n.mu.Lock()
	defer h.n.unlock()
	if h.pc.id == h.id && !h.pc.finished {
		h.n.abandonCall(h.pc, ErrCancelled)
	}
}

// CallOptions tune one call. The zero value means no timeout.
type CallOptions struct {
	// Timeout completes the call with ErrTimeout (and cancels it at the
	// provider) if no reply came in time. Zero: no timeout.
	Timeout time.Duration
}

// Call invokes method with req and waits for the reply, until ctx ends. On
// an application error both the reply (its payload) and a *CallError are
// returned. A non-nil reply must be released. Do not call it from a
// callback of the same node: the reply would need that callback's Dispatch
// to arrive (use CallAsync there).
func (px *Proxy) Call(ctx context.Context, method uint16, req []byte) (*Reply, error) {
	n := px.n
	pc := n.newPendingCall(true)
	if _, err := px.startCall(pc, method, req, CallOptions{}); err != nil {
		n.recycleCall(pc)
		return nil, err
	}
	select {
	case <-pc.ch:
	case <-ctx.Done():
		why := ErrCancelled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = ErrTimeout
		}
		n.mu.Lock()
		if !pc.finished {
			n.abandonCall(pc, fmt.Errorf("%w: %w", why, ctx.Err()))
		}
		n.unlock()
		<-pc.ch
	}
	reply, err := pc.reply, pc.err
	n.recycleCall(pc)
	return reply, err
}

// CallAsync invokes method with req; done runs inside Dispatch with the
// reply or the error, exactly once: the reply, a timeout, ErrCancelled,
// or ErrNotAvailable when the service goes away first. The one exception is
// Node.Close, which drops callbacks not yet run: a completion queued then
// never runs.
func (px *Proxy) CallAsync(method uint16, req []byte, opts CallOptions, done func(*Reply, error)) (PendingCall, error) {
	if done == nil {
		return PendingCall{}, fmt.Errorf("%w: nil completion", ErrInvalidConfig)
	}
	n := px.n
	pc := n.newPendingCall(false)
	pc.done = done
	id, err := px.startCall(pc, method, req, opts)
	if err != nil {
		n.recycleCall(pc)
		return PendingCall{}, err
	}
	return PendingCall{pc: pc, id: id, n: n}, nil
}

// Send invokes method with req without waiting for (or getting) a reply.
func (px *Proxy) Send(method uint16, req []byte) error {
	_, err := px.startCall(nil, method, req, CallOptions{})
	return err
}

// startCall sends Call_method and returns its invocation id (read here,
// under the lock: once it is released the call may complete and pc be
// reused); pc is nil for fire-and-forget.
func (px *Proxy) startCall(pc *pendingCall, method uint16, req []byte, opts CallOptions) (uint64, error) {
	n := px.n
	if err := n.lockChecked(); err != nil {
		return 0, err
	}
	defer n.unlock()
	b := px.bind
	switch {
	case px.closed:
		return 0, ErrClosed
	case b == nil || !b.connected:
		return 0, ErrNotAvailable
	case method >= b.methods:
		return 0, fmt.Errorf("%w: %d (service has %d methods)", ErrUnknownMethod, method, b.methods)
	case b.peer.caps&wire.CapMethods == 0:
		return 0, fmt.Errorf("%w: methods", ErrUnsupported)
	}
	if len(req) > 0 && px.callPool == nil {
		return 0, fmt.Errorf("%w: no call pool (the provider offers no methods)", ErrNotAvailable)
	}
	pl, err := shareCopy(px.callPool, req, b.callReader)
	if err != nil {
		return 0, err
	}
	id := n.newHandle()
	if pc != nil {
		pc.b, pc.id, pc.method = b, id, method
		b.calls[id] = pc
		if opts.Timeout > 0 {
			pc.deadline = time.Now().Add(opts.Timeout)
			heap.Push(&n.callTimers, pc)
			n.rearm()
		}
	}
	px.stats.Calls++
	b.peer.queueCall(wire.CallMethod{ProvidedID: b.providedID, InvocationID: id, Method: method, FireAndForget: pc == nil, Payload: pl})
	return id, nil
}

// completeCall finishes pc exactly once. Called with n.mu held.
func (n *Node) completeCall(pc *pendingCall, reply *Reply, err error) {
	if pc.finished {
		return
	}
	pc.finished = true
	delete(pc.b.calls, pc.id)
	if pc.heapIndex >= 0 {
		heap.Remove(&n.callTimers, pc.heapIndex)
	}
	pc.reply, pc.err = reply, err
	if pc.blocking {
		pc.ch <- struct{}{}
		return
	}
	n.enqueue(callback{completed: pc})
}

// abandonCall completes pc with err and tells the provider to drop it.
func (n *Node) abandonCall(pc *pendingCall, err error) {
	b := pc.b
	if b.connected && b.peer.required[b.requiredID] == b {
		b.peer.queue(&wire.CancelMethodCall{ProvidedID: b.providedID, InvocationID: pc.id, Method: pc.method}, -1)
	}
	b.proxy.stats.CallsAbandoned++
	n.completeCall(pc, nil, err)
}

// runCompletion runs a CallAsync completion and releases the reply unless
// the completion kept it.
func (n *Node) runCompletion(pc *pendingCall) {
	reply := pc.reply
	defer func() {
		if reply != nil && !reply.kept {
			reply.Release()
		}
		n.recycleCall(pc)
	}()
	pc.done(reply, pc.err)
}

func (n *Node) onCallMethodHandle(p *peer, m *wire.CallMethodHandle) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Call_method_handle")
	if b == nil {
		return err
	}
	// The provider accepted the call; nothing more to do until its reply.
	return nil
}

func (n *Node) onCallMethodReply(p *peer, m *wire.CallMethodReply) error {
	b, err := n.consumerBinding(p, m.RequiredID, "Call_method_reply")
	if b == nil {
		return err
	}
	if !b.connected {
		return protoErr("Call_method_reply before the binding is established", nil)
	}
	var data []byte
	if m.Payload.Slot != wire.NoSlot {
		if b.view == nil {
			return protoErr("Call_method_reply payload without a provider pool", nil)
		}
		if data, err = b.view.Bytes(shm.Handle{Slot: m.Payload.Slot, Len: m.Payload.Len}); err != nil {
			return protoErr("Call_method_reply payload", err)
		}
	}
	pc := b.calls[m.InvocationID]
	if pc == nil {
		// Cancelled or timed out: the answer is dropped, its slot given back.
		b.proxy.stats.LateReplies++
		if m.Payload.Slot != wire.NoSlot {
			n.consume(b, m.Payload)
		}
		return nil
	}
	var reply *Reply
	if !pc.blocking {
		reply = n.newReply()
	} else {
		reply = new(Reply) // handed to Call's caller: never reused
	}
	reply.received = received{n: n, b: b, data: data, payload: m.Payload}
	if m.Payload.Slot != wire.NoSlot {
		if err := b.view.Acquire(); err != nil {
			n.consume(b, m.Payload)
			reply.payload.Slot, reply.data = wire.NoSlot, nil
		}
	}
	var callErr error
	if m.Result != wire.ResultReturn {
		callErr = &CallError{Method: pc.method, Result: m.Result, Code: m.Code}
		b.proxy.stats.CallErrors++
	}
	n.completeCall(pc, reply, callErr)
	return nil
}

// failCalls completes every pending call of b with err (the binding is
// going away).
func (n *Node) failCalls(b *consBinding, err error) {
	for _, pc := range b.calls {
		n.completeCall(pc, nil, err)
	}
}

// Pools of reusable call state (guarded by Node.mu unless noted).

// newPendingCall takes a call record from the pool; a blocking one (Call)
// gets a signal channel, made once and kept with the record.
func (n *Node) newPendingCall(blocking bool) *pendingCall {
	n.mu.Lock()
	var pc *pendingCall
	if k := len(n.freeCalls); k > 0 {
		pc = n.freeCalls[k-1]
		n.freeCalls = n.freeCalls[:k-1]
	} else {
		pc = &pendingCall{heapIndex: -1}
	}
	n.mu.Unlock()
	pc.blocking = blocking
	if blocking && pc.ch == nil {
		pc.ch = make(chan struct{}, 1)
	}
	return pc
}

// recycleCall returns a finished (or never started) pc to the pool; its id
// changes, so stale PendingCall handles no longer match it. Its channel is
// empty again (the one completion signal was received).
func (n *Node) recycleCall(pc *pendingCall) {
	n.mu.Lock()
	defer n.mu.Unlock()
	*pc = pendingCall{heapIndex: -1, ch: pc.ch}
	n.freeCalls = append(n.freeCalls, pc)
}

func (n *Node) newReply() *Reply {
	if k := len(n.freeReplies); k > 0 {
		r := n.freeReplies[k-1]
		n.freeReplies = n.freeReplies[:k-1]
		r.kept = false
		r.pooled = true
		return r
	}
	return &Reply{pooled: true}
}

// callTimers orders pending calls with a timeout by deadline.
type callTimers []*pendingCall

func (h callTimers) Len() int           { return len(h) }
func (h callTimers) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h callTimers) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *callTimers) Push(x any) {
	pc := x.(*pendingCall)
	pc.heapIndex = len(*h)
	*h = append(*h, pc)
}
func (h *callTimers) Pop() any {
	old := *h
	pc := old[len(old)-1]
	old[len(old)-1] = nil
	pc.heapIndex = -1
	*h = old[:len(old)-1]
	return pc
}

// expireCalls times out every call whose deadline has passed.
func (n *Node) expireCalls(now time.Time) {
	for len(n.callTimers) > 0 && !now.Before(n.callTimers[0].deadline) {
		n.abandonCall(n.callTimers[0], ErrTimeout)
	}
}
