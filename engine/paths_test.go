package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A consumer that stops reading fills its socket: the provider drops updates
// for it (counted) instead of queueing them, keeps serving everyone else,
// and resumes once the socket drains.
func TestStalledReaderIsBypassedThenResumed(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 1024}})
	require.NoError(t, err)
	good := dial(t, path, nil)
	got := make(chan struct{}, 4096)
	gpx, err := good.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, gpx.Subscribe(0, Updates, func(Sample) { got <- struct{}{} }))
	eventually(t, func() bool { st, _ := gpx.Subscription(0); return st == SubscriptionActive }, "good subscribed")

	// The stalled peer: a raw dialler that binds, subscribes, then reads nothing.
	r := rawDial(t, path)
	require.Equal(t, wire.StatusOK, r.handshake().Status)
	r.sendMsg(&wire.ConnectService{Service: sensor.wire(), RequiredID: 9, InUse: true})
	reply := r.next().(*wire.ConnectServiceReply) // (recv closes the pool fd it carries)
	r.sendMsg(&wire.SubscribeEvent{ProvidedID: reply.ProvidedID, Event: 0, Subscribe: true})
	eventually(t, func() bool { return len(l.Status().Offers[0].Bindings) == 2 }, "stalled peer bound")
	eventually(t, func() bool {
		for _, b := range l.Status().Offers[0].Bindings {
			if b.RequiredID == 9 && len(b.Events) == 1 {
				return true
			}
		}
		return false
	}, "stalled peer subscribed")

	// Publish until the stalled peer's socket is full and updates for it drop.
	published := 0
	for deadline := time.Now().Add(waitFor); ; published++ {
		require.True(t, time.Now().Before(deadline), "the stalled peer's socket never filled")
		if err := o.Publish(0, []byte("flood")); err != nil {
			require.ErrorIs(t, err, ErrNoSlot) // the stalled peer holds what it was sent
			break
		}
		if published%64 == 0 && l.Status().Offers[0].Counters.Dropped > 0 {
			break
		}
		recvWithin(t, got, "the good consumer's update") // it keeps up, one for one
	}
	st := l.Status()
	assert.NotZero(t, st.Offers[0].Counters.Dropped, "updates for the stalled peer were dropped, not queued")
	var stalled PeerStatus
	for _, p := range st.Peers {
		if p.Name == "raw" {
			stalled = p
		}
	}
	assert.NotZero(t, stalled.UpdatesDropped)
	assert.Less(t, stalled.QueuedBytes, 4<<20, "nothing piles up for it")

	// It reads again: the provider sees the socket writable and sends again.
	for {
		if _, err := r.recvNow(); err != nil {
			break
		}
	}
	before := st.Offers[0].Counters.Sent
	eventually(t, func() bool {
		if err := o.Publish(0, []byte("again")); err == nil {
			select { // on the condition's goroutine: no Fatal here
			case <-got:
			case <-time.After(waitFor):
				return false
			}
		}
		for r.drain() > 0 {
		}
		return l.Status().Offers[0].Counters.Sent > before+2
	}, "updates reach the peer again once it reads")
}

// recvNow reads one packet without waiting; an error when none is queued.
func (r *rawPeer) recvNow() ([]byte, error) {
	buf := make([]byte, wire.MaxPacket)
	fds := make([]int, transport.MaxFDs)
	n, nfds, err := r.conn.Recv(buf, fds)
	for _, fd := range fds[:nfds] {
		unix.Close(fd)
	}
	return buf[:n], err
}

// drain reads whatever is queued and returns how many packets it read.
func (r *rawPeer) drain() int {
	k := 0
	for {
		if _, err := r.recvNow(); err != nil {
			return k
		}
		k++
	}
}

func TestCallTimeoutsFireInDeadlineOrder(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) {}}) // never answers
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	order := make(chan int, 3)
	for i, ms := range []int{300, 50, 150} {
		_, err := px.CallAsync(0, nil, CallOptions{Timeout: time.Duration(ms) * time.Millisecond}, func(_ Reply, err error) {
			assert.ErrorIs(t, err, ErrTimeout)
			order <- i
		})
		require.NoError(t, err)
	}
	var got []int
	for range 3 {
		got = append(got, recvWithin(t, order, "a timeout"))
	}
	assert.Equal(t, []int{1, 2, 0}, got)
}

func TestKeptReplyOutlivesItsCompletion(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 2},
		OnCall: func(c Call) { c.Reply([]byte("kept")) }})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	kept := make(chan Reply, 1)
	_, err = px.CallAsync(0, nil, CallOptions{}, func(r Reply, err error) {
		require.NoError(t, err)
		r.Keep()
		kept <- r
	})
	require.NoError(t, err)
	r := recvWithin(t, kept, "the kept reply")
	assert.Equal(t, "kept", string(r.Data()))
	assert.Equal(t, 1, slotsInUse(l.Status().Offers[0]), "the reply's slot is held while kept")
	r.Release()
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "released")
}

// Close while a handler runs (and more samples wait behind it): no handler
// runs after Close returns, and every slot comes back.
// Close from another goroutine waits for a callback in progress, and no
// callback runs after it returns.
func TestCloseDuringDeliveryReleasesEverything(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	d, err := Dial(path, nil)
	require.NoError(t, err)
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(context.Background()) }()
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	entered, unblock := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var finished atomic.Bool
	require.NoError(t, px.Subscribe(0, Updates, func(Sample) {
		if calls.Add(1) == 1 {
			close(entered)
			select {
			case <-unblock:
			case <-time.After(waitFor):
				t.Error("the handler was never unblocked")
			}
			finished.Store(true)
		}
	}))
	eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
	for range 3 {
		require.NoError(t, o.Publish(0, []byte("x")))
	}
	recvWithin(t, entered, "first delivery")
	closeDone := make(chan error, 1)
	go func() { closeDone <- d.Close() }()
	eventually(t, d.closedFlag.Load, "Close under way")
	select {
	case <-closeDone:
		t.Fatal("Close returned while a callback was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(unblock)
	require.NoError(t, recvWithin(t, closeDone, "Close"))
	assert.True(t, finished.Load(), "Close returned only after the callback")
	require.NoError(t, recvWithin(t, runDone, "Run"))
	assert.Equal(t, int32(1), calls.Load(), "no handler after Close")
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "every slot released")
}

func TestRequestUpdateErrors(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	assert.ErrorIs(t, px.RequestUpdate(0), ErrInvalidConfig, "not subscribed")
	require.NoError(t, px.Subscribe(0, Updates, func(Sample) {}))
	require.NoError(t, px.Subscribe(3, Updates, func(Sample) {}), "unbound: kept, checked by the provider later")
	assert.ErrorIs(t, px.RequestUpdate(0), ErrNotAvailable)
	_, err = l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	assert.ErrorIs(t, px.RequestUpdate(3), ErrUnknownEvent)
	require.NoError(t, px.RequestUpdate(0))
	require.NoError(t, px.Close())
	assert.ErrorIs(t, px.RequestUpdate(0), ErrClosed)
}
