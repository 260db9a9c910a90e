package main

import (
	"context"
	"flag"

	"github.com/gwipc/gwipc/cmd/gwipc/internal/benchmark"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "benchmark gwipc against a raw Unix-socket baseline on this machine",
		usage: `gwipc bench [benchmark flags]

Runs round-trip latency and one-way throughput between this process and a
child process, for gwipc and for a raw Unix stream socket, pinned to one CPU
and unpinned, and prints percentiles, ratios and allocations per message.
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
