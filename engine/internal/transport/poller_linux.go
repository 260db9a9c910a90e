package transport

import (
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Tokens the poller reserves for its own events; Add and Modify refuse them.
const (
	// TokenWake is the token of the event reporting one or more Wake calls.
	TokenWake = ^uint64(0)
	// TokenTimer is the token of the event reporting that the SetTimer
	// deadline has passed.
	TokenTimer = ^uint64(0) - 1
)

// maxEvents bounds how many events one Wait reports.
const maxEvents = 128

// Event is one readiness report from [Poller.Wait].
type Event struct {
	// Token is the value given to Add, or TokenWake or TokenTimer.
	Token uint64
	// Readable: a read (Recv, Accept) can proceed.
	Readable bool
	// Writable: a Send can proceed (only reported when asked for).
	Writable bool
	// Hangup: the peer has shut down or the socket has an error; the next
	// read tells which.
	Hangup bool
}

// Poller is an epoll instance holding the caller's fds plus an eventfd (for
// [Poller.Wake]) and a timerfd (for [Poller.SetTimer]). Its single fd,
// [Poller.Fd], becomes readable whenever any of them is ready, so a caller
// may put it in its own event loop and call Wait(…, 0) when it fires.
//
// Wake and SetTimer may be called from any goroutine. Add, Modify, Remove and
// Wait belong to the loop that owns the poller (they must not run
// concurrently with each other); Close may be called from any goroutine, and
// wakes a Wait in progress.
type Poller struct {
	// mu guards the fds against Close: every method holds it for reading
	// while it uses them, Close holds it for writing to close them. closed
	// is set first, so that no Wait starts blocking once Close has begun.
	mu      sync.RWMutex
	closed  atomic.Bool
	epfd    int
	wakefd  int
	timerfd int
	events  [maxEvents]unix.EpollEvent
	scratch [8]byte // for reading the eventfd and timerfd counters
	one     [8]byte // the eventfd increment, set once by NewPoller
}

// NewPoller creates a poller.
func NewPoller() (*Poller, error) {
	p := &Poller{epfd: -1, wakefd: -1, timerfd: -1}
	*(*uint64)(unsafe.Pointer(&p.one[0])) = 1 // native byte order
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("creating poller: %w", os.NewSyscallError("epoll_create1", err))
	}
	if p.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("creating poller: %w", os.NewSyscallError("eventfd", err))
	}
	if p.timerfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("creating poller: %w", os.NewSyscallError("timerfd_create", err))
	}
	for _, m := range []struct {
		fd    int
		token uint64
	}{{p.wakefd, TokenWake}, {p.timerfd, TokenTimer}} {
		if err := p.ctl(unix.EPOLL_CTL_ADD, m.fd, m.token, unix.EPOLLIN); err != nil {
			p.closeFDs()
			return nil, fmt.Errorf("creating poller: %w", err)
		}
	}
	return p, nil
}

// Fd returns the epoll fd, or -1 after Close. It is readable when Wait has
// something to report; the poller owns it.
func (p *Poller) Fd() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return -1
	}
	return p.epfd
}

func (p *Poller) ctl(op, fd int, token uint64, events uint32) error {
	ev := unix.EpollEvent{Events: events}
	setToken(&ev, token)
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// setToken and getToken store a 64-bit token in epoll_event's data union,
// which x/sys/unix splits into Fd and Pad; the kernel hands it back verbatim.
func setToken(ev *unix.EpollEvent, token uint64) {
	ev.Fd = int32(uint32(token))
	ev.Pad = int32(uint32(token >> 32))
}

func getToken(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func interest(wantWrite bool) uint32 {
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if wantWrite {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// Add registers fd, level-triggered, for readability and peer shutdown, and
// for writability if wantWrite. Wait reports its events with token, which
// must not be TokenWake or TokenTimer.
func (p *Poller) Add(fd int, token uint64, wantWrite bool) error {
	return p.update(unix.EPOLL_CTL_ADD, "adding", fd, token, wantWrite)
}

// AddCounter registers, edge-triggered, an fd that others write to wake
// this poller (a pipe's read end): Wait reports it once per burst of
// writes, so the caller need not read it on every wake-up, which saves a
// system call each time.
func (p *Poller) AddCounter(fd int, token uint64) error {
	if token == TokenWake || token == TokenTimer {
		return fmt.Errorf("adding fd %d: %w", fd, ErrReservedToken)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.ctl(unix.EPOLL_CTL_ADD, fd, token, unix.EPOLLIN|unix.EPOLLET); err != nil {
		return fmt.Errorf("adding fd %d: %w", fd, err)
	}
	return nil
}

// Modify changes fd's token and whether writability is wanted.
func (p *Poller) Modify(fd int, token uint64, wantWrite bool) error {
	return p.update(unix.EPOLL_CTL_MOD, "modifying", fd, token, wantWrite)
}

func (p *Poller) update(op int, verb string, fd int, token uint64, wantWrite bool) error {
	if token == TokenWake || token == TokenTimer {
		return fmt.Errorf("%s fd %d: %w", verb, fd, ErrReservedToken)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.ctl(op, fd, token, interest(wantWrite)); err != nil {
		return fmt.Errorf("%s fd %d: %w", verb, fd, err)
	}
	return nil
}

// Remove unregisters fd. Call it before closing fd: epoll forgets a closed fd
// only when every duplicate of it is closed.
func (p *Poller) Remove(fd int) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("removing fd %d: %w", fd, os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// Wait waits until at least one registered fd is ready, a Wake happened, the
// timer fired, or timeout passed, and fills evs with what is ready. It
// returns the number of events (0 on timeout). A negative timeout waits
// forever, 0 does not block, and other values are rounded up to whole
// milliseconds. Wake and timer events are consumed here and reported once
// each, as Event{Token: TokenWake} and Event{Token: TokenTimer}.
//
// evs must not be empty; at most 128 events are reported per call. Wait does
// not allocate.
func (p *Poller) Wait(evs []Event, timeout time.Duration) (int, error) {
	if len(evs) == 0 {
		return 0, fmt.Errorf("waiting: %w", io.ErrShortBuffer)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	buf := p.events[:min(len(evs), maxEvents)]
	for {
		n, err := unix.EpollWait(p.epfd, buf, waitMillis(timeout))
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("waiting: %w", os.NewSyscallError("epoll_wait", err))
		}
		out := 0
		for i := range n {
			ev := &buf[i]
			tok := getToken(ev)
			if (tok == TokenWake || tok == TokenTimer) && !p.drain(tok) {
				continue // stale: the timer was re-armed meanwhile
			}
			e := ev.Events
			evs[out] = Event{
				Token:    tok,
				Readable: e&unix.EPOLLIN != 0,
				Writable: e&unix.EPOLLOUT != 0,
				Hangup:   e&(unix.EPOLLHUP|unix.EPOLLRDHUP|unix.EPOLLERR) != 0,
			}
			out++
		}
		if out > 0 || timeout == 0 {
			return out, nil
		}
		if timeout > 0 {
			if timeout = time.Until(deadline); timeout <= 0 {
				return 0, nil
			}
		}
	}
}

// waitMillis converts a Wait timeout into epoll_wait's milliseconds.
func waitMillis(d time.Duration) int {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return int(min(ms, math.MaxInt32))
}

// drain reads the eventfd or timerfd counter behind tok, reporting whether
// there was anything to read.
func (p *Poller) drain(tok uint64) bool {
	fd := p.wakefd
	if tok == TokenTimer {
		fd = p.timerfd
	}
	for {
		_, err := unix.Read(fd, p.scratch[:])
		switch err {
		case nil:
			return true
		case unix.EINTR:
			continue
		default: // EAGAIN
			return false
		}
	}
}

// Wake makes a Wait in progress (or the next one) return an Event with
// TokenWake. Calls before that Wait coalesce into one event. Wake may be
// called from any goroutine and does not allocate.
func (p *Poller) Wake() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	return p.wake()
}

func (p *Poller) wake() error {
	for {
		_, err := unix.Write(p.wakefd, p.one[:])
		switch err {
		case nil, unix.EAGAIN: // EAGAIN: the counter is full, a wake is pending anyway
			return nil
		case unix.EINTR:
			continue
		default:
			return fmt.Errorf("waking poller: %w", os.NewSyscallError("write", err))
		}
	}
}

// SetTimer arms the poller's one-shot timer: once deadline has passed, Wait
// reports an Event with TokenTimer, once. A deadline already past fires at
// once. A new call replaces the previous deadline; the zero Time disarms the
// timer. The deadline is measured on the monotonic clock (CLOCK_MONOTONIC),
// so changes of the wall clock do not move it. SetTimer may be called from
// any goroutine.
func (p *Poller) SetTimer(deadline time.Time) error {
	var spec unix.ItimerSpec
	if !deadline.IsZero() {
		d := time.Until(deadline)
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
			return fmt.Errorf("setting timer: %w", os.NewSyscallError("clock_gettime", err))
		}
		// now was read after time.Until's clock reading, so abs is never
		// earlier than deadline.
		abs := now.Nano() + max(int64(d), 0)
		if abs <= 0 {
			abs = 1 // all zeros would disarm
		}
		spec.Value = unix.NsecToTimespec(abs)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if err := unix.TimerfdSettime(p.timerfd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		return fmt.Errorf("setting timer: %w", os.NewSyscallError("timerfd_settime", err))
	}
	return nil
}

// Close closes the epoll fd, the eventfd and the timerfd; registered fds are
// not closed. A Wait in progress in another goroutine is woken and returns
// before the fds are closed. Close is idempotent: later calls return nil.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	// Only this call closes the fds, so wakefd is still open: wake a Wait
	// in progress, which holds the read lock. Later Waits see closed.
	_ = p.wake()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeFDs()
}

func (p *Poller) closeFDs() error {
	var first error
	for _, fd := range []*int{&p.timerfd, &p.wakefd, &p.epfd} {
		if *fd < 0 {
			continue
		}
		if err := unix.Close(*fd); err != nil && first == nil {
			first = fmt.Errorf("closing poller: %w", os.NewSyscallError("close", err))
		}
		*fd = -1
	}
	return first
}
