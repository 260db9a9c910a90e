//go:build !race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends.
const manyEvents = 1_000_000

// allocRuns and allocsTolerated: assertNoAllocs runs its function
// allocRuns times and lets up to allocsTolerated heap allocations pass (Go's
// runtime makes a few dozen on its own, however many runs).
const (
	allocRuns       = 20_000
	allocsTolerated = 100
)
