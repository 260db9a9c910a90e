// Package simpleipc is a Go implementation of Git's "Simple-IPC" protocol
// on Unix domain sockets, byte for byte compatible with Git's own client
// and server (compat/simple-ipc/ipc-unix-socket.c).
//
// A conversation is one request and one response on a fresh SOCK_STREAM
// connection to a socket at a filesystem path. Both messages are pkt-line
// framed: each packet starts with four hexadecimal digits giving the packet
// length including those four digits (at most 65520, so at most 65516
// payload bytes), and a message ends with the flush packet "0000". Payloads
// are opaque bytes; the message is the concatenation of its packets.
//
// The client side is [Send], [SendStream] and [GetActiveState]. The server
// side is [Start], which creates the socket following Git's start-up rules
// (lock file, liveness probe, replacement of a stale socket) and serves
// conversations with a bounded pool of workers, calling a [Handler] for
// each request. [Router] dispatches requests to named commands.
//
// gwipc deliberately differs from Git in a few places. To keep a server
// from being held hostage by its clients, requests larger than
// [Config.MaxRequestSize] are refused and a connection that stays silent
// for longer than [Config.IdleTimeout] is dropped. To keep it private and
// harmless, its socket gets [Config.SocketMode] (default 0600) before it
// listens, and [Start] replaces only a stale socket, never another kind of
// file ([ErrNotSocket]). A reply that is not whole (a forced stop, a failed
// write, a panic) never ends with the flush packet. docs/SIMPLEIPC.md in
// the repository describes the protocol and every rule in detail.
package simpleipc
