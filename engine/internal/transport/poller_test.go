package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func pollerT(tb testing.TB) *Poller {
	tb.Helper()
	p, err := NewPoller()
	require.NoError(tb, err)
	tb.Cleanup(func() { p.Close() })
	return p
}

// waitEvents calls Wait until it reports something, bounded by waitTimeout.
func waitEvents(tb testing.TB, p *Poller) []Event {
	tb.Helper()
	evs := make([]Event, 16)
	n, err := p.Wait(evs, waitTimeout)
	require.NoError(tb, err)
	require.Positive(tb, n, "no event within %v", waitTimeout)
	return evs[:n]
}

// waitNone checks that Wait reports nothing for d.
func waitNone(tb testing.TB, p *Poller, d time.Duration) {
	tb.Helper()
	evs := make([]Event, 16)
	n, err := p.Wait(evs, d)
	require.NoError(tb, err)
	require.Zero(tb, n, "unexpected events %+v", evs[:n])
}

func TestPollerReadable(t *testing.T) {
	checkFDLeaks(t)
	p := pollerT(t)
	a, b := pairT(t)
	require.NoError(t, p.Add(b.Fd(), 42, false))
	waitNone(t, p, 0)

	require.NoError(t, a.Send([]byte("x"), nil))
	evs := waitEvents(t, p)
	require.Len(t, evs, 1)
	assert.Equal(t, Event{Token: 42, Readable: true}, evs[0])

	// Level-triggered: reported until read.
	assert.Equal(t, []Event{{Token: 42, Readable: true}}, waitEvents(t, p))
	_, _ = recvT(t, b, nil)
	waitNone(t, p, 0)

	// A 64-bit token survives the round trip.
	big := uint64(0xdeadbeef_cafef00d)
	require.NoError(t, p.Modify(b.Fd(), big, false))
	require.NoError(t, a.Send([]byte("x"), nil))
	assert.Equal(t, []Event{{Token: big, Readable: true}}, waitEvents(t, p))
}

// A counter fd (a pipe's read end) is edge-triggered: each burst of writes
// is reported once, with nothing read.
func TestPollerCounter(t *testing.T) {
	checkFDLeaks(t)
	p := pollerT(t)
	var pipe [2]int
	require.NoError(t, unix.Pipe2(pipe[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	require.NoError(t, p.AddCounter(pipe[0], 7))
	assert.ErrorIs(t, p.AddCounter(pipe[1], TokenWake), ErrReservedToken)
	waitNone(t, p, 0)
	for range 3 {
		_, err := unix.Write(pipe[1], []byte{1})
		require.NoError(t, err)
		_, err = unix.Write(pipe[1], []byte{1})
		require.NoError(t, err)
		assert.Equal(t, []Event{{Token: 7, Readable: true}}, waitEvents(t, p), "two writes, one report")
		waitNone(t, p, 0) // unread, yet not reported again
	}
}

func TestPollerWritableAndHangup(t *testing.T) {
	p := pollerT(t)
	a, b := pairT(t)
	require.NoError(t, p.Add(a.Fd(), 1, true))
	assert.Equal(t, []Event{{Token: 1, Writable: true}}, waitEvents(t, p))

	require.NoError(t, p.Modify(a.Fd(), 1, false))
	waitNone(t, p, 0)

	require.NoError(t, b.Close())
	evs := waitEvents(t, p)
	require.Len(t, evs, 1)
	assert.True(t, evs[0].Hangup, "%+v", evs[0])
	assert.True(t, evs[0].Readable, "EOF is readable: %+v", evs[0])
}

func TestPollerListener(t *testing.T) {
	p := pollerT(t)
	l := listenT(t, sockPath(t), ListenConfig{})
	require.NoError(t, p.Add(l.Fd(), 7, false))
	waitNone(t, p, 0)
	dialT(t, l.Path())
	assert.Equal(t, []Event{{Token: 7, Readable: true}}, waitEvents(t, p))
}

func TestPollerRemove(t *testing.T) {
	p := pollerT(t)
	a, b := pairT(t)
	require.NoError(t, p.Add(b.Fd(), 1, false))
	require.NoError(t, a.Send([]byte("x"), nil))
	waitEvents(t, p)
	require.NoError(t, p.Remove(b.Fd()))
	waitNone(t, p, 0) // the packet is still queued, but no longer reported
	require.Error(t, p.Remove(b.Fd()), "not registered")
}

func TestPollerReservedToken(t *testing.T) {
	p := pollerT(t)
	_, b := pairT(t)
	assert.ErrorIs(t, p.Add(b.Fd(), TokenWake, false), ErrReservedToken)
	assert.ErrorIs(t, p.Add(b.Fd(), TokenTimer, false), ErrReservedToken)
	require.NoError(t, p.Add(b.Fd(), 0, false))
	assert.ErrorIs(t, p.Modify(b.Fd(), TokenWake, false), ErrReservedToken)
	_, err := p.Wait(nil, 0)
	assert.Error(t, err, "Wait with no room")
}

func TestPollerWakeFromGoroutine(t *testing.T) {
	p := pollerT(t)
	type result struct {
		evs []Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		evs := make([]Event, 4)
		n, err := p.Wait(evs, -1)
		done <- result{evs[:n], err}
	}()
	go func() { p.Wake() }()
	select {
	case r := <-done:
		require.NoError(t, r.err)
		assert.Equal(t, []Event{{Token: TokenWake, Readable: true}}, r.evs)
	case <-time.After(waitTimeout):
		require.Fail(t, "Wait(-1) not woken")
	}
}

func TestPollerWakeCoalesces(t *testing.T) {
	p := pollerT(t)
	for range 100 {
		require.NoError(t, p.Wake())
	}
	assert.Equal(t, []Event{{Token: TokenWake, Readable: true}}, waitEvents(t, p))
	waitNone(t, p, 0)
}

func TestPollerTimer(t *testing.T) {
	p := pollerT(t)
	deadline := time.Now().Add(30 * time.Millisecond)
	require.NoError(t, p.SetTimer(deadline))
	evs := waitEvents(t, p)
	now := time.Now()
	assert.Equal(t, []Event{{Token: TokenTimer, Readable: true}}, evs)
	assert.False(t, now.Before(deadline), "fired %v early", deadline.Sub(now))
	waitNone(t, p, 50*time.Millisecond) // reported once

	// A deadline in the past fires at once.
	require.NoError(t, p.SetTimer(time.Now().Add(-time.Hour)))
	assert.Equal(t, []Event{{Token: TokenTimer, Readable: true}}, waitEvents(t, p))
}

func TestPollerTimerReplaceAndDisarm(t *testing.T) {
	p := pollerT(t)
	require.NoError(t, p.SetTimer(time.Now().Add(20*time.Millisecond)))
	require.NoError(t, p.SetTimer(time.Time{}))
	waitNone(t, p, 100*time.Millisecond)

	// Re-arming replaces the earlier deadline.
	require.NoError(t, p.SetTimer(time.Now().Add(time.Hour)))
	later := time.Now().Add(20 * time.Millisecond)
	require.NoError(t, p.SetTimer(later))
	assert.Equal(t, []Event{{Token: TokenTimer, Readable: true}}, waitEvents(t, p))
	assert.False(t, time.Now().Before(later))

	// A timer that fired and was re-armed before Wait read it is not
	// reported as fired.
	require.NoError(t, p.SetTimer(time.Now().Add(-time.Second)))
	waitReadable(t, p.Fd())
	require.NoError(t, p.SetTimer(time.Now().Add(time.Hour)))
	waitNone(t, p, 0)
}

func TestPollerWaitTimeout(t *testing.T) {
	p := pollerT(t)
	start := time.Now()
	waitNone(t, p, 1500*time.Microsecond) // sub-millisecond part rounded up
	assert.GreaterOrEqual(t, time.Since(start), 1500*time.Microsecond)
}

func TestPollerFdInOuterLoop(t *testing.T) {
	p := pollerT(t)
	a, b := pairT(t)
	require.NoError(t, p.Add(b.Fd(), 5, false))

	pfd := []unix.PollFd{{Fd: int32(p.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	require.NoError(t, err)
	require.Zero(t, n, "idle poller fd readable")

	require.NoError(t, a.Send([]byte("x"), nil))
	waitReadable(t, p.Fd())
	evs := make([]Event, 4)
	n, err = p.Wait(evs, 0)
	require.NoError(t, err)
	assert.Equal(t, []Event{{Token: 5, Readable: true}}, evs[:n])

	// The same holds for wake-ups.
	_, _ = recvT(t, b, nil)
	require.NoError(t, p.Wake())
	waitReadable(t, p.Fd())
}

func TestPollerClose(t *testing.T) {
	checkFDLeaks(t)
	p, err := NewPoller()
	require.NoError(t, err)
	a, b, err := Pair()
	require.NoError(t, err)
	require.NoError(t, p.Add(b.Fd(), 1, false))

	done := make(chan error, 1)
	go func() {
		evs := make([]Event, 4)
		for {
			if _, err := p.Wait(evs, -1); err != nil {
				done <- err
				return
			}
		}
	}()
	require.NoError(t, p.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(waitTimeout):
		require.Fail(t, "Close did not unblock Wait")
	}
	require.NoError(t, p.Close(), "second Close")
	assert.Equal(t, -1, p.Fd())
	assert.ErrorIs(t, p.Wake(), ErrClosed)
	assert.ErrorIs(t, p.SetTimer(time.Now()), ErrClosed)
	assert.ErrorIs(t, p.Add(a.Fd(), 1, false), ErrClosed)
	assert.ErrorIs(t, p.Remove(b.Fd()), ErrClosed)
	_, err = p.Wait(make([]Event, 1), 0)
	assert.ErrorIs(t, err, ErrClosed)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
}

func TestPollerConcurrentWakeAndTimer(t *testing.T) {
	p := pollerT(t)
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if err := p.Wake(); err != nil {
					errs <- err
					return
				}
				if err := p.SetTimer(time.Now().Add(time.Millisecond)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	evs := make([]Event, 4)
	var wakes, timers int
	for wakes == 0 || timers == 0 {
		n, err := p.Wait(evs, waitTimeout)
		require.NoError(t, err)
		require.Positive(t, n)
		for _, e := range evs[:n] {
			switch e.Token {
			case TokenWake:
				wakes++
			case TokenTimer:
				timers++
			}
		}
	}
	close(stop)
	for range 2 {
		require.NoError(t, <-errs)
	}
}

func TestPollerAllocs(t *testing.T) {
	p := pollerT(t)
	a, b := pairT(t)
	require.NoError(t, p.Add(b.Fd(), 1, false))
	evs := make([]Event, 8)

	allocs := testing.AllocsPerRun(200, func() {
		if n, err := p.Wait(evs, 0); err != nil || n != 0 {
			panic(errors.Join(err, errors.New("unexpected events")))
		}
	})
	assert.Zero(t, allocs, "Wait(0) with nothing ready")

	require.NoError(t, a.Send([]byte("x"), nil))
	allocs = testing.AllocsPerRun(200, func() {
		if err := p.Wake(); err != nil {
			panic(err)
		}
		if n, err := p.Wait(evs, 0); err != nil || n != 2 {
			panic(errors.Join(err, errors.New("want 2 events")))
		}
	})
	assert.Zero(t, allocs, "Wake + Wait(0) with events")
}

func BenchmarkPollerWakeWait(b *testing.B) {
	p := pollerT(b)
	evs := make([]Event, 8)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Wake(); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(evs, 0); err != nil {
			b.Fatal(err)
		}
	}
}
