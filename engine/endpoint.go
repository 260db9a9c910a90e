package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/gwipc/gwipc/simpleipc"
)

// The status endpoint: a node with Config.StatusPath set serves Git's
// Simple-IPC protocol at that path, so operators (gwipc status, gwipc query,
// or Git's own client) can ask it one-shot questions:
//
//	ping     -> pong
//	version  -> gwipc VERSION (protocol N)
//	status   -> the Status snapshot as JSON
//	help     -> the list of commands
//
// Applications add their own commands with HandleCommand.

// startEndpoint starts the status endpoint if configured.
func (n *Node) startEndpoint() error {
	if n.cfg.StatusPath == "" {
		return nil
	}
	r := simpleipc.NewRouter()
	builtins := []struct {
		name string
		h    simpleipc.HandlerFunc
	}{
		{"ping", func(ctx context.Context, req []byte, w io.Writer) error {
			_, err := io.WriteString(w, "pong")
			return err
		}},
		{"version", func(ctx context.Context, req []byte, w io.Writer) error {
			_, err := io.WriteString(w, VersionString())
			return err
		}},
		{"status", func(ctx context.Context, req []byte, w io.Writer) error {
			return json.NewEncoder(w).Encode(n.Status())
		}},
		{"help", func(ctx context.Context, req []byte, w io.Writer) error {
			for _, c := range r.Commands() {
				if _, err := fmt.Fprintln(w, c); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, b := range builtins {
		if err := r.Handle(b.name, b.h); err != nil {
			return fmt.Errorf("engine: status endpoint: %w", err)
		}
	}
	srv, err := simpleipc.Start(n.cfg.StatusPath, r, &simpleipc.Config{Logger: n.log})
	if err != nil {
		return fmt.Errorf("engine: serving status on %s: %w", n.cfg.StatusPath, err)
	}
	n.endpoint, n.commands = srv, r
	return nil
}

// HandleCommand registers an application command on the status endpoint
// (see Config.StatusPath): a request whose first word is name goes to h,
// which writes its response to w (in as many pieces as it likes). h runs on
// a Simple-IPC worker goroutine, not inside Dispatch, and may run
// concurrently with other commands. A name already registered, built-in
// commands (ping, version, status, help) included, is refused with
// simpleipc.ErrCommandExists; an invalid name or a nil h with
// simpleipc.ErrInvalidCommand.
func (n *Node) HandleCommand(name string, h simpleipc.HandlerFunc) error {
	if n.commands == nil {
		return fmt.Errorf("%w: the node has no status endpoint (Config.StatusPath)", ErrInvalidConfig)
	}
	if err := n.commands.Handle(name, h); err != nil {
		return fmt.Errorf("engine: status endpoint: %w", err)
	}
	return nil
}
