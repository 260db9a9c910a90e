package engine

import (
	"sync/atomic"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"golang.org/x/sys/unix"
)

// received is a payload this node read from a provider's pool: a read-only
// view that must be handed back (Payload_consumed) exactly once. Guarded by
// Node.mu.
type received struct {
	n        *Node
	b        *consBinding
	view     *shm.View // the pool the payload is in (its reference is held)
	payload  wire.Payload
	inReply  bool // the payload is in the binding's reply pool
	released bool
}

// releaseLocked gives the slot back. Called with n.mu held.
func (r *received) releaseLocked() {
	if r.released {
		return
	}
	r.released = true
	if r.payload.Slot != wire.NoSlot {
		r.n.consume(r.b, r.payload, r.inReply)
		r.view.Unref()
	}
}

// sampleRec is the node's reusable record of one delivered event update.
// Samples name it with a generation, so a stale Sample never acts on a
// later delivery that reuses the record.
type sampleRec struct {
	received
	gen       atomic.Uint64 // written under Node.mu; 0 once released
	kept      bool
	data      []byte
	seq       uint64
	event     uint16
	requested bool
	inline    []byte // a buffer of n.arena for inline payloads, once needed (kept while the record is reused)
}

// Sample is one received event update: a read-only view of a slot in the
// provider's shared memory or, for an update of at most 224 bytes that came
// inline through a ring (unless the provider set OfferConfig.NoInline), the
// node's own copy of it.
// It is a small value; copies refer to the same delivery.
//
// A Sample is valid while its handler runs and is released when the handler
// returns, unless the handler calls Keep; a kept sample stays valid until
// Release (a slot it reads in place stays held meanwhile, counting against
// the subscriber's share of the pool; an inline copy holds none). Release
// and Keep act only on the delivery the Sample came from: on a copy kept
// past its release they do nothing. Do not write to Data: a slot is mapped
// read-only (writing faults), and a copy belongs to the node.
type Sample struct {
	rec       *sampleRec
	n         *Node // rec's node: rec.n is rewritten when the record is reused, under the node's lock
	gen       uint64
	data      []byte
	seq       uint64
	event     uint16
	requested bool
}

// Data is the payload, read-only, valid until the sample is released (the
// mapping of a kept sample stays valid after its proxy or node closes, but
// the provider may then reuse the slot). It is nil once the sample is
// released; do not keep the slice past Release.
func (s Sample) Data() []byte {
	if s.rec == nil || s.rec.gen.Load() != s.gen {
		return nil
	}
	return s.data
}

// Event is the event id.
func (s Sample) Event() uint16 { return s.event }

// Seq is the provider's sequence number for this event (1 for the first
// update). A jump between consecutive samples means updates were missed.
// A requested update (see Requested) repeats the sequence number of the
// value it carries.
func (s Sample) Seq() uint64 { return s.seq }

// Requested reports whether this update answers a request for the current
// value (a field's initial value or Proxy.RequestUpdate) rather than being
// a new publication.
func (s Sample) Requested() bool { return s.requested }

// Keep keeps the sample past its handler's return; it must then be released
// with Release. It has effect only while the sample is still held (inside
// its handler, or already kept) and reports whether the sample is kept.
// Safe from any goroutine.
func (s Sample) Keep() bool {
	r := s.rec
	if r == nil {
		return false
	}
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	if r.gen.Load() != s.gen {
		return false
	}
	r.kept = true
	return true
}

// Release gives the slot back to the provider. It is idempotent, safe from
// any goroutine, and does nothing for the zero Sample or a stale copy.
func (s Sample) Release() {
	r := s.rec
	if r == nil {
		return
	}
	n := s.n
	n.mu.Lock()
	if r.gen.Load() == s.gen {
		r.releaseLocked()
	}
	n.unlock()
}

// releaseLocked gives the slot back and the record to the node's free
// list. Called with n.mu held.
func (r *sampleRec) releaseLocked() {
	if r.released {
		return
	}
	r.gen.Store(0)
	r.received.releaseLocked()
	r.data = nil
	n := r.n
	if !n.closed && len(n.freeSamples) < maxFreeSamples {
		n.freeSamples = append(n.freeSamples, r)
	} else if r.inline != nil {
		n.arena.put(r.inline)
		r.inline = nil
	}
}

// deliver runs the subscription's handler for r, on the dispatching
// goroutine. The dispatcher releases r afterwards unless it was kept; it
// reports whether r holds a slot that came through a ring (whose consume
// costs no system call, so it is worth releasing at once; an inline
// sample holds none, and waits for the end of the batch).
func (r *sampleRec) deliver() (releaseNow bool) {
	n := r.n
	n.mu.Lock()
	releaseNow = r.payload.Slot != wire.NoSlot && r.b.peer.ring.ready()
	var handler func(Sample)
	if px := r.b.proxy; !px.closed {
		if sub := px.sub(r.event); sub != nil {
			handler = sub.handler
			sub.received++
			px.stats.Received++
		}
	}
	s := Sample{rec: r, n: n, gen: r.gen.Load(), data: r.data, seq: r.seq, event: r.event, requested: r.requested}
	n.mu.Unlock()
	if handler != nil {
		handler(s)
	}
	return releaseNow
}

// newSample takes a record for a delivery, with a new generation. Called
// with n.mu held.
func (n *Node) newSample() *sampleRec {
	var r *sampleRec
	if k := len(n.freeSamples); k > 0 {
		r = n.freeSamples[k-1]
		n.freeSamples = n.freeSamples[:k-1]
		r.received, r.kept, r.data, r.seq, r.event, r.requested = received{}, false, nil, 0, 0, false
	} else {
		r = new(sampleRec)
	}
	n.nextGen++
	r.gen.Store(n.nextGen)
	return r
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
