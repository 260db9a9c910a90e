package engine

import (
	"math/bits"
	"time"

	"golang.org/x/sys/unix"
)

// Adaptive spin (Config.Spin): before a dispatch parks, it polls the rings'
// tails for new entries. The budget halves after a spin that found nothing
// and doubles back (up to Config.Spin) after one that paid, so an idle
// node soon stops burning CPU. Each side publishes the CPUs it may run on
// (ctlCPU); a node never spins when it and a peer are confined to the same
// single CPU.

// minSpin is the floor of the adaptive budget: below it a spin is not
// worth the time it takes to check the clock.
const minSpin = 2 * time.Microsecond

// cpuMask is the set of CPUs (0..63) this process may run on, 0 if unknown.
func cpuMask() uint64 {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	var m uint64
	for cpu := range 64 {
		if set.IsSet(cpu) {
			m |= 1 << cpu
		}
	}
	return m
}

// sharesOneCPU reports whether masks a and b are the same single CPU.
func sharesOneCPU(a, b uint64) bool { return a == b && bits.OnesCount64(a) == 1 }

// spinBudget is how long this dispatch may spin (0: not at all). Called with
// n.mu held, when the dispatch would park.
func (n *Node) spinBudget() time.Duration {
	if n.cfg.Spin == 0 || len(n.rings) == 0 {
		return 0
	}
	if n.spin == 0 {
		n.spin = n.cfg.Spin
	}
	if n.spin < minSpin {
		// Decayed: try a full spin again now and then.
		if n.spinSkips++; n.spinSkips < 64 {
			return 0
		}
		n.spinSkips, n.spin = 0, n.cfg.Spin
	}
	mine := n.cpus
	for _, p := range n.rings {
		if sharesOneCPU(mine, word(p.ring.peer, ctlCPU).Load()) {
			return 0
		}
	}
	return n.spin
}

// spinForEntries polls the rings in n.spinSet for up to d, without the lock
// (the segments stay mapped while n.spinning), and now and then the poller,
// so socket traffic is not held up. It reports whether entries, other work
// (a Post, say) or Close came meanwhile, and the number of poller events it
// took (they are in n.events, for the dispatch to handle).
func (n *Node) spinForEntries(d time.Duration) (found bool, events int) {
	start := time.Now()
	wakes := n.wakes.Load()
	for i := 0; ; i++ {
		for _, r := range n.spinSet {
			if word(r.l.peer, ctlTail).Load() != r.quiet || r.heldTo != 0 && word(r.l.ownMem, ctlSlotWait).Load() != 0 && word(r.l.peer, ctlHead).Load() >= r.heldTo {
				return true, 0
			}
		}
		if i%256 == 255 {
			if n.wakes.Load() != wakes || n.closedFlag.Load() {
				return true, 0
			}
			if k, _ := n.poller.Wait(n.events, 0); k > 0 {
				return true, k
			}
			if time.Since(start) >= d {
				return false, 0
			}
		}
	}
}

// spinRing is a ring a spin polls, with the tail at which it has nothing
// for us and the head that gives back the slot of our oldest inline update
// in it (0: none), watched while callers wait for a slot (our slot-wait
// word, which a caller may set during the spin).
type spinRing struct {
	l      *ringLink
	quiet  uint64
	heldTo uint64
}

// spinBeforeParking spins for what the budget allows and adapts it. Called
// with n.mu held; it releases and retakes it around the spin. It reports
// whether the dispatch must not block, and how many poller events the spin
// took.
func (n *Node) spinBeforeParking() (found bool, events int) {
	d := n.spinBudget()
	if d == 0 {
		return false, 0
	}
	n.spinning = true
	for _, p := range n.rings {
		r := spinRing{l: p.ring, quiet: p.ring.quietTail()}
		if l := p.ring; l.holdsDone < len(l.holds) {
			r.heldTo = l.holds[l.holdsDone].end
		}
		n.spinSet = append(n.spinSet, r)
	}
	n.mu.Unlock()
	found, events = n.spinForEntries(d)
	n.mu.Lock()
	n.spinning = false
	clear(n.spinSet)
	n.spinSet = n.spinSet[:0]
	for _, l := range n.lateUnmaps {
		l.unmap()
	}
	clear(n.lateUnmaps)
	n.lateUnmaps = n.lateUnmaps[:0]
	if found {
		n.spin = min(2*n.spin, n.cfg.Spin)
	} else {
		n.spin /= 2
	}
	return found, events
}
