package shm

import "errors"

// Errors returned by this package. They may be wrapped with detail; compare
// with [errors.Is].
var (
	// ErrBadGeometry is returned for a slot size or count out of range or a
	// pool larger than MaxPoolBytes.
	ErrBadGeometry = errors.New("shm: bad pool geometry")

	// ErrClosed is returned by operations on a closed Pool or View.
	ErrClosed = errors.New("shm: closed")

	// ErrNoSlot is returned when every slot of a pool is in use. AllocWait
	// wraps it together with the context's error.
	ErrNoSlot = errors.New("shm: no free slot")

	// ErrBadSlot is returned for a slot index not below the pool's SlotCount.
	ErrBadSlot = errors.New("shm: slot index out of range")

	// ErrNotAllocated is returned when a slot that needs the writer's owner
	// reference does not have it (never allocated, or already freed).
	ErrNotAllocated = errors.New("shm: slot not allocated")

	// ErrUnknownReader is returned for a ReaderID that is not registered.
	ErrUnknownReader = errors.New("shm: unknown reader")

	// ErrReaderQuota is returned by Share when the reader already holds its
	// limit of slots.
	ErrReaderQuota = errors.New("shm: reader holds its limit of slots")

	// ErrNotHeld is returned by Release when the reader holds no reference
	// on the slot.
	ErrNotHeld = errors.New("shm: slot not held by reader")

	// ErrBadLength is returned for a payload length that is negative or
	// larger than the slot size.
	ErrBadLength = errors.New("shm: payload length out of range")

	// ErrBadLimit is returned for a negative or oversized reader limit.
	ErrBadLimit = errors.New("shm: bad reader limit")

	// ErrSizeMismatch is returned by MapView when the file's size is not the
	// size the geometry describes.
	ErrSizeMismatch = errors.New("shm: pool size does not match geometry")

	// ErrNotSealed is returned by MapView when the file is not sealed
	// against shrinking and growing.
	ErrNotSealed = errors.New("shm: pool not sealed against resizing")

	// ErrNotMemfd is returned by MapView for a descriptor that is not a
	// sealable memory file (a pipe, socket, directory, disk file, ...).
	ErrNotMemfd = errors.New("shm: descriptor is not a memfd")
)
