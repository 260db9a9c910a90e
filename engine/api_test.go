package engine

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// boundPair returns a listener offering sensor (events, geometry) and a
// dialler subscribed to event 0, with received samples sent to the channel.
func boundPair(t *testing.T, cfg *OfferConfig, handler func(Sample)) (*Offer, *Proxy, *Node, *Node) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d := dial(t, path, nil)
	o, err := l.Offer(sensor, cfg)
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, px.Subscribe(0, Updates, handler))
	eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
	return o, px, l, d
}

func TestServiceIDValidation(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	long := strings.Repeat("x", 65)
	for _, svc := range []ServiceID{
		{Interface: Interface{ID: ""}, Instance: "i"},
		{Interface: Interface{ID: long}, Instance: "i"},
		{Interface: Interface{ID: "a"}, Instance: ""},
		{Interface: Interface{ID: "a"}, Instance: long},
	} {
		_, err := n.Offer(svc, nil)
		assert.ErrorIs(t, err, ErrInvalidService, "%v", svc)
		_, err = n.Require(svc, nil)
		assert.ErrorIs(t, err, ErrInvalidService, "%v", svc)
	}
}

func TestCompatibility(t *testing.T) {
	offer := ServiceID{Interface: Interface{ID: "s", Major: 2, Minor: 3}, Instance: "i"}
	tests := []struct {
		want ServiceID
		ok   bool
	}{
		{ServiceID{Interface: Interface{ID: "s", Major: 2, Minor: 3}, Instance: "i"}, true},
		{ServiceID{Interface: Interface{ID: "s", Major: 2, Minor: 0}, Instance: "i"}, true},
		{ServiceID{Interface: Interface{ID: "s", Major: 2, Minor: 4}, Instance: "i"}, false},
		{ServiceID{Interface: Interface{ID: "s", Major: 1, Minor: 0}, Instance: "i"}, false},
		{ServiceID{Interface: Interface{ID: "t", Major: 2, Minor: 0}, Instance: "i"}, false},
		{ServiceID{Interface: Interface{ID: "s", Major: 2, Minor: 0}, Instance: "j"}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.ok, offer.CompatibleWith(tt.want), "%v", tt.want)
	}
}

func TestIncompatibleMinorIsNotBound(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d := dial(t, path, nil)
	_, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	newer := sensor
	newer.Minor = 5
	px, err := d.Require(newer, nil)
	require.NoError(t, err)
	eventually(t, func() bool { return d.Status().Proxies[0].Counters.Incompatible == 1 }, "incompatible offer counted")
	assert.False(t, px.Available())
}

func TestDuplicatesAreRefused(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	_, err := n.Offer(sensor, nil)
	require.NoError(t, err)
	newerMinor := sensor
	newerMinor.Minor = 9
	_, err = n.Offer(newerMinor, nil)
	assert.ErrorIs(t, err, ErrDuplicate)
	_, err = n.Require(sensor, nil)
	require.NoError(t, err)
	_, err = n.Require(sensor, nil)
	assert.ErrorIs(t, err, ErrDuplicate)
}

func TestPublishErrors(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	o, err := n.Offer(sensor, &OfferConfig{Events: 2, Geometry: shm.Geometry{SlotSize: 8, SlotCount: 1}})
	require.NoError(t, err)
	assert.ErrorIs(t, o.Publish(2, nil), ErrUnknownEvent)
	assert.ErrorIs(t, o.Publish(0, make([]byte, 9)), ErrTooLarge)
	require.NoError(t, o.Publish(0, make([]byte, 8)), "no subscriber is not an error")
	l, err := o.Loan(1)
	require.NoError(t, err)
	_, err = o.Loan(1)
	assert.ErrorIs(t, err, ErrNoSlot)
	assert.ErrorIs(t, l.Publish(9), ErrTooLarge)
	require.NoError(t, l.Discard())
	assert.ErrorIs(t, l.Discard(), ErrLoanDone)
	assert.ErrorIs(t, l.Publish(1), ErrLoanDone)
	assert.Nil(t, l.Bytes())
	assert.ErrorIs(t, Loan{}.Publish(0), ErrLoanDone)
	require.NoError(t, o.Close())
	require.NoError(t, o.Close(), "Close is idempotent")
	assert.ErrorIs(t, o.Publish(0, nil), ErrClosed)
}

func TestLoanPublishesInPlace(t *testing.T) {
	got := make(chan string, 1)
	o, _, _, _ := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 2}},
		func(s Sample) { got <- string(s.Data()) })
	l, err := o.Loan(0)
	require.NoError(t, err)
	require.Len(t, l.Bytes(), 64)
	n := copy(l.Bytes(), "written in place")
	copyOfLoan := l
	require.NoError(t, l.Publish(n))
	assert.ErrorIs(t, copyOfLoan.Publish(n), ErrLoanDone, "a copy of a published loan is done too")
	assert.Equal(t, "written in place", recvWithin(t, got, "the loaned update"))
}

func TestKeptSampleHoldsItsSlotUntilReleased(t *testing.T) {
	kept := make(chan Sample, 1)
	o, _, l, _ := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 16, SlotCount: 1}, NoInline: true},
		func(s Sample) { s.Keep(); kept <- s })
	require.NoError(t, o.Publish(0, []byte("keep me")))
	s := recvWithin(t, kept, "the kept sample")
	assert.Equal(t, "keep me", string(s.Data()))
	assert.Equal(t, uint64(1), s.Seq())
	assert.False(t, s.Requested())
	assert.ErrorIs(t, o.Publish(0, []byte("x")), ErrNoSlot)
	s.Release()
	s.Release() // idempotent
	assert.Nil(t, s.Data())
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "slot back")
	require.NoError(t, o.Publish(0, []byte("x")))
}

func TestFailedPublishLeavesNoSequenceGap(t *testing.T) {
	block := make(chan struct{})
	seqs := make(chan uint64, 8)
	o, _, _, d := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 8, SlotCount: 1}, NoInline: true},
		func(s Sample) {
			seqs <- s.Seq()
			select {
			case <-block:
			case <-time.After(waitFor):
				t.Error("the handler was never unblocked")
			}
		})
	require.NoError(t, o.Publish(0, []byte("1")))
	require.Equal(t, uint64(1), recvWithin(t, seqs, "update 1")) // the handler now holds the only slot
	assert.ErrorIs(t, o.Publish(0, []byte("2")), ErrNoSlot)
	close(block)
	eventually(t, func() bool { return o.Publish(0, []byte("3")) == nil }, "slot back")
	assert.Equal(t, uint64(2), recvWithin(t, seqs, "update 3"), "a refused publish takes no sequence number")
	assert.Zero(t, d.Status().Proxies[0].Counters.Gaps)
}

func TestClosedNodeRefusesEverything(t *testing.T) {
	n, err := Listen(socketPath(t), nil)
	require.NoError(t, err)
	o, err := n.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	px, err := n.Require(testService("other"), nil)
	require.NoError(t, err)
	require.NoError(t, n.Close())
	require.NoError(t, n.Close())
	_, _, err = n.Dispatch(0)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = n.Offer(testService("x"), nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = n.Require(testService("x"), nil)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, o.Publish(0, nil), ErrClosed)
	assert.ErrorIs(t, px.Subscribe(0, Updates, func(Sample) {}), ErrClosed)
}

func TestDispatchDrivenByTheCaller(t *testing.T) {
	l, d := handDriven(t)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	var got []string
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { got = append(got, string(s.Data())) }))

	// One goroutine, two nodes, poll(2) on both fds: what a C event loop does.
	pump := func(until func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for !until() {
			require.True(t, time.Now().Before(deadline), "condition not reached")
			fds := []unix.PollFd{{Fd: int32(l.Fd()), Events: unix.POLLIN}, {Fd: int32(d.Fd()), Events: unix.POLLIN}}
			_, err := unix.Poll(fds, 100)
			if err != nil && err != unix.EINTR {
				require.NoError(t, err)
			}
			_, _, err = l.Dispatch(0)
			require.NoError(t, err)
			_, _, err = d.Dispatch(0)
			require.NoError(t, err)
		}
	}
	pump(func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive })
	require.NoError(t, o.Publish(0, []byte("polled")))
	pump(func() bool { return len(got) == 1 })
	assert.Equal(t, []string{"polled"}, got)
}

func TestConcurrentDispatchIsRefused(t *testing.T) {
	n, err := Listen(socketPath(t), nil)
	require.NoError(t, err)
	defer n.Close()
	entered := make(chan struct{})
	go func() {
		close(entered)
		n.Dispatch(-1)
	}()
	recvWithin(t, entered, "dispatcher started")
	eventually(t, func() bool { _, _, err := n.Dispatch(0); return err == ErrBusy }, "second dispatcher refused")
	require.NoError(t, n.Close()) // wakes the blocked dispatcher
}

func TestDiallerConnectsWhenTheListenerAppearsLater(t *testing.T) {
	path := socketPath(t)
	connected := make(chan *Peer, 1)
	d := dial(t, path, &Config{ReconnectMax: 20 * time.Millisecond, OnPeerConnected: func(p *Peer) { connected <- p }})
	eventually(t, func() bool { return d.Status().Dialler.Attempts >= 2 }, "retrying")
	assert.Contains(t, d.Status().Dialler.LastError, "no listener")
	listen(t, path, &Config{Name: "late"})
	select {
	case p := <-connected:
		assert.Equal(t, "late", p.Name())
		assert.Equal(t, os.Getpid(), p.PID())
		p.SetPrivate("mine")
		assert.Equal(t, "mine", p.Private())
	case <-time.After(waitFor):
		t.Fatal("no connection")
	}
	assert.True(t, d.Status().Dialler.Connected)
}

func TestSecondListenerOnALivePathIsRefused(t *testing.T) {
	path := socketPath(t)
	listen(t, path, nil)
	_, err := Listen(path, nil)
	assert.ErrorIs(t, err, transport.ErrAddrInUse)
}

func TestListenerSocketModeAndRemoval(t *testing.T) {
	path := socketPath(t)
	n, err := Listen(path, &Config{SocketMode: 0o660})
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
	require.NoError(t, n.Close())
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "socket removed on close")
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []*Config{
		{Name: strings.Repeat("n", 65)},
		{MaxPacket: 100},
		{ReconnectMin: time.Second, ReconnectMax: time.Millisecond},
		{Pools: []PoolConfig{{ServiceID: "x", Geometry: shm.Geometry{}}}},
	} {
		_, err := Dial("/tmp/x", cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
	}
	_, err := Dial(strings.Repeat("p", 200), nil)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestStatusMarshalsToJSON(t *testing.T) {
	_, _, l, d := boundPair(t, &OfferConfig{Events: 1}, func(Sample) {})
	for _, n := range []*Node{l, d} {
		b, err := json.Marshal(n.Status())
		require.NoError(t, err)
		var back Status
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Len(t, back.Peers, 1)
	}
	st := l.Status()
	require.Len(t, st.Offers, 1)
	require.Len(t, st.Offers[0].Bindings, 1)
	assert.Equal(t, []uint16{0}, st.Offers[0].Bindings[0].Events)
	assert.Equal(t, "listener", st.Role)
	assert.Equal(t, "dialler", d.Status().Role)
}

// Nothing outlives Close: fds, mappings, goroutines.
func TestCloseLeaksNothing(t *testing.T) {
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	maps := func() int {
		b, _ := os.ReadFile("/proc/self/maps")
		return strings.Count(string(b), "memfd:gwipc")
	}
	runtime.GC()
	baseFDs, baseMaps, baseG := fds(), maps(), runtime.NumGoroutine()
	func() {
		path := socketPath(t)
		l, err := Listen(path, nil)
		require.NoError(t, err)
		d, err := Dial(path, nil)
		require.NoError(t, err)
		go l.Run(t.Context())
		go d.Run(t.Context())
		o, err := l.Offer(sensor, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 4}})
		require.NoError(t, err)
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		kept := make(chan Sample, 1)
		require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { s.Keep(); kept <- s }))
		eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
		require.NoError(t, o.Publish(0, []byte("x")))
		s := recvWithin(t, kept, "the kept sample")
		require.Greater(t, maps(), baseMaps)
		require.NoError(t, d.Close())
		require.NoError(t, l.Close())
		s.Release() // after Close: still safe, and the last mapping goes
	}()
	eventually(t, func() bool { return fds() == baseFDs }, "fds back to %d (now %d)", baseFDs, fds())
	eventually(t, func() bool { return maps() == baseMaps }, "mappings back to %d (now %d)", baseMaps, maps())
	// Polled here, not with Eventually, whose condition runs on goroutines of its own.
	for deadline := time.Now().Add(waitFor); runtime.NumGoroutine() > baseG; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want %d\n%s", runtime.NumGoroutine(), baseG, buf[:runtime.Stack(buf, true)])
		}
	}

}

func TestReleasingNilIsHarmless(t *testing.T) {
	var r Reply
	var s Sample
	r.Release()
	s.Release()
}

// The hot paths (publish, deliver, consume, call, reply) allocate nothing
// per message once warm, across both nodes' goroutines. The subscriber may
// hold the whole pool: Publish does not wait for the provider's dispatch,
// which may lag behind the consumer's releases, so with a smaller share
// an update would be dropped instead of Publish failing for a moment.
func TestHotPathsDoNotAllocate(t *testing.T) {
	got := make(chan struct{}, 1)
	o, px, _, _ := boundPair(t, &OfferConfig{Events: 1, Methods: 1, SubscriberSlots: int(DefaultGeometry.SlotCount),
		OnCall: func(c Call) { c.Reply(c.Data()) }},
		func(Sample) { got <- struct{}{} })
	data := make([]byte, 64)
	publish := func() {
		spinUntil(t, func() bool { return o.Publish(0, data) == nil }, "a free slot") // one may still be on its way back
		recvWithin(t, got, "the update")
	}
	done := make(chan error, 1)
	complete := func(_ Reply, err error) { done <- err }
	call := func() {
		if _, err := px.CallAsync(0, data, CallOptions{}, complete); err != nil {
			t.Fatal(err)
		}
		if err := recvWithin(t, done, "the call's completion"); err != nil {
			t.Fatal(err)
		}
	}
	assertNoAllocs(t, publish, "publish, deliver, consume")
	assertNoAllocs(t, call, "call, reply")
}

// A dispatch that takes a full round of updates at once (a subscriber that
// fell behind a stream) allocates nothing either: the node keeps a round's
// worth of sample records, and inline payloads go into buffers it reuses.
func TestAFullRoundOfUpdatesDoesNotAllocate(t *testing.T) {
	l, d := handDriven(t)
	const burst = maxRoundCallbacks
	got := 0
	o, _ := bindByHand(t, l, d, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 64, SlotCount: burst}, SubscriberSlots: burst},
		func(Sample) { got++ })
	data := make([]byte, 64)
	round := func() {
		for range burst {
			if err := o.Publish(0, data); err != nil {
				t.Fatal(err)
			}
		}
		want := got + burst
		for got < want {
			if _, _, err := d.Dispatch(waitFor); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 5 {
		round()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		round()
	}
	runtime.ReadMemStats(&after)
	t.Logf("%d heap allocations over 20 rounds of %d updates", after.Mallocs-before.Mallocs, burst)
	assert.LessOrEqual(t, after.Mallocs-before.Mallocs, uint64(allocsTolerated))
}

// The blocking paths, with both nodes in Run, allocate nothing per message
// once warm: Proxy.Call, and LoanWait and PublishWait on a 1-slot pool, so
// that nearly every wait blocks until the subscriber's release comes back.
func TestBlockingPathsDoNotAllocate(t *testing.T) {
	got := make(chan struct{}, 1)
	o, px, _, _ := boundPair(t, &OfferConfig{Events: 1, Methods: 1,
		Geometry: shm.Geometry{SlotSize: 64, SlotCount: 1}, SubscriberSlots: 1,
		OnCall: func(c Call) { c.Reply(c.Data()) }},
		func(Sample) { got <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background()) // a Done channel, as real callers have
	defer cancel()
	data := make([]byte, 64)
	call := func() {
		r, err := px.Call(ctx, 0, data)
		if err != nil {
			t.Fatal(err)
		}
		r.Release()
	}
	loan := func() {
		l, err := o.LoanWait(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Publish(8); err != nil {
			t.Fatal(err)
		}
		recvWithin(t, got, "the update")
	}
	publish := func() {
		if err := o.PublishWait(ctx, 0, data); err != nil {
			t.Fatal(err)
		}
		recvWithin(t, got, "the update")
	}
	assertNoAllocs(t, call, "Proxy.Call")
	assertNoAllocs(t, loan, "LoanWait, Publish")
	assertNoAllocs(t, publish, "PublishWait")
}

// assertNoAllocs warms up with allocRuns/10 runs of f, then runs f allocRuns
// times and fails if the process allocated more than allocsTolerated times,
// on any goroutine. Unlike testing.AllocsPerRun, which rounds the average
// down to 0, it catches an allocation that happens once every few hundred
// messages. The warm-up lets pools and queues reach their size, and also
// Go's per-P caches of wait records (sudogs): while an application
// goroutine and a Run goroutine take turns on the node's lock, the runtime
// allocates up to a few hundred of them before they circulate, none of them
// on a path of ours (a heap profile at MemProfileRate 1 shows them under
// sync.Mutex.lockSlow). What is left is the few dozen the runtime makes now
// and then, however many runs.
func assertNoAllocs(t *testing.T, f func(), what string) {
	t.Helper()
	const runs = allocRuns
	for range runs / 10 {
		f()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	t.Logf("%s: %d heap allocations over %d runs", what, after.Mallocs-before.Mallocs, runs)
	assert.LessOrEqual(t, after.Mallocs-before.Mallocs, uint64(allocsTolerated), "%s: heap allocations over %d runs", what, runs)
}

// The heap stays flat over many events: nothing grows per message.
func TestHeapIsFlatOverManyEvents(t *testing.T) {
	got := make(chan struct{}, 1)
	o, _, _, _ := boundPair(t, &OfferConfig{Events: 1, SubscriberSlots: int(DefaultGeometry.SlotCount)},
		func(Sample) { got <- struct{}{} })
	ctx := context.Background()
	data := make([]byte, 64)
	publish := func(n int) {
		for range n {
			if err := o.PublishWait(ctx, 0, data); err != nil {
				t.Fatal(err)
			}
			recvWithin(t, got, "the update")
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	publish(1000)
	before := heap()
	publish(manyEvents)
	after := heap()
	assert.Less(t, after, before+64<<10, "heap %d → %d bytes over %d events", before, after, manyEvents)
}
