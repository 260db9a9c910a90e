package benchmark

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/shm"
)

// This file is the only one that uses the engine API: the gwipc
// measurement processes.

// gwVariant is one way of driving both gwipc nodes of a run.
type gwVariant struct {
	name string
	// run: go node.Run(ctx), and the blocking calls where they exist
	// (Offer.LoanWait, Offer.PublishWait, Proxy.Call). Otherwise the
	// process's main goroutine, on its locked thread, calls Dispatch in a
	// loop and uses the non-blocking calls (Loan, Publish, CallAsync).
	run bool
	// spin is Config.Spin for both nodes: 0, the default, parks at once.
	spin time.Duration
}

// config is the engine configuration of a node named name.
func (v gwVariant) config(name string) *engine.Config {
	return &engine.Config{Name: name, Spin: v.spin}
}

// gwVariants are measured in every scenario, beside the baselines (and
// times the scenario's payload modes). One line adds a variant everywhere.
var gwVariants = []gwVariant{
	{name: "dispatch"},
	{name: "run", run: true},
	{name: "spin", spin: 200 * time.Microsecond},
}

// Payload modes of the event scenarios.
const (
	modeCopy = "copy" // Offer.Publish copies the payload into a slot
	modeLoan = "loan" // the payload is written into a loaned slot, then published
)

// gwDescription says how the gwipc contenders work, for the report.
const gwDescription = "gwipc: a Listen node (publisher, provider) and a Dial node (subscriber, caller). " +
	"dispatch = the main goroutine calls Dispatch in a loop on a locked OS thread; " +
	"run = go node.Run(ctx) with LoanWait/PublishWait/Proxy.Call; " +
	"spin = dispatch with Config.Spin = 200µs on both nodes (they poll the rings before parking). " +
	"Payloads up to 224 B travel inline in the rings (OfferConfig.NoInline off). " +
	"One-way: a 1-slot pool, so the publisher's next Loan waits for the subscriber's release of the last event (its acknowledgement; inline: the subscriber's dispatch passing it); " +
	"copy = wait for the slot (Loan, Discard), stamp, Publish copies the payload in; loan = Loan, write the payload, stamp, Loan.Publish. " +
	"Streams: Publish (copy) into a pool of up to 1024 slots (4 MiB; ZeroMQ buffers 1000 messages a side), retried after Dispatch (PublishWait with Run). " +
	"Calls: CallAsync + Dispatch, or Proxy.Call with Run; the provider's OnCall replies with the request's bytes."

func variantByName(name string) (gwVariant, error) {
	for _, v := range gwVariants {
		if v.name == name {
			return v, nil
		}
	}
	return gwVariant{}, fmt.Errorf("unknown gwipc variant %q", name)
}

// The service of every gwipc run: event 0 carries the payloads, method 0
// echoes its request.
var benchSvc = engine.ServiceID{Interface: engine.Interface{ID: "gwipc.bench", Major: 1}, Instance: "0"}

const (
	evData     uint16 = 0
	methodEcho uint16 = 0
)

// dispatchWait bounds one Dispatch so that the loops notice the deadline;
// Dispatch returns as soon as there is work.
const dispatchWait = 100 * time.Millisecond

// gwipcRole runs the gwipc measurement process a describes.
func gwipcRole(a args) (result, error) {
	v, err := variantByName(a.Variant)
	if err != nil {
		return result{}, err
	}
	if !v.run {
		// The dispatching goroutine keeps its thread, as a C thread that
		// dispatches would. With Run the application's goroutine is an
		// ordinary one: Run dispatches on its own.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	warmTypeCaches()
	switch a.Role {
	case rolePub:
		return gwipcPub(a, v)
	case roleSub:
		return gwipcSub(a, v)
	case roleCall:
		return gwipcCall(a, v)
	case roleServe:
		return gwipcServe(a, v)
	}
	return result{}, fmt.Errorf("unknown role %q", a.Role)
}

// gwNode drives one node the variant's way.
//
// No Go timer is pending while it measures: with one in the P's heap, the
// runtime wakes another thread each time the dispatching thread blocks in a
// system call, which would double the futex calls and context switches per
// message. So the deadline is a clock value that Dispatch loops check, and
// the Run variant's blocking waits have none of their own: the harness
// kills a run that hangs.
type gwNode struct {
	*engine.Node
	v        gwVariant
	deadline int64           // nanotime
	ctx      context.Context // cancelled by close
	cancel   context.CancelFunc
	runDone  chan error // Run's result (run variant)
}

func newGWNode(n *engine.Node, v gwVariant) *gwNode {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gwNode{Node: n, v: v, deadline: nanotime() + int64(peerTimeout), ctx: ctx, cancel: cancel}
	if v.run {
		g.runDone = make(chan error, 1)
		go func() { g.runDone <- n.Run(ctx) }()
	}
	return g
}

// close stops Run (if running) and closes the node.
func (g *gwNode) close() {
	g.cancel()
	if g.runDone != nil {
		<-g.runDone
	}
	g.Node.Close()
}

// step is one Dispatch (dispatch variant), failing once the deadline passed.
func (g *gwNode) step(what string) error {
	if _, _, err := g.Dispatch(dispatchWait); err != nil {
		return err
	}
	if nanotime() > g.deadline {
		return fmt.Errorf("timed out waiting for %s", what)
	}
	return nil
}

// wait returns once ch is closed: dispatching, or while Run dispatches.
func (g *gwNode) wait(what string, ch <-chan struct{}) error {
	for {
		select {
		case <-ch:
			return nil
		default:
		}
		if !g.v.run {
			if err := g.step(what); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ch:
			return nil
		case err := <-g.runDone:
			g.runDone <- err // for close
			return fmt.Errorf("node stopped waiting for %s: %v", what, err)
		}
	}
}

// until returns once cond holds, for setup and teardown: it polls cond
// after each Dispatch, or every millisecond while Run dispatches.
func (g *gwNode) until(what string, cond func() bool) error {
	for !cond() {
		if !g.v.run {
			if err := g.step(what); err != nil {
				return err
			}
			continue
		}
		if nanotime() > g.deadline {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// loan takes a slot, waiting for one to come back.
func (g *gwNode) loan(o *engine.Offer) (engine.Loan, error) {
	if g.v.run {
		return o.LoanWait(g.ctx, evData)
	}
	for {
		l, err := o.Loan(evData)
		if !errors.Is(err, engine.ErrNoSlot) {
			return l, err
		}
		if err := g.step("a free slot"); err != nil {
			return l, err
		}
	}
}

// publish copies buf into a slot and publishes it, waiting for a slot.
func (g *gwNode) publish(o *engine.Offer, buf []byte) error {
	if g.v.run {
		return o.PublishWait(g.ctx, evData, buf)
	}
	for {
		err := o.Publish(evData, buf)
		if !errors.Is(err, engine.ErrNoSlot) {
			return err
		}
		if err := g.step("a free slot"); err != nil {
			return err
		}
	}
}

// gwipcPub is the publisher of lat (one event in flight) and stream.
func gwipcPub(a args, v gwVariant) (result, error) {
	node, err := engine.Listen(a.Path, v.config("bench-pub"))
	if err != nil {
		return result{}, err
	}
	offer, err := node.Offer(benchSvc, &engine.OfferConfig{
		Events:   1,
		Geometry: shm.Geometry{SlotSize: uint32(a.Size), SlotCount: uint32(a.Slots)},
		// Every subscriber may hold the whole pool, as the baselines' readers may.
		SubscriberSlots: a.Slots,
	})
	if err != nil {
		node.Close()
		return result{}, err
	}
	g := newGWNode(node, v)
	defer g.close()
	if err := g.until("the subscribers", func() bool { return subscribers(node) == a.Subs }); err != nil {
		return result{}, err
	}
	buf := payload(a.Size)
	runtime.GC() // not during the measurement
	s := newSender(&a, buf)
	if a.Scenario == scenarioStream {
		for s.next() {
			if err := g.publish(offer, buf); err != nil {
				return result{}, fmt.Errorf("publishing message %d: %w", s.seq-1, err)
			}
		}
		// The subscribers exit when this node goes: not before they
		// released everything.
		return s.result(), g.until("the subscribers to release every slot", func() bool { return inUse(node) == 0 })
	}
	for {
		// With one slot, the slot coming back is the acknowledgement of
		// the previous event.
		l, err := g.loan(offer)
		if err != nil {
			return result{}, fmt.Errorf("waiting for a free slot after %d messages: %w", s.seq, err)
		}
		if !s.next() {
			return s.result(), l.Discard()
		}
		if a.Mode == modeLoan {
			shm.Copy(l.Bytes(), buf) // the application writes the payload in place (memcpy in C)
			stamp(l.Bytes())
			err = l.Publish(a.Size)
		} else if err = l.Discard(); err == nil {
			stamp(buf)
			err = offer.Publish(evData, buf)
		}
		if err != nil {
			return result{}, fmt.Errorf("publishing message %d: %w", s.seq-1, err)
		}
	}
}

// warmTypeCaches fills the Go runtime's type-assertion caches that the
// exhausted-pool paths (Loan, Publish and their Wait forms) reach through
// errors.Is. The runtime adds an entry with probability 1/1024 per miss and
// each addition allocates, so without this a few such allocations land in
// the measured part at random; a long-running process has them filled.
func warmTypeCaches() {
	for range 100000 {
		_ = errors.Is(engine.ErrNoSlot, engine.ErrClosed)
	}
}

// subscribers is the number of peers subscribed to evData. Status
// allocates: for setup only.
func subscribers(n *engine.Node) int {
	k := 0
	for _, o := range n.Status().Offers {
		for _, b := range o.Bindings {
			for _, ev := range b.Events {
				if ev == evData {
					k++
				}
			}
		}
	}
	return k
}

// inUse is the number of slots of the offer's pool in use (Status
// allocates: for teardown only).
func inUse(n *engine.Node) int {
	k := 0
	for _, o := range n.Status().Offers {
		if o.Pool != nil {
			k += o.Pool.InUse
		}
	}
	return k
}

// finish is the end of a receiving process's run, signalled from a
// callback (on the dispatching goroutine, whichever variant).
type finish struct {
	ch   chan struct{}
	once sync.Once
	err  error // written before ch is closed
}

func newFinish() *finish { return &finish{ch: make(chan struct{})} }

func (f *finish) done(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.ch)
	})
}

// dial is engine.Dial retrying every few milliseconds: the listener is
// started at the same time, and the default back-off (doubling from 10 ms)
// would add hundreds of milliseconds to a run whose listener is slow to
// start.
func dial(path string, cfg *engine.Config) (*engine.Node, error) {
	cfg.ReconnectMin, cfg.ReconnectMax = time.Millisecond, 5*time.Millisecond
	return engine.Dial(path, cfg)
}

// errPeerLeft ends a receiving process's run when the peer left first.
var errPeerLeft = errors.New("the peer left before the end of the run")

// peerGone sets cfg's OnPeerDisconnected to close gone and, if end is not
// nil and the run has not ended, to end it with errPeerLeft.
func peerGone(cfg *engine.Config, gone, end *finish) *engine.Config {
	cfg.OnPeerDisconnected = func(*engine.Peer, error) {
		if end != nil {
			end.done(errPeerLeft)
		}
		gone.done(nil)
	}
	return cfg
}

// gwipcSub is a subscriber of lat or stream: it checks every event,
// records latencies or reads every byte, and exits when the publisher has
// gone (so its last release reaches the publisher).
func gwipcSub(a args, v gwVariant) (result, error) {
	gone, end := newFinish(), newFinish()
	node, err := dial(a.Path, peerGone(v.config("bench-sub"), gone, end))
	if err != nil {
		return result{}, err
	}
	g := newGWNode(node, v)
	defer g.close()
	px, err := node.Require(benchSvc, nil)
	if err != nil {
		return result{}, err
	}
	r := newReceiver(&a)
	runtime.GC() // not during the measurement
	err = px.Subscribe(evData, engine.Updates, func(s engine.Sample) {
		if last, err := r.got(s.Data()); last || err != nil {
			end.done(err)
		}
	})
	if err != nil {
		return result{}, err
	}
	if err := g.wait("the publisher's events", end.ch); err != nil {
		return result{}, err
	}
	if end.err != nil {
		return result{}, end.err
	}
	return r.result(), g.wait("the publisher to leave", gone.ch)
}

// gwipcCall is the rtt caller.
func gwipcCall(a args, v gwVariant) (result, error) {
	cfg := v.config("bench-call")
	// The replies are as large as the requests: the provider sizes this
	// binding's reply pool by the dialler's hint.
	cfg.Pools = []engine.PoolConfig{{ServiceID: benchSvc.Interface.ID, Kind: engine.ReplyPool,
		Geometry: shm.Geometry{SlotSize: uint32(a.Size), SlotCount: uint32(a.Slots)}}}
	node, err := dial(a.Path, cfg)
	if err != nil {
		return result{}, err
	}
	g := newGWNode(node, v)
	defer g.close()
	px, err := node.Require(benchSvc, &engine.ProxyConfig{
		CallGeometry: shm.Geometry{SlotSize: uint32(a.Size), SlotCount: uint32(a.Slots)},
	})
	if err != nil {
		return result{}, err
	}
	if err := g.until("the provider", px.Available); err != nil {
		return result{}, err
	}
	runtime.GC() // not during the measurement
	buf := payload(a.Size)
	c := newCaller(&a, buf)
	if v.run {
		for c.next() {
			rep, err := px.Call(g.ctx, methodEcho, buf)
			if err != nil {
				return result{}, fmt.Errorf("call %d: %w", c.seq-1, err)
			}
			err = c.got(rep.Data())
			rep.Release()
			if err != nil {
				return result{}, err
			}
		}
		return c.result(), nil
	}
	var (
		replied bool
		callErr error
	)
	onReply := func(rep engine.Reply, err error) {
		replied, callErr = true, err
		if err == nil {
			callErr = c.got(rep.Data())
		}
	}
	for c.next() {
		replied = false
		if _, err := px.CallAsync(methodEcho, buf, engine.CallOptions{}, onReply); err != nil {
			return result{}, fmt.Errorf("call %d: %w", c.seq-1, err)
		}
		for !replied {
			if err := g.step("a reply"); err != nil {
				return result{}, err
			}
		}
		if callErr != nil {
			return result{}, fmt.Errorf("call %d: %w", c.seq-1, callErr)
		}
	}
	return c.result(), nil
}

// gwipcServe is the rtt provider: OnCall replies with the request's bytes.
// It exits when the caller has gone.
func gwipcServe(a args, v gwVariant) (result, error) {
	gone := newFinish()
	node, err := engine.Listen(a.Path, peerGone(v.config("bench-serve"), gone, nil))
	if err != nil {
		return result{}, err
	}
	g := newGWNode(node, v)
	defer g.close()
	r := newReceiver(&a)
	var failure error // written by OnCall, read once gone is closed
	_, err = node.Offer(benchSvc, &engine.OfferConfig{
		Methods:  1,
		Geometry: shm.Geometry{SlotSize: uint32(a.Size), SlotCount: uint32(a.Slots)},
		OnCall: func(c engine.Call) {
			_, err := r.got(c.Data())
			if rerr := c.Reply(c.Data()); rerr != nil {
				_ = c.Fail(1, nil) // the caller fails now, not at its timeout
				if err == nil {
					err = rerr
				}
			}
			if err != nil && failure == nil {
				failure = err
			}
		},
	})
	if err != nil {
		return result{}, err
	}
	runtime.GC() // not during the measurement
	if err := g.wait("the caller to finish", gone.ch); err != nil {
		return result{}, err
	}
	switch {
	case failure != nil:
		return result{}, failure
	case !r.finished:
		return result{}, fmt.Errorf("the caller left after %d calls", r.expect)
	}
	return r.result(), nil
}
