package shm

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNoAllocations(t *testing.T) {
	p := newTestPool(t, "allocs", Geometry{256, 8})
	v := mapTestView(t, p)
	var rs [3]ReaderID
	for k := range rs {
		var err error
		rs[k], err = p.AddReader(0)
		require.NoError(t, err)
	}

	tests := []struct {
		name string
		op   func()
	}{
		{"alloc share free release", func() {
			i, _ := p.Alloc()
			for _, r := range rs {
				p.Share(i, r)
			}
			p.Free(i)
			for _, r := range rs {
				p.Release(i, r)
			}
		}},
		{"loan handle discard", func() {
			l, _ := p.Loan()
			h, _ := l.Handle(len(l.Bytes()))
			p.Share(h.Slot, rs[0])
			l.Discard()
			p.Release(h.Slot, rs[0])
		}},
		{"slot", func() {
			i, _ := p.Alloc()
			p.Slot(i)[0] = 1
			p.Free(i)
		}},
		{"failures", func() {
			p.Share(7, rs[0])
			p.Release(7, rs[0])
			p.Free(7)
			Loan{}.Handle(-1)
		}},
		{"view bytes", func() {
			v.Bytes(Handle{Slot: 3, Len: 200})
			v.Bytes(Handle{Slot: 8, Len: 1})
			v.Bytes(Handle{Slot: 0, Len: 300})
		}},
		{"view acquire unref", func() {
			v.Acquire()
			v.Unref()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Zero(t, testing.AllocsPerRun(100, tt.op))
		})
	}
	assert.Equal(t, 0, p.Stats().InUse)
}

func TestNoAllocationsExhausted(t *testing.T) {
	p := newTestPool(t, "allocs-full", Geometry{8, 1})
	_, err := p.Alloc()
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		p.Alloc()
		p.Loan()
	}))
}

func BenchmarkAllocShareRelease(b *testing.B) {
	for _, readers := range []int{1, 4} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			p := newTestPool(b, "bench", Geometry{4096, 64})
			rs := make([]ReaderID, readers)
			for k := range rs {
				var err error
				rs[k], err = p.AddReader(0)
				require.NoError(b, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				i, err := p.Alloc()
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rs {
					p.Share(i, r)
				}
				p.Free(i)
				for _, r := range rs {
					p.Release(i, r)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		p := newTestPool(b, "bench-parallel", Geometry{4096, 64})
		r, err := p.AddReader(0)
		require.NoError(b, err)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i, err := p.Alloc()
				if err != nil {
					continue
				}
				p.Share(i, r)
				p.Free(i)
				p.Release(i, r)
			}
		})
	})
}

func BenchmarkViewBytes(b *testing.B) {
	p := newTestPool(b, "bench-view", Geometry{4096, 64})
	v := mapTestView(b, p)
	h := Handle{Slot: 17, Len: 1000}
	b.ReportAllocs()
	var sink int
	for b.Loop() {
		buf, err := v.Bytes(h)
		if err != nil {
			b.Fatal(err)
		}
		sink += len(buf)
	}
	_ = sink
}
