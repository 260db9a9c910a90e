//go:build race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends: fewer under the
// race detector, which makes each one about ten times slower.
const manyEvents = 100_000

// allocRuns and allocsTolerated (see assertNoAllocs): fewer runs under the
// race detector, whose runtime also allocates more on its own.
const (
	allocRuns       = 2_000
	allocsTolerated = 200
)
