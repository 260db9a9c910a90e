package engine

import (
	"context"
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
	_, o, d := oneSlotBoundWithRings(t, func(Sample) { got <- struct{}{} })
	for i := range 20 {
		require.NoError(t, o.Publish(0, []byte("x")), "publish %d: the slot comes back through the ring", i)
		recvWithin(t, got, "update")
		eventually(t, func() bool { return ringEntriesSent(d) == uint64(i+1) }, "the consume is in the consumer's ring")
	}
}

// oneSlotBoundWithRings offers event 0 from a 1-slot pool on a listener the
// test dispatches by hand, and subscribes onUpdate from a running dialler;
// it returns once both ends are bound with rings.
func oneSlotBoundWithRings(t *testing.T, onUpdate func(Sample)) (l *Node, o *Offer, d *Node) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	o, err = l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, SubscriberSlots: 1})
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

// wakeNode makes the node dispatch (and so read the rings).
func (rr *rawRing) wakeNode(t *testing.T) {
	rr.r.sendMsg(&wire.RequestService{Service: sensor.wire(), InUse: true})
}

// startRawRing sends a Ring message of a raw consumer.
func (r *rawPeer) startRawRing(t *testing.T) *rawRing {
	seg, err := shm.NewSegment("raw-ring", ringSize(minRingEntries))
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	mem := seg.Bytes()
	word(mem, ctlMagic).Store(ringMagic)
	*(*uint32)(unsafe.Pointer(&mem[8])) = minRingEntries
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(wake)
	r.send(encode(t, &wire.Ring{Entries: minRingEntries}), seg.Fd(), wake)
	return &rawRing{seg: seg, mem: mem, r: r}
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
	path := socketPath(t)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	got := make(chan string, 1)
	require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { got <- string(s.Data()) }))

	// A raw provider with rings.
	ln, err := transport.Listen(path, transport.ListenConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var c *transport.Conn
	eventually(t, func() bool { c, err = ln.Accept(); return err == nil }, "dialler connects")
	t.Cleanup(func() { c.Close() })
	r := &rawPeer{t: t, conn: c}
	await[*wire.Connect](r)
	r.sendMsg(&wire.ConnectReply{Status: wire.StatusOK, Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket}) // packet 1
	rr := r.startRawRing(t)                                                                                                   // packet 2
	await[*wire.RequestService](r)
	r.sendMsg(&wire.OfferService{Service: sensor.wire(), Offered: true, Events: 1}) // packet 3
	cs, fds := await[*wire.ConnectService](r)
	closeAll(fds)

	pool, err := shm.NewPool("raw-events", shm.Geometry{SlotSize: 64, SlotCount: 1})
	require.NoError(t, err)
	defer pool.Close()
	slot, err := pool.Alloc()
	require.NoError(t, err)
	copy(pool.Slot(slot), "first")
	rr.push(t, &wire.EventUpdate{RequiredID: cs.RequiredID, Event: 0, Seq: 1, Payload: wire.Payload{Slot: slot, Len: 5}}, 4)
	require.Len(t, d.Status().Peers, 1, "reading the entry early is no protocol error: it waits for packet 4")
	r.send(encode(t, &wire.ConnectServiceReply{RequiredID: cs.RequiredID, ProvidedID: 9, Status: wire.StatusOK, Events: 1,
		HasEventPool: true, EventPool: wireGeometry(pool.Geometry())}), pool.Fd()) // packet 4
	assert.Equal(t, "first", recvWithin(t, got, "the update, after its binding"))
}

// After a Loan fails with ErrNoSlot, the node's Fd becomes readable when
// the subscriber gives the slot back through the ring: a loop that waits on
// Fd and retries is woken, although consumes are otherwise taken lazily.
func TestFdWakesTheLoopThatGotErrNoSlot(t *testing.T) {
	kept := make(chan Sample, 1)
	l, o, _ := oneSlotBoundWithRings(t, func(s Sample) {
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
