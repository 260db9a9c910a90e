package shm

import (
	"fmt"
	"math"
)

const (
	// MaxSlots is the largest SlotCount a pool may have.
	MaxSlots = 1 << 20

	// MaxPoolBytes is the largest Size a pool may have.
	MaxPoolBytes = 1 << 32

	// slotAlign is the alignment of every slot (one cache line), so slots
	// written by different goroutines never share a line.
	slotAlign = 64
)

// Geometry describes the layout of a pool: SlotCount slots of SlotSize
// usable bytes, each starting on a 64-byte boundary. Writer and reader must
// agree on it; the reader learns it from the control channel and MapView
// checks it against the file.
type Geometry struct {
	SlotSize  uint32 // usable bytes per slot
	SlotCount uint32 // number of slots
}

// Validate reports whether g describes a pool this package can create or map:
// SlotSize at least 1, SlotCount in [1, MaxSlots] and Size at most
// MaxPoolBytes (and addressable on this platform). The error wraps
// ErrBadGeometry.
func (g Geometry) Validate() error {
	switch {
	case g.SlotSize == 0:
		return fmt.Errorf("%w: slot size 0", ErrBadGeometry)
	case g.SlotCount == 0:
		return fmt.Errorf("%w: slot count 0", ErrBadGeometry)
	case g.SlotCount > MaxSlots:
		return fmt.Errorf("%w: slot count %d above %d", ErrBadGeometry, g.SlotCount, MaxSlots)
	case g.Size() > MaxPoolBytes:
		return fmt.Errorf("%w: pool size %d above %d", ErrBadGeometry, g.Size(), int64(MaxPoolBytes))
	case uint64(g.Size()) > math.MaxInt:
		return fmt.Errorf("%w: pool size %d not addressable", ErrBadGeometry, g.Size())
	}
	return nil
}

// Stride is the distance in bytes between the starts of two consecutive
// slots: SlotSize rounded up to a multiple of 64. Slot i starts at i*Stride().
func (g Geometry) Stride() int64 {
	return (int64(g.SlotSize) + slotAlign - 1) &^ (slotAlign - 1)
}

// Size is the size in bytes of the pool's memory file: Stride()*SlotCount.
func (g Geometry) Size() int64 {
	return g.Stride() * int64(g.SlotCount)
}

// Handle names a payload in a pool: the slot that holds it and the number of
// bytes used, starting at the beginning of the slot. It is what travels on
// the control channel.
type Handle struct {
	Slot uint32 // slot index, below SlotCount
	Len  uint32 // used bytes, at most SlotSize
}
