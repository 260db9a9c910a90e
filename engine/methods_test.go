package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bound sets up: provider offers "a" with methods; consumer requires it and
// waits until it is available.
func bound(t *testing.T, tp *topology, offerArgs string) {
	tp.prov.do("offer a %s", offerArgs)
	tp.cons.do("require a")
	tp.cons.expect("avail a true")
}

func TestMethodCallReturnsTheReply(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		assert.Equal(t, "hello", tp.cons.do("call a 0 hello"))
		tp.prov.expect("call a 0 hello")
		assert.Equal(t, "", tp.cons.do("call a 0 -"), "empty request, empty reply")
		big := strings.Repeat("x", 4000)
		assert.Equal(t, big, tp.cons.do("call a 0 %s", big))
		st := tp.cons.status()
		assert.Equal(t, uint64(3), st.Proxies[0].Counters.Calls)
		require.NotNil(t, st.Proxies[0].CallPool)
		tp.cons.waitStatus(func(s Status) bool { return s.Proxies[0].CallPool.InUse == 0 }, "request slots released")
		tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "reply slots released")
	})
}

func TestMethodApplicationErrorCarriesCodeAndPayload(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		reply := tp.cons.try("call a 1 oops")
		assert.Contains(t, reply, "application error 42")
		assert.Contains(t, reply, "data=bad:oops")
		assert.Equal(t, uint64(1), tp.cons.status().Proxies[0].Counters.CallErrors)
	})
}

func TestMethodMiddlewareErrors(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=2")
		assert.Contains(t, tp.cons.try("call a 5 x"), "unknown method id: 5 (service has 2 methods)", "checked before sending")
		assert.Contains(t, tp.cons.try("call a 0 %s", strings.Repeat("y", 5000)), "payload larger than a slot")
	})
}

func TestFireAndForgetGetsNoReply(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		tp.cons.do("send a 2 fire")
		tp.prov.expect("call a 2 fire ff")
		tp.cons.waitStatus(func(s Status) bool { return s.Proxies[0].CallPool.InUse == 0 }, "request released after the handler")
		st := tp.prov.status()
		assert.Zero(t, st.Peers[0].PendingCalls)
		assert.Zero(t, st.Offers[0].Bindings[0].PendingCalls)
	})
}

func TestCancelledCallCompletesOnceAndTheLateAnswerIsDropped(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		id := tp.cons.do("acall a 2 wait")
		tp.prov.expect("call a 2 wait")
		tp.cons.do("cancel %s", id)
		tp.cons.expect(fmt.Sprintf("done %s err engine: call cancelled", id))
		tp.prov.expect("cancelled a 2")
		assert.Equal(t, "engine: call cancelled", tp.prov.do("answer a"), "answering a cancelled call sends nothing")
		tp.cons.do("cancel %s", id) // a second cancel is harmless
		tp.cons.never("done " + id)
		tp.cons.waitStatus(func(s Status) bool { return s.Proxies[0].CallPool.InUse == 0 }, "request slot back")
		st := tp.cons.status()
		assert.Equal(t, uint64(1), st.Proxies[0].Counters.CallsAbandoned)
		assert.Zero(t, st.Proxies[0].PendingCalls)
	})
}

func TestCallTimesOutAndIsCancelledAtTheProvider(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		id := tp.cons.do("acall a 2 slow 50ms")
		tp.cons.expect(fmt.Sprintf("done %s err engine: call timed out", id))
		tp.prov.expect("cancelled a 2")
		assert.Contains(t, tp.cons.try("call a 2 slow-too 50ms"), "context deadline exceeded")
		tp.prov.expect("cancelled a 2")
		assert.Equal(t, "engine: call cancelled,engine: call cancelled", tp.prov.do("answer a"))
	})
}

func TestProviderKilledMidCallFailsThePendingCalls(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		id1 := tp.cons.do("acall a 2 one")
		id2 := tp.cons.do("acall a 2 two")
		tp.prov.expect("call a 2 one")
		tp.prov.expect("call a 2 two")
		tp.prov.kill()
		tp.cons.expect(fmt.Sprintf("done %s err engine: service not available", id1))
		tp.cons.expect(fmt.Sprintf("done %s err engine: service not available", id2))
		tp.cons.expect("avail a false")
		assert.Contains(t, tp.cons.try("call a 0 x 100ms"), "service not available", "a call waits for the service within its context")
	})
}

func TestConsumerKilledMidCallReleasesEverything(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		bound(t, tp, "0 methods=3")
		tp.cons.do("acall a 2 one")
		tp.prov.expect("call a 2 one")
		require.Equal(t, 1, tp.prov.status().Peers[0].PendingCalls)
		tp.cons.kill()
		tp.prov.expect("cancelled a 2")
		assert.Equal(t, "engine: call cancelled", tp.prov.do("answer a"))
		st := tp.prov.waitStatus(func(s Status) bool { return len(s.Peers) == 0 }, "consumer gone")
		assert.Empty(t, st.Offers[0].Bindings)
		assert.Zero(t, slotsInUse(st.Offers[0]))
	})
}

func TestManyConcurrentCalls(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.prov.do("offer a 0 256 64 methods=1")
		tp.cons.do("require a callslots=256")
		tp.cons.expect("avail a true")
		tp.cons.do("burst a 200")
		tp.cons.expect("burst a ok=200 bad=0")

		tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "reply slots released")
	})
}

// A reply that arrives after its call was cancelled is dropped and its slot
// given back. Driving both nodes by hand makes the order deterministic.
func TestReplyArrivingAfterCancelIsReleased(t *testing.T) {
	l, d := handDriven(t)
	calls := make(chan Call, 1)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 4}, OnCall: func(c Call) { calls <- c }})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	both := []*Node{l, d}
	pump(t, both, px.Available, "available")
	var got error
	completions := 0
	h, err := px.CallAsync(0, []byte("q"), CallOptions{}, func(r Reply, err error) { got = err; completions++ })
	require.NoError(t, err)
	var c Call
	pump(t, both, func() bool {
		select {
		case c = <-calls:
			return true
		default:
			return false
		}
	}, "the call")
	require.NoError(t, c.Reply([]byte("answer"))) // in flight to the consumer...
	h.Cancel()                                    // ...which has cancelled meanwhile
	pump(t, []*Node{d}, func() bool { return completions == 1 }, "the cancelled completion")
	assert.ErrorIs(t, got, ErrCancelled)
	pump(t, both, func() bool { return d.Status().Proxies[0].Counters.LateReplies == 1 }, "the late reply")
	pump(t, both, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "the reply's slot back")
	assert.Equal(t, 1, completions, "exactly one completion")
}

// The blocking Call honours its context and a call's Cancelled view.
func TestBlockingCallAndProviderSideCancelView(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d := dial(t, path, nil)
	calls := make(chan Call, 1)
	cancelled := make(chan Call, 1)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) { calls <- c }, OnCancel: func(c Call) { cancelled <- c }})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := px.Call(ctx, 0, []byte("block"))
		errc <- err
	}()
	c := recvWithin(t, calls, "the call")
	assert.Equal(t, "block", string(c.Data()))
	assert.False(t, c.Cancelled())
	assert.Equal(t, d.Status().PID, c.Peer().PID())
	cancel()
	assert.ErrorIs(t, recvWithin(t, errc, "the cancelled Call"), ErrCancelled)
	recvWithin(t, cancelled, "OnCancel")
	eventually(t, c.Cancelled, "provider sees the cancel")
	assert.ErrorIs(t, c.Reply(nil), ErrCancelled)
	assert.ErrorIs(t, c.Reply(nil), ErrCallDone)
	_, err = px.CallAsync(0, nil, CallOptions{}, nil)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// Call waits for the service within its context; Send and CallAsync fail
// at once.
func TestCallWaitsForTheServiceWithinItsContext(t *testing.T) {
	d := dial(t, socketPath(t), nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = px.Call(ctx, 0, nil)
	assert.ErrorIs(t, err, ErrNotAvailable)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, px.Send(0, nil), ErrNotAvailable)
	_, err = px.CallAsync(0, nil, CallOptions{}, func(Reply, error) {})
	assert.ErrorIs(t, err, ErrNotAvailable)
	require.NoError(t, px.Close())
	_, err = px.Call(context.Background(), 0, nil)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestAppErrorCode(t *testing.T) {
	code, ok := AppErrorCode(fmt.Errorf("wrapped: %w", &CallError{App: true, Code: -7}))
	assert.True(t, ok)
	assert.Equal(t, int32(-7), code)
	_, ok = AppErrorCode(ErrTimeout)
	assert.False(t, ok)
	assert.ErrorIs(t, &CallError{Status: StatusUnknownMethod}, ErrUnknownMethod)
	assert.NotErrorIs(t, &CallError{App: true, Code: 9}, ErrUnknownMethod)
}

// The Call handed to OnCancel has the Key of the one OnCall received, and
// other calls other keys (a C or Python layer matches them by it).
func TestCallKeyNamesTheCallAcrossCallbacks(t *testing.T) {
	path := socketPath(t)
	calls, cancels := make(chan Call, 2), make(chan Call, 1)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1,
		OnCall:   func(c Call) { calls <- c },
		OnCancel: func(c Call) { cancels <- c }})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	done := func(Reply, error) {}
	first, err := px.CallAsync(0, []byte("a"), CallOptions{}, done)
	require.NoError(t, err)
	_, err = px.CallAsync(0, []byte("b"), CallOptions{}, done)
	require.NoError(t, err)
	a, b := recvWithin(t, calls, "call a"), recvWithin(t, calls, "call b")
	if string(a.Data()) != "a" {
		a, b = b, a
	}
	require.True(t, first.Cancel())
	c := recvWithin(t, cancels, "cancel")
	assert.Equal(t, a.Key(), c.Key(), "the cancelled call has the key of the call it cancels")
	assert.NotEqual(t, a.Key(), b.Key())
	assert.NoError(t, b.Reply(nil))
	assert.ErrorIs(t, a.Reply(nil), ErrCancelled)
}
