package engine

import (
	"github.com/gwipc/gwipc/engine/wire"
	"golang.org/x/sys/unix"
)

// received is a payload this node read from a provider's pool: a read-only
// view that must be handed back (Payload_consumed) exactly once.
type received struct {
	n        *Node
	b        *consBinding
	data     []byte
	payload  wire.Payload
	released bool
}

// releaseLocked gives the slot back. Called with n.mu held.
func (r *received) releaseLocked() {
	if r.released {
		return
	}
	r.released = true
	if r.payload.Slot != wire.NoSlot {
		r.n.consume(r.b, r.payload)
		r.b.view.Unref()
	}
	r.data = nil
}

// Sample is one received event update: a read-only view of a slot in the
// provider's shared memory.
//
// A Sample is valid while its handler runs and is released when the handler
// returns, unless the handler calls Keep; a kept sample stays valid (and its
// slot stays held, counting against the pool) until Release. Writing to
// Data faults: the memory is mapped read-only.
type Sample struct {
	received
	event     uint16
	seq       uint64
	requested bool
	kept      bool
	pooled    bool // may be reused after release (never once kept)
}

// Data is the payload, read-only, valid until the sample is released.
func (s *Sample) Data() []byte { return s.data }

// Event is the event id.
func (s *Sample) Event() uint16 { return s.event }

// Seq is the provider's sequence number for this event (1 for the first
// update). A jump between consecutive samples means updates were missed.
// A requested update (see Requested) repeats the sequence number of the
// value it carries.
func (s *Sample) Seq() uint64 { return s.seq }

// Requested reports whether this update answers a request for the current
// value (a field's initial value or Proxy.RequestUpdate) rather than being
// a new publication.
func (s *Sample) Requested() bool { return s.requested }

// Keep keeps the sample past its handler's return. Call it only inside the
// handler; the sample must then be released with Release.
func (s *Sample) Keep() {
	s.kept = true
	s.pooled = false
}

// Release gives the slot back to the provider. It is idempotent and safe
// from any goroutine; a nil sample is ignored.
func (s *Sample) Release() {
	if s == nil {
		return
	}
	n := s.n
	n.mu.Lock()
	s.releaseSample()
	n.unlock()
}

func (s *Sample) releaseSample() {
	if s.released {
		return
	}
	s.releaseLocked()
	if s.pooled {
		s.n.freeSamples = append(s.n.freeSamples, s)
	}
}

// deliver runs the handler for s (on the dispatching goroutine) and reports
// whether s must be released now.
func (s *Sample) deliver() bool {
	n := s.n
	n.mu.Lock()
	var handler func(*Sample)
	if sub := s.b.proxy.subs[s.event]; sub != nil && !s.b.proxy.closed {
		handler = sub.handler
		sub.received++
		s.b.proxy.stats.Received++
	}
	n.mu.Unlock()
	if handler != nil {
		handler(s)
	}
	return !s.kept
}

func (n *Node) newSample() *Sample {
	if k := len(n.freeSamples); k > 0 {
		s := n.freeSamples[k-1]
		n.freeSamples = n.freeSamples[:k-1]
		return s
	}
	return new(Sample)
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
