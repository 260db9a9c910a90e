//go:build race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends: fewer under the
// race detector, which makes each one about ten times slower.
const manyEvents = 100_000

// allocsTolerated is how many heap allocations per 2000 runs assertNoAllocs
// lets pass: the race detector's runtime allocates more on its own.
const allocsTolerated = 200
