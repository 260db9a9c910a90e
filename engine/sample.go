package engine

import (
	"github.com/gwipc/gwipc/engine/wire"
	"golang.org/x/sys/unix"
)

// Sample is one received event update: a read-only view of a slot in the
// provider's shared memory.
//
// A Sample is valid while its handler runs and is released when the handler
// returns, unless the handler calls Keep; a kept sample stays valid (and its
// slot stays held, counting against the pool) until Release. Writing to
// Data faults: the memory is mapped read-only.
type Sample struct {
	n         *Node
	b         *consBinding
	data      []byte
	event     uint16
	seq       uint64
	requested bool
	payload   wire.Payload
	kept      bool
	released  bool
	pooled    bool // may be reused after release (never once kept)
}

// Data is the payload, read-only, valid until the sample is released.
func (s *Sample) Data() []byte { return s.data }

// Event is the event id.
func (s *Sample) Event() uint16 { return s.event }

// Seq is the provider's sequence number for this event (1 for the first
// update). A jump between consecutive samples means updates were missed.
func (s *Sample) Seq() uint64 { return s.seq }

// Requested reports whether this update answers a request for the current
// value rather than being a new publication.
func (s *Sample) Requested() bool { return s.requested }

// Keep keeps the sample past its handler's return. Call it only inside the
// handler; the sample must then be released with Release.
func (s *Sample) Keep() {
	s.kept = true
	s.pooled = false
}

// Release gives the slot back to the provider. It is idempotent and safe
// from any goroutine.
func (s *Sample) Release() {
	n := s.n
	n.mu.Lock()
	s.releaseLocked()
	n.unlock()
}

func (s *Sample) releaseLocked() {
	if s.released {
		return
	}
	s.released = true
	s.n.consume(s.b, s.payload)
	s.b.view.Unref()
	s.data = nil
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
