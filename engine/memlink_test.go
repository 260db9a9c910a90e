package engine

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"golang.org/x/sys/unix"
)

// memLink connects two nodes in memory, in place of a socket: each end
// queues whole packets (with duplicates of their fds) for the other. An
// eventfd in semaphore mode keeps an end's Fd readable while packets wait
// for it (and once the other end has closed), so the nodes' pollers and
// Dispatch drive it exactly as they drive a socket. The test sees every
// packet in flight and may change or add one before it is read.
type memLink struct {
	ends [2]*memEnd
	// seen records the messages each end sent (decoded on the way), for
	// invariants about what went over the socket carrier.
	seen func(from int, m wire.Message)
}

// memEnd is one end of a memLink; it implements channel.
type memEnd struct {
	link   *memLink
	side   int
	efd    int // readable while inbox holds packets, or the other end closed
	inbox  []memPacket
	closed bool // closed by its node
	reset  bool // the link dropped: as if the other end's process had died
}

type memPacket struct {
	b   []byte
	fds []int
}

// maxInbox bounds an end's queue, like a socket buffer: Send then reports
// that it would block.
const maxInbox = 256

func newMemLink() (*memLink, error) {
	l := &memLink{}
	for i := range l.ends {
		fd, err := unix.Eventfd(0, unix.EFD_SEMAPHORE|unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			if i == 1 {
				unix.Close(l.ends[0].efd)
			}
			return nil, err
		}
		l.ends[i] = &memEnd{link: l, side: i, efd: fd}
	}
	return l, nil
}

func (e *memEnd) other() *memEnd { return e.link.ends[1-e.side] }

// signal makes e's Fd readable once more.
func (e *memEnd) signal() {
	if !e.closed {
		unix.Write(e.efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

func (e *memEnd) Fd() int { return e.efd }

func (e *memEnd) Cred() transport.Cred {
	return transport.Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

func (e *memEnd) Send(pkt []byte, fds []int) error {
	o := e.other()
	switch {
	case e.closed:
		return transport.ErrClosed
	case len(pkt) == 0:
		return transport.ErrEmptyPacket
	case len(fds) > transport.MaxFDs:
		return transport.ErrTooManyFDs
	case o.closed || e.reset:
		return fmt.Errorf("sending: %w", transport.ErrPeerClosed)
	case len(o.inbox) >= maxInbox:
		return transport.ErrWouldBlock
	}
	if e.link.seen != nil {
		for rest := pkt; len(rest) > 0; {
			m, r, err := wire.Decode(rest)
			if err != nil {
				break // a test's injected garbage: the receiver judges it
			}
			e.link.seen(e.side, m)
			rest = r
		}
	}
	p := memPacket{b: append([]byte(nil), pkt...)}
	for _, fd := range fds {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeAll(p.fds)
			return err
		}
		p.fds = append(p.fds, dup)
	}
	o.inbox = append(o.inbox, p)
	o.signal()
	return nil
}

func (e *memEnd) Recv(buf []byte, fds []int) (int, int, error) {
	if e.closed {
		return 0, 0, transport.ErrClosed
	}
	if len(e.inbox) == 0 {
		if e.other().closed || e.reset {
			return 0, 0, io.EOF
		}
		return 0, 0, transport.ErrWouldBlock
	}
	p := e.inbox[0]
	e.inbox = e.inbox[1:]
	unix.Read(e.efd, make([]byte, 8))
	if len(p.b) > len(buf) || len(p.fds) > len(fds) {
		closeAll(p.fds)
		return 0, 0, transport.ErrTruncated
	}
	copy(fds, p.fds)
	return copy(buf, p.b), len(p.fds), nil
}

func (e *memEnd) Close() error {
	if e.closed {
		return transport.ErrClosed
	}
	for _, p := range e.inbox {
		closeAll(p.fds)
	}
	e.inbox = nil
	e.other().signal() // it reads what is left, then EOF
	e.closed = true
	return unix.Close(e.efd)
}

// drop breaks the link: what is in flight is lost, and each node then
// reads the end of its connection and closes its end.
func (l *memLink) drop() {
	for _, e := range l.ends {
		for _, p := range e.inbox {
			closeAll(p.fds)
		}
		e.inbox = nil
		e.reset = true
		e.signal()
	}
}

// inject queues pkt for end side to read, as if the other end had sent it.
func (l *memLink) inject(side int, pkt []byte) {
	e := l.ends[side]
	if e.closed || e.reset || e.other().closed || len(pkt) == 0 {
		return
	}
	e.inbox = append(e.inbox, memPacket{b: append([]byte(nil), pkt...)})
	e.signal()
}

// inFlight returns the newest packet waiting for end side, nil if none.
func (l *memLink) inFlight(side int) *memPacket {
	e := l.ends[side]
	if len(e.inbox) == 0 {
		return nil
	}
	return &e.inbox[len(e.inbox)-1]
}

// idle reports whether nothing waits in either direction.
func (l *memLink) idle() bool { return len(l.ends[0].inbox) == 0 && len(l.ends[1].inbox) == 0 }

// fakeClock is the time of nodes driven by a test.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// coupledNodes returns a listener-role and a dialler-role node with no
// sockets, sharing clock: link connects them, carrying their control
// packets in memory (rings, where both have them, are real shared memory).
func coupledNodes(lcfg, dcfg *Config, clock *fakeClock) (l, d *Node, err error) {
	if l, err = newNode(lcfg); err != nil {
		return nil, nil, err
	}
	if d, err = newNode(dcfg); err != nil {
		l.Close()
		return nil, nil, err
	}
	l.isListener = true
	l.clock, d.clock = clock.now, clock.now
	return l, d, nil
}

// connect joins l and d with a new memLink, as an accept and a dial would.
func connect(l, d *Node, seen func(from int, m wire.Message)) (*memLink, error) {
	link, err := newMemLink()
	if err != nil {
		return nil, err
	}
	link.seen = seen
	l.mu.Lock()
	l.acceptChannel(link.ends[0])
	l.unlock()
	d.mu.Lock()
	d.connectChannel(link.ends[1])
	d.unlock()
	return link, nil
}
