package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
	"unicode"

	"github.com/gwipc/gwipc/simpleipc"
)

// The status endpoint: a node with Config.StatusPath set serves Git's
// Simple-IPC protocol at that path (mode Config.StatusMode, 0600 by
// default), so operators (gwipc status, gwipc query, or Git's own client)
// can ask it one-shot questions:
//
//	ping     -> pong
//	version  -> gwipc VERSION (protocol N)
//	status   -> the Status snapshot as JSON
//	help     -> the list of commands
//
// Applications add their own commands with HandleCommand; those run inside
// Dispatch, like every other callback.

// Bounds of application commands: how long a request waits for the node to
// be dispatched and the command to finish, and how large a response may be.
const (
	commandWait     = 10 * time.Second
	maxCommandReply = 16 << 20
)

// errReplyTooLarge is returned by a command's writer past maxCommandReply.
var errReplyTooLarge = fmt.Errorf("%w: command response larger than %d bytes", ErrTooLarge, maxCommandReply)

// commandTable is the endpoint's commands by name.
type commandTable struct {
	mu   sync.RWMutex
	cmds map[string]command
}

type command struct {
	h       simpleipc.Handler
	builtin bool // engine code, served on the Simple-IPC worker
}

// startEndpoint starts the status endpoint if configured.
func (n *Node) startEndpoint() error {
	if n.cfg.StatusPath == "" {
		return nil
	}
	t := &commandTable{cmds: map[string]command{}}
	builtin := func(name string, f simpleipc.HandlerFunc) { t.cmds[name] = command{h: f, builtin: true} }
	builtin("ping", func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := io.WriteString(w, "pong")
		return err
	})
	builtin("version", func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := io.WriteString(w, VersionString())
		return err
	})
	builtin("status", func(ctx context.Context, req []byte, w io.Writer) error {
		return json.NewEncoder(w).Encode(n.Status())
	})
	builtin("help", func(ctx context.Context, req []byte, w io.Writer) error {
		for _, c := range t.names() {
			if _, err := fmt.Fprintln(w, c); err != nil {
				return err
			}
		}
		return nil
	})
	n.commands = t // before the server can take a request
	srv, err := simpleipc.Start(n.cfg.StatusPath, simpleipc.HandlerFunc(n.serveCommand),
		&simpleipc.Config{Logger: n.log, SocketMode: n.cfg.StatusMode})
	if err != nil {
		return fmt.Errorf("engine: serving status on %s: %w", n.cfg.StatusPath, err)
	}
	n.endpoint = srv
	return nil
}

func (t *commandTable) names() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	names := make([]string, 0, len(t.cmds))
	for name := range t.cmds {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// HandleCommand registers an application command on the status endpoint
// (see Config.StatusPath): a request whose first word is name goes to h,
// which writes its response to w. h runs inside Dispatch, on the
// dispatching goroutine, like every callback; its response (at most 16 MiB)
// is sent once it returns. If h returns an error, or the request waits more
// than 10 s for the node to be dispatched and the command to finish, the
// client gets no response (the reply is cut short: simpleipc.ErrTruncated).
// A built-in command (ping, version, status, help) may be replaced once.
// It fails with ErrInvalidConfig for a node without an endpoint, a nil h or
// a name that is empty, longer than 64 bytes or has spaces or control
// characters, and with ErrDuplicate for a name already registered.
func (n *Node) HandleCommand(name string, h simpleipc.HandlerFunc) error {
	t := n.commands
	switch {
	case t == nil:
		return fmt.Errorf("%w: the node has no status endpoint (Config.StatusPath)", ErrInvalidConfig)
	case h == nil:
		return fmt.Errorf("%w: nil handler for command %q", ErrInvalidConfig, name)
	case !validCommand(name):
		return fmt.Errorf("%w: command name %q must be 1 to 64 bytes without spaces or control characters", ErrInvalidConfig, name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.cmds[name]; ok && !c.builtin {
		return fmt.Errorf("%w: command %q", ErrDuplicate, name)
	}
	t.cmds[name] = command{h: h}
	return nil
}

func validCommand(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// serveCommand is the endpoint's Simple-IPC handler: it routes a request by
// its first word.
func (n *Node) serveCommand(ctx context.Context, req []byte, w io.Writer) error {
	name := req
	if i := bytes.IndexByte(req, ' '); i >= 0 {
		name = req[:i]
	}
	n.commands.mu.RLock()
	c, ok := n.commands.cmds[string(name)]
	n.commands.mu.RUnlock()
	switch {
	case !ok:
		return simpleipc.Unhandled(w, req)
	case c.builtin:
		return c.h.ServeIPC(ctx, req, w)
	}
	return n.runCommand(ctx, c.h, req, w)
}

// commandJob is one application command handed to the dispatcher.
type commandJob struct {
	mu        sync.Mutex
	abandoned bool // the request gave up waiting: do not run
	out       limitedBuffer
	err       error
	done      chan struct{}
}

// runCommand runs h inside the next Dispatch and sends its buffered
// response.
func (n *Node) runCommand(ctx context.Context, h simpleipc.Handler, req []byte, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, commandWait)
	defer cancel()
	job := &commandJob{done: make(chan struct{})}
	err := n.Post(func() {
		job.mu.Lock()
		run := !job.abandoned
		job.mu.Unlock()
		if !run {
			return
		}
		finished := false
		defer func() {
			if !finished {
				job.err = errors.New("engine: command handler panicked")
			}
			close(job.done) // a panic goes on to the dispatcher, like any callback's
		}()
		job.err = h.ServeIPC(ctx, req, &job.out)
		finished = true
	})
	if err != nil {
		return err
	}
	select {
	case <-job.done:
	case <-ctx.Done():
		job.mu.Lock()
		job.abandoned = true
		job.mu.Unlock()
		select {
		case <-job.done: // it started meanwhile and has finished
		default:
			return fmt.Errorf("engine: command not run: %w (is the node being dispatched?)", ctx.Err())
		}
	}
	if job.err != nil {
		// The client must not take a failed command's output for an answer.
		return fmt.Errorf("%w: %w", simpleipc.ErrAbort, job.err)
	}
	_, err = w.Write(job.out.Bytes())
	return err
}

// limitedBuffer is a bytes.Buffer that refuses to grow past maxCommandReply.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxCommandReply {
		return 0, errReplyTooLarge
	}
	return b.Buffer.Write(p)
}
