// Package benchmark measures gwipc between processes against baselines in
// the same run, and prints the comparison. It is what `gwipc bench` (and
// `make bench`) runs; docs/PERFORMANCE.md explains every figure.
//
// The harness (Main) only orchestrates: every measurement is fresh
// processes, the publisher or caller (A) and the subscriber(s) or provider
// (B), each pinned by itself and each reporting one JSON line (counts, CPU
// time, allocations, latency samples). The gwipc processes are this
// executable re-executed with GWIPC_BENCH_PEER set, so a program that runs
// Main must call ServePeerIfRequested first thing in main (a test binary:
// in TestMain). The baselines are the C programs in baseline/, built by
// make build into build/bench/: raw AF_UNIX sockets, a bare memfd
// hand-off, libqb and ZeroMQ. Both sides speak one protocol (child.go and
// baseline/bench.h): the same payload header, the same one-in-flight
// acknowledgement, the same stream phases and checks.
//
// The scenario table (scenario.go) lists the sections (one-way latency,
// events/s, GB/s, fan-out, method round trip), their sizes and baselines;
// every gwipc variant (gwipc.go, the only file that uses the engine API)
// is measured in every section. Each pass runs every section in every
// placement, gwipc and baselines taking turns, and every ratio is computed
// inside a pass; the report gives medians over the passes with their
// spread.
package benchmark
