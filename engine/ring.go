package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"golang.org/x/sys/unix"
)

// Rings: the second carrier of the protocol. When both ends of a connection
// announce wire.CapRing, each makes a shm.Segment holding its control words
// and a ring of fixed-size entries, plus a wake pipe, and sends the segment
// and the pipe's read end in a Ring message. From then on the hot messages (Event_update,
// Payload_consumed, Call_method and its handle, reply and cancel) are
// entries in the sender's ring, read by the receiver's dispatch and handled
// exactly as if they had come on the socket; everything else stays on the
// socket, which remains the liveness signal.
//
// Each side writes only its own segment and maps the peer's read-only, so a
// peer can corrupt nothing but what it sends: every control word and entry
// read from it is checked like a decoded message, and a bad one closes that
// connection only.
//
// A writer wakes the reader (writes a byte to its wake pipe, whose read end
// is in the reader's poller) only when the reader has announced that it is
// parked, at most once per park. A node is parked whenever it is not inside
// a dispatch (the application may be waiting on Fd in its own loop; Run
// does not park between rounds) and while a dispatch waits in epoll_wait.
// Consumes wake a reader only if it has callers waiting for a free slot, or
// a Loan or Publish that failed for want of one: otherwise a provider takes
// them lazily, in its next dispatch or when it needs a slot.

// Layout of a segment: control words, each on its own cache line, then the
// entries.
const (
	ctlMagic    = 0   // u64 ringMagic, then u32 entries
	ctlTail     = 64  // u64: entries written to this side's ring
	ctlHead     = 128 // u64: entries of the peer's ring this side has taken
	ctlParked   = 192 // u64: bit 0 this side waits for the peer's entries; bits 32.. the park epoch
	ctlSlotWait = 256 // u64: this side has callers waiting for a free pool slot
	ctlCPU      = 320 // u64: the CPUs (0..63) this side may run on, a bit each (0: unknown)
	ctlWantRoom = 384 // u64: this side has entries waiting for room in its ring (a new value each time it starts waiting; 0: none)
	ctlSize     = 4096

	ringMagic = 0x31676e7263707767 // "gwpcrng1"

	defaultRingEntries = 4096
	minRingEntries     = 64
	maxRingEntries     = 1 << 16
)

// ringLink is one connection's pair of rings. Guarded by Node.mu.
type ringLink struct {
	own      *shm.Segment // our control words and ring (read-write)
	ownMem   []byte
	wakePeer int    // the write end of our wake pipe: a byte wakes the peer
	token    uint64 // its poller token
	entries  uint64 // our ring's size
	tail     uint64 // entries written (published at ctlTail)
	peerHead uint64 // how far the peer has taken our ring (validated ctlHead)

	peer        []byte // the peer's segment (read-only); nil until its Ring arrives
	wakeFD      int    // the read end of the peer's wake pipe, in our poller; -1 until its Ring arrives
	wakes       int    // wake-ups reported since wakeFD was last drained
	peerEntries uint64
	read        uint64 // entries of the peer's ring taken (published at ctlHead)
	stalled     bool   // the entry at read waits for socket packets sent before it
	stalledTail uint64 // the peer's tail when it began to wait
	wokenEpoch  uint64 // the peer's park epoch we last woke
	wantWake    bool   // urgent entries written since the last wake check
	consumed    bool   // consumes written since then: they wake a peer waiting for slots
	headWake    bool   // our head passed inline updates: in Node.headWakes

	holds     []inlineHold // slots held for the peer's inline updates still in our ring, oldest first
	holdsDone int          // holds[:holdsDone] are released

	overflow []waitingEntry // entries waiting for room (never updates)
	roomWait uint64         // our ctlWantRoom while entries wait (0: none)
	roomSeq  uint64         // how many times we announced a wait for room
	roomWoke uint64         // the peer's ctlWantRoom we last woke it for
	scratch  [wire.EntrySize]byte
	wakeByte [1]byte // what a wake-up writes; a field, so passing it to a syscall allocates nothing
}

// word returns the control word at off of mem.
func word(mem []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[off]))
}

func ringSize(entries uint64) int { return ctlSize + int(entries)*wire.EntrySize }

// startRing makes our half of p's rings and announces it with a Ring
// message. Called with n.mu held, when p becomes ready with CapRing.
func (n *Node) startRing(p *peer) error {
	entries := uint64(n.cfg.RingEntries)
	seg, err := shm.NewSegment("ring", ringSize(entries))
	if err != nil {
		return err
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		seg.Close()
		return os.NewSyscallError("pipe2", err)
	}
	l := &ringLink{own: seg, ownMem: seg.Bytes(), wakePeer: pipe[1], token: p.token | ringTokenBit, entries: entries, wakeFD: -1}
	l.wakeByte[0] = 1
	word(l.ownMem, ctlMagic).Store(ringMagic)
	*(*uint32)(unsafe.Pointer(&l.ownMem[8])) = uint32(entries)
	word(l.ownMem, ctlCPU).Store(n.cpus)
	p.ring = l
	p.queue(&wire.Ring{Entries: uint32(entries)}, seg.Fd(), pipe[0])
	seg.CloseFd() // the queued packet holds duplicates
	unix.Close(pipe[0])
	return nil
}

// Wake-ups go through a pipe that the waking side makes: it keeps the
// write end and hands the read end to the peer, which waits for it
// (edge-triggered) in its poller. Each side thus writes only to an open
// file it alone holds: the peer cannot make that write block (an eventfd
// would be one file shared by both, whose O_NONBLOCK flag and counter a
// hostile peer could set to hang the writer). A reader drains its pipe only
// every drainWakesEvery reports: a writer writes at most once per park and
// a reader parks at most twice between two polls, so the pipe never
// fills.
const drainWakesEvery = 1024

// tookWake counts a wake-up report of the peer's pipe and drains the pipe
// now and then. Called with n.mu held.
func (n *Node) tookWake(l *ringLink) {
	if l.wakes++; l.wakes < drainWakesEvery {
		return
	}
	l.wakes = 0
	for range 16 { // at most 64 KiB, what a pipe holds: a peer that floods its own pipe costs us little
		if k, err := unix.Read(l.wakeFD, n.drain[:]); err != nil || k < len(n.drain) {
			return
		}
	}
}

// ringTokenBit marks the poller token of a peer's ring wake pipe (clear of
// the poller's own all-ones tokens).
const ringTokenBit = 1 << 62

// onRing maps the peer's half of the rings. From then on the hot messages
// to p go through them.
func (n *Node) onRing(p *peer, m *wire.Ring, fds *fdQueue) error {
	segFD, ok1 := fds.take()
	wakeFD, ok2 := fds.take()
	l := p.ring
	switch {
	case !ok1 || !ok2:
		closeFD(segFD)
		return protoErr("Ring carries fewer than two fds", nil)
	case l == nil:
		// We could not make our half (logged): the connection stays on the
		// socket, both ways, since ours never reaches the peer.
		closeFD(segFD)
		closeFD(wakeFD)
		return nil
	case l.peer != nil:
		closeFD(segFD)
		closeFD(wakeFD)
		return protoErr("a second Ring", nil)
	case m.Entries < minRingEntries || m.Entries > maxRingEntries || m.Entries&(m.Entries-1) != 0:
		closeFD(segFD)
		closeFD(wakeFD)
		return protoErr(fmt.Sprintf("Ring with %d entries", m.Entries), nil)
	}
	if !isPipeReadEnd(wakeFD) {
		closeFD(segFD)
		closeFD(wakeFD)
		return protoErr("Ring's wake-up fd is not the read end of a pipe", nil)
	}
	size := ringSize(uint64(m.Entries))
	if p.mapped+int64(size) > n.cfg.Limits.MappedBytes {
		closeFD(segFD)
		closeFD(wakeFD)
		return protoErr("Ring beyond the peer's mapped-bytes limit", nil)
	}
	mem, err := shm.MapSegment(segFD, size)
	if err != nil {
		closeFD(wakeFD)
		return protoErr("mapping the peer's ring", err)
	}
	if word(mem, ctlMagic).Load() != ringMagic || *(*uint32)(unsafe.Pointer(&mem[8])) != m.Entries {
		shm.UnmapSegment(mem)
		closeFD(wakeFD)
		return protoErr("the peer's ring has a bad header", nil)
	}
	if err := n.poller.AddCounter(wakeFD, l.token); err != nil {
		shm.UnmapSegment(mem)
		closeFD(wakeFD)
		return err
	}
	p.mapped += int64(size)
	l.peer, l.wakeFD, l.peerEntries = mem, wakeFD, uint64(m.Entries)
	n.rings = append(n.rings, p)
	n.setSlotWaiters()
	return nil
}

// isPipeReadEnd reports whether fd is the read end of an anonymous pipe
// (not a named FIFO some other program reads, nor anything else).
func isPipeReadEnd(fd int) bool {
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || !strings.HasPrefix(target, "pipe:[") {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_ACCMODE == unix.O_RDONLY
}

// closeRing releases p's rings. Called with n.mu held, at teardown.
func (n *Node) closeRing(p *peer) {
	l := p.ring
	if l == nil {
		return
	}
	p.ring = nil
	n.rings = slices.DeleteFunc(n.rings, func(q *peer) bool { return q == p })
	unix.Close(l.wakePeer)
	if l.peer != nil {
		n.poller.Remove(l.wakeFD)
		unix.Close(l.wakeFD)
		p.mapped -= int64(ringSize(l.peerEntries))
	}
	if n.spinning {
		n.lateUnmaps = append(n.lateUnmaps, l) // a spinning dispatch may read it
		return
	}
	l.unmap()
}

// unmap unmaps both halves of the rings.
func (l *ringLink) unmap() {
	l.own.Close()
	if l.peer != nil {
		shm.UnmapSegment(l.peer)
	}
}

// ready reports whether hot messages to the peer go through the ring.
func (l *ringLink) ready() bool { return l != nil && l.peer != nil }

// errRingCorrupt closes a connection whose peer wrote impossible control
// words.
var errRingCorrupt = errors.New("corrupt ring control word")

// roomInRing reports whether our ring has a free entry.
func (p *peer) roomInRing() bool { return p.roomFor(1) }

// roomFor reports whether our ring has k free entries, refreshing how far
// the peer has taken it when it looks full. A head the peer could not have
// published fails p.
func (p *peer) roomFor(k uint64) bool {
	l := p.ring
	if l.tail+k-l.peerHead <= l.entries {
		return true
	}
	return p.takeHead() && l.tail+k-l.peerHead <= l.entries
}

// takeHead reads how far the peer has taken our ring and releases the
// slots held for the inline updates it has passed; false (p failed) for a
// head the peer could not have published.
func (p *peer) takeHead() bool {
	l := p.ring
	h := word(l.peer, ctlHead).Load()
	if h < l.peerHead || h > l.tail {
		p.n.fail(p, protoErr("the peer's ring head", errRingCorrupt))
		return false
	}
	l.peerHead = h
	if l.holdsDone < len(l.holds) && l.holds[l.holdsDone].end <= h {
		p.releaseHolds(h)
	}
	return true
}

// inlineHold is a slot of an offer's event pool held for a subscriber
// while the inline copy of its payload (§10.13) waits in our ring: it is
// released once the peer's head has passed end, which is the subscriber's
// Payload_consumed.
type inlineHold struct {
	end  uint64 // our tail after the update's record
	b    *provBinding
	slot uint32
}

// releaseHolds releases the holds of the inline updates the peer's head
// has passed.
func (p *peer) releaseHolds(head uint64) {
	l := p.ring
	released := false
	for ; l.holdsDone < len(l.holds) && l.holds[l.holdsDone].end <= head; l.holdsDone++ {
		h := &l.holds[l.holdsDone]
		// Held since the update was written; only a peer that also sent
		// Payload_consumed for it (a hostile one) has let it go already,
		// and the error then concerns its own holds alone.
		h.b.offer.pool.Release(h.slot, h.b.reader)
		h.b = nil
		released = true
	}
	if l.holdsDone == len(l.holds) {
		l.holds, l.holdsDone = l.holds[:0], 0
	} else if l.holdsDone >= 1024 && l.holdsDone*2 >= len(l.holds) {
		l.holds = l.holds[:copy(l.holds, l.holds[l.holdsDone:])]
		l.holdsDone = 0
	}
	if released {
		p.n.slotReturned()
	}
}

// forgetHolds drops b's inline holds without releasing them: b is being
// unbound, which releases every hold of its reader.
func (l *ringLink) forgetHolds(b *provBinding) {
	if l == nil {
		return
	}
	k := copy(l.holds, l.holds[l.holdsDone:]) // in place: the capacity stays
	clear(l.holds[k:])
	l.holds = slices.DeleteFunc(l.holds[:k], func(h inlineHold) bool { return h.b == b })
	l.holdsDone = 0
}

// inlines reports whether an update of size bytes to the peer travels
// inline (§10.13).
func (p *peer) inlines(size uint32) bool {
	return size <= wire.MaxInline && p.caps&wire.CapInline != 0 && p.ring.ready()
}

// pushInline writes u, an update of slot's first size bytes of b's offer's
// pool (which b holds), as an inline record: the entry, then the payload.
// It reports false, writing nothing, when the ring has no room for the
// record (the caller sends the update by slot). Called with n.mu held.
func (p *peer) pushInline(b *provBinding, u wire.EventUpdate, data []byte) bool {
	l := p.ring
	k := uint64(1 + wire.InlineEntries(u.Payload.Len))
	if len(l.overflow) > 0 || !p.roomFor(k) {
		return false
	}
	p.out.update = u
	p.out.update.Inline = true
	wire.PutEntry(l.slot(l.tail), &p.out.update, uint32(p.stats.PacketsOut+uint64(len(p.pkts))))
	for i := uint64(1); i < k; i++ {
		e := l.slot(l.tail + i)
		clear(e[copy(e, data[(i-1)*wire.EntrySize:]):])
	}
	l.tail += k
	l.holds = append(l.holds, inlineHold{end: l.tail, b: b, slot: u.Payload.Slot})
	p.stats.MessagesOut++
	l.wantWake = true
	p.sealed = true
	p.n.schedule(p)
	return true
}

// pushRing writes m as the next entry of our ring, or queues it behind
// entries waiting for room. urgent entries wake a parked peer at the next
// flush. Called with n.mu held, ring ready.
func (p *peer) pushRing(m wire.Message, urgent bool) {
	l := p.ring
	after := uint32(p.stats.PacketsOut + uint64(len(p.pkts)))
	if len(l.overflow) > 0 || !p.roomInRing() {
		if p.state == peerClosing {
			return
		}
		w := waitingEntry{after: after}
		wire.PutEntry(w.e[:], m, after)
		l.overflow = append(l.overflow, w)
		p.queued += wire.EntrySize
		if p.queued > p.n.cfg.MaxOutput {
			p.n.fail(p, errOutputFull)
			return
		}
	} else {
		wire.PutEntry(l.slot(l.tail), m, after)
		l.tail++ // published by the flush that follows (one store for a batch)
	}
	p.stats.MessagesOut++
	l.wantWake = l.wantWake || urgent
	p.sealed = true // a socket message queued after this entry starts a packet of its own
	p.n.schedule(p)
}

// waitingEntry is an entry that waits for room in our ring, with its
// stamp: socket packets queued after it wait for it (see flush).
type waitingEntry struct {
	e     [wire.EntrySize]byte
	after uint32
}

// slot is the entry i of our ring.
func (l *ringLink) slot(i uint64) []byte {
	off := ctlSize + int(i&(l.entries-1))*wire.EntrySize
	return l.ownMem[off : off+wire.EntrySize : off+wire.EntrySize]
}

// flushRing moves waiting entries into the ring as room allows and wakes
// the peer if it is parked and urgent entries were written. Entries still
// waiting announce it (ctlWantRoom), so the peer wakes us when it makes
// room. Called with n.mu held, from peer.flush.
func (p *peer) flushRing() {
	l := p.ring
	if l.moveWaiting(p) || len(l.overflow) > 0 && l.roomWait == 0 {
		// Entries still wait: announce it anew (the peer wakes us once
		// per announcement), then look at the head once more, since the
		// peer advances its head before it reads the announcement.
		for len(l.overflow) > 0 {
			l.roomSeq++
			l.roomWait = l.roomSeq
			word(l.ownMem, ctlWantRoom).Store(l.roomWait)
			if !l.moveWaiting(p) {
				break
			}
		}
	}
	if len(l.overflow) == 0 && l.roomWait != 0 {
		l.overflow, l.roomWait = nil, 0
		word(l.ownMem, ctlWantRoom).Store(0)
	}
	word(l.ownMem, ctlTail).Store(l.tail)
	// Whether the peer waits for slots is read only now, after the tail is
	// published: it announces the wait, then looks at our tail, so one of
	// the two sides sees the other.
	wake := l.wantWake || l.consumed && l.peerWaitsForSlots()
	l.wantWake = false
	if len(l.overflow) == 0 {
		l.consumed = false
	}
	if !wake {
		return
	}
	p.wakeParked()
}

// wakeParked wakes the peer if it is parked, once per park.
func (p *peer) wakeParked() {
	l := p.ring
	parked := word(l.peer, ctlParked).Load()
	if parked&1 != 0 && parked>>32 != l.wokenEpoch {
		l.wokenEpoch = parked >> 32
		// Our own write end, non-blocking: a full pipe (a reader that
		// never drains) or a closed one (EPIPE) only loses this wake-up.
		unix.Write(l.wakePeer, l.wakeByte[:])
		p.stats.RingWakes++
	}
}

// wakeForHeads wakes the providers waiting for a slot whose inline updates
// our heads have passed. Called with n.mu held after the round's
// callbacks, as consumes go out after their handlers: on one CPU a woken
// provider would otherwise run before the handlers of what we just read.
// Passing an inline update gives its slot back; the provider announces its
// wait and then reads our head, we stored the head before we read its
// slot-wait word here, so one of us sees the other.
func (n *Node) wakeForHeads() {
	for _, p := range n.headWakes {
		if l := p.ring; l != nil && l.headWake {
			l.headWake = false
			if l.peerWaitsForSlots() {
				p.wakeParked()
			}
		}
	}
	clear(n.headWakes)
	n.headWakes = n.headWakes[:0]
}

// peerEntry is the entry i of the peer's ring, in its mapping.
func (l *ringLink) peerEntry(i uint64) []byte {
	off := ctlSize + int(i&(l.peerEntries-1))*wire.EntrySize
	return l.peer[off : off+wire.EntrySize : off+wire.EntrySize]
}

// takeInline copies the payload of the inline update at l.read, size bytes
// in the entries after it, into in.inline, and moves l.read to its last
// entry. The whole record must be below the peer's tail t: a writer
// publishes it at once.
func (l *ringLink) takeInline(in *inbox, size uint32, t uint64) error {
	k := uint64(wire.InlineEntries(size))
	if t-l.read-1 < k {
		return errInlineBeyondTail
	}
	buf := in.inlineBuf[:k*wire.EntrySize]
	for i := range k {
		copy(buf[i*wire.EntrySize:], l.peerEntry(l.read+1+i))
	}
	if err := wire.CheckInline(buf, size); err != nil {
		return err
	}
	in.inline = buf[:size]
	l.read += k
	return nil
}

// errInlineBeyondTail fails a peer whose inline record ends past its tail.
var errInlineBeyondTail = errors.New("inline payload beyond the ring's tail")

// moveWaiting moves waiting entries into the ring as room allows,
// reporting whether it moved any.
func (l *ringLink) moveWaiting(p *peer) (moved bool) {
	for len(l.overflow) > 0 && p.roomInRing() {
		copy(l.slot(l.tail), l.overflow[0].e[:])
		l.tail++
		p.queued -= wire.EntrySize
		l.overflow = l.overflow[1:]
		moved = true
	}
	l.wantWake = l.wantWake || moved // they waited: the peer may be parked
	return moved
}

// holdsBack reports whether the next socket packet must wait: an entry
// sent before it still waits for room in the ring.
func (l *ringLink) holdsBack(sent uint64) bool {
	return l.ready() && len(l.overflow) > 0 && precedes(l.overflow[0].after, sent)
}

// peerWaitsForSlots reports whether the peer has callers blocked waiting
// for a free slot (so a consume must wake it).
func (l *ringLink) peerWaitsForSlots() bool { return word(l.peer, ctlSlotWait).Load() != 0 }

// readRing handles up to budget entries of p's ring, in order, merged with
// the socket by their stamps: an entry waits until the socket packets sent
// before it have been read (the socket's readability brings them, so a
// waiting entry is not work left). It reports whether the budget ran out.
// Called with n.mu held.
func (n *Node) readRing(p *peer, budget int) (more bool) {
	l := p.ring
	if !l.ready() || p.state != peerReady {
		return false
	}
	t := word(l.peer, ctlTail).Load()
	if t < l.read || t-l.read > l.peerEntries {
		n.fail(p, protoErr("the peer's ring tail", errRingCorrupt))
		return false
	}
	if !p.takeHead() {
		return false
	}
	var fds fdQueue
	start := l.read
	l.stalled = false
	inline := false
	for l.read < t && p.state == peerReady {
		if budget <= 0 {
			more = true
			break
		}
		copy(l.scratch[:], l.peerEntry(l.read)) // the peer may change it under us
		typ, err := wire.EntryType(l.scratch[:])
		if err != nil {
			n.fail(p, protoErr("ring entry", err))
			break
		}
		m := n.in.message(typ)
		after, err := wire.DecodeEntry(l.scratch[:], m)
		if err != nil {
			n.fail(p, protoErr("ring entry", err))
			break
		}
		if !precedes(after, p.stats.PacketsIn) {
			l.stalled, l.stalledTail = true, t // socket messages sent before it are still on their way
			break
		}
		if u, ok := m.(*wire.EventUpdate); ok && u.Inline {
			if p.caps&wire.CapInline == 0 {
				n.fail(p, protoErr("inline Event_update without the inline capability", nil))
				break
			}
			if err := l.takeInline(&n.in, u.Payload.Len, t); err != nil {
				n.fail(p, protoErr("ring entry", err))
				break
			}
			inline = true
		}
		l.read++
		budget--
		p.stats.MessagesIn++
		err = n.handle(p, m, &fds)
		n.in.inline = nil
		if err != nil {
			n.fail(p, err)
			break
		}
	}
	if l.read == start {
		return more
	}
	word(l.ownMem, ctlHead).Store(l.read)
	if inline && !l.headWake {
		l.headWake = true
		n.headWakes = append(n.headWakes, p)
		if !n.batching {
			// Read by an API call (a slot was needed), not by a dispatch:
			// have the next one run, which sends the wake-up after its
			// callbacks.
			n.wakeNeeded = true
		}
	}
	// A writer waiting for room is woken once per announcement, after the
	// head moved (it announces, then looks at the head).
	if w := word(l.peer, ctlWantRoom).Load(); w != 0 && w != l.roomWoke {
		l.roomWoke = w
		unix.Write(l.wakePeer, l.wakeByte[:])
		p.stats.RingWakes++
	}
	return more
}

// precedes reports whether an entry stamped after (the socket packets its
// writer had sent or queued before it) comes before the next socket packet,
// once read packets have been read: after <= read, compared modulo 2^32.
func precedes(after uint32, read uint64) bool { return int32(after-uint32(read)) <= 0 }

// readRings takes what every peer's ring holds, within the round's budget.
// Called with n.mu held.
func (n *Node) readRings() {
	for i := 0; i < len(n.rings); i++ { // a failed peer leaves the slice at teardown only
		p := n.rings[i]
		if n.readRing(p, maxRoundCallbacks) {
			n.more = true
		}
		if len(p.ring.overflow) > 0 {
			n.schedule(p) // the peer may have made room: the flush moves them in
		}
	}
}

// ringsPending reports whether a peer's ring holds entries not yet taken,
// or, while callers wait for a slot, whether a peer's head has passed an
// inline update whose slot we hold. Called with n.mu held.
func (n *Node) ringsPending() bool {
	waiting := n.slotWaiters > 0 || n.slotWanted
	for _, p := range n.rings {
		if l := p.ring; word(l.peer, ctlTail).Load() != l.quietTail() || waiting && l.headPassedHold() {
			return true
		}
	}
	return false
}

// headPassedHold reports whether the peer's head has passed an inline
// update whose slot we still hold: a slot to take back, for callers
// waiting for one.
func (l *ringLink) headPassedHold() bool {
	return l.holdsDone < len(l.holds) && word(l.peer, ctlHead).Load() >= l.holds[l.holdsDone].end
}

// quietTail is the peer's tail at which its ring has nothing for us: what
// we have read, or, while the next entry waits for the socket, the tail we
// saw then (the socket's readability, not the ring, brings that entry on).
func (l *ringLink) quietTail() uint64 {
	if l.stalled {
		return l.stalledTail
	}
	return l.read
}

// park announces to every ring peer that this node is about to wait for
// them (a new epoch each time), then reports whether something arrived
// meanwhile, so the wait must not block: a writer that appended before the
// announcement is seen here, one that appends after it sees the
// announcement and wakes us. Called with n.mu held.
func (n *Node) park() (pending bool) {
	for _, p := range n.rings {
		w := word(p.ring.ownMem, ctlParked)
		w.Store((w.Load()>>32+1)<<32 | 1)
	}
	return n.ringsPending()
}

// parkUntilNextDispatch announces the park as a dispatch returns (not in
// Run): the application may now wait on Fd in its own loop, and ring
// writers must wake it. If entries came meanwhile the dispatch reports
// more instead (the caller dispatches again before waiting), which costs no
// system call. Called with n.mu held.
func (n *Node) parkUntilNextDispatch() {
	if len(n.rings) == 0 || n.inRun {
		return // Run dispatches again at once
	}
	if n.park() {
		n.unpark()
		n.more = true
	}
}

// unpark withdraws the announcement. Called with n.mu held.
func (n *Node) unpark() {
	for _, p := range n.rings {
		w := word(p.ring.ownMem, ctlParked)
		w.Store(w.Load() &^ 1)
	}
}

// setSlotWaiters tells ring peers how many callers wait here for a free
// slot, counting a failed non-blocking Loan or Publish as one (consumes
// then wake this node). Called with n.mu held.
func (n *Node) setSlotWaiters() {
	w := uint64(n.slotWaiters)
	if n.slotWanted {
		w++
	}
	for _, p := range n.rings {
		word(p.ring.ownMem, ctlSlotWait).Store(w)
	}
}

// wantSlot records that a non-blocking allocation failed: until a slot
// comes back, consumes wake this node, so an application waiting on Fd
// retries as soon as it can succeed. It then takes the consumes already in
// the rings and reports whether a slot came back (worth another try).
// Called with n.mu held.
func (n *Node) wantSlot() (retry bool) {
	if len(n.rings) == 0 {
		return false
	}
	if !n.slotWanted {
		n.slotWanted = true
		n.setSlotWaiters()
	}
	n.readRings() // consumes pushed before the peers saw the announcement
	return !n.slotWanted
}

// slotReturned ends wantSlot's state: a slot came back, and the dispatch
// that took it returns to the application. Called with n.mu held.
func (n *Node) slotReturned() {
	if n.slotWanted {
		n.slotWanted = false
		n.setSlotWaiters()
	}
}

// takeSlot takes a free slot of pool, first reclaiming the consumes that
// wait in the rings when there is none (they are taken lazily, without a
// wake-up). With wait it waits within ctx; meanwhile ring peers are told
// that this node waits for slots, so their consumes wake it. Called without
// n.mu.
func (n *Node) takeSlot(ctx context.Context, wait bool, pool *shm.Pool) (uint32, error) {
	slot, err := pool.Alloc()
	if !errors.Is(err, shm.ErrNoSlot) {
		return slot, err
	}
	n.mu.Lock()
	n.readRings()
	if !wait {
		slot, err = pool.Alloc()
		for errors.Is(err, shm.ErrNoSlot) && n.wantSlot() {
			slot, err = pool.Alloc()
		}
		n.unlock()
		return slot, err
	}
	n.slotWaiters++
	n.setSlotWaiters()
	n.readRings() // consumes pushed before the peers saw the announcement
	n.unlock()
	slot, err = pool.AllocWait(ctx)
	n.mu.Lock()
	n.slotWaiters--
	n.setSlotWaiters()
	n.mu.Unlock()
	return slot, err
}
