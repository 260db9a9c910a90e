// Command gwipc is gwipc's command-line tool: it queries Simple-IPC
// servers and runs a small test server. Run "gwipc help" for usage.
//
// Subcommands live in a table: each file registers its command from an
// init function (see register), so a new one (e.g. "status") is one new
// file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/gwipc/gwipc/cmd/gwipc/internal/benchmark"
)

// Exit codes.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the operation failed (no server, incomplete response...)
	exitUsage   = 2 // bad command line
)

// version is set at link time with -ldflags "-X main.version=...";
// otherwise the module version from the build info is used.
var version = ""

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is one subcommand.
type command struct {
	name    string
	summary string // one line, shown by "gwipc help"
	usage   string // synopsis and description, shown by "gwipc help NAME"
	// flags declares the command's flags on fs and returns the function
	// that runs the command with the positional arguments.
	flags func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) int
	// passThrough hands every argument to the command unparsed (for
	// commands with a flag parser of their own).
	passThrough bool
}

var commands = map[string]*command{}

// register adds c to the command table. Call it from init.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("gwipc: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func main() {
	// "gwipc bench" re-executes this binary as its peer process.
	benchmark.ServePeerIfRequested()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, mainUsage())
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return runHelp(e, args[1:])
	case "version", "-version", "--version":
		fmt.Fprintf(e.stdout, "gwipc version %s\n", versionString())
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "gwipc: unknown command %q\nRun 'gwipc help' for usage.\n", args[0])
		return exitUsage
	}
	return runCommand(ctx, c, e, args[1:])
}

func runCommand(ctx context.Context, c *command, e *env, args []string) int {
	fs := flag.NewFlagSet("gwipc "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, once
	runFn := c.flags(fs)
	if c.passThrough {
		return runFn(ctx, e, args)
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, c, fs)
		return exitOK
	}
	if err != nil {
		return usageError(e, c, err.Error())
	}
	return runFn(ctx, e, pos)
}

// parseInterleaved parses flags wherever they appear among the positional
// arguments ("query REQUEST --socket P" works); "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError reports a command-line error and returns exitUsage.
func usageError(e *env, c *command, msg string) int {
	fmt.Fprintf(e.stderr, "gwipc %s: %s\n%s\nRun 'gwipc help %s' for usage.\n", c.name, msg, synopsis(c), c.name)
	return exitUsage
}

// fail reports a runtime failure and returns exitFailure.
func fail(e *env, c string, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "gwipc %s: %s\n", c, fmt.Sprintf(format, a...))
	return exitFailure
}

func synopsis(c *command) string {
	first, _, _ := strings.Cut(c.usage, "\n\n")
	return first
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString("gwipc: command-line tool of the gwipc local IPC library\n\nUsage:\n  gwipc <command> [flags] [arguments]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(&b, "  %-12s %s\n", "help", "show this help, or a command's help: gwipc help COMMAND")
	fmt.Fprintf(&b, "  %-12s %s\n", "version", "print the version")
	b.WriteString("\nExit status: 0 success, 1 failure, 2 usage error.\n")
	return b.String()
}

func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stdout, mainUsage())
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "gwipc help: unknown command %q\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("gwipc "+c.name, flag.ContinueOnError)
	c.flags(fs)
	printCommandUsage(e.stdout, c, fs)
	return exitOK
}

func printCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nFlags:\n", strings.TrimRight(c.usage, "\n"))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
