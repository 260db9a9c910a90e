package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// The consumer side of method calls: Proxy.Call, CallAsync and Send, and
// the replies they get.

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
	// ErrDeadlock is returned by a blocking call (Proxy.Call, LoanWait,
	// PublishWait) made from a callback of the same node: what it waits for
	// needs the dispatch that callback is blocking. Use CallAsync there.
	ErrDeadlock = errors.New("engine: blocking call from a callback of the same node")
)

// CallError is a call's failure as reported by the provider: an application
// error (App, with the application's Code) or a middleware error (Status
// says why).
type CallError struct {
	Method uint16
	App    bool       // an application error (else a middleware error)
	Code   int32      // the application's error code (App only)
	Status StatusCode // the middleware's reason (not App)
}

func (e *CallError) Error() string {
	if e.App {
		return fmt.Sprintf("engine: method %d failed with application error %d", e.Method, e.Code)
	}
	return fmt.Sprintf("engine: method %d failed: %v", e.Method, e.Status)
}

// Is matches middleware errors to the engine's sentinels (ErrUnknownMethod,
// ErrNotAvailable, ErrNoSlot, ErrPermissionDenied, ErrQuotaExceeded).
func (e *CallError) Is(target error) bool {
	return !e.App && target != nil && e.Status.sentinel() == target
}

// AppErrorCode returns the application's error code if err is an
// application error reported by the provider.
func AppErrorCode(err error) (int32, bool) {
	var ce *CallError
	if errors.As(err, &ce) && ce.App {
		return ce.Code, true
	}
	return 0, false
}

// replyRec is the node's reusable record of one received reply; Replies
// name it with a generation (see sampleRec).
type replyRec struct {
	received
	gen  atomic.Uint64 // written under Node.mu; 0 once released
	kept bool
}

// Reply is a method's answer: a read-only view of the binding's reply pool.
// It is a small value; copies refer to the same reply. From Call it is the
// caller's until Release; in a CallAsync completion it is valid until the
// completion returns, unless Keep is called there. The zero Reply (a reply
// without payload, or none) has no Data and needs no Release.
type Reply struct {
	rec  *replyRec
	n    *Node // rec's node: rec.n is rewritten when the record is reused, under the node's lock
	gen  uint64
	data []byte
}

// Data is the reply payload, read-only, valid until the reply is released
// (nil afterwards; do not keep the slice past Release).
func (r Reply) Data() []byte {
	if r.rec == nil || r.rec.gen.Load() != r.gen {
		return nil
	}
	return r.data
}

// Keep keeps a reply past the CallAsync completion that received it; it
// must then be released with Release. It reports whether the reply is kept
// (false for a stale copy or a released reply).
func (r Reply) Keep() bool {
	rec := r.rec
	if rec == nil {
		return false
	}
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	if rec.gen.Load() != r.gen {
		return false
	}
	rec.kept = true
	return true
}

// Release gives the slot back to the provider. Idempotent, any goroutine;
// the zero Reply and stale copies are ignored.
func (r Reply) Release() {
	rec := r.rec
	if rec == nil {
		return
	}
	n := r.n
	n.mu.Lock()
	if rec.gen.Load() == r.gen {
		rec.releaseLocked()
	}
	n.unlock()
}

// releaseLocked releases r if it is still held, and recycles its record.
func (r Reply) releaseLocked() {
	if rec := r.rec; rec != nil && rec.gen.Load() == r.gen {
		rec.releaseLocked()
	}
}

func (rec *replyRec) releaseLocked() {
	if rec.released {
		return
	}
	rec.gen.Store(0)
	rec.received.releaseLocked()
	if n := rec.n; len(n.freeReplies) < maxFreeObjects {
		n.freeReplies = append(n.freeReplies, rec)
	}
}

// pendingCall is a call this node made and is waiting for.
type pendingCall struct {
	b         *consBinding
	id        uint64
	method    uint16
	deadline  time.Time
	heapIndex int                // in Node.callTimers, -1 when not there
	reqSlot   uint32             // the request's slot in the call pool, wire.NoSlot if none
	done      func(Reply, error) // CallAsync completion; nil for Call
	blocking  bool               // Call: completion signals ch
	ch        chan struct{}      // kept across reuse, so made once per pooled call
	reply     Reply
	err       error
	finished  bool
}

// PendingCall identifies a call made with CallAsync, to cancel it.
type PendingCall struct {
	pc *pendingCall
	id uint64
	n  *Node
}

// ID is the call's invocation id (unique per node, never reused).
func (h PendingCall) ID() uint64 { return h.id }

// Cancel completes the call with ErrCancelled (unless it completed already)
// and tells the provider. It reports whether it cancelled the call. Safe
// from any goroutine.
func (h PendingCall) Cancel() bool {
	if h.pc == nil {
		return false
	}
	h.n.mu.Lock()
	defer h.n.unlock()
	if h.pc.id != h.id || h.pc.finished {
		return false
	}
	h.n.abandonCall(h.pc, ErrCancelled)
	return true
}

// CallOptions tune one CallAsync. The zero value means no timeout.
type CallOptions struct {
	// Timeout completes the call with ErrTimeout (and cancels it at the
	// provider) if no reply came in time. Zero: no timeout.
	Timeout time.Duration
}

// Call invokes method with req and waits for the reply until ctx ends. It
// first waits, within ctx, for the service to be available and for a free
// slot in the call pool. On an application error both the reply (its
// payload) and a *CallError are returned. A reply must be released. Called
// from a callback of the same node it returns ErrDeadlock (the reply would
// need that callback's Dispatch to arrive): use CallAsync there.
func (px *Proxy) Call(ctx context.Context, method uint16, req []byte) (Reply, error) {
	n := px.n
	if n.onAppThread() {
		return Reply{}, ErrDeadlock
	}
	pc := n.newPendingCall(true)
	if _, err := px.startCall(ctx, true, pc, method, req, CallOptions{}); err != nil {
		n.recycleCall(pc)
		return Reply{}, err
	}
	select {
	case <-pc.ch:
	case <-ctx.Done():
		n.mu.Lock()
		if !pc.finished {
			n.abandonCall(pc, contextError(ctx))
		}
		n.unlock()
		<-pc.ch
	}
	reply, err := pc.reply, pc.err
	n.recycleCall(pc)
	return reply, err
}

// contextError is the call error for an ended ctx: ErrTimeout or
// ErrCancelled, wrapping ctx's error.
func contextError(ctx context.Context) error {
	why := ErrCancelled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = ErrTimeout
	}
	return fmt.Errorf("%w: %w", why, ctx.Err())
}

// CallAsync invokes method with req; done runs inside Dispatch with the
// reply or the error, exactly once: the reply, a timeout, ErrCancelled,
// or ErrNotAvailable when the service goes away first. The one exception is
// Node.Close, which drops callbacks not yet run: a completion queued then
// never runs. Unlike Call it does not wait: it fails at once with
// ErrNotAvailable or ErrNoSlot.
func (px *Proxy) CallAsync(method uint16, req []byte, opts CallOptions, done func(Reply, error)) (PendingCall, error) {
	if done == nil {
		return PendingCall{}, fmt.Errorf("%w: nil completion", ErrInvalidConfig)
	}
	n := px.n
	pc := n.newPendingCall(false)
	pc.done = done
	id, err := px.startCall(context.Background(), false, pc, method, req, opts)
	if err != nil {
		n.recycleCall(pc)
		return PendingCall{}, err
	}
	return PendingCall{pc: pc, id: id, n: n}, nil
}

// Send invokes method with req without waiting for (or getting) a reply.
// Like CallAsync it fails at once when the call cannot be made.
func (px *Proxy) Send(method uint16, req []byte) error {
	_, err := px.startCall(context.Background(), false, nil, method, req, CallOptions{})
	return err
}

// startCall sends Call_method and returns its invocation id (read here,
// under the lock: once it is released the call may complete and pc be
// reused); pc is nil for fire-and-forget. With wait (Call) it waits within
// ctx for the service and for a call slot; otherwise it fails at once.
// The request is copied into its slot outside the node's lock.
func (px *Proxy) startCall(ctx context.Context, wait bool, pc *pendingCall, method uint16, req []byte, opts CallOptions) (uint64, error) {
	n := px.n
	for {
		if err := n.lockChecked(); err != nil {
			return 0, err
		}
		b, err := px.callable(method, len(req))
		if errors.Is(err, ErrNotAvailable) && wait && !px.closed {
			wait := px.availabilityWait()
			n.unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("%w: %w", err, contextError(ctx))
			}
		}
		n.unlock()
		if err != nil {
			return 0, err
		}
		slot := wire.NoSlot
		if len(req) > 0 {
			slot, err = n.allocCopy(ctx, wait, b.callPool, req)
			if errors.Is(err, shm.ErrClosed) && wait {
				continue // the binding went away meanwhile: wait for the next
			}
			if err != nil {
				return 0, mapShmErr(err)
			}
		}
		n.mu.Lock()
		if px.bind != b || n.closed {
			if slot != wire.NoSlot {
				b.callPool.Free(slot)
			}
			n.unlock()
			if !wait {
				return 0, ErrNotAvailable
			}
			continue
		}
		pl := wire.Payload{Slot: slot, Len: uint32(len(req))}
		if slot != wire.NoSlot {
			err := b.callPool.Share(slot, b.callReader)
			b.callPool.Free(slot)
			if err != nil {
				n.unlock()
				return 0, err
			}
		}
		id := n.newHandle()
		if pc != nil {
			pc.b, pc.id, pc.method, pc.reqSlot = b, id, method, slot
			b.calls[id] = pc
			if opts.Timeout > 0 {
				pc.deadline = n.now().Add(opts.Timeout)
				heap.Push(&n.callTimers, pc)
				n.rearm()
			}
		}
		px.stats.Calls++
		b.peer.queueCall(wire.CallMethod{ProvidedID: b.providedID, InvocationID: id, Method: method, FireAndForget: pc == nil, Payload: pl})
		n.unlock()
		return id, nil
	}
}

// callable returns the binding a call of method with a request of size
// bytes goes to, or why it cannot be made. Called with n.mu held.
func (px *Proxy) callable(method uint16, size int) (*consBinding, error) {
	b := px.bind
	switch {
	case px.closed:
		return nil, ErrClosed
	case b == nil || !b.connected:
		return nil, ErrNotAvailable
	case method >= b.methods:
		return nil, fmt.Errorf("%w: %d (service has %d methods)", ErrUnknownMethod, method, b.methods)
	case b.peer.caps&wire.CapMethods == 0:
		return nil, fmt.Errorf("%w: methods", ErrUnsupported)
	case size > 0 && b.callPool == nil:
		return nil, fmt.Errorf("%w: no call pool for this binding", ErrNotAvailable)
	case size > 0 && size > int(b.callPool.Geometry().SlotSize):
		return nil, tooLarge(size, b.callPool.Geometry().SlotSize)
	}
	return b, nil
}

// allocCopy takes a slot of pool (with wait, waiting for one within ctx)
// and copies data into it; the caller owns the slot's writer reference.
func (n *Node) allocCopy(ctx context.Context, wait bool, pool *shm.Pool, data []byte) (uint32, error) {
	slot, err := n.takeSlot(ctx, wait, pool)
	if err != nil {
		return 0, err
	}
	shm.Copy(pool.Slot(slot), data)
	return slot, nil
}

// onAppThread reports whether the caller runs inside one of this node's
// callbacks (on the thread the dispatcher has locked for them).
func (n *Node) onAppThread() bool {
	t := n.appTid.Load()
	if t == 0 {
		return false
	}
	return threadID() == t
}

// completeCall finishes pc exactly once. Called with n.mu held.
func (n *Node) completeCall(pc *pendingCall, reply Reply, err error) {
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

// abandonCall completes pc with err and tells the provider to drop it. The
// provider may still read the request: its slot stays held until the
// call's reply (which every call gets) arrives.
func (n *Node) abandonCall(pc *pendingCall, err error) {
	b := pc.b
	if b.connected && b.peer.required[b.requiredID] == b {
		b.peer.queueCancel(wire.CancelMethodCall{ProvidedID: b.providedID, InvocationID: pc.id, Method: pc.method})
		if pc.reqSlot != wire.NoSlot {
			if b.abandoned == nil {
				b.abandoned = map[uint64]uint32{}
			}
			b.abandoned[pc.id] = pc.reqSlot
		}
	}
	b.proxy.stats.CallsAbandoned++
	n.completeCall(pc, Reply{}, err)
}

// runCompletion runs a CallAsync completion and releases the reply unless
// the completion kept it.
func (n *Node) runCompletion(pc *pendingCall) {
	reply := pc.reply
	defer func() {
		n.mu.Lock()
		if rec := reply.rec; rec != nil && !rec.kept {
			reply.releaseLocked()
		}
		n.recycleCallLocked(pc)
		n.unlock()
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
		if b.replyView == nil {
			return protoErr("Call_method_reply payload without a reply pool", nil)
		}
		if data, err = b.replyView.Bytes(shm.Handle{Slot: m.Payload.Slot, Len: m.Payload.Len}); err != nil {
			return protoErr("Call_method_reply payload", err)
		}
	}
	pc := b.calls[m.InvocationID]
	// The reply gives the request's slot back.
	reqSlot := wire.NoSlot
	if pc != nil {
		reqSlot = pc.reqSlot
	} else if s, ok := b.abandoned[m.InvocationID]; ok {
		reqSlot = s
		delete(b.abandoned, m.InvocationID)
	}
	if reqSlot != wire.NoSlot {
		if err := b.callPool.Release(reqSlot, b.callReader); err != nil {
			return protoErr("Call_method_reply releasing its request", err)
		}
	}
	if pc == nil {
		// Cancelled or timed out: the answer is dropped, its slot given back.
		b.proxy.stats.LateReplies++
		if m.Payload.Slot != wire.NoSlot {
			n.consume(b, m.Payload, true)
		}
		return nil
	}
	var reply Reply
	if m.Payload.Slot != wire.NoSlot {
		if err := b.replyView.Acquire(); err != nil {
			n.consume(b, m.Payload, true)
		} else {
			rec := n.newReply()
			rec.received = received{n: n, b: b, view: b.replyView, payload: m.Payload, inReply: true}
			reply = Reply{rec: rec, n: n, gen: rec.gen.Load(), data: data}
		}
	}
	var callErr error
	switch m.Result {
	case wire.ResultReturn:
	case wire.ResultAppError:
		callErr = &CallError{Method: pc.method, App: true, Code: m.Code}
	default:
		callErr = &CallError{Method: pc.method, Status: StatusCode(m.Code)}
	}
	if callErr != nil {
		b.proxy.stats.CallErrors++
	}
	n.completeCall(pc, reply, callErr)
	return nil
}

// failCalls completes every pending call of b with err (the binding is
// going away).
func (n *Node) failCalls(b *consBinding, err error) {
	for _, pc := range b.calls {
		n.completeCall(pc, Reply{}, err)
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
	n.recycleCallLocked(pc)
}

func (n *Node) recycleCallLocked(pc *pendingCall) {
	*pc = pendingCall{heapIndex: -1, ch: pc.ch}
	if len(n.freeCalls) < maxFreeObjects {
		n.freeCalls = append(n.freeCalls, pc)
	}
}

// newReply takes a record for a reply, with a new generation. Called with
// n.mu held.
func (n *Node) newReply() *replyRec {
	var rec *replyRec
	if k := len(n.freeReplies); k > 0 {
		rec = n.freeReplies[k-1]
		n.freeReplies = n.freeReplies[:k-1]
		rec.received, rec.kept = received{}, false
	} else {
		rec = new(replyRec)
	}
	n.nextGen++
	rec.gen.Store(n.nextGen)
	return rec
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
