package shm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewPoolBadGeometry(t *testing.T) {
	checkLeaks(t)
	for _, g := range []Geometry{{0, 1}, {1, 0}, {4097, MaxSlots}} {
		p, err := NewPool("bad", g)
		assert.ErrorIs(t, err, ErrBadGeometry, "geometry %+v", g)
		assert.Nil(t, p)
	}
}

func TestNewPoolBadName(t *testing.T) {
	checkLeaks(t)
	p, err := NewPool("nul\x00byte", Geometry{8, 1})
	require.Error(t, err, "memfd names cannot hold NUL")
	var serr *os.SyscallError
	assert.ErrorAs(t, err, &serr)
	assert.Nil(t, p)
}

func TestPoolLongName(t *testing.T) {
	checkLeaks(t)
	name := strings.Repeat("x", 300)
	newTestPool(t, name, Geometry{8, 1})
	assert.Equal(t, 1, countMappings(t, gwipcMaps+"xxxx"))
}

func TestAllocFreeLIFO(t *testing.T) {
	checkLeaks(t)
	g := Geometry{SlotSize: 100, SlotCount: 4}
	p := newTestPool(t, "lifo", g)

	for want := range uint32(4) {
		got, err := p.Alloc()
		require.NoError(t, err)
		assert.Equal(t, want, got, "fresh pool hands out slots in order")
	}
	_, err := p.Alloc()
	require.ErrorIs(t, err, ErrNoSlot)
	assert.Equal(t, PoolStats{SlotSize: 100, SlotCount: 4, InUse: 4, AllocFailures: 1}, p.Stats())

	require.NoError(t, p.Free(1))
	require.NoError(t, p.Free(3))
	got, err := p.Alloc()
	require.NoError(t, err)
	assert.Equal(t, uint32(3), got, "last freed slot is reused first")
	got, err = p.Alloc()
	require.NoError(t, err)
	assert.Equal(t, uint32(1), got)

	for i := range uint32(4) {
		require.NoError(t, p.Free(i))
	}
	assert.Equal(t, 0, p.Stats().InUse)
}

func TestSlotVisibleThroughView(t *testing.T) {
	checkLeaks(t)
	g := Geometry{SlotSize: 100, SlotCount: 4}
	p := newTestPool(t, "visible", g)
	v := mapTestView(t, p)
	assert.Equal(t, g, v.Geometry())
	assert.Equal(t, 2, countMappings(t, poolMaps("visible")), "writer and reader mappings")

	for range 4 {
		i, err := p.Alloc()
		require.NoError(t, err)
		b := p.Slot(i)
		require.Len(t, b, 100)
		assert.Equal(t, 100, cap(b), "slot view must not reach into the next slot")
		msg := fmt.Sprintf("payload in slot %d", i)
		copy(b, msg)
		b[99] = byte(i)

		got, err := v.Bytes(Handle{Slot: i, Len: uint32(len(msg))})
		require.NoError(t, err)
		assert.Equal(t, msg, string(got))
		full, err := v.Bytes(Handle{Slot: i, Len: 100})
		require.NoError(t, err)
		assert.Equal(t, byte(i), full[99])
	}
}

func TestSlot(t *testing.T) {
	p := newTestPool(t, "slot", Geometry{8, 2})
	assert.Nil(t, p.Slot(0), "free slot")
	assert.Nil(t, p.Slot(2), "out of range")
	i, err := p.Alloc()
	require.NoError(t, err)
	assert.Len(t, p.Slot(i), 8)
	r, err := p.AddReader(0)
	require.NoError(t, err)
	require.NoError(t, p.Share(i, r))
	require.NoError(t, p.Free(i))
	assert.Nil(t, p.Slot(i), "held by a reader but no longer owned: not writable")
	assert.Equal(t, 1, p.Stats().InUse)
}

func TestFanOut(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "fanout", Geometry{64, 4})
	var rs [3]ReaderID
	for k := range rs {
		var err error
		rs[k], err = p.AddReader(0)
		require.NoError(t, err)
	}
	other, err := p.AddReader(0)
	require.NoError(t, err)

	i, err := p.Alloc()
	require.NoError(t, err)
	for _, r := range rs {
		require.NoError(t, p.Share(i, r))
	}
	require.NoError(t, p.Free(i))
	assert.Equal(t, 1, p.Stats().InUse, "held by readers after the owner freed it")
	require.ErrorIs(t, p.Free(i), ErrNotAllocated, "owner reference already dropped")

	require.ErrorIs(t, p.Release(i, other), ErrNotHeld)
	for k, r := range rs {
		assert.Equal(t, 1, p.Stats().InUse, "before release %d", k)
		require.NoError(t, p.Release(i, r))
		require.ErrorIs(t, p.Release(i, r), ErrNotHeld, "second release by reader %d", k)
	}
	assert.Equal(t, 0, p.Stats().InUse)
	for range 4 {
		_, err := p.Alloc()
		require.NoError(t, err, "every slot is free again")
	}
}

func TestRemoveReader(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "remove", Geometry{64, 4})
	r, err := p.AddReader(0)
	require.NoError(t, err)
	keep, err := p.AddReader(0)
	require.NoError(t, err)

	a, err := p.Alloc()
	require.NoError(t, err)
	b, err := p.Alloc()
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, p.Share(a, r), "same slot held several times")
	}
	require.NoError(t, p.Share(b, r))
	require.NoError(t, p.Share(b, keep))
	require.NoError(t, p.Free(a))
	require.NoError(t, p.Free(b))
	assert.Equal(t, 4, p.Holds(r))
	assert.Equal(t, 2, p.Stats().Readers)

	assert.Equal(t, 4, p.RemoveReader(r))
	assert.Equal(t, 0, p.Holds(r))
	assert.Equal(t, 0, p.RemoveReader(r), "second removal")
	assert.Equal(t, 1, p.Stats().InUse, "slot a freed, slot b still held by the other reader")
	assert.Equal(t, 1, p.Stats().Readers)
	require.ErrorIs(t, p.Release(a, r), ErrUnknownReader)
	require.ErrorIs(t, p.Share(b, r), ErrNotAllocated)

	// The id may be reused; the new reader starts with no holds.
	r2, err := p.AddReader(0)
	require.NoError(t, err)
	assert.Equal(t, 0, p.Holds(r2))
	require.ErrorIs(t, p.Release(a, r2), ErrNotHeld)

	assert.Equal(t, 1, p.RemoveReader(keep))
	assert.Equal(t, 0, p.Stats().InUse)
}

func TestReaderQuota(t *testing.T) {
	p := newTestPool(t, "quota", Geometry{64, 8})
	r, err := p.AddReader(2)
	require.NoError(t, err)
	i, err := p.Alloc()
	require.NoError(t, err)
	j, err := p.Alloc()
	require.NoError(t, err)

	require.NoError(t, p.Share(i, r))
	require.NoError(t, p.Share(i, r))
	require.ErrorIs(t, p.Share(j, r), ErrReaderQuota)
	require.NoError(t, p.Release(i, r))
	require.NoError(t, p.Share(j, r), "quota frees up after a release")
	require.ErrorIs(t, p.Share(j, r), ErrReaderQuota)

	require.NoError(t, p.SetReaderLimit(r, 3))
	require.NoError(t, p.Share(j, r))
	require.NoError(t, p.SetReaderLimit(r, 1))
	assert.Equal(t, 3, p.Holds(r), "lowering the limit keeps existing holds")
	require.ErrorIs(t, p.Share(j, r), ErrReaderQuota)

	require.NoError(t, p.SetReaderLimit(r, 0))
	for range 5 {
		require.NoError(t, p.Share(j, r), "limit 0 means SlotCount")
	}
	require.ErrorIs(t, p.Share(j, r), ErrReaderQuota)
}

func TestPoolErrors(t *testing.T) {
	p := newTestPool(t, "errors", Geometry{64, 4})
	r, err := p.AddReader(0)
	require.NoError(t, err)
	gone, err := p.AddReader(0)
	require.NoError(t, err)
	p.RemoveReader(gone)
	owned, err := p.Alloc()
	require.NoError(t, err)
	const unallocated = 3

	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"free bad slot", func() error { return p.Free(4) }, ErrBadSlot},
		{"free max slot", func() error { return p.Free(math.MaxUint32) }, ErrBadSlot},
		{"free unallocated", func() error { return p.Free(unallocated) }, ErrNotAllocated},
		{"share bad slot", func() error { return p.Share(4, r) }, ErrBadSlot},
		{"share unallocated", func() error { return p.Share(unallocated, r) }, ErrNotAllocated},
		{"share unknown reader", func() error { return p.Share(owned, 99) }, ErrUnknownReader},
		{"share negative reader", func() error { return p.Share(owned, -1) }, ErrUnknownReader},
		{"share removed reader", func() error { return p.Share(owned, gone) }, ErrUnknownReader},
		{"release bad slot", func() error { return p.Release(4, r) }, ErrBadSlot},
		{"release unknown reader", func() error { return p.Release(owned, 99) }, ErrUnknownReader},
		{"release removed reader", func() error { return p.Release(owned, gone) }, ErrUnknownReader},
		{"release not held", func() error { return p.Release(owned, r) }, ErrNotHeld},
		{"release unallocated", func() error { return p.Release(unallocated, r) }, ErrNotHeld},
		{"add reader negative limit", func() error { _, err := p.AddReader(-1); return err }, ErrBadLimit},
		{"set limit negative", func() error { return p.SetReaderLimit(r, -1) }, ErrBadLimit},
		{"set limit unknown reader", func() error { return p.SetReaderLimit(gone, 1) }, ErrUnknownReader},
		{"zero loan handle", func() error { _, err := Loan{}.Handle(0); return err }, ErrNotAllocated},
		{"zero loan discard", func() error { return Loan{}.Discard() }, ErrNotAllocated},
	}
	if strconv.IntSize == 64 {
		huge := int64(math.MaxInt32) + 1
		tests = append(tests, struct {
			name string
			op   func() error
			want error
		}{"add reader huge limit", func() error { _, err := p.AddReader(int(huge)); return err }, ErrBadLimit})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.op(), tt.want)
		})
	}
	assert.Equal(t, 0, p.Holds(99))
	assert.Equal(t, 0, p.RemoveReader(-5))
	assert.Equal(t, 1, p.Stats().InUse, "failed calls change nothing")
}

func TestLoan(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, "loan", Geometry{10, 2})
	v := mapTestView(t, p)

	l, err := p.Loan()
	require.NoError(t, err)
	require.Len(t, l.Bytes(), 10)
	assert.Equal(t, 10, cap(l.Bytes()))
	n := copy(l.Bytes(), "hi there")
	h, err := l.Handle(n)
	require.NoError(t, err)
	assert.Equal(t, Handle{Slot: l.Slot(), Len: 8}, h)
	got, err := v.Bytes(h)
	require.NoError(t, err)
	assert.Equal(t, "hi there", string(got))

	for _, n := range []int{-1, 11, math.MaxInt} {
		_, err := l.Handle(n)
		assert.ErrorIs(t, err, ErrBadLength, "n=%d", n)
	}
	for _, n := range []int{0, 10} {
		_, err := l.Handle(n)
		assert.NoError(t, err, "n=%d", n)
	}

	require.NoError(t, l.Discard())
	require.ErrorIs(t, l.Discard(), ErrNotAllocated, "double discard")

	// A stale copy of a loan cannot free the slot's next owner.
	stale := l
	again, err := p.Loan()
	require.NoError(t, err)
	require.Equal(t, l.Slot(), again.Slot(), "LIFO reuse")
	require.ErrorIs(t, stale.Discard(), ErrNotAllocated)
	assert.Equal(t, 1, p.Stats().InUse)

	_, err = p.Loan()
	require.NoError(t, err)
	_, err = p.Loan()
	require.ErrorIs(t, err, ErrNoSlot)
	assert.Equal(t, uint64(1), p.Stats().AllocFailures)
}

func TestPoolClosed(t *testing.T) {
	checkLeaks(t)
	p, err := NewPool("closed", Geometry{64, 4})
	require.NoError(t, err)
	r, err := p.AddReader(0)
	require.NoError(t, err)
	i, err := p.Alloc()
	require.NoError(t, err)
	require.NoError(t, p.Share(i, r))
	require.NoError(t, p.Share(i, r))
	j, err := p.Alloc()
	require.NoError(t, err)
	require.NoError(t, p.Share(j, r))
	require.NoError(t, p.Free(j)) // j now held only by r

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	assert.Equal(t, -1, p.Fd())
	assert.Equal(t, PoolStats{SlotSize: 64, SlotCount: 4, InUse: 1}, p.Stats(),
		"reader holds released; the owned slot stays in use")
	assert.Equal(t, 1, countMappings(t, poolMaps("closed")), "owned slot keeps the mapping")
	assert.Len(t, p.Slot(i), 64, "owned slot still writable after Close")
	assert.Nil(t, p.Slot(j))

	tests := []struct {
		name string
		op   func() error
	}{
		{"alloc", func() error { _, err := p.Alloc(); return err }},
		{"alloc wait", func() error { _, err := p.AllocWait(context.Background()); return err }},
		{"loan", func() error { _, err := p.Loan(); return err }},
		{"share", func() error { return p.Share(i, r) }},
		{"release", func() error { return p.Release(i, r) }},
		{"add reader", func() error { _, err := p.AddReader(0); return err }},
		{"set limit", func() error { return p.SetReaderLimit(r, 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.op(), ErrClosed)
		})
	}
	assert.Equal(t, 0, p.RemoveReader(r))
	assert.Equal(t, 0, p.Holds(r))
	assert.ErrorIs(t, p.Free(j), ErrNotAllocated)

	require.NoError(t, p.Free(i), "last owner reference unmaps")
	assert.Equal(t, 0, countMappings(t, poolMaps("closed")))
	assert.Nil(t, p.Slot(i))
	assert.ErrorIs(t, p.Free(i), ErrNotAllocated)
}

func TestCloseWithOutstandingLoan(t *testing.T) {
	checkLeaks(t)
	fds := countFds(t)
	p, err := NewPool("deferred-loan", Geometry{64, 2})
	require.NoError(t, err)
	l, err := p.Loan()
	require.NoError(t, err)
	l2, err := p.Loan()
	require.NoError(t, err)

	require.NoError(t, p.Close())
	assert.Equal(t, fds, countFds(t), "Close closes the memfd at once")
	assert.Equal(t, 1, countMappings(t, poolMaps("deferred-loan")), "loans keep the mapping")
	copy(l.Bytes(), "still mapped") // would fault if unmapped

	require.NoError(t, l.Discard())
	assert.Equal(t, 1, countMappings(t, poolMaps("deferred-loan")), "one loan left")
	require.NoError(t, l2.Discard())
	assert.Equal(t, 0, countMappings(t, poolMaps("deferred-loan")), "last Discard unmaps")
}

// Several waiters are all served when several slots are freed at once, and
// a wait that is woken allocates nothing.
func TestAllocWaitWakesEveryWaiterAndDoesNotAllocate(t *testing.T) {
	p := newTestPool(t, "wait-many", Geometry{8, 3})
	var held []uint32
	for range 3 {
		i, err := p.Alloc()
		require.NoError(t, err)
		held = append(held, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan error, 3)
	for range 3 {
		go func() { _, err := p.AllocWait(ctx); got <- err }()
	}
	eventuallyWaiters(t, p, 3)
	for _, i := range held {
		require.NoError(t, p.Free(i)) // in a row, before any waiter runs
	}
	for range 3 {
		select {
		case err := <-got:
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatal("a waiter was never woken")
		}
	}

	q := newTestPool(t, "wait-allocs", Geometry{8, 1})
	slot, err := q.Alloc()
	require.NoError(t, err)
	freeIt, stop := make(chan uint32), make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case i := <-freeIt:
				eventuallyWaiters(t, q, 1) // polls without allocating
				q.Free(i)
			case <-stop:
				return
			}
		}
	}()
	allocs := testing.AllocsPerRun(50, func() {
		freeIt <- slot
		i, err := q.AllocWait(ctx)
		if err != nil {
			panic(err)
		}
		slot = i
	})
	assert.Zero(t, allocs, "a woken AllocWait allocates nothing")
}

// eventuallyWaiters waits (bounded) until n AllocWait callers are blocked.
func eventuallyWaiters(tb testing.TB, p *Pool, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		w := p.waiters
		p.mu.Unlock()
		if w >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d waiters blocked", w, n)
		}
		runtime.Gosched()
	}
}

func TestAllocWait(t *testing.T) {
	type result struct {
		slot uint32
		err  error
	}
	start := func(ctx context.Context, p *Pool) <-chan result {
		ch := make(chan result, 1)
		go func() {
			i, err := p.AllocWait(ctx)
			ch <- result{i, err}
		}()
		return ch
	}

	t.Run("woken by Free", func(t *testing.T) {
		checkLeaks(t)
		p := newTestPool(t, "wait-free", Geometry{8, 2})
		_, err := p.Alloc()
		require.NoError(t, err)
		held, err := p.Alloc()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := start(ctx, p)
		waitForWaiter(t, p)
		select {
		case res := <-done:
			t.Fatalf("AllocWait returned %+v with no free slot", res)
		default:
		}
		require.NoError(t, p.Free(held))
		res := <-done
		require.NoError(t, res.err)
		assert.Equal(t, held, res.slot)
		assert.Equal(t, uint64(0), p.Stats().AllocFailures)
	})

	t.Run("woken by last Release", func(t *testing.T) {
		p := newTestPool(t, "wait-release", Geometry{8, 1})
		r, err := p.AddReader(0)
		require.NoError(t, err)
		i, err := p.Alloc()
		require.NoError(t, err)
		require.NoError(t, p.Share(i, r))
		require.NoError(t, p.Free(i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := start(ctx, p)
		waitForWaiter(t, p)
		require.NoError(t, p.Release(i, r))
		res := <-done
		require.NoError(t, res.err)
		assert.Equal(t, i, res.slot)
	})

	t.Run("free slot at once", func(t *testing.T) {
		p := newTestPool(t, "wait-now", Geometry{8, 1})
		i, err := p.AllocWait(context.Background())
		require.NoError(t, err)
		assert.Equal(t, uint32(0), i)
	})

	t.Run("deadline", func(t *testing.T) {
		p := newTestPool(t, "wait-deadline", Geometry{8, 1})
		_, err := p.Alloc()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err = p.AllocWait(ctx)
		assert.ErrorIs(t, err, ErrNoSlot)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, uint64(1), p.Stats().AllocFailures, "one failed wait counts once")
	})

	t.Run("canceled", func(t *testing.T) {
		p := newTestPool(t, "wait-cancel", Geometry{8, 1})
		_, err := p.Alloc()
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := start(ctx, p)
		waitForWaiter(t, p)
		cancel()
		res := <-done
		assert.ErrorIs(t, res.err, ErrNoSlot)
		assert.ErrorIs(t, res.err, context.Canceled)
	})

	t.Run("woken by Close", func(t *testing.T) {
		checkLeaks(t)
		p, err := NewPool("wait-close", Geometry{8, 1})
		require.NoError(t, err)
		i, err := p.Alloc()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var dones []<-chan result
		for range 3 {
			dones = append(dones, start(ctx, p))
		}
		waitForWaiter(t, p)
		require.NoError(t, p.Close())
		for _, done := range dones {
			res := <-done
			assert.ErrorIs(t, res.err, ErrClosed)
		}
		require.NoError(t, p.Free(i))
	})
}

func TestPoolConcurrent(t *testing.T) {
	checkLeaks(t)
	const (
		workers = 6
		iters   = 2000
	)
	p := newTestPool(t, "concurrent", Geometry{32, 16})
	v := mapTestView(t, p)
	shared, err := p.AddReader(0) // held by every worker, released by each
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- concurrentWorker(p, v, shared, byte(w), iters)
		}()
	}
	// Churn readers beside the workers: a peer that comes, holds and goes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range iters / 10 {
			r, err := p.AddReader(4)
			if err != nil {
				errs <- err
				return
			}
			if i, err := p.Alloc(); err == nil {
				p.Share(i, r)
				p.Share(i, r)
				p.Free(i)
			}
			p.Stats()
			p.RemoveReader(r)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 0, p.Holds(shared))
	st := p.Stats()
	assert.Equal(t, 0, st.InUse)
	assert.Equal(t, 1, st.Readers)
}

// concurrentWorker allocates, writes, shares with its own reader and the
// shared one, and releases in varying orders; every 50 rounds it leaves holds
// behind and removes its reader instead.
func concurrentWorker(p *Pool, v *View, shared ReaderID, tag byte, iters int) error {
	r, err := p.AddReader(0)
	if err != nil {
		return err
	}
	for n := range iters {
		i, err := p.Alloc()
		if errors.Is(err, ErrNoSlot) {
			continue
		}
		if err != nil {
			return err
		}
		b := p.Slot(i)
		for k := range b {
			b[k] = tag
		}
		if err := p.Share(i, r); err != nil {
			return fmt.Errorf("share own: %w", err)
		}
		if err := p.Share(i, shared); err != nil {
			return fmt.Errorf("share shared: %w", err)
		}
		got, err := v.Bytes(Handle{Slot: i, Len: 32})
		if err != nil {
			return err
		}
		for _, c := range got {
			if c != tag {
				return fmt.Errorf("slot %d: read %d, wrote %d: slot handed out twice", i, c, tag)
			}
		}
		if n%2 == 0 {
			err = p.Free(i)
		} else {
			err = p.Release(i, shared)
		}
		if err != nil {
			return err
		}
		if n%50 == 49 {
			// The reader disappears, leaving its hold behind.
			if n%2 == 0 {
				err = p.Release(i, shared)
			} else {
				err = p.Free(i)
			}
			if err != nil {
				return err
			}
			if got := p.RemoveReader(r); got != 1 {
				return fmt.Errorf("RemoveReader released %d holds, want 1", got)
			}
			if r, err = p.AddReader(0); err != nil {
				return err
			}
			continue
		}
		if err := p.Release(i, r); err != nil {
			return err
		}
		if n%2 == 0 {
			err = p.Release(i, shared)
		} else {
			err = p.Free(i)
		}
		if err != nil {
			return err
		}
	}
	p.RemoveReader(r)
	return nil
}

func TestHeldSlotIsTheSlotWithoutTheChecks(t *testing.T) {
	p, err := NewPool("held", Geometry{SlotSize: 64, SlotCount: 2})
	require.NoError(t, err)
	defer p.Close()
	i, err := p.Alloc()
	require.NoError(t, err)
	copy(p.HeldSlot(i), "written through HeldSlot")
	assert.Equal(t, p.Slot(i), p.HeldSlot(i))
	assert.Equal(t, "written through HeldSlot", string(p.Slot(i)[:24]))
	assert.Nil(t, p.HeldSlot(2), "out of range")
	require.NoError(t, p.Free(i))
}
