package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A subscriber that spins takes its next update without being woken: the
// publisher writes the entry and finds it not parked.
func TestSpinningSubscriberNeedsNoWakeUps(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	d := dial(t, path, &Config{Spin: 50 * time.Millisecond})
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	got := make(chan struct{}, 1)
	require.NoError(t, px.Subscribe(0, Updates, func(Sample) { got <- struct{}{} }))
	eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive && l.Status().Peers[0].Ring }, "subscribed, with rings")
	before := l.Status().Peers[0].RingWakes
	const n = 200
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		require.NoError(t, o.PublishWait(ctx, 0, []byte("x")))
		cancel()
		recvWithin(t, got, "update")
	}
	wakes := l.Status().Peers[0].RingWakes - before
	assert.Less(t, wakes, uint64(n/2), "most updates found the subscriber spinning, not parked")
}

// The spin budget: none without rings or when a peer shares our only CPU;
// it halves after spins that find nothing and comes back after a while.
func TestSpinBudgetAdapts(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d, err := Dial(path, &Config{Spin: time.Millisecond})
	require.NoError(t, err)
	defer d.Close()
	d.mu.Lock()
	assert.Zero(t, d.spinBudget(), "no rings yet")
	d.mu.Unlock()
	for i := 0; ; i++ { // dispatched by hand: the spins are ours to count
		require.Less(t, i, 1000, "no rings")
		_, _, err := d.Dispatch(time.Millisecond)
		require.NoError(t, err)
		d.mu.Lock()
		ready := len(d.rings) == 1
		d.mu.Unlock()
		if ready {
			break
		}
	}
	_ = l
	d.mu.Lock()
	defer d.mu.Unlock()
	peerCPUs := word(d.rings[0].ring.peer, ctlCPU).Load()
	d.cpus = peerCPUs
	if sharesOneCPU(d.cpus, peerCPUs) {
		assert.Zero(t, d.spinBudget(), "never spin where the peer shares our only CPU")
	}
	d.cpus = 1
	d.spin = 0
	require.Equal(t, time.Millisecond, d.spinBudget(), "a full budget at first")
	for range 12 {
		d.spinBeforeParking() // finds nothing: the listener sends nothing
	}
	assert.Zero(t, d.spinBudget(), "decayed below the floor: no spin")
	for range 64 {
		d.spinBudget()
	}
	assert.Equal(t, time.Millisecond, d.spin, "a full spin is tried again after a while")
}

// Closing a node while its dispatcher spins on a ring leaves the ring
// mapped until the spin is over (reading it unmapped would crash).
func TestCloseWhileSpinning(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	for range 20 {
		d, err := Dial(path, &Config{Spin: time.Minute}) // Run returns in time only if Close ends the spin
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		eventually(t, px.Available, "bound")
		eventually(t, func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.spinning }, "spinning")
		require.NoError(t, d.Close())
		require.NoError(t, recvWithin(t, done, "Run"))
	}
}
