//go:build race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends: fewer under the
// race detector, which makes each one about ten times slower.
const manyEvents = 100_000
