// Package engine is gwipc's gateway IPC binding: processes on one machine
// discover each other's services, subscribe to events and receive event
// updates, with payloads in shared memory and only small control messages on
// a Unix-domain socket.
//
// A Node is either a listener (many peers) or a dialler (one peer, reconnected
// after loss). After the handshake both kinds are symmetric: each may Offer
// services (and Publish their events) and Require services (and Subscribe to
// their events). A consumer's Require is answered by a provider's Offer; the
// binding carries the provider's shared-memory pool, so an event update is a
// slot index on the wire and a read-only view (a Sample) at the subscriber.
// One update sent to N subscribers uses one slot, freed after the last of
// them releases it; a peer that disappears releases everything it held.
//
// The node never calls application code on its own: callbacks run inside
// Dispatch, on the goroutine that calls it, one at a time. Put Fd in your own
// event loop and call Dispatch when it is readable, or run Run on a goroutine.
// Everything else (Publish, Subscribe, Close, ...) may be called from any
// goroutine; sends go straight to the peer's socket when it has room.
//
// Hot messages (updates, consumes, calls and replies) travel through
// shared-memory rings between nodes that both support them, waking a
// parked peer only when needed; Config.Spin trades CPU for sub-microsecond
// hand-offs. In a process confined to one CPU, give the runtime at least
// two Ps (runtime.GOMAXPROCS(2), as libgwipc does): with one, Go's monitor
// thread hands the P of every blocking wait to another thread, which costs
// two context switches per message. docs/PERFORMANCE.md has the figures.
//
// The wire protocol is specified in docs/PROTOCOL.md.
package engine
