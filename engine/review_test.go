package engine

import (
	"context"
	"testing"
	"time"

	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Regression tests for problems found in review.

// dispatchRecovering dispatches n once, returning a handler's panic instead
// of propagating it.
func dispatchRecovering(n *Node) (p any) {
	defer func() { p = recover() }()
	n.Dispatch(0)
	return nil
}

func TestCloseInsideACallbackUnderRun(t *testing.T) {
	path := socketPath(t)
	closed := make(chan error, 1)
	var l *Node
	l, err := Listen(path, &Config{OnPeerConnected: func(*Peer) { closed <- l.Close() }})
	require.NoError(t, err)
	runDone := make(chan error, 1)
	go func() { runDone <- l.Run(context.Background()) }()
	dial(t, path, nil)
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Close inside a callback deadlocked")
	}
	select {
	case err := <-runDone:
		assert.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after Close")
	}
}

func TestPanickingHandlerLosesNoOtherCallback(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d, err := Dial(path, nil)
	require.NoError(t, err)
	defer d.Close()
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	var got []uint64
	require.NoError(t, px.Subscribe(0, Updates, func(s Sample) {
		if s.Seq() == 1 {
			panic("handler bug")
		}
		got = append(got, s.Seq())
	}))
	pump := func(until func() bool) (panics int) {
		t.Helper()
		for deadline := time.Now().Add(waitFor); !until(); {
			require.True(t, time.Now().Before(deadline), "condition not reached")
			unix.Poll([]unix.PollFd{{Fd: int32(d.Fd()), Events: unix.POLLIN}}, 10)
			if p := dispatchRecovering(d); p != nil {
				assert.Equal(t, "handler bug", p)
				panics++
			}
		}
		return panics
	}
	pump(func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive })
	for range 3 {
		require.NoError(t, o.Publish(0, []byte("x")))
	}
	// All three arrive in one batch most of the time; either way the panic
	// must not cost the other two.
	assert.Equal(t, 1, pump(func() bool { return len(got) == 2 }))
	assert.Equal(t, []uint64{2, 3}, got)
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "every slot released, the panicking handler's too")
}

func TestPanickingCallHandlerStillAnswers(t *testing.T) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) { panic("handler bug") }})
	require.NoError(t, err)
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() { // the provider's loop survives its handler's panics
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Poll([]unix.PollFd{{Fd: int32(l.Fd()), Events: unix.POLLIN}}, 10)
			dispatchRecovering(l)
		}
	}()
	defer func() { close(stop); recvWithin(t, stopped, "the provider's loop") }()
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err = px.Call(ctx, 0, []byte("req"))
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.False(t, ce.App)
	assert.Equal(t, StatusHandlerFailed, ce.Status)
	eventually(t, func() bool { return d.Status().Proxies[0].CallPool.InUse == 0 }, "request released")
	assert.Zero(t, l.Status().Peers[0].PendingCalls)
}

func TestCancelledCallsCountAgainstThePendingLimit(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{Limits: Limits{PendingCalls: 4}})
	calls := make(chan Call, 16)
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) { calls <- c }})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	results := make(chan error, 16)
	for range 8 {
		h, err := px.CallAsync(0, nil, CallOptions{}, func(_ Reply, err error) { results <- err })
		require.NoError(t, err)
		h.Cancel()
	}
	eventually(t, func() bool { return l.Status().Counters.QuotaHits == 4 }, "the unanswered cancelled calls count")
	assert.Equal(t, 4, l.Status().Peers[0].PendingCalls)
	for range 4 { // the application answers them (dropped, but released)
		assert.ErrorIs(t, recvWithin(t, calls, "a cancelled call").Reply(nil), ErrCancelled)
	}
	assert.Zero(t, l.Status().Peers[0].PendingCalls)
	go func() {
		select {
		case c := <-calls:
			c.Reply(c.Data())
		case <-time.After(waitFor): // mustCall fails on its own deadline
		}
	}()
	assert.Equal(t, "ok", mustCall(t, px, "ok"), "room again")
}

func mustCall(t *testing.T, px *Proxy, req string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	r, err := px.Call(ctx, 0, []byte(req))
	require.NoError(t, err)
	defer r.Release()
	return string(r.Data())
}

func TestFindHonoursTheRequireRule(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{Policy: []Rule{{Service: sensor.ID, Actions: ActionRequire, Deny: true}}})
	_, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	d := dial(t, path, nil)
	found := make(chan FindEvent, 4)
	_, err = d.Find(sensor.Interface, "", func(ev FindEvent) { found <- ev })
	require.NoError(t, err)
	eventually(t, func() bool {
		st := l.Status()
		return len(st.Peers) == 1 && len(st.Peers[0].Finds) == 1
	}, "the find reached the provider")
	// A round trip after the find: the control channel is ordered, so an
	// offer sent for the find would have arrived before this one is bound.
	_, err = l.Offer(testService("other"), &OfferConfig{})
	require.NoError(t, err)
	other, err := d.Require(testService("other"), nil)
	require.NoError(t, err)
	eventually(t, other.Available, "the allowed service is bound")
	assert.Equal(t, []string{testService("other").String()}, d.Status().Peers[0].Offers)
	select {
	case ev := <-found:
		t.Fatalf("a peer denied Require learned of %v", ev.Service)
	default:
	}
}

// A dialler's pool sizes apply to the pools its own bindings create, and
// go away with it.
func TestPoolHintsBelongToTheirDialler(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	tiny := shm.Geometry{SlotSize: 1, SlotCount: 1}
	d := dial(t, path, &Config{Pools: []PoolConfig{{ServiceID: sensor.ID, Kind: ReplyPool, Geometry: tiny},
		{ServiceID: "unrelated", Kind: ReplyPool, Geometry: tiny}}})
	eventually(t, func() bool { return d.Status().Dialler.Connected }, "connected")
	l.mu.Lock()
	hints := 0
	for _, p := range l.peers {
		hints += len(p.poolHints)
	}
	l.mu.Unlock()
	assert.Equal(t, 2, hints)
	// Publishing before anyone binds creates the pool with the default size:
	// a connected peer's hint does not reach pools it did not ask for.
	require.NoError(t, o.Publish(0, make([]byte, 100)))
	assert.Equal(t, DefaultGeometry.SlotSize, l.Status().Offers[0].Pool.SlotSize)
	require.NoError(t, d.Close())
	eventually(t, func() bool { return len(l.Status().Peers) == 0 }, "dialler gone, and its hints with it")
}
