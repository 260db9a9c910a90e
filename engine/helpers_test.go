package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitFor is the bound on every condition wait in these tests.
const waitFor = 10 * time.Second

// socketPath returns a short socket path in a fresh directory (sun_path is
// 108 bytes; t.TempDir can be longer).
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("/tmp", "gw")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// running starts n.Run on a goroutine and closes n (and waits for Run) at
// cleanup.
func running(t testing.TB, n *Node) *Node {
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, n.Close())
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after Close")
		}
	})
	return n
}

func listen(t testing.TB, path string, cfg *Config) *Node {
	n, err := Listen(path, cfg)
	require.NoError(t, err)
	return running(t, n)
}

func dial(t testing.TB, path string, cfg *Config) *Node {
	n, err := Dial(path, cfg)
	require.NoError(t, err)
	return running(t, n)
}

// eventually waits (bounded) until cond holds.
func eventually(t testing.TB, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, waitFor, 2*time.Millisecond, append([]any{msg}, args...)...)
}

var sensor = ServiceID{Interface: Interface{ID: "com.example.sensor", Major: 1, Minor: 0}, Instance: "front"}

// slotsInUse counts the slots an offer's pools have in use: its event pool
// and the reply pools of its bindings.
func slotsInUse(o OfferStatus) int {
	n := 0
	if o.Pool != nil {
		n = o.Pool.InUse
	}
	for _, b := range o.Bindings {
		if b.ReplyPool != nil {
			n += b.ReplyPool.InUse
		}
	}
	return n
}

// pump dispatches nodes by hand, one round each in turn, until cond holds
// (bounded): the order of events between them is then the test's.
func pump(t testing.TB, nodes []*Node, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !cond(); {
		require.True(t, time.Now().Before(deadline), "%s: not within %v", what, waitFor)
		for _, n := range nodes {
			_, _, err := n.Dispatch(time.Millisecond)
			require.NoError(t, err)
		}
	}
}

// waitTimers are reused by recvWithin, which thus allocates nothing once
// warm: it also bounds the waits of allocation-counting loops and
// benchmarks. A channel, not a sync.Pool, which a GC empties.
var waitTimers = make(chan *time.Timer, 64)

// bindingOf returns the binding of the peer named name to the first offer in st.
func bindingOf(st Status, name string) (BindingStatus, bool) {
	for _, p := range st.Peers {
		if p.Name != name {
			continue
		}
		for _, b := range st.Offers[0].Bindings {
			if b.Peer == p.ID {
				return b, true
			}
		}
	}
	return BindingStatus{}, false
}

// handDriven returns a listener and a dialler connected to it that nobody
// dispatches: the test drives them (see pump). Both close at cleanup.
func handDriven(t testing.TB) (l, d *Node) {
	path := socketPath(t)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	d, err = Dial(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return l, d
}

// recvWithin receives from ch, failing the test if nothing comes within
// waitFor.
func recvWithin[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	var timer *time.Timer
	select {
	case timer = <-waitTimers:
		timer.Reset(waitFor)
	default:
		timer = time.NewTimer(waitFor)
	}
	select {
	case v := <-ch:
		timer.Stop()
		select {
		case waitTimers <- timer:
		default:
		}
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing within %v", what, waitFor)
		panic("unreachable")
	}
}

// spinUntil retries cond until it holds, failing the test after waitFor.
// Unlike eventually it runs cond on the calling goroutine and allocates
// nothing, for hot loops.
func spinUntil(t testing.TB, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		runtime.Gosched()
	}
}

// bindByHand offers sensor (cfg) on l and subscribes handler to its event
// 0 from d, dispatching both by hand until they are bound with rings.
func bindByHand(t testing.TB, l, d *Node, cfg *OfferConfig, handler func(Sample)) (*Offer, *Proxy) {
	t.Helper()
	o, err := l.Offer(sensor, cfg)
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	require.NoError(t, px.Subscribe(0, Updates, handler))
	pump(t, []*Node{l, d}, func() bool {
		st, _ := px.Subscription(0)
		return st == SubscriptionActive && d.Status().Peers[0].Ring && l.Status().Peers[0].Ring
	}, "bound with rings")
	return o, px
}
