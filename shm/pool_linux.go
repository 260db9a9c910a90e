package shm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// memfdNameMax is the longest name memfd_create accepts (without the NUL).
const memfdNameMax = 249

// poolSeals are the seals a pool carries. F_SEAL_FUTURE_WRITE is added after
// the writer's own read-write mapping exists, so every later mapping (the
// readers') can only be read-only.
const poolSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_FUTURE_WRITE | unix.F_SEAL_SEAL

// slotState is the writer-private bookkeeping of one slot.
type slotState struct {
	holds uint32 // reader holds, summed over readers
	gen   uint32 // bumped at every Alloc; lets a stale Loan be detected
	owned bool   // the writer's owner reference is held
}

// reader is one registered reading peer.
type reader struct {
	counts []uint32 // holds per slot, len SlotCount; kept zeroed for reuse
	limit  int      // most holds at once
	held   int      // current holds, the sum of counts
	active bool
}

// ReaderID identifies a reading peer registered with Pool.AddReader. IDs of
// removed readers may be handed out again.
type ReaderID int32

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	SlotSize      uint32
	SlotCount     uint32
	InUse         int    // slots with an owner reference or a reader hold
	Readers       int    // registered readers
	AllocFailures uint64 // Alloc, Loan and AllocWait calls that found no slot
}

// Pool is the writer side of a shared-memory slot pool. All methods are safe
// for concurrent use. Alloc, Loan, Share, Release, Free and Slot do not
// allocate.
type Pool struct {
	mu     sync.Mutex
	geo    Geometry
	stride int64
	fd     int    // -1 after Close
	mem    []byte // nil once unmapped

	slots   []slotState
	free    []uint32 // LIFO stack of free slot indices
	inUse   int
	owned   int // slots with an owner reference
	failed  uint64
	readers []reader
	freeIDs []ReaderID // removed reader ids, for reuse
	nreader int
	closed  bool
	waiters int           // AllocWait calls waiting for a slot
	freed   chan struct{} // one token: a slot was freed (or the pool closed) while someone waited
}

// NewPool creates a pool of geometry g in a new sealed memfd named
// "gwipc:"+name (the name only labels it in /proc; it is truncated to fit).
// The caller owns the pool and must Close it.
func NewPool(name string, g Geometry) (*Pool, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	fd, err := createMemfd("gwipc:" + name)
	if err != nil {
		return nil, err
	}
	mem, err := setupMemfd(fd, g.Size())
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	p := &Pool{
		geo:    g,
		stride: g.Stride(),
		fd:     fd,
		mem:    mem,
		slots:  make([]slotState, g.SlotCount),
		free:   make([]uint32, g.SlotCount),
		freed:  make(chan struct{}, 1),
	}
	// Slot 0 on top of the stack, so a fresh pool hands out 0, 1, 2, ...
	for i := range p.free {
		p.free[i] = g.SlotCount - 1 - uint32(i)
	}
	return p, nil
}

// createMemfd makes a close-on-exec, sealable, non-executable memfd.
func createMemfd(name string) (int, error) {
	if len(name) > memfdNameMax {
		name = name[:memfdNameMax]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 6.3 do not know MFD_NOEXEC_SEAL.
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	return fd, nil
}

// setupMemfd sizes fd, maps it read-write and seals it. On error nothing is
// left mapped; the caller closes fd.
func setupMemfd(fd int, size int64) ([]byte, error) {
	if err := unix.Ftruncate(fd, size); err != nil {
		return nil, os.NewSyscallError("ftruncate", err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, poolSeals); err != nil {
		unix.Munmap(mem)
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return mem, nil
}

// Fd returns the pool's memfd, to be passed to readers (SCM_RIGHTS gives them
// their own copy). It is owned by the pool and valid until Close: never close
// it. It returns -1 after Close.
func (p *Pool) Fd() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fd
}

// Geometry returns the pool's geometry.
func (p *Pool) Geometry() Geometry { return p.geo }

// Alloc takes a free slot (the most recently freed first) with the writer's
// owner reference, which the caller must drop with Free. It returns
// ErrNoSlot when every slot is in use and ErrClosed after Close.
func (p *Pool) Alloc() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _, err := p.allocLocked()
	if err == ErrNoSlot {
		p.failed++
	}
	return i, err
}

// AllocWait is Alloc that waits, until ctx ends, for a slot to be freed. When
// ctx ends first the error wraps both ErrNoSlot and ctx.Err(); when the pool
// is closed it is ErrClosed. It does not allocate.
func (p *Pool) AllocWait(ctx context.Context) (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		i, _, err := p.allocLocked()
		if err != ErrNoSlot {
			if p.waiters > 0 && (len(p.free) > 0 || p.closed) {
				p.passToken() // another waiter can go too
			}
			return i, err
		}
		p.waiters++
		p.mu.Unlock()
		select {
		case <-p.freed:
		case <-ctx.Done():
		}
		p.mu.Lock()
		p.waiters--
		if err := ctx.Err(); err != nil {
			p.failed++
			return 0, fmt.Errorf("%w: %w", ErrNoSlot, err)
		}
	}
}

// passToken wakes one AllocWait caller (the token is kept if one is
// pending already). Called with p.mu held.
func (p *Pool) passToken() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// allocLocked takes a slot with the owner reference. It does not count
// failures: callers do, once per call.
func (p *Pool) allocLocked() (slot, gen uint32, err error) {
	if p.closed {
		return 0, 0, ErrClosed
	}
	n := len(p.free)
	if n == 0 {
		return 0, 0, ErrNoSlot
	}
	i := p.free[n-1]
	p.free = p.free[:n-1]
	s := &p.slots[i]
	s.owned = true
	s.gen++
	p.owned++
	p.inUse++
	return i, s.gen, nil
}

// Slot returns the whole of slot i (SlotSize bytes), writable, or nil if i is
// out of range or has no owner reference. The slice points into the shared
// mapping: it is valid only while the owner reference is held (until Free),
// and readers holding the slot see every write.
func (p *Pool) Slot(i uint32) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= p.geo.SlotCount || !p.slots[i].owned {
		return nil
	}
	return p.slotBytes(i)
}

// HeldSlot is Slot for a caller that holds slot i's owner reference and
// goes on holding it, without the other goroutines of its program freeing
// it, while it uses the bytes: it takes no lock and checks only the range
// (nil beyond it). A hot path's shortcut; Slot is the checked way.
func (p *Pool) HeldSlot(i uint32) []byte {
	if i >= p.geo.SlotCount {
		return nil
	}
	return p.slotBytes(i)
}

func (p *Pool) slotBytes(i uint32) []byte {
	off := int64(i) * p.stride
	end := off + int64(p.geo.SlotSize)
	return p.mem[off:end:end]
}

// Free drops the writer's owner reference on slot i. The slot is free again
// once no reader holds it. After Close, the last Free unmaps the pool.
func (p *Pool) Free(i uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeLocked(i)
}

func (p *Pool) freeLocked(i uint32) error {
	if i >= p.geo.SlotCount {
		return ErrBadSlot
	}
	s := &p.slots[i]
	if !s.owned {
		return ErrNotAllocated
	}
	s.owned = false
	p.owned--
	if s.holds == 0 {
		p.releaseSlot(i)
	}
	if p.closed && p.owned == 0 {
		return p.unmapLocked()
	}
	return nil
}

// releaseSlot puts slot i, which has no references left, back on the free
// list and wakes AllocWait callers.
func (p *Pool) releaseSlot(i uint32) {
	p.inUse--
	if p.closed {
		return
	}
	p.free = append(p.free, i) // within capacity: never allocates
	if p.waiters > 0 {
		p.passToken()
	}
}

func (p *Pool) unmapLocked() error {
	if p.mem == nil {
		return nil
	}
	err := unix.Munmap(p.mem)
	p.mem = nil
	if err != nil {
		return os.NewSyscallError("munmap", err)
	}
	return nil
}

// AddReader registers a reading peer that may hold at most limit slots at
// once (0 means SlotCount). The caller removes it with RemoveReader.
func (p *Pool) AddReader(limit int) (ReaderID, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	limit, err := p.checkLimit(limit)
	if err != nil {
		return 0, err
	}
	var id ReaderID
	if n := len(p.freeIDs); n > 0 {
		id = p.freeIDs[n-1]
		p.freeIDs = p.freeIDs[:n-1]
	} else {
		if len(p.readers) == math.MaxInt32 {
			return 0, fmt.Errorf("%w: too many readers", ErrBadLimit)
		}
		id = ReaderID(len(p.readers))
		p.readers = append(p.readers, reader{})
	}
	r := &p.readers[id]
	if r.counts == nil {
		r.counts = make([]uint32, p.geo.SlotCount)
	}
	r.limit = limit
	r.held = 0
	r.active = true
	p.nreader++
	return id, nil
}

func (p *Pool) checkLimit(limit int) (int, error) {
	switch {
	case limit < 0 || limit > math.MaxInt32:
		return 0, fmt.Errorf("%w: %d", ErrBadLimit, limit)
	case limit == 0:
		return int(p.geo.SlotCount), nil
	}
	return limit, nil
}

// SetReaderLimit changes how many slots reader r may hold at once (0 means
// SlotCount). Lowering it below the current holds only refuses new Shares.
func (p *Pool) SetReaderLimit(r ReaderID, limit int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	rd := p.reader(r)
	if rd == nil {
		return ErrUnknownReader
	}
	limit, err := p.checkLimit(limit)
	if err != nil {
		return err
	}
	rd.limit = limit
	return nil
}

// reader returns the registered reader r, or nil.
func (p *Pool) reader(r ReaderID) *reader {
	if r < 0 || int(r) >= len(p.readers) || !p.readers[r].active {
		return nil
	}
	return &p.readers[r]
}

// RemoveReader releases every hold of reader r (as if it had released each
// one), unregisters it and returns the number of holds released. It returns
// 0 for an unknown reader.
func (p *Pool) RemoveReader(r ReaderID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	rd := p.reader(r)
	if rd == nil {
		return 0
	}
	n := p.dropHoldsLocked(rd)
	rd.active = false
	p.nreader--
	p.freeIDs = append(p.freeIDs, r)
	return n
}

// dropHoldsLocked releases every hold of rd, leaving its counts zeroed for
// reuse, and returns how many there were.
func (p *Pool) dropHoldsLocked(rd *reader) int {
	n := rd.held
	for i := 0; rd.held > 0; i++ {
		c := rd.counts[i]
		if c == 0 {
			continue
		}
		rd.counts[i] = 0
		rd.held -= int(c)
		s := &p.slots[i]
		s.holds -= c
		if s.holds == 0 && !s.owned {
			p.releaseSlot(uint32(i))
		}
	}
	return n
}

// Share adds one hold of reader r on slot i, which must have its owner
// reference. The same reader may hold a slot several times; each hold needs
// its own Release. It returns ErrReaderQuota when r already holds its limit.
func (p *Pool) Share(i uint32, r ReaderID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if i >= p.geo.SlotCount {
		return ErrBadSlot
	}
	s := &p.slots[i]
	if !s.owned {
		return ErrNotAllocated
	}
	rd := p.reader(r)
	if rd == nil {
		return ErrUnknownReader
	}
	if rd.held >= rd.limit {
		return ErrReaderQuota
	}
	rd.counts[i]++
	rd.held++
	s.holds++
	return nil
}

// Release drops one hold of reader r on slot i; it returns ErrNotHeld if r
// holds none. The slot is free again when it has no owner reference and no
// holds.
func (p *Pool) Release(i uint32, r ReaderID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if i >= p.geo.SlotCount {
		return ErrBadSlot
	}
	rd := p.reader(r)
	if rd == nil {
		return ErrUnknownReader
	}
	if rd.counts[i] == 0 {
		return ErrNotHeld
	}
	rd.counts[i]--
	rd.held--
	s := &p.slots[i]
	s.holds--
	if s.holds == 0 && !s.owned {
		p.releaseSlot(i)
	}
	return nil
}

// Holds returns the number of holds reader r has now (0 if unknown).
func (p *Pool) Holds(r ReaderID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rd := p.reader(r); rd != nil {
		return rd.held
	}
	return 0
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{
		SlotSize:      p.geo.SlotSize,
		SlotCount:     p.geo.SlotCount,
		InUse:         p.inUse,
		Readers:       p.nreader,
		AllocFailures: p.failed,
	}
}

// Close releases every reader hold, unregisters every reader, wakes
// AllocWait callers with ErrClosed and closes the memfd; later Alloc, Share,
// AddReader... return ErrClosed. Slots the writer still owns (outstanding
// Allocs and Loans) stay mapped and usable until freed; the last Free or
// Discard unmaps the pool. Close is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for id := range p.readers {
		if rd := &p.readers[id]; rd.active {
			p.dropHoldsLocked(rd)
		}
	}
	p.readers, p.freeIDs, p.nreader = nil, nil, 0
	p.free = nil
	if p.waiters > 0 {
		p.passToken() // each waiter passes it on after seeing ErrClosed
	}
	var errs []error
	if err := unix.Close(p.fd); err != nil {
		errs = append(errs, os.NewSyscallError("close", err))
	}
	p.fd = -1
	if p.owned == 0 {
		errs = append(errs, p.unmapLocked())
	}
	return errors.Join(errs...)
}

// Loan is a slot taken with Pool.Loan for writing in place. It is a small
// value: copying it does not copy the slot, and every copy refers to the same
// owner reference, which must be dropped once (Discard, or Pool.Free of
// Slot()). The zero Loan refers to no slot.
type Loan struct {
	p    *Pool
	b    []byte
	slot uint32
	gen  uint32
}

// Loan takes a free slot like Alloc and returns it as a Loan.
func (p *Pool) Loan() (Loan, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, gen, err := p.allocLocked()
	if err != nil {
		if err == ErrNoSlot {
			p.failed++
		}
		return Loan{}, err
	}
	return Loan{p: p, b: p.slotBytes(i), slot: i, gen: gen}, nil
}

// Slot returns the loaned slot's index.
func (l Loan) Slot() uint32 { return l.slot }

// Bytes returns the whole loaned slot (SlotSize bytes), writable, in shared
// memory. It is valid until the owner reference is dropped (Discard or Free);
// readers holding the slot see every write.
func (l Loan) Bytes() []byte { return l.b }

// Handle returns the handle of a payload of the first n bytes of the slot,
// to publish after Pool.Share. It returns ErrBadLength if n is negative or
// larger than SlotSize.
func (l Loan) Handle(n int) (Handle, error) {
	if l.p == nil {
		return Handle{}, ErrNotAllocated
	}
	if n < 0 || n > len(l.b) {
		return Handle{}, ErrBadLength
	}
	return Handle{Slot: l.slot, Len: uint32(n)}, nil
}

// Discard drops the loan's owner reference, like Pool.Free. It returns
// ErrNotAllocated if that reference was already dropped.
func (l Loan) Discard() error {
	if l.p == nil {
		return ErrNotAllocated
	}
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := &p.slots[l.slot]; !s.owned || s.gen != l.gen {
		return ErrNotAllocated
	}
	return p.freeLocked(l.slot)
}
