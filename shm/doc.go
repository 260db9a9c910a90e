// Package shm provides the shared-memory slot pools that carry gwipc payloads
// between processes.
//
// A writer owns a [Pool]: a sealed memfd cut into SlotCount slots of SlotSize
// bytes (see [Geometry]), mapped read-write in the writer only. The pool's file
// descriptor ([Pool.Fd]) is passed to each reading peer over the control
// channel (SCM_RIGHTS, done elsewhere); the peer maps it read-only with
// [MapView]. Payloads then travel as [Handle] values (slot index and used
// length) on the control channel, never as bytes.
//
// Slot lifetime is tracked in the writer's private memory, never in the shared
// mapping, so a reader cannot corrupt it:
//
//   - [Pool.Alloc] (or [Pool.Loan]) takes a free slot with the writer's own
//     "owner" reference; the writer fills it through [Pool.Slot] or
//     [Loan.Bytes].
//   - [Pool.Share] adds one hold for a reading peer registered with
//     [Pool.AddReader]; the same update fanned out to N peers uses one slot
//     and N holds. A peer may hold at most its limit of slots at once.
//   - [Pool.Release] drops a hold when the peer reports the payload consumed;
//     [Pool.Free] drops the owner reference. The slot returns to the free list
//     when it has neither. [Pool.RemoveReader] drops everything a departed peer
//     held.
//
// The memfd is sealed against shrinking and growing (so a reader that checked
// its size can never take SIGBUS) and with F_SEAL_FUTURE_WRITE after the
// writer's own mapping is made (so every other mapping is read-only). Readers
// must still treat slot contents as untrusted input that the writer may change
// at any time.
//
// All types are safe for concurrent use. Views returned into shared memory
// have documented lifetimes; using one after that lifetime may fault.
package shm
