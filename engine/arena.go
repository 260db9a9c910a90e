package engine

import (
	"golang.org/x/sys/unix"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// inlineArena holds the payloads of inline updates (§10.13) outside the Go
// heap, in anonymous mappings: a sample's data may be handed to C, which
// may keep the pointer until it releases the sample, past the callback
// and past Close. Buffers are wire.MaxInline bytes, carved from chunks
// mapped as needed; a buffer goes back to the free list when its sample
// record is dropped, and the chunks are unmapped once the node is closed
// and every buffer is back. Guarded by Node.mu.
type inlineArena struct {
	free   [][]byte
	chunks [][]byte
	inUse  int
	closed bool
}

// arenaChunk is the size of one mapping: 256 buffers.
const arenaChunk = 256 * wire.MaxInline

// get returns a free buffer, mapping a chunk when none is left; nil when
// the mapping fails (the system is out of memory).
func (a *inlineArena) get() []byte {
	if len(a.free) == 0 {
		chunk, err := unix.Mmap(-1, 0, arenaChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil
		}
		a.chunks = append(a.chunks, chunk)
		for off := 0; off < arenaChunk; off += wire.MaxInline {
			a.free = append(a.free, chunk[off:off+wire.MaxInline:off+wire.MaxInline])
		}
	}
	b := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	a.inUse++
	return b
}

// put takes a buffer back.
func (a *inlineArena) put(b []byte) {
	a.free = append(a.free, b)
	a.inUse--
	a.unmapIfDone()
}

// close unmaps the chunks now, or once the last buffer is back.
func (a *inlineArena) close() {
	a.closed = true
	a.unmapIfDone()
}

func (a *inlineArena) unmapIfDone() {
	if !a.closed || a.inUse > 0 {
		return
	}
	for _, c := range a.chunks {
		unix.Munmap(c) // our own mapping: cannot fail
	}
	a.chunks, a.free = nil, nil
}
