package main

import (
	"context"
	"flag"

	"github.com/gwipc/gwipc/cmd/gwipc/internal/benchmark"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "benchmark gwipc against raw sockets, a memfd floor, libqb and ZeroMQ on this machine",
		usage: `gwipc bench [benchmark flags]

Runs gwipc and the C baselines that make build puts in build/bench/ (raw
AF_UNIX sockets, a bare memfd hand-off, libqb and ZeroMQ when installed)
between processes, on different CPUs, on one CPU and unpinned, in several
passes: one-way latency, events/s, GB/s, fan-out and method round trips,
with ratios computed inside each pass, CPU time and allocations per message.
Compare the ratios: absolute numbers depend on the machine and its load.
Run "gwipc bench -h" for the benchmark's own flags.`,
		passThrough: true,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			// The benchmark parses its own flags: pass everything through.
			return func(ctx context.Context, e *env, args []string) int {
				return benchmark.Main(args, e.stdout, e.stderr)
			}
		},
	})
}
