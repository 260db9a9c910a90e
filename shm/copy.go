package shm

// copyChunk is the largest piece Copy hands to the runtime's copy at once:
// below the 1 MiB from which Go's memmove on amd64 switches to
// non-temporal stores.
const copyChunk = 512 << 10

// Copy copies src into dst (a slot, usually) like the built-in copy and
// returns the number of bytes copied, but in pieces of at most 512 KiB.
// From 1 MiB up Go's copy writes around the cache (non-temporal stores),
// which suits a copy nobody reads soon; a slot is read by its consumer at
// once, and from the cache it is twice as fast to read as from memory.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	for off := 0; off < n; off += copyChunk {
		end := min(off+copyChunk, n)
		copy(dst[off:end], src[off:end])
	}
	return n
}
