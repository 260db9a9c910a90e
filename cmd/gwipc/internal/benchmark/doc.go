// Package benchmark measures gwipc across two processes against a raw
// Unix-socket baseline in the same run, and prints the comparison. It is
// what `gwipc bench` (and `make bench`) runs.
//
// Every measurement has two processes: this one (A, the measuring side) and
// a peer (B) started by re-executing os.Executable() with GWIPC_BENCH_PEER
// set to a JSON description of its role. A program that runs Main must call
// ServePeerIfRequested first thing in main (a test binary: in TestMain), so
// that the re-executed copy becomes the peer instead of running the program.
//
// Scenarios, each for gwipc and for the baseline, pinned (both processes on
// one CPU) and unpinned:
//
//   - round-trip latency: A sends S bytes, B echoes S bytes, A waits.
//     gwipc: A offers "bench.ping" and requires "bench.pong"; B's handler
//     copies each ping into a loaned pong slot and publishes it. Baseline: a
//     SOCK_STREAM socketpair carrying a 4-byte length prefix and the bytes,
//     blocking read and write on both ends.
//   - one-way throughput: A sends S-byte messages for a fixed time; B counts
//     them. gwipc: Publish (one copy into the slot); when the pool is
//     exhausted A dispatches until B's Payload_consumed messages free slots
//     (counted as "noslot"). Baseline: one write of prefix+payload per
//     message, B reads through a buffer.
//   - allocations: runtime.MemStats.Mallocs deltas over the measured part,
//     divided by messages, in A and (reported back on its stdout) in B.
//
// The gwipc side never uses Node.Run: the measuring goroutine (locked to its
// thread) calls Dispatch itself, the way a C daemon drives the node from its
// own loop, so the numbers contain no goroutine hand-off that the
// application did not ask for. Dispatch is called with a short timeout
// rather than -1 only so that a dead peer is noticed; it returns as soon as
// there is work, so the timeout costs nothing.
package benchmark
