package shm

import (
	"math"
	"testing"
)

func FuzzViewBytes(f *testing.F) {
	g := Geometry{SlotSize: 100, SlotCount: 7}
	p := newTestPool(f, "fuzz", g)
	v := mapTestView(f, p)
	for _, h := range []Handle{
		{0, 0}, {0, 100}, {6, 100}, {6, 101}, {7, 0}, {7, 101},
		{math.MaxUint32, math.MaxUint32}, {1 << 31, 1}, {3, 1 << 31},
	} {
		f.Add(h.Slot, h.Len)
	}
	f.Fuzz(func(t *testing.T, slot, n uint32) {
		b, err := v.Bytes(Handle{Slot: slot, Len: n})
		outside := slot >= g.SlotCount || n > g.SlotSize
		if (err != nil) != outside {
			t.Fatalf("Bytes(%d, %d): err %v, out of bounds %v", slot, n, err, outside)
		}
		if err == nil && (len(b) != int(n) || cap(b) != int(n)) {
			t.Fatalf("Bytes(%d, %d): len %d cap %d", slot, n, len(b), cap(b))
		}
	})
}
