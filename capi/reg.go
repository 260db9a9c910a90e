package main

/*
#include "capi.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
)

// reg is one registration's (userdata, destroy): its callbacks run while
// it is live; once ended none starts, and destroy runs exactly once.
type reg struct {
	ud      C.uintptr_t
	destroy C.gwipc_destroy_cb
	state   atomic.Int32 // regLive, regEnded, regDestroyed
}

const (
	regLive int32 = iota
	regEnded
	regDestroyed
)

func newReg(ud C.uintptr_t, destroy C.gwipc_destroy_cb) *reg {
	return &reg{ud: ud, destroy: destroy}
}

// live reports whether callbacks may still run.
func (r *reg) live() bool { return r.state.Load() == regLive }

// end stops the callbacks; it reports whether this call ended r.
func (r *reg) end() bool { return r.state.CompareAndSwap(regLive, regEnded) }

// runDestroy ends r and runs destroy, once whoever calls it.
func (r *reg) runDestroy() {
	r.end()
	if r.state.CompareAndSwap(regEnded, regDestroyed) {
		C.capi_destroy(r.destroy, r.ud)
	}
}

// cancel forgets a registration that never took effect: destroy will not
// run. It reports false if destroy has run already (a node closed while
// the registration was made).
func (r *reg) cancel() bool {
	r.end()
	return r.state.CompareAndSwap(regEnded, regDestroyed)
}

// owner is an object whose callbacks (and those of its registrations) run
// with its lock held, so that closing it from another thread can wait for
// the callback in progress.
type owner struct {
	reg
	cbMu sync.Mutex
}

// enter starts a callback of o: false (and nothing held) once o is ended.
func (o *owner) enter() bool {
	o.cbMu.Lock()
	if !o.live() {
		o.cbMu.Unlock()
		return false
	}
	return true
}

func (o *owner) leave() { o.cbMu.Unlock() }

// waitCallback waits for a callback of o in progress to return.
func (o *owner) waitCallback() {
	o.cbMu.Lock()
	//lint:ignore SA2001 the empty critical section is the wait
	o.cbMu.Unlock()
}

// shared is a config's callback registration (fns and the reg),
// referenced by the config and by every node made from it; destroy runs
// when the last one lets go. A nil *shared is no registration.
type shared[T any] struct {
	reg
	fns  T
	refs atomic.Int32
}

// newShared makes a registration referenced once (by its config).
func newShared[T any](fns T, ud C.uintptr_t, destroy C.gwipc_destroy_cb) *shared[T] {
	s := &shared[T]{reg: reg{ud: ud, destroy: destroy}, fns: fns}
	s.refs.Store(1)
	return s
}

// retain adds a reference and returns s.
func (s *shared[T]) retain() *shared[T] {
	if s != nil {
		s.refs.Add(1)
	}
	return s
}

// release drops a reference; the last runs destroy.
func (s *shared[T]) release() {
	if s != nil && s.refs.Add(-1) == 0 {
		s.runDestroy()
	}
}
