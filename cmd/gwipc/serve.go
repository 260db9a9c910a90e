package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gwipc/gwipc/simpleipc"
)

func init() {
	register(&command{
		name:    "serve-sipc",
		summary: "run a small Simple-IPC test server",
		usage: `Usage: gwipc serve-sipc --socket PATH [--threads N] [--idle-timeout DURATION]
                        [--max-request-size BYTES] [--verbose]

Runs a Simple-IPC server at PATH in the foreground, for testing clients. It
answers like the daemon of Git's "test-tool simple-ipc" (requests match
exactly; "ping\n" is unknown):

  ping              pong
  quit              empty response, then the server stops, removes its
                    socket and exits 0
  big               10000 lines "big: <75-digit row number>\n" in one write
  chunk             the same lines, one write (packet) per line
  slow              the first 1000 lines, one per 10 ms
  sendbytes <B...>  "rcvd:<c><len %08d>\n" when all bytes B are equal,
                    else "errs:<mismatches>\n"
  anything else     "unhandled command: <request up to its first NUL>"

Start-up follows Git: exit 1 if a live server already answers at PATH; a
stale socket at PATH is replaced. Unlike Git, anything else at PATH (a file,
directory, symbolic link) is left alone and the server exits 1, and the
socket's mode is 0600 (owner only) whatever the umask. SIGINT or SIGTERM
stops the server gracefully (socket removed) and exits 0.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			socket := fs.String("socket", "", "Simple-IPC socket `PATH` (required)")
			threads := fs.Int("threads", simpleipc.DefaultThreads, "number of worker threads `N` (values < 1 mean 1)")
			idle := fs.Duration("idle-timeout", simpleipc.DefaultIdleTimeout, "drop a client silent for `DURATION` (0 or negative: never, as Git)")
			maxReq := fs.Int64("max-request-size", simpleipc.DefaultMaxRequestSize, "largest request in `BYTES` (0 or negative: no limit, as Git)")
			verbose := fs.Bool("verbose", false, "log dropped connections and errors to standard error")
			return func(ctx context.Context, e *env, args []string) int {
				c := commands["serve-sipc"]
				if *socket == "" {
					return usageError(e, c, "--socket is required")
				}
				if len(args) != 0 {
					return usageError(e, c, fmt.Sprintf("unexpected argument %q", args[0]))
				}
				n := *threads
				if n < 1 {
					n = -1 // simpleipc: values below 1 mean 1
				}
				cfg := &simpleipc.Config{Threads: n, IdleTimeout: *idle, MaxRequestSize: *maxReq}
				if *idle == 0 {
					cfg.IdleTimeout = -1
				}
				if *maxReq == 0 {
					cfg.MaxRequestSize = -1
				}
				if *verbose {
					cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
				}
				router, err := testToolRouter()
				if err != nil {
					return fail(e, "serve-sipc", "%v", err)
				}
				srv, err := simpleipc.Start(*socket, router, cfg)
				if err != nil {
					return fail(e, "serve-sipc", "%v", err)
				}
				select {
				case <-srv.Done():
				case <-ctx.Done():
					sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := srv.Shutdown(sctx)
					cancel()
					if err != nil && !errors.Is(err, simpleipc.ErrClosed) {
						return fail(e, "serve-sipc", "shutdown: %v", err)
					}
				}
				srv.Close()
				return exitOK
			}
		},
	})
}

// testToolRouter answers like t/helper/test-simple-ipc.c's test_app_cb.
func testToolRouter() (*simpleipc.Router, error) {
	r := simpleipc.NewRouter()
	var errs []error
	add := func(name string, h simpleipc.HandlerFunc) {
		errs = append(errs, r.Handle(name, h))
	}
	exact := func(name string, h simpleipc.HandlerFunc) {
		add(name, func(ctx context.Context, req []byte, w io.Writer) error {
			if string(req) != name {
				return simpleipc.Unhandled(w, req)
			}
			return h(ctx, req, w)
		})
	}
	exact("quit", func(context.Context, []byte, io.Writer) error { return simpleipc.ErrQuit })
	exact("ping", func(_ context.Context, _ []byte, w io.Writer) error {
		_, err := w.Write([]byte("pong"))
		return err
	})
	exact("big", func(_ context.Context, _ []byte, w io.Writer) error {
		var buf bytes.Buffer
		for row := range 10000 {
			buf.Write(bigLine(row))
		}
		_, err := w.Write(buf.Bytes())
		return err
	})
	exact("chunk", func(_ context.Context, _ []byte, w io.Writer) error {
		for row := range 10000 {
			if _, err := w.Write(bigLine(row)); err != nil {
				return err
			}
		}
		return nil
	})
	exact("slow", func(ctx context.Context, _ []byte, w io.Writer) error {
		for row := range 1000 {
			if _, err := w.Write(bigLine(row)); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		return nil
	})
	add("sendbytes", func(_ context.Context, req []byte, w io.Writer) error {
		ballast, ok := bytes.CutPrefix(req, []byte("sendbytes "))
		if !ok {
			return simpleipc.Unhandled(w, req)
		}
		if i := bytes.IndexByte(ballast, 0); i >= 0 {
			ballast = ballast[:i] // Git uses strlen
		}
		errs := 0
		for _, b := range ballast[min(1, len(ballast)):] {
			if b != ballast[0] {
				errs++
			}
		}
		var resp string
		switch {
		case errs > 0:
			resp = fmt.Sprintf("errs:%d\n", errs)
		case len(ballast) == 0:
			// Git prints p[0], the string's NUL terminator.
			resp = fmt.Sprintf("rcvd:\x00%08d\n", 0)
		default:
			resp = fmt.Sprintf("rcvd:%c%08d\n", ballast[0], len(ballast))
		}
		_, err := io.WriteString(w, resp)
		return err
	})
	return r, errors.Join(errs...)
}

// bigLine is Git test-tool's "big: %.75d\n" row.
func bigLine(row int) []byte {
	return fmt.Appendf(nil, "big: %075d\n", row)
}
