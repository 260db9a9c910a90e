//go:build !race

package engine

// manyEvents is what TestHeapIsFlatOverManyEvents sends.
const manyEvents = 1_000_000
