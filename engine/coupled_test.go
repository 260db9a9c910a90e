package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// The coupled-core fuzz: a provider-side node and a consumer-side node,
// joined by a memLink and driven on one goroutine with a fake clock, run a
// program of API calls, dispatch rounds, clock steps, dropped links and
// changed or forged messages that the fuzzer chooses. Throughout and at the
// end it checks the protocol's invariants:
//
//   - every CallAsync completes exactly once, and every call completes by
//     the end (answered, failed, timed out, cancelled or lost);
//   - no binding handle or invocation id is issued twice;
//   - once the consumer has let go of everything and the bindings are gone,
//     no slot of any pool is in use (no slot lost, every hold released);
//   - closing both nodes gives back every fd and every mapping.

// coupledServices are the services of the programs: two, so that one
// binding's teardown can be seen not to disturb the other.
var coupledServices = [2]ServiceID{testService("c0"), testService("c1")}

// coupledRun is one program's state.
type coupledRun struct {
	t      *testing.T
	clock  *fakeClock
	l, d   *Node
	link   *memLink
	offers [2]*Offer
	prox   [2]*Proxy

	keptCalls   []Call   // calls the provider answers later
	keptSamples []Sample // samples the consumer holds
	keptReplies []Reply

	calls     map[uint64]int // invocation id → completions
	callsMade int
	provIDs   map[uint64]bool // ProvidedIDs the provider issued
	reqIDs    map[uint64]bool // RequiredIDs the consumer issued
	hold      byte            // how the consumer's handlers treat samples and replies
	answer    byte            // how the provider's OnCall answers
}

func FuzzCoupledCores(f *testing.F) {
	for _, seed := range coupledSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 4096 {
			return
		}
		runCoupled(t, prog)
	})
}

// Operations of a program (its bytes: an operation, then its arguments).
const (
	opOffer = iota
	opWithdraw
	opRequire
	opCloseProxy
	opSubscribe
	opPublish
	opCall
	opSend
	opAnswer
	opDispatch
	opClock
	opRelease
	opDrop
	opReconnect
	opHold
	opAnswerMode
	opChange
	opForge
	opRequest
	opRounds
	opUnsubscribe
	numOps
)

// coupledSeeds are programs that reach the interesting states: bound and
// publishing with samples kept, calls answered late, failed and timed out,
// links dropped mid-call and reconnected, fields requested, forged and
// changed messages; plus long random programs.
var coupledSeeds = append([][]byte{
	// Both services bound; events and calls while samples and replies are
	// kept, calls answered late; then everything let go.
	{opOffer, 0, opOffer, 1, opRequire, 0, opRequire, 1, opRounds, 7,
		opSubscribe, 0, 0, opSubscribe, 1, 1, opRounds, 7, opHold, 3, opAnswerMode, 1,
		opPublish, 0, 0, opPublish, 0, 0, opPublish, 0, 2, opPublish, 0, 1, opPublish, 1, 1, opRounds, 3,
		opCall, 0, 0, opCall, 0, 1, opCall, 1, 2, opRounds, 5, opAnswer, opAnswer, opRounds, 5,
		opPublish, 0, 0, opPublish, 0, 0, opPublish, 0, 0, opPublish, 0, 0, opPublish, 0, 0, opRounds, 5,
		opRelease, opRounds, 5, opPublish, 0, 0, opRounds, 3},
	// A call in flight when the link drops; the consumer reconnects and
	// calls again; a call times out.
	{opOffer, 0, opRequire, 0, opRounds, 7, opAnswerMode, 1, opCall, 0, 0, opCall, 0, 1, opRounds, 3,
		opDrop, opRounds, 3, opReconnect, opRounds, 7, opCall, 0, 3, opRounds, 3, opClock, 20, opRounds, 3,
		opAnswer, opAnswer, opAnswerMode, 0, opCall, 0, 0, opRounds, 5},
	// The offer withdrawn with samples kept and calls open; offered again.
	{opOffer, 1, opRequire, 1, opRounds, 7, opSubscribe, 1, 0, opRounds, 5, opHold, 1, opAnswerMode, 1,
		opPublish, 1, 0, opPublish, 1, 0, opCall, 1, 0, opRounds, 5, opWithdraw, 1, opRounds, 5,
		opOffer, 1, opRounds, 7, opPublish, 1, 0, opRounds, 5, opRelease, opRounds, 3},
	// Fields: a value requested before and after it is published.
	{opOffer, 0, opRequire, 0, opRounds, 7, opSubscribe, 0, 1, opRequest, 0, 1, opRounds, 3,
		opPublish, 0, 1, opRounds, 5, opRequest, 0, 1, opRounds, 5, opUnsubscribe, 0, 1, opRounds, 3},
	// Calls cancelled at once, and timed out, while the provider holds
	// them; answered afterwards (the answers give the requests back).
	{opOffer, 0, opRequire, 0, opRounds, 7, opAnswerMode, 1, opCall, 0, 4, opRounds, 3, opAnswer, opRounds, 3,
		opCall, 0, 9, opCall, 0, 1, opRounds, 3, opClock, 20, opRounds, 3, opAnswer, opAnswer, opRounds, 3},
	// Forged and changed messages, then a clean reconnect.
	{opOffer, 0, opRequire, 0, opRounds, 7, opSubscribe, 0, 0, opRounds, 3, opPublish, 0, 0,
		opChange, 1, 3, 7, opRounds, 3, opForge, 0, 2, opRounds, 3, opForge, 7, 1, opRounds, 3,
		opReconnect, opRounds, 7, opPublish, 0, 0, opRounds, 3},
}, randomPrograms(6, 400)...)

// randomPrograms makes k programs of size bytes from a fixed seed.
func randomPrograms(k, size int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, k)
	for i := range out {
		out[i] = make([]byte, size)
		for j := range out[i] {
			out[i][j] = byte(rng.IntN(256))
		}
	}
	return out
}

func TestCoupledCoresSeeds(t *testing.T) {
	for i, seed := range coupledSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) { runCoupled(t, seed) })
	}
}

func runCoupled(t *testing.T, prog []byte) {
	baseFDs, baseMaps := countFDs(t), countMaps(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &coupledRun{t: t, clock: &fakeClock{t: time.Now()},
		calls: map[uint64]int{}, provIDs: map[uint64]bool{}, reqIDs: map[uint64]bool{}}
	var err error
	r.l, r.d, err = coupledNodes(&Config{Name: "prov", Logger: quiet}, &Config{Name: "cons", Logger: quiet}, r.clock)
	if err != nil {
		t.Fatal(err)
	}
	r.reconnect()
	for i := 0; i < len(prog); {
		op := prog[i]
		i++
		arg := func() byte {
			if i < len(prog) {
				i++
				return prog[i-1]
			}
			return 0
		}
		r.step(op, arg)
	}
	r.finish()
	if fds := countFDs(t); fds != baseFDs {
		t.Fatalf("fds: %d after both nodes closed, %d before", fds, baseFDs)
	}
	if maps := countMaps(t); maps != baseMaps {
		t.Fatalf("mappings: %d after both nodes closed, %d before", maps, baseMaps)
	}
}

// step runs one operation of the program.
func (r *coupledRun) step(op byte, arg func() byte) {
	svc := func() int { return int(arg() % 2) }
	switch op % numOps {
	case opOffer: // offer a service
		k := svc()
		if r.offers[k] == nil {
			r.offers[k], _ = r.l.Offer(coupledServices[k], &OfferConfig{Events: 2, Methods: 2, Fields: []uint16{1},
				Geometry: shm.Geometry{SlotSize: 64, SlotCount: 4}, SubscriberSlots: 4, OnCall: r.onCall})
		}
	case opWithdraw: // withdraw it
		if k := svc(); r.offers[k] != nil {
			r.offers[k].Close()
			r.offers[k] = nil
		}
	case opRequire: // require a service
		k := svc()
		if r.prox[k] == nil {
			r.prox[k], _ = r.d.Require(coupledServices[k], &ProxyConfig{CallGeometry: shm.Geometry{SlotSize: 64, SlotCount: 2}})
		}
	case opCloseProxy: // close the proxy
		if k := svc(); r.prox[k] != nil {
			r.prox[k].Close()
			r.prox[k] = nil
		}
	case opSubscribe: // subscribe
		if k, ev := svc(), uint16(arg()%3); r.prox[k] != nil {
			r.prox[k].Subscribe(ev, SubscribeMode(ev%2), r.onSample)
		}
	case opPublish: // publish, by copy or by loan
		if k, ev := svc(), uint16(arg()%3); r.offers[k] != nil {
			if ev == 2 {
				if l, err := r.offers[k].Loan(0); err == nil {
					copy(l.Bytes(), "loaned")
					l.Publish(6)
				}
			} else {
				r.offers[k].Publish(ev, []byte("value"))
			}
		}
	case opCall: // call, with or without a timeout
		if k, how := svc(), arg(); r.prox[k] != nil {
			r.call(r.prox[k], how)
		}
	case opSend: // fire and forget
		if k := svc(); r.prox[k] != nil {
			r.prox[k].Send(uint16(arg()%3), []byte("ff"))
		}
	case opAnswer: // answer the oldest kept call
		if len(r.keptCalls) > 0 {
			c := r.keptCalls[0]
			r.keptCalls = r.keptCalls[1:]
			if c.Method()%2 == 0 {
				c.Reply([]byte("late"))
			} else {
				c.Fail(7, nil)
			}
		}
	case opDispatch: // a dispatch round of both nodes
		r.dispatch()
	case opClock: // the clock moves on
		r.clock.t = r.clock.t.Add(time.Duration(arg()) * 100 * time.Millisecond)
	case opRelease: // release everything the consumer holds
		r.releaseAll()
	case opDrop: // the link drops (both ends see it)
		if r.link != nil {
			r.link.drop()
		}
	case opReconnect: // reconnect, if the consumer has no connection
		r.reconnect()
	case opHold: // the consumer changes how it holds samples and replies
		r.hold = arg()
	case opAnswerMode: // the provider changes how it answers
		r.answer = arg()
	case opChange: // change a packet in flight
		if r.link != nil {
			if p := r.link.inFlight(int(arg() % 2)); p != nil && len(p.b) > 0 {
				p.b[int(arg())%len(p.b)] ^= 1 + arg()%255
			}
		}
	case opForge: // forge a message, aimed at a handle that may exist
		if r.link != nil {
			r.forge(arg(), arg())
		}
	case opRequest: // ask for a field's value
		if k, ev := svc(), uint16(arg()%3); r.prox[k] != nil {
			r.prox[k].RequestUpdate(ev)
		}
	case opRounds: // several dispatch rounds
		for range 1 + int(arg()%8) {
			r.dispatch()
		}
	case opUnsubscribe: // unsubscribe
		if k := svc(); r.prox[k] != nil {
			r.prox[k].Unsubscribe(uint16(arg() % 3))
		}
	}
}

func (r *coupledRun) onCall(c Call) {
	switch {
	case c.FireAndForget():
	case r.answer%3 == 0:
		c.Reply(c.Data())
	case r.answer%3 == 1:
		r.keptCalls = append(r.keptCalls, c)
	default:
		c.Fail(3, []byte("no"))
	}
}

func (r *coupledRun) onSample(s Sample) {
	if r.hold%2 == 1 && s.Keep() {
		r.keptSamples = append(r.keptSamples, s)
	}
}

// call makes a CallAsync whose completion is counted.
func (r *coupledRun) call(px *Proxy, how byte) {
	var opts CallOptions
	if how%2 == 1 {
		opts.Timeout = time.Duration(1+how%4) * 100 * time.Millisecond
	}
	var id uint64
	pc, err := px.CallAsync(uint16(how%3), []byte("req"), opts, func(rep Reply, err error) {
		r.calls[id]++
		if r.calls[id] > 1 {
			r.t.Fatalf("call %d completed %d times", id, r.calls[id])
		}
		if err == nil && r.hold%4 >= 2 && rep.Keep() {
			r.keptReplies = append(r.keptReplies, rep)
		}
	})
	if err != nil {
		return
	}
	id = pc.ID()
	if _, dup := r.calls[id]; dup {
		r.t.Fatalf("invocation id %d issued twice", id)
	}
	r.calls[id] = 0
	r.callsMade++
	if how%5 == 4 {
		pc.Cancel()
	}
}

// seen checks, for every message on the socket carrier, that binding
// handles are never issued twice.
func (r *coupledRun) seen(from int, m wire.Message) {
	switch m := m.(type) {
	case *wire.ConnectServiceReply:
		if from == 0 && m.Status == wire.StatusOK {
			if r.provIDs[m.ProvidedID] {
				r.t.Fatalf("provided id %d issued twice", m.ProvidedID)
			}
			r.provIDs[m.ProvidedID] = true
		}
	case *wire.ConnectService:
		if from == 1 && m.InUse {
			if r.reqIDs[m.RequiredID] {
				r.t.Fatalf("required id %d issued twice", m.RequiredID)
			}
			r.reqIDs[m.RequiredID] = true
		}
	}
}

// forge queues a valid message of the fuzzer's choosing for either node,
// aimed at a handle the other issued, as a hostile peer would send it.
func (r *coupledRun) forge(kind, h byte) {
	handle := uint64(h % 8)
	for id := range r.provIDs {
		if h%2 == 0 {
			handle = id
		}
	}
	var m wire.Message
	switch kind % 6 {
	case 0:
		m = &wire.PayloadConsumed{Handle: handle, Payload: wire.Payload{Slot: uint32(h % 5)}}
	case 1:
		m = &wire.CallMethodReply{RequiredID: handle, InvocationID: uint64(h % 4), Payload: wire.Payload{Slot: wire.NoSlot}}
	case 2:
		m = &wire.EventUpdate{RequiredID: handle, Seq: 1, Payload: wire.Payload{Slot: uint32(h % 5), Len: 1}}
	case 3:
		m = &wire.CancelMethodCall{ProvidedID: handle, InvocationID: uint64(h % 4)}
	case 4:
		m = &wire.SubscribeEvent{ProvidedID: handle, Event: uint16(h % 3), Subscribe: h%2 == 0}
	default:
		m = &wire.ConnectService{Service: coupledServices[h%2].wire(), RequiredID: uint64(h), InUse: h%3 != 0}
	}
	b, err := m.Append(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.link.inject(int(kind/6)%2, b)
}

// reconnect joins the nodes again if the consumer has no connection.
func (r *coupledRun) reconnect() {
	r.d.mu.Lock()
	connected := r.d.dialPeer != nil
	r.d.mu.Unlock()
	if connected {
		return
	}
	link, err := connect(r.l, r.d, r.seen)
	if err != nil {
		r.t.Fatal(err)
	}
	r.link = link
}

// dispatch runs one round of each node; a node may fail a peer (a forged
// or changed message) but must never fail itself.
func (r *coupledRun) dispatch() {
	for _, n := range []*Node{r.l, r.d} {
		if _, _, err := n.Dispatch(0); err != nil {
			r.t.Fatalf("%s: Dispatch: %v", n.cfg.Name, err)
		}
	}
}

// settle dispatches until neither node has work left, nothing is in
// flight on the link and the rings are read.
func (r *coupledRun) settle() {
	for range 10000 {
		var busy bool
		for _, n := range []*Node{r.l, r.d} {
			ran, more, err := n.Dispatch(0)
			if err != nil {
				r.t.Fatalf("%s: Dispatch: %v", n.cfg.Name, err)
			}
			n.mu.Lock()
			pending := n.ringsPending() || len(n.callbacks) > 0
			n.mu.Unlock()
			busy = busy || ran > 0 || more || pending
		}
		if !busy && (r.link == nil || r.link.idle()) {
			return
		}
	}
	r.t.Fatal("the nodes never settled")
}

// checkNothingHeld checks, with the bindings still up, that once the
// consumer holds nothing and no call is open, no slot is in use but the
// fields' cached values, and every call has completed exactly once.
func (r *coupledRun) checkNothingHeld() {
	for id, k := range r.calls {
		if k != 1 {
			r.t.Fatalf("call %d completed %d times with every call answered", id, k)
		}
	}
	for _, o := range r.l.Status().Offers {
		if cached := cachedValues(o); o.Pool != nil && o.Pool.InUse != cached {
			r.t.Fatalf("%s: %d event slots in use, %d cached values, the consumer holds nothing", o.Service, o.Pool.InUse, cached)
		}
		for _, b := range o.Bindings {
			if b.Holds != 0 || b.PendingCalls != 0 || (b.ReplyPool != nil && b.ReplyPool.InUse != 0) {
				r.t.Fatalf("%s: binding %d holds %d slots, has %d calls pending, %+v of its reply pool in use",
					o.Service, b.ProvidedID, b.Holds, b.PendingCalls, b.ReplyPool)
			}
		}
	}
	for _, p := range r.d.Status().Proxies {
		if p.PendingCalls != 0 || (p.CallPool != nil && p.CallPool.InUse != 0) {
			r.t.Fatalf("%s: %d calls pending, %+v of the call pool in use", p.Service, p.PendingCalls, p.CallPool)
		}
	}
}

func (r *coupledRun) releaseAll() {
	for _, s := range r.keptSamples {
		s.Release()
	}
	for _, rep := range r.keptReplies {
		rep.Release()
	}
	r.keptSamples, r.keptReplies = nil, nil
}

// finish lets go of everything, checks that nothing is held or pending,
// and closes both nodes.
func (r *coupledRun) finish() {
	r.settle()
	for _, c := range r.keptCalls {
		c.Reply(nil)
	}
	r.keptCalls = nil
	r.releaseAll()
	r.settle()
	r.releaseAll() // replies to the late answers
	r.settle()
	r.checkNothingHeld()
	for k := range r.prox {
		if r.prox[k] != nil {
			r.prox[k].Close()
		}
	}
	r.settle()
	r.releaseAll()
	r.settle()
	// Every call has completed, exactly once (Close completes the rest).
	for id, k := range r.calls {
		if k != 1 {
			r.t.Fatalf("call %d completed %d times after every proxy closed", id, k)
		}
	}
	// No binding is left, and with it no slot in use anywhere.
	st := r.l.Status()
	for _, o := range st.Offers {
		if len(o.Bindings) > 0 {
			r.t.Fatalf("%s: %d bindings after the consumer closed its proxies", o.Service, len(o.Bindings))
		}
		if o.Pool != nil && o.Pool.InUse != cachedValues(o) {
			r.t.Fatalf("%s: %d event slots in use with no binding, %d cached values", o.Service, o.Pool.InUse, cachedValues(o))
		}
	}
	for _, n := range []*Node{r.d, r.l} {
		if err := n.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			r.t.Fatalf("%s: Close: %v", n.cfg.Name, err)
		}
	}
}

// cachedValues is how many of o's fields hold a value (each holds a slot).
func cachedValues(o OfferStatus) int {
	k := 0
	for _, f := range o.Fields {
		if f.Cached {
			k++
		}
	}
	return k
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// countMaps counts the process's mappings of gwipc's memfds (pools and
// rings).
func countMaps(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:gwipc")
}
