package simpleipc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Router is a [Handler] that dispatches a request to a named command. The
// command name is the request up to its first space (the whole request if
// it has none), matched exactly: "ping" matches the command ping, "ping\n"
// does not. The command's handler receives the whole request, name
// included, so "sendbytes xxx" reaches the command sendbytes with its
// argument. Requests for unknown commands go to the default handler,
// which replies "unhandled command: <request up to its first NUL>" like
// Git's test-tool daemon.
//
// Commands may be registered while the server runs.
type Router struct {
	mu       sync.RWMutex
	cmds     map[string]Handler
	fallback Handler
}

// NewRouter returns a Router with no commands.
func NewRouter() *Router {
	return &Router{cmds: make(map[string]Handler)}
}

// Handle registers h for the command name. A name that is empty or has a
// space or NUL (it could never match a request), or a nil h, is refused
// with [ErrInvalidCommand]; a name already registered with
// [ErrCommandExists] (see [Router.Replace]).
func (r *Router) Handle(name string, h Handler) error {
	return r.register(name, h, false)
}

// HandleFunc registers f for the command name, as [Router.Handle].
func (r *Router) HandleFunc(name string, f func(ctx context.Context, req []byte, w io.Writer) error) error {
	return r.Handle(name, HandlerFunc(f))
}

// Replace registers h for the command name, replacing the command's handler
// if it has one. The name and h are checked as by [Router.Handle].
func (r *Router) Replace(name string, h Handler) error {
	return r.register(name, h, true)
}

func (r *Router) register(name string, h Handler, replace bool) error {
	if name == "" || strings.ContainsAny(name, " \x00") {
		return fmt.Errorf("registering command %q: %w: the name is empty or has a space or NUL", name, ErrInvalidCommand)
	}
	if f, isFunc := h.(HandlerFunc); h == nil || isFunc && f == nil {
		return fmt.Errorf("registering command %q: %w: nil handler", name, ErrInvalidCommand)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.cmds[name]; dup && !replace {
		return fmt.Errorf("registering command %q: %w", name, ErrCommandExists)
	}
	r.cmds[name] = h
	return nil
}

// SetDefault replaces the handler for unknown commands (nil restores the
// "unhandled command: " reply).
func (r *Router) SetDefault(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fallback = h
}

// Commands returns the registered command names, sorted.
func (r *Router) Commands() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.cmds))
	for n := range r.cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ServeIPC dispatches req.
func (r *Router) ServeIPC(ctx context.Context, req []byte, w io.Writer) error {
	name := req
	if i := bytes.IndexByte(req, ' '); i >= 0 {
		name = req[:i]
	}
	r.mu.RLock()
	h, ok := r.cmds[string(name)]
	if !ok {
		h = r.fallback
	}
	r.mu.RUnlock()
	if h == nil {
		return Unhandled(w, req)
	}
	return h.ServeIPC(ctx, req, w)
}

// Unhandled writes Git's test-tool reply for an unknown command:
// "unhandled command: " followed by req up to its first NUL, no newline.
func Unhandled(w io.Writer, req []byte) error {
	if i := bytes.IndexByte(req, 0); i >= 0 {
		req = req[:i]
	}
	msg := make([]byte, 0, len("unhandled command: ")+len(req))
	msg = append(msg, "unhandled command: "...)
	msg = append(msg, req...)
	_, err := w.Write(msg)
	return err
}
