package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Inline updates (docs/PROTOCOL.md §10.13): an update of at most
// wire.MaxInline bytes to a peer with rings travels inside the ring, and
// its slot comes back when the subscriber's head passes it.

// inlineRecord encodes u as an inline record of a raw ring provider (after
// its four socket packets, so after the binding): its entry, then data.
func inlineRecord(t testing.TB, u wire.EventUpdate, data []byte) [][]byte {
	u.Inline, u.Payload.Len = true, uint32(len(data))
	e := make([]byte, wire.EntrySize)
	require.NoError(t, wire.PutEntry(e, &u, 4))
	record := [][]byte{e}
	for off := 0; off < len(data); off += wire.EntrySize {
		e := make([]byte, wire.EntrySize)
		copy(e, data[off:])
		record = append(record, e)
	}
	return record
}

// pushEntries writes raw entries after the tail, then publishes a tail
// advanced by publish entries (a scribbler may publish fewer than it wrote).
func (rr *rawRing) pushEntries(entries [][]byte, publish int) {
	tail := word(rr.mem, ctlTail).Load()
	for i, e := range entries {
		off := ctlSize + int((tail+uint64(i))%minRingEntries)*wire.EntrySize
		copy(rr.mem[off:off+wire.EntrySize], e)
	}
	word(rr.mem, ctlTail).Store(tail + uint64(publish))
}

func TestSmallUpdatesTravelInlineAndNeedNoConsume(t *testing.T) {
	got := make(chan []byte, 1)
	o, _, l, d := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 512, SlotCount: 2}},
		func(s Sample) { got <- bytes.Clone(s.Data()) })
	eventually(t, func() bool { return l.Status().Peers[0].Ring && d.Status().Peers[0].Ring }, "rings up")
	for _, size := range []int{0, 1, 32, 64, 200, wire.MaxInline} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*13 + size)
			}
			sent := ringEntriesSent(l)
			require.NoError(t, o.Publish(0, data))
			assert.Equal(t, data, recvWithin(t, got, "the update"))
			assert.Equal(t, sent+1+uint64(wire.InlineEntries(uint32(size))), ringEntriesSent(l), "the entry and the payload")
			eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "the slot back")
			assert.Zero(t, ringEntriesSent(d), "without a consume")
		})
	}
	// One byte more goes by slot, and comes back by consume.
	data := bytes.Repeat([]byte{7}, wire.MaxInline+1)
	sent := ringEntriesSent(l)
	require.NoError(t, o.Publish(0, data))
	assert.Equal(t, data, recvWithin(t, got, "the update by slot"))
	assert.Equal(t, sent+1, ringEntriesSent(l))
	eventually(t, func() bool { return ringEntriesSent(d) == 1 && slotsInUse(l.Status().Offers[0]) == 0 }, "consumed")
}

func TestNoInlineSendsSmallUpdatesBySlot(t *testing.T) {
	got := make(chan string, 1)
	o, _, l, d := boundPair(t, &OfferConfig{Events: 1, NoInline: true}, func(s Sample) { got <- string(s.Data()) })
	eventually(t, func() bool { return l.Status().Peers[0].Ring && d.Status().Peers[0].Ring }, "rings up")
	require.NoError(t, o.Publish(0, []byte("by slot")))
	assert.Equal(t, "by slot", recvWithin(t, got, "the update"))
	assert.Equal(t, uint64(1), ringEntriesSent(l), "the entry alone")
	eventually(t, func() bool { return ringEntriesSent(d) == 1 }, "a consume")
}

// An inline sample is the subscriber's own copy: kept, it holds no slot of
// the provider's, and later updates (which reuse the ring and the slot)
// leave it as it was.
func TestAKeptInlineSampleIsACopyAndHoldsNoSlot(t *testing.T) {
	kept := make(chan Sample, 1)
	o, _, l, _ := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 1}}, func(s Sample) {
		if s.Seq() == 1 {
			s.Keep()
			kept <- s
		}
	})
	require.NoError(t, o.Publish(0, []byte("the first value")))
	s := recvWithin(t, kept, "the kept sample")
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "the only slot back while the sample is kept")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for range 3 * minRingEntries { // around the subscriber's ring, through the same slot
		require.NoError(t, o.PublishWait(ctx, 0, []byte("a later value..")))
	}
	assert.Equal(t, "the first value", string(s.Data()))
	s.Release()
	assert.Nil(t, s.Data())
	assert.False(t, s.Keep())
}

// After a Loan fails with ErrNoSlot, the provider's Fd becomes readable
// when the subscriber's dispatch passes the inline update that held the
// slot: the head, like a consume, wakes a loop that waits for a slot.
func TestTheRingHeadWakesTheLoopThatGotErrNoSlot(t *testing.T) {
	l, d := handDriven(t)
	got := make(chan string, 1)
	o, _ := bindByHand(t, l, d, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, SubscriberSlots: 1},
		func(s Sample) { got <- string(s.Data()) })

	require.NoError(t, o.Publish(0, []byte("x")))
	_, err := o.Loan(0)
	require.ErrorIs(t, err, ErrNoSlot, "the update waits in the subscriber's ring")
	_, _, err = l.Dispatch(0) // nothing to do: the loop would now wait on Fd
	require.NoError(t, err)
	pump(t, []*Node{d}, func() bool { return len(got) == 1 }, "the subscriber takes the update")
	l.mu.Lock()
	pending := l.ringsPending()
	l.mu.Unlock()
	assert.True(t, pending, "a dispatch about to park sees the slot come back: it must not block")
	fdWakesForTheSlot(t, l, o)
	assert.Zero(t, ringEntriesSent(d), "no consume was written")
}

// rawRingSubscriber binds a raw consumer with rings to l's offer of sensor
// and subscribes it to event 0; it never reads the node's ring, so the
// slots of inline updates stay held until it moves its head.
func rawRingSubscriber(t *testing.T, path string, l *Node, id uint64) (*rawPeer, *rawRing) {
	r := rawConsumer(t, path, wire.CapAll)
	rr := r.startRawRing(t)
	rr.node = l
	reply, fds := r.bindRaw(sensor, id, nil)
	closeAll(fds)
	require.Equal(t, wire.StatusOK, reply.Status)
	r.sendMsg(&wire.SubscribeEvent{ProvidedID: reply.ProvidedID, Subscribe: true})
	await[*wire.SubscribeEventReply](r)
	return r, rr
}

// unreadInlineUpdates offers sensor from a 4-slot pool on a running
// listener, binds a raw ring subscriber to it and publishes k inline
// updates the subscriber leaves unread.
func unreadInlineUpdates(t *testing.T, k int) (path string, l *Node, o *Offer, r *rawPeer, rr *rawRing) {
	path = socketPath(t)
	l = listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 4}, SubscriberSlots: 4})
	require.NoError(t, err)
	r, rr = rawRingSubscriber(t, path, l, 1)
	eventually(t, func() bool { return len(l.Status().Peers) == 1 && l.Status().Peers[0].Ring }, "the raw peer's ring is mapped")
	for range k {
		require.NoError(t, o.Publish(0, []byte("unread")))
	}
	return path, l, o, r, rr
}

// holdsOf is the slots held by l's binding to the peer named name.
func holdsOf(l *Node, name string) int {
	b, ok := bindingOf(l.Status(), name)
	if !ok {
		return -1
	}
	return b.Holds
}

// A binding torn down while the slots of its inline updates are still held
// (its peer has not moved its head) gives them all back at once; when the
// old peer's head later passes them, nothing is released twice, even for
// a new binding that got the same reader id.
func TestUnbindingGivesBackTheSlotsOfUnreadInlineUpdates(t *testing.T) {
	path, l, o, old, oldRing := unreadInlineUpdates(t, 3)
	require.Equal(t, 3, holdsOf(l, "raw"), "held until the head passes them")
	oldTail := ringEntriesSent(l) // the node's only peer yet

	old.sendMsg(&wire.ConnectService{Service: sensor.wire(), RequiredID: 1, InUse: false})
	eventually(t, func() bool { return len(l.Status().Offers[0].Bindings) == 0 }, "unbound")
	assert.Zero(t, slotsInUse(l.Status().Offers[0]), "every slot back")

	// A new subscriber (the freed reader id is reused) holds one update...
	rawRingSubscriber(t, path, l, 1)
	require.NoError(t, o.Publish(0, []byte("held by the new one")))
	eventually(t, func() bool { return holdsOf(l, "raw") == 1 }, "the new binding holds its update")
	// ...and the old peer's head moving past its three updates releases nothing.
	word(oldRing.mem, ctlHead).Store(oldTail)
	oldRing.wakeNode(t)
	require.NoError(t, o.Publish(0, []byte("and one more")))
	eventually(t, func() bool { return holdsOf(l, "raw") == 2 }, "the new binding holds both")
	assert.Equal(t, 2, slotsInUse(l.Status().Offers[0]))
}

// A subscriber that goes away (its socket closed, as when it is killed)
// with inline updates unread gives back their slots.
func TestALostSubscriberGivesBackTheSlotsOfUnreadInlineUpdates(t *testing.T) {
	_, l, o, r, _ := unreadInlineUpdates(t, 4)
	assert.ErrorIs(t, o.Publish(0, []byte("full")), ErrNoSlot)
	r.conn.Close()
	eventually(t, func() bool { return len(l.Status().Peers) == 0 }, "the peer gone")
	assert.Zero(t, slotsInUse(l.Status().Offers[0]), "every slot back")
	require.NoError(t, o.Publish(0, []byte("free again")))
}

// A provider's inline records are read as the protocol says, and a record
// that breaks it closes that connection.
func TestInlineRecordsFromARawProvider(t *testing.T) {
	rp := newRawRingProvider(t, wire.CapAll)
	rp.bind()
	payload := bytes.Repeat([]byte("0123456789"), 10)
	rp.ring.pushEntries(inlineRecord(t, wire.EventUpdate{RequiredID: rp.cs.RequiredID, Seq: 1}, payload), 1+4)
	rp.ring.pushEntries(inlineRecord(t, wire.EventUpdate{RequiredID: rp.cs.RequiredID, Seq: 2}, nil), 1)
	rp.ring.wakeNode(t)
	assert.Equal(t, string(payload), recvWithin(t, rp.got, "the 100-byte update"))
	assert.Equal(t, "", recvWithin(t, rp.got, "the empty update"))
	assert.Len(t, rp.d.Status().Peers, 1)
}

func TestInlineScribblesCloseTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		caps    uint32
		publish int // entries published of the 3-entry record
		patch   func(record [][]byte)
	}{
		{"record beyond the tail", wire.CapAll, 2, nil},
		{"padding not zero", wire.CapAll, 3, func(r [][]byte) { r[2][31] = 1 }},
		{"a slot in the entry", wire.CapAll, 3, func(r [][]byte) { r[0][24] = 0 }},
		{"inline not negotiated", wire.CapAll &^ wire.CapInline, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRawRingProvider(t, tc.caps)
			rp.bind()
			record := inlineRecord(t, wire.EventUpdate{RequiredID: rp.cs.RequiredID, Seq: 1}, make([]byte, 40))
			if tc.patch != nil {
				tc.patch(record)
			}
			rp.ring.pushEntries(record, tc.publish)
			rp.ring.wakeNode(t)
			eventually(t, func() bool { return rp.d.Status().Counters.ProtocolErrors == 1 }, "a protocol error")
			assert.Empty(t, rp.got, "nothing delivered")
		})
	}
}

// A subscriber without the inline capability gets the same updates by
// slot, beside one that takes them inline.
func TestInlineAndSlotSubscribersShareAnUpdate(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 2}})
	require.NoError(t, err)
	got := make(chan string, 2)
	for _, cfg := range []*Config{{Name: "inline"}, {Name: "socket", DisableRings: true}} {
		d := dial(t, path, cfg)
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { got <- cfg.Name + ":" + string(s.Data()) }))
		eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
	}
	eventually(t, func() bool { st := l.Status(); return len(st.Peers) == 2 && (st.Peers[0].Ring || st.Peers[1].Ring) }, "one ring up")
	for i := range 10 {
		msg := fmt.Sprint("update ", i)
		require.NoError(t, o.Publish(0, []byte(msg)))
		assert.ElementsMatch(t, []string{"inline:" + msg, "socket:" + msg},
			[]string{recvWithin(t, got, "an update"), recvWithin(t, got, "the other")})
		eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "the slot back from both")
	}
}

// A provider spinning for a slot (Config.Spin) stops as soon as the
// subscriber's head passes the inline update that held it, long before its
// budget ends: the subscriber does not wake a spinning node.
func TestASpinningProviderSeesTheHeadGiveItsSlotBack(t *testing.T) {
	path := socketPath(t)
	l, err := Listen(path, &Config{Spin: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	d, err := Dial(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	got := make(chan struct{}, 1)
	o, _ := bindByHand(t, l, d, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, SubscriberSlots: 1},
		func(Sample) { got <- struct{}{} })

	require.NoError(t, o.Publish(0, []byte("x")))
	_, err = o.Loan(0)
	require.ErrorIs(t, err, ErrNoSlot)
	subscriberDone := make(chan error, 1)
	go func() {
		// Most often the subscriber takes the update while the provider
		// spins below; when it is first, the provider finds the slot
		// back before spinning, which passes too.
		time.Sleep(20 * time.Millisecond)
		for deadline := time.Now().Add(waitFor); len(got) == 0 && time.Now().Before(deadline); {
			if _, _, err := d.Dispatch(time.Millisecond); err != nil {
				subscriberDone <- err
				return
			}
		}
		subscriberDone <- nil
	}()
	for deadline := time.Now().Add(waitFor); ; {
		_, _, err := l.Dispatch(waitFor)
		require.NoError(t, err)
		if ln, err := o.Loan(0); err == nil {
			require.NoError(t, ln.Discard())
			break
		}
		require.True(t, time.Now().Before(deadline), "the slot did not come back within %v", waitFor)
	}
	require.NoError(t, recvWithin(t, subscriberDone, "the subscriber"))
}

// Inline payloads live outside the Go heap (C may keep their pointers): a
// kept one stays readable after its node closes, and the mappings go with
// the last release.
func TestAKeptInlineSampleOutlivesItsNode(t *testing.T) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	d, err := Dial(path, nil)
	require.NoError(t, err)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	kept := make(chan Sample, 1)
	require.NoError(t, px.Subscribe(0, Updates, func(s Sample) {
		s.Keep()
		kept <- s
	}))
	pump(t, []*Node{l, d}, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
	require.NoError(t, o.Publish(0, []byte("outlives")))
	pump(t, []*Node{l, d}, func() bool { return len(kept) == 1 }, "the kept sample")
	s := <-kept
	require.NoError(t, l.Close())
	require.NoError(t, d.Close())
	assert.Equal(t, "outlives", string(s.Data()))
	d.mu.Lock()
	assert.Len(t, d.arena.chunks, 1, "mapped while the sample is kept")
	d.mu.Unlock()
	s.Release()
	d.mu.Lock()
	assert.Empty(t, d.arena.chunks, "unmapped with the last release")
	d.mu.Unlock()
}

// FuzzRingReader: whatever a provider writes into its ring (entries of any
// type, inline records cut short or padded with garbage, a tail that
// claims more than was written), the subscriber reading it never panics or
// hangs: it takes what is valid, in order, and a bad entry closes that
// connection only; the node goes on.
func FuzzRingReader(f *testing.F) {
	u := wire.EventUpdate{Seq: 1}
	seed := func(publish int, entries ...[]byte) {
		f.Add(bytes.Join(entries, nil), uint8(publish))
	}
	u.RequiredID = 1
	record := func(data []byte) [][]byte { return inlineRecord(f, u, data) }
	seed(1+2, record(make([]byte, 40))...)
	seed(1, record(make([]byte, 40))...) // cut short
	seed(1+7, record(bytes.Repeat([]byte{1}, wire.MaxInline))...)
	seed(1+1+1, append(record([]byte("a")), record(nil)...)...)
	f.Fuzz(func(t *testing.T, raw []byte, publish uint8) {
		n := min(len(raw)/wire.EntrySize, minRingEntries)
		entries := make([][]byte, n)
		for i := range entries {
			entries[i] = raw[i*wire.EntrySize : (i+1)*wire.EntrySize]
			if len(entries[i]) > 8 && entries[i][0] == byte(wire.TypeEventUpdate) {
				// Aim most updates at the binding, so they get past the handle check.
				binary.LittleEndian.PutUint64(entries[i][8:], 1)
			}
		}
		rp := newRawRingProvider(t, wire.CapAll)
		require.Equal(t, uint64(1), rp.cs.RequiredID, "the dialler's first handle")
		rp.bind()
		published := min(int(publish), minRingEntries)
		rp.ring.pushEntries(entries, published)
		rp.ring.wakeNode(t)
		eventually(t, func() bool {
			st := rp.d.Status()
			if st.Counters.ProtocolErrors > 0 {
				return len(st.Peers) == 0
			}
			rp.d.mu.Lock()
			defer rp.d.mu.Unlock()
			for _, p := range rp.d.peers {
				if l := p.ring; l != nil && l.peer != nil {
					return l.read == uint64(published) || l.stalled
				}
			}
			return false
		}, "the subscriber took the ring, or dropped the provider")
		_, err := rp.d.Require(testService("other"), nil)
		require.NoError(t, err, "the node goes on")
	})
}

// A subscriber that takes inline updates from one provider and socket
// updates from another reads both: an update from the socket is never
// mistaken for an inline one (the decoder's message is reused).
func TestInlineAndSocketUpdatesFromTwoProviders(t *testing.T) {
	path := socketPath(t)
	s := listen(t, path, nil)
	withRings, withoutRings := dial(t, path, nil), dial(t, path, &Config{DisableRings: true})
	other := sensor
	other.Instance = "other"
	got := make(chan string, 4)
	var offers []*Offer
	for i, p := range []struct {
		n   *Node
		svc ServiceID
	}{{withRings, sensor}, {withoutRings, other}} {
		o, err := p.n.Offer(p.svc, &OfferConfig{Events: 1})
		require.NoError(t, err)
		offers = append(offers, o)
		px, err := s.Require(p.svc, nil)
		require.NoError(t, err)
		require.NoError(t, px.Subscribe(0, Updates, func(sm Sample) { got <- fmt.Sprint(i, ":", string(sm.Data())) }))
		eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed to %v", p.svc)
	}
	eventually(t, func() bool { st := withRings.Status(); return len(st.Peers) == 1 && st.Peers[0].Ring }, "rings up")
	for range 3 {
		require.NoError(t, offers[0].Publish(0, []byte("inline")))
		assert.Equal(t, "0:inline", recvWithin(t, got, "the inline update"))
		require.NoError(t, offers[1].Publish(0, []byte("socket")))
		assert.Equal(t, "1:socket", recvWithin(t, got, "the socket update"))
	}
	assert.Zero(t, s.Status().Counters.ProtocolErrors)
}

// A call that needs a slot reads the rings outside any dispatch; when that
// passes inline updates (here of an event no longer subscribed, so nothing
// is queued), the node's Fd becomes readable so that its next dispatch
// sends the provider waiting for that slot its wake-up. (The subscriber is
// made to look busy, as a node in Run is between rounds, so that the
// provider's update does not wake it.)
func TestPassingInlineUpdatesOutsideADispatchStillWakesTheProvider(t *testing.T) {
	l, d := handDriven(t)
	o, px := bindByHand(t, l, d, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, SubscriberSlots: 1},
		func(Sample) {})
	own, err := d.Offer(testService("own"), &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}})
	require.NoError(t, err)
	held, err := own.Loan(0) // the subscriber's own pool is exhausted
	require.NoError(t, err)
	defer held.Discard()
	require.NoError(t, px.Unsubscribe(0))
	d.mu.Lock()
	d.unpark()
	d.mu.Unlock()

	require.NoError(t, o.Publish(0, []byte("x")))
	_, err = o.Loan(0)
	require.ErrorIs(t, err, ErrNoSlot)
	_, _, err = l.Dispatch(0) // the provider now waits on its Fd for the slot
	require.NoError(t, err)
	fds := []unix.PollFd{{Fd: int32(d.Fd()), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, 0)
	require.NoError(t, err)
	require.Zero(t, k, "the update did not wake the busy subscriber")
	require.ErrorIs(t, own.Publish(0, []byte("y")), ErrNoSlot, "reads the rings, passing the provider's update")
	k, err = unix.Poll(fds, int(waitFor.Milliseconds()))
	require.NoError(t, err)
	require.Equal(t, 1, k, "the subscriber's Fd became readable")
	_, _, err = d.Dispatch(0)
	require.NoError(t, err)
	fdWakesForTheSlot(t, l, o)
}
