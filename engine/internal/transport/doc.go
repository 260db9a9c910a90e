// Package transport is the raw I/O of gwipc's control channel: AF_UNIX
// SOCK_SEQPACKET sockets at filesystem paths, peer credentials (SO_PEERCRED),
// file-descriptor passing (SCM_RIGHTS) and an epoll-based [Poller] whose
// single fd can be put into a caller's own event loop.
//
// Everything here works on non-blocking file descriptors through plain
// system calls (golang.org/x/sys/unix); nothing uses Go's net package or the
// runtime netpoller, because the caller drives I/O from its own loop
// (DESIGN.md §3, §4). Operations that would block return [ErrWouldBlock]; the
// caller waits for readiness (usually with a [Poller]) and tries again.
//
// # Packets
//
// A [Conn] carries packets: one [Conn.Send] is one [Conn.Recv] on the other
// end, with boundaries kept and up to [MaxFDs] file descriptors attached.
// Senders must never send an empty packet: on a SEQPACKET socket a
// zero-length read is indistinguishable from the peer's orderly shutdown, so
// [Conn.Recv] reports it as [io.EOF]. [Conn.Send] refuses empty packets with
// [ErrEmptyPacket].
//
// # Listener start-up
//
// [Listen] serialises concurrent start-ups at one path with flock(2) on
// "<path>.lock", refuses to start when a live listener answers at the path
// ([ErrAddrInUse]) or when the path is not a socket ([ErrNotSocket]), replaces
// a stale socket left by a killed process, and sets the socket file's mode
// before listen(2) so that no client can connect through a wider mode.
// [Listener.Close] removes the socket file only if it is still the one this
// listener created.
//
// # Concurrency
//
// [Conn] and [Listener] are not safe for concurrent use: the caller
// serialises. [Poller.Wake] and [Poller.SetTimer] may be called from any
// goroutine; the other Poller methods are for the loop that owns the poller,
// except that [Poller.Close] may be called while another goroutine is in
// [Poller.Wait] (Close wakes it and waits for it to return).
//
// The hot paths ([Conn.Send], [Conn.Recv], [Poller.Wait], [Poller.Wake]) do
// not allocate.
package transport
