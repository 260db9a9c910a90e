//go:build !race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends.
const manyEvents = 1_000_000

// allocsTolerated is how many heap allocations per 2000 runs assertNoAllocs
// lets pass (Go's runtime makes a few dozen on its own).
const allocsTolerated = 40
