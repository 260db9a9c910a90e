package engine

import (
	"context"
	"fmt"
	"testing"
	"unsafe"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Rings carry the hot messages between two ring-capable nodes; a node
// without the capability still interoperates over the socket.
func TestRingsCarryHotMessagesAndFallBackToTheSocket(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		providerOff, consumerOff bool
		ring                     bool
	}{
		{"both with rings", false, false, true},
		{"provider without", true, false, false},
		{"consumer without", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			l := listen(t, path, &Config{DisableRings: tc.providerOff})
			o, err := l.Offer(sensor, echoOffer())
			require.NoError(t, err)
			d := dial(t, path, &Config{DisableRings: tc.consumerOff})
			px, err := d.Require(sensor, nil)
			require.NoError(t, err)
			got := make(chan uint64, 200)
			require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { got <- s.Seq() }))
			eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
			eventually(t, func() bool { return l.Status().Peers[0].Ring == tc.ring && d.Status().Peers[0].Ring == tc.ring }, "ring %v on both ends", tc.ring)
			before := l.Status().Peers[0].PacketsOut // Status itself sends nothing
			const n = 100
			for i := range n {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				require.NoError(t, o.PublishWait(ctx, 0, []byte("x")))
				cancel()
				assert.Equal(t, uint64(i+1), recvWithin(t, got, "update"))
				// In lockstep: a provider slow to take a consume would see
				// the subscriber's share full and drop the next update.
				eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "released")
			}
			r, err := px.Call(context.Background(), 0, []byte("ping"))
			require.NoError(t, err)
			assert.Equal(t, "ping", string(r.Data()))
			r.Release()
			packets := l.Status().Peers[0].PacketsOut - before
			if tc.ring {
				assert.Less(t, packets, uint64(10), "updates and the reply went through the ring")
			} else {
				assert.GreaterOrEqual(t, packets, uint64(n), "one packet per update on the socket")
			}
		})
	}
}

// A publisher finds the slots its subscriber gave back in the ring without
// dispatching: consumes are taken lazily, when a slot is needed.
func TestConsumesAreReclaimedWhenASlotIsNeeded(t *testing.T) {
	got := make(chan struct{}, 1)
	_, o, d := oneSlotBoundWithRings(t, &OfferConfig{NoInline: true}, func(Sample) { got <- struct{}{} })
	for i := range 20 {
		require.NoError(t, o.Publish(0, []byte("x")), "publish %d: the slot comes back through the ring", i)
		recvWithin(t, got, "update")
		eventually(t, func() bool { return ringEntriesSent(d) == uint64(i+1) }, "the consume is in the consumer's ring")
	}
}

// oneSlotBoundWithRings offers event 0 from a 1-slot pool (cfg says
// whether inline) on a listener the test dispatches by hand, and subscribes
// onUpdate from a running dialler; it returns once both ends are bound
// with rings.
func oneSlotBoundWithRings(t *testing.T, cfg *OfferConfig, onUpdate func(Sample)) (l *Node, o *Offer, d *Node) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	o, err = l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, SubscriberSlots: 1, NoInline: cfg.NoInline})
	require.NoError(t, err)
	d = dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, px.Subscribe(0, Updates, onUpdate))
	pump(t, []*Node{l}, func() bool {
		st, _ := px.Subscription(0)
		return st == SubscriptionActive && d.Status().Peers[0].Ring && l.Status().Peers[0].Ring
	}, "bound with rings")
	return l, o, d
}

// ringEntriesSent is how many entries n has written to its one peer's ring.
func ringEntriesSent(n *Node) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.peers {
		if p.ring != nil {
			return p.ring.tail
		}
	}
	return 0
}

// rawRing is a raw peer's half of the rings, for writing what it likes.
type rawRing struct {
	seg  *shm.Segment
	mem  []byte
	r    *rawPeer
	node *Node
}

// wakeNode makes the node dispatch (and so read the rings). The node may
// have read them already, in a round of its own, and closed the
// connection: the wake-up is then not needed.
func (rr *rawRing) wakeNode(t *testing.T) {
	rr.r.conn.Send(encode(t, &wire.RequestService{Service: sensor.wire(), InUse: true}), nil)
}

// startRawRing sends a Ring message of a raw consumer.
func (r *rawPeer) startRawRing(t *testing.T) *rawRing {
	seg, err := shm.NewSegment("raw-ring", ringSize(minRingEntries))
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	mem := seg.Bytes()
	word(mem, ctlMagic).Store(ringMagic)
	*(*uint32)(unsafe.Pointer(&mem[8])) = minRingEntries
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC))
	t.Cleanup(func() { unix.Close(pipe[1]) })
	r.send(encode(t, &wire.Ring{Entries: minRingEntries}), seg.Fd(), pipe[0])
	unix.Close(pipe[0])
	return &rawRing{seg: seg, mem: mem, r: r}
}

// A Ring's wake-up fd must be the read end of an anonymous pipe: anything
// else (an eventfd both sides would share, a write end, a file) closes the
// connection, and the node goes on.
func TestRingWakeFdMustBeAPipeReadEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		fd   func(t *testing.T) int
	}{
		{"an eventfd", func(t *testing.T) int {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			require.NoError(t, err)
			return fd
		}},
		{"a pipe's write end", func(t *testing.T) int {
			var pipe [2]int
			require.NoError(t, unix.Pipe2(pipe[:], unix.O_CLOEXEC))
			unix.Close(pipe[0])
			return pipe[1]
		}},
		{"a memfd", func(t *testing.T) int {
			fd, err := unix.MemfdCreate("not-a-pipe", unix.MFD_CLOEXEC)
			require.NoError(t, err)
			return fd
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			l := listen(t, path, nil)
			r := rawConsumer(t, path, wire.CapAll)
			seg, err := shm.NewSegment("raw-ring", ringSize(minRingEntries))
			require.NoError(t, err)
			defer seg.Close()
			word(seg.Bytes(), ctlMagic).Store(ringMagic)
			*(*uint32)(unsafe.Pointer(&seg.Bytes()[8])) = minRingEntries
			fd := tc.fd(t)
			r.send(encode(t, &wire.Ring{Entries: minRingEntries}), seg.Fd(), fd)
			unix.Close(fd)
			eventually(t, func() bool { return len(l.Status().Peers) == 0 }, "the peer is disconnected")
			assert.Equal(t, uint64(1), l.Status().Counters.ProtocolErrors)
			rawConsumer(t, path, wire.CapAll) // still accepting
		})
	}
}

// A peer cannot make the node's wake-ups block: the node writes to a pipe
// end that only it holds, non-blocking, so a peer that never drains its
// read end (and makes that end blocking) only loses its own wake-ups.
func TestRingWakeCannotBlockTheWriter(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket, Name: "raw"})
	_, fds := await[*wire.Ring](r) // it may share the Connect_reply's packet
	require.Len(t, fds, 2)
	defer closeAll(fds)
	require.NoError(t, unix.SetNonblock(fds[1], false), "the peer's end of the node's wake pipe")
	rr := r.startRawRing(t)
	reply, pools := r.bindRaw(sensor, 1, nil)
	closeAll(pools)
	r.sendMsg(&wire.SubscribeEvent{ProvidedID: reply.ProvidedID, Subscribe: true})
	await[*wire.SubscribeEventReply](r)
	eventually(t, func() bool { return l.Status().Peers[0].Ring }, "rings both ways")

	// Fill the pipe, as a peer that never reads it would have let happen.
	l.mu.Lock()
	wakeEnd := l.peers[l.rings[0].token].ring.wakePeer
	l.mu.Unlock()
	fl, err := unix.FcntlInt(uintptr(wakeEnd), unix.F_GETFL, 0)
	require.NoError(t, err)
	require.NotZero(t, fl&unix.O_NONBLOCK, "the node's write end is non-blocking")
	for {
		if _, err := unix.Write(wakeEnd, make([]byte, 4096)); err != nil {
			require.ErrorIs(t, err, unix.EAGAIN)
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		for i := range 10 {
			word(rr.mem, ctlParked).Store(uint64(i+1)<<32 | 1) // parked, a new epoch: every update wakes
			if err := o.Publish(0, []byte("x")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	require.NoError(t, recvWithin(t, done, "ten wake-ups into a full pipe"))
	assert.Equal(t, uint64(10), l.Status().Peers[0].RingWakes, "each was tried, none blocked")
}

// push writes m as the next entry and publishes the tail.
func (rr *rawRing) push(t *testing.T, m wire.Message, after uint32) {
	tail := word(rr.mem, ctlTail).Load()
	off := ctlSize + int(tail%minRingEntries)*wire.EntrySize
	require.NoError(t, wire.PutEntry(rr.mem[off:off+wire.EntrySize], m, after))
	word(rr.mem, ctlTail).Store(tail + 1)
}

// A peer scribbling on its own ring closes its own connection only; the
// node and its other peers go on.
func TestRingScribblesCloseOnlyThatConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scribble func(t *testing.T, rr *rawRing, reply *wire.ConnectServiceReply)
	}{
		{"tail beyond the ring", func(t *testing.T, rr *rawRing, _ *wire.ConnectServiceReply) {
			word(rr.mem, ctlTail).Store(minRingEntries + 1)
		}},
		{"tail behind what was taken", func(t *testing.T, rr *rawRing, reply *wire.ConnectServiceReply) {
			rr.push(t, &wire.CallMethod{ProvidedID: reply.ProvidedID, InvocationID: 1, Payload: wire.Payload{Slot: wire.NoSlot}, FireAndForget: true}, 0)
			rr.wakeNode(t)
			eventually(t, func() bool { return rr.node.Status().Offers[0].Counters.Calls == 1 }, "the node took the entry")
			word(rr.mem, ctlTail).Store(0)
		}},
		{"head beyond the node's tail", func(t *testing.T, rr *rawRing, _ *wire.ConnectServiceReply) {
			word(rr.mem, ctlHead).Store(1 << 40)
		}},
		{"undecodable entry", func(t *testing.T, rr *rawRing, _ *wire.ConnectServiceReply) {
			off := ctlSize
			rr.mem[off] = byte(wire.TypeConnect)
			word(rr.mem, ctlTail).Store(1)
		}},
		{"slot out of range", func(t *testing.T, rr *rawRing, reply *wire.ConnectServiceReply) {
			rr.push(t, &wire.PayloadConsumed{Handle: reply.ProvidedID, Payload: wire.Payload{Slot: 1 << 20}}, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			l := listen(t, path, nil)
			o, err := l.Offer(sensor, &OfferConfig{Events: 1, Methods: 1, OnCall: func(c Call) {}})
			require.NoError(t, err)
			good := dial(t, path, &Config{Name: "good"})
			px, err := good.Require(sensor, nil)
			require.NoError(t, err)
			got := make(chan struct{}, 8)
			require.NoError(t, px.Subscribe(0, Updates, func(Sample) { got <- struct{}{} }))
			eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "good consumer subscribed")

			r := rawConsumer(t, path, wire.CapAll)
			rr := r.startRawRing(t)
			rr.node = l
			reply, fds := r.bindRaw(sensor, 1, nil)
			closeAll(fds)
			require.Equal(t, wire.StatusOK, reply.Status)
			eventually(t, func() bool { return len(l.Status().Peers) == 2 && l.Status().Peers[1].Ring }, "the raw peer's ring is mapped")
			tc.scribble(t, rr, reply)
			rr.wakeNode(t)
			eventually(t, func() bool { return len(l.Status().Peers) == 1 }, "the scribbler is disconnected")
			assert.Equal(t, uint64(1), l.Status().Counters.ProtocolErrors)
			require.NoError(t, o.Publish(0, []byte("still here")))
			recvWithin(t, got, "the good consumer is still served")
		})
	}
}

// An update entry waits for the socket messages sent before it: a provider
// may put a binding's first update in its ring before the consumer has read
// that binding's Connect_service_reply.
func TestRingUpdatesWaitForTheirBindingsSocketMessages(t *testing.T) {
	rp := newRawRingProvider(t, wire.CapAll)
	slot, err := rp.pool.Alloc()
	require.NoError(t, err)
	copy(rp.pool.Slot(slot), "first")
	rp.ring.push(t, &wire.EventUpdate{RequiredID: rp.cs.RequiredID, Event: 0, Seq: 1, Payload: wire.Payload{Slot: slot, Len: 5}}, 4)
	require.Len(t, rp.d.Status().Peers, 1, "reading the entry early is no protocol error: it waits for packet 4")
	rp.bind()
	assert.Equal(t, "first", recvWithin(t, rp.got, "the update, after its binding"))
}

// rawRingProvider is a provider played by hand, with rings, to a running
// dialler subscribed to event 0 of sensor.
type rawRingProvider struct {
	d    *Node
	r    *rawPeer
	ring *rawRing
	cs   *wire.ConnectService
	pool *shm.Pool   // the event pool, 64-byte slots
	got  chan string // what the subscription's handler received
}

// newRawRingProvider connects a dialler to a raw provider announcing caps;
// it returns once the dialler has asked to bind (packets 1–3 sent: the
// reply, the Ring, the offer). bind sends packet 4.
func newRawRingProvider(t *testing.T, caps uint32) *rawRingProvider {
	path := socketPath(t)
	ln, err := transport.Listen(path, transport.ListenConfig{}) // before the dialler: it connects at once
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	rp := &rawRingProvider{d: dial(t, path, nil), got: make(chan string, 8)}
	px, err := rp.d.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { rp.got <- string(s.Data()) }))

	var c *transport.Conn
	eventually(t, func() bool { c, err = ln.Accept(); return err == nil }, "dialler connects")
	t.Cleanup(func() { c.Close() })
	rp.r = &rawPeer{t: t, conn: c}
	await[*wire.Connect](rp.r)
	rp.r.sendMsg(&wire.ConnectReply{Status: wire.StatusOK, Version: wire.Version, Caps: caps, MaxPacket: wire.MaxPacket}) // packet 1
	rp.ring = rp.r.startRawRing(t)                                                                                        // packet 2
	await[*wire.RequestService](rp.r)
	rp.r.sendMsg(&wire.OfferService{Service: sensor.wire(), Offered: true, Events: 1}) // packet 3
	var fds []int
	rp.cs, fds = await[*wire.ConnectService](rp.r)
	closeAll(fds)
	rp.pool, err = shm.NewPool("raw-events", shm.Geometry{SlotSize: 64, SlotCount: 1})
	require.NoError(t, err)
	t.Cleanup(func() { rp.pool.Close() })
	return rp
}

// bind answers the dialler's Connect_service with the event pool (packet 4).
func (rp *rawRingProvider) bind() {
	rp.r.send(encode(rp.r.t, &wire.ConnectServiceReply{RequiredID: rp.cs.RequiredID, ProvidedID: 9, Status: wire.StatusOK, Events: 1,
		HasEventPool: true, EventPool: wireGeometry(rp.pool.Geometry())}), rp.pool.Fd())
}

// After a Loan fails with ErrNoSlot, the node's Fd becomes readable when
// the subscriber gives the slot back through the ring: a loop that waits on
// Fd and retries is woken, although consumes are otherwise taken lazily.
func TestFdWakesTheLoopThatGotErrNoSlot(t *testing.T) {
	kept := make(chan Sample, 1)
	l, o, _ := oneSlotBoundWithRings(t, &OfferConfig{NoInline: true}, func(s Sample) {
		if s.Keep() {
			kept <- s
		}
	})
	require.NoError(t, o.Publish(0, []byte("x")))
	s := recvWithin(t, kept, "the update")
	_, err := o.Loan(0)
	require.ErrorIs(t, err, ErrNoSlot, "the subscriber holds the only slot")
	_, _, err = l.Dispatch(0) // nothing to do: the loop would now wait on Fd
	require.NoError(t, err)
	s.Release() // through the subscriber's ring: no socket packet
	fdWakesForTheSlot(t, l, o)
}

// fdWakesForTheSlot waits (bounded) for l's Fd to become readable, then
// dispatches l once and checks that the offer's slot is free again.
func fdWakesForTheSlot(t *testing.T, l *Node, o *Offer) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(l.Fd()), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, int(waitFor.Milliseconds()))
	require.NoError(t, err)
	require.Equal(t, 1, k, "Fd became readable when the slot came back")
	_, _, err = l.Dispatch(0)
	require.NoError(t, err)
	ln, err := o.Loan(0)
	require.NoError(t, err, "the slot is free again")
	require.NoError(t, ln.Discard())
}

// Two nodes in one poll(2) loop, what a C event loop does: with rings, the
// loop never stalls as long as it dispatches again while more is reported,
// and only then waits on the fds (here with no timeout to fall back on).
func TestFdLoopWithRingsNeverStalls(t *testing.T) {
	l, d := handDriven(t)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 4}, SubscriberSlots: 4})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	received := 0
	require.NoError(t, px.Subscribe(0, Updates, func(Sample) { received++ }))
	step := func(n *Node) {
		for more := true; more; {
			_, more, err = n.Dispatch(0)
			require.NoError(t, err)
		}
	}
	wait := func() {
		fds := []unix.PollFd{{Fd: int32(l.Fd()), Events: unix.POLLIN}, {Fd: int32(d.Fd()), Events: unix.POLLIN}}
		k, err := unix.Poll(fds, int(waitFor.Milliseconds()))
		if err != unix.EINTR {
			require.NoError(t, err)
			require.NotZero(t, k, "stalled: neither fd readable after %d updates", received)
		}
	}
	for {
		step(l)
		step(d)
		if st, _ := px.Subscription(0); st == SubscriptionActive && l.Status().Peers[0].Ring && d.Status().Peers[0].Ring {
			break
		}
		wait()
	}
	const n = 2000
	sent := 0
	for received < n {
		for sent < n {
			if err := o.Publish(0, []byte("x")); err != nil {
				require.ErrorIs(t, err, ErrNoSlot)
				break
			}
			sent++
		}
		step(l)
		step(d)
		if received < n {
			wait() // a Publish failed for want of a slot, or updates are on their way
		}
	}
	assert.Equal(t, n, received)
}

// The two carriers keep one order: ring entries written before a socket
// message are handled before it, and socket messages written before an
// entry before the entry. Calls sent just before a Shutdown all arrive (the
// Goodbye comes after them), and a reply sent just before the offer is
// withdrawn reaches its caller as a reply.
func TestRingEntriesAndSocketMessagesKeepTheirOrder(t *testing.T) {
	t.Run("calls then Shutdown", func(t *testing.T) {
		path := socketPath(t)
		got := make(chan struct{}, 16)
		l := listen(t, path, nil)
		_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) { got <- struct{}{} }})
		require.NoError(t, err)
		d, err := Dial(path, nil)
		require.NoError(t, err)
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		pump(t, []*Node{d}, func() bool { return px.Available() && d.Status().Peers[0].Ring }, "bound with rings")
		for range 10 {
			require.NoError(t, px.Send(0, []byte("x")))
		}
		require.NoError(t, d.Shutdown(context.Background()))
		for i := range 10 {
			recvWithin(t, got, fmt.Sprintf("call %d", i))
		}
	})
	t.Run("reply then withdrawal", func(t *testing.T) {
		path := socketPath(t)
		l, err := Listen(path, nil)
		require.NoError(t, err)
		defer l.Close()
		var o *Offer
		o, err = l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) {
			require.NoError(t, c.Reply([]byte("last words")))
			require.NoError(t, o.Close())
		}})
		require.NoError(t, err)
		d := dial(t, path, nil)
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		pump(t, []*Node{l}, func() bool { return px.Available() && d.Status().Peers[0].Ring && l.Status().Peers[0].Ring }, "bound with rings")
		done := make(chan error, 1)
		var data string
		_, err = px.CallAsync(0, nil, CallOptions{}, func(r Reply, err error) { data = string(r.Data()); done <- err })
		require.NoError(t, err)
		pump(t, []*Node{l}, func() bool { return len(done) == 1 }, "the call completes")
		require.NoError(t, <-done, "the reply, not the withdrawal")
		assert.Equal(t, "last words", data)
	})
}

// Entries that wait for room behind a full ring move in as soon as the
// reader makes room: the reader wakes the writer. Socket messages sent
// after them wait with them.
func TestEntriesBehindAFullRingGetThrough(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{RingEntries: minRingEntries})
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) { c.Reply(nil) }})
	require.NoError(t, err)
	d := dial(t, path, &Config{RingEntries: minRingEntries})
	px, err := d.Require(sensor, &ProxyConfig{CallGeometry: shm.Geometry{SlotSize: 16, SlotCount: 1024}})
	require.NoError(t, err)
	eventually(t, func() bool { return px.Available() && d.Status().Peers[0].Ring && l.Status().Peers[0].Ring }, "bound with rings")
	const n = 1000
	done := make(chan error, n)
	require.NoError(t, d.Post(func() { // from inside a dispatch: the ring fills before the provider reads
		for range n {
			if _, err := px.CallAsync(0, nil, CallOptions{}, func(_ Reply, err error) { done <- err }); err != nil {
				done <- err
			}
		}
	}))
	for i := range n {
		require.NoError(t, recvWithin(t, done, fmt.Sprintf("call %d", i)))
	}
}

// A peer that stamps an update with socket packets it never sends stalls
// its own ring, not the node: the entry waits for the socket, and the
// dispatch reports no work left (it used to spin).
func TestARingEntryWaitingForTheSocketIsNotWorkLeft(t *testing.T) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) {}})
	require.NoError(t, err)
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket, Name: "raw"})
	rr := r.startRawRing(t)
	pump(t, []*Node{l}, func() bool { st := l.Status(); return len(st.Peers) == 1 && st.Peers[0].Ring }, "the raw peer's ring is mapped")
	rr.push(t, &wire.EventUpdate{RequiredID: 1, Seq: 1, Payload: wire.Payload{Slot: wire.NoSlot}}, 1<<20)
	more := true
	for range 5 {
		_, more, err = l.Dispatch(0)
		require.NoError(t, err)
	}
	assert.False(t, more, "a waiting entry is not work left")
	assert.Len(t, l.Status().Peers, 1, "and no protocol error")
}

// A node whose mapped-bytes budget cannot take the largest ring goes
// without rings, and its peers talk to it over the socket (it used to
// refuse their rings, and reconnect forever).
func TestASmallMappedBytesBudgetGoesWithoutRings(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{Limits: Limits{MappedBytes: 64 << 10}})
	_, err := l.Offer(sensor, echoOffer())
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, &ProxyConfig{CallGeometry: shm.Geometry{SlotSize: 64, SlotCount: 4}})
	require.NoError(t, err)
	r, err := px.Call(context.Background(), 0, []byte("over the socket"))
	require.NoError(t, err)
	assert.Equal(t, "over the socket", string(r.Data()))
	r.Release()
	st := l.Status()
	assert.False(t, st.Peers[0].Ring)
	assert.Zero(t, st.Counters.ProtocolErrors)
}

func TestPrecedesWrapsAround(t *testing.T) {
	assert.True(t, precedes(0, 0))
	assert.True(t, precedes(3, 5))
	assert.False(t, precedes(6, 5))
	assert.True(t, precedes(0xffffffff, 1<<32), "stamped just before the counter wrapped")
	assert.True(t, precedes(2, 1<<32+2))
	assert.False(t, precedes(3, 1<<32+2))
}
