package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/gwipc/gwipc/simpleipc"
)

func init() {
	register(&command{
		name:    "query",
		summary: "send one Simple-IPC request and print the response",
		usage: `Usage: gwipc query --socket PATH [--timeout DURATION] [--wait] REQUEST
       gwipc query --socket PATH --stdin

Sends REQUEST (or standard input) as one Simple-IPC request to the server
at PATH and writes the response bytes to standard output unchanged: nothing
is added, an empty response prints nothing. Nothing is printed unless the
whole response arrived.

Like Git's clients, the connect is retried for up to 1 s while the server
refuses connections (busy or starting); --wait also waits for the socket to
appear. Exit status 1 when no server answers, the response is incomplete
or the timeout expires.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			socket := fs.String("socket", "", "Simple-IPC socket `PATH` (required)")
			timeout := fs.Duration("timeout", 0, "give up after `DURATION` (default: wait for the response forever, as Git)")
			wait := fs.Bool("wait", false, "retry for up to 1 s while the socket does not exist yet")
			stdin := fs.Bool("stdin", false, "read the request from standard input instead of an argument")
			return func(ctx context.Context, e *env, args []string) int {
				c := commands["query"]
				if *socket == "" {
					return usageError(e, c, "--socket is required")
				}
				var req []byte
				switch {
				case *stdin && len(args) == 0:
					b, err := io.ReadAll(e.stdin)
					if err != nil {
						return fail(e, "query", "reading standard input: %v", err)
					}
					req = b
				case !*stdin && len(args) == 1:
					req = []byte(args[0])
				case *stdin:
					return usageError(e, c, "no REQUEST argument with --stdin")
				default:
					return usageError(e, c, "exactly one REQUEST argument required")
				}
				if *timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, *timeout)
					defer cancel()
				}
				resp, err := simpleipc.Send(ctx, *socket, req, &simpleipc.ClientOptions{
					WaitIfBusy:     true,
					WaitIfNotFound: *wait,
				})
				if err != nil {
					return queryFailure(e, *socket, err)
				}
				if _, err := e.stdout.Write(resp); err != nil {
					return fail(e, "query", "writing response: %v", err)
				}
				return exitOK
			}
		},
	})
}

func queryFailure(e *env, socket string, err error) int {
	var ce *simpleipc.ConnectError
	switch {
	case errors.As(err, &ce) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		return fail(e, "query", "no server answering at %s (%s): %v", socket, ce.State, ce.Err)
	case errors.Is(err, simpleipc.ErrTruncated):
		return fail(e, "query", "incomplete response from %s: %v", socket, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fail(e, "query", "timed out: %v", err)
	}
	return fail(e, "query", "%v", err)
}
