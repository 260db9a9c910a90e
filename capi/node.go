package main

/*
#include "capi.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gwipc/gwipc/capi/internal/handles"
	"github.com/gwipc/gwipc/engine"
	"golang.org/x/sys/unix"
)

// node is the capi's side of one engine node: the loop that drives it, the
// registrations whose destroy it owes, its child handles and its peers.
type node struct {
	serial uint64
	n      *engine.Node
	res    nodeResources

	// loop is held by the loop driving the node: gwipc_node_dispatch for
	// its duration, gwipc_node_run and the run thread for theirs.
	loop sync.Mutex
	// loopTid is the thread of that loop while it runs, 0 when none: a call
	// made on it comes from one of the node's callbacks.
	loopTid atomic.Int32
	// closed is set once the engine node is closed: the loop then finishes
	// the close when it returns.
	closed atomic.Bool

	mu       sync.Mutex
	closing  bool                    // the node handle is closed: no child is added
	finished bool                    // finish has run
	regs     map[*reg]struct{}       // live registrations, destroyed by finish
	due      []*reg                  // ended registrations whose destroy is due
	children map[uint64]handles.Kind // handles of the node's offers, proxies, finders
	peers    map[uint64]*peerRec
	calls    map[engine.CallKey]uint64 // received calls not answered, to their handles
	stopRun  context.CancelFunc        // ends the running gwipc_node_run or run thread
	runDone  chan struct{}             // closed when it has returned

	// The delivery in progress (touched only on the loop thread).
	deliveries uint64
	sample     current[engine.Sample]
	reply      current[engine.Reply]
}

// current is the sample or reply being delivered: the one
// gwipc_sample_keep and gwipc_reply_keep may keep.
type current[T any] struct {
	n    uint64 // its delivery number, 0 when none
	v    T
	kept uint64 // its handle once kept
}

// handle is the node's handle value.
func (st *node) handle() *C.gwipc_node { return (*C.gwipc_node)(registry.Pointer(st.serial)) }

// onLoop reports whether the caller runs on the thread of the node's loop,
// that is inside one of its callbacks.
func (st *node) onLoop() bool {
	t := st.loopTid.Load()
	return t != 0 && t == int32(unix.Gettid())
}

// add records a registration, so the node's close destroys it.
func (st *node) add(r *reg) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closing {
		return engine.ErrClosed
	}
	st.regs[r] = struct{}{}
	return nil
}

// forget drops a registration that did not take effect. It reports false
// if the node's close destroyed it meanwhile.
func (st *node) forget(r *reg) bool {
	st.mu.Lock()
	delete(st.regs, r)
	st.mu.Unlock()
	return r.cancel()
}

// destroyNow runs r's destroy now, after r's last callback.
func (st *node) destroyNow(r *reg) {
	st.mu.Lock()
	delete(st.regs, r)
	st.mu.Unlock()
	r.runDestroy()
}

// retire ends r and runs its destroy inside the next dispatch, or at once
// when the node has finished closing.
func (st *node) retire(r *reg) {
	r.end()
	st.mu.Lock()
	if st.finished {
		st.mu.Unlock()
		r.runDestroy()
		return
	}
	delete(st.regs, r)
	st.due = append(st.due, r)
	st.mu.Unlock()
	// Fails only once the node is closed; finish then runs the due ones.
	_ = st.n.Post(st.runDue)
}

func (st *node) runDue() {
	st.mu.Lock()
	due := st.due
	st.due = nil
	st.mu.Unlock()
	for _, r := range due {
		r.runDestroy()
	}
}

// end stops the callbacks of o (and of its registrations regs) and runs
// their destroys after the last one. Called from another thread it waits
// for a callback of o in progress and runs them inside the close; called
// from one of the node's callbacks (then the last of o's), they run in the
// next dispatch.
func (st *node) end(o *owner, regs ...*reg) {
	if !o.end() {
		return
	}
	for _, r := range regs {
		r.end()
	}
	regs = append(regs, &o.reg)
	if st.onLoop() {
		for _, r := range regs {
			st.retire(r)
		}
		return
	}
	o.waitCallback()
	for _, r := range regs {
		st.destroyNow(r)
	}
}

// addChild registers a child object (offer, proxy, finder) and returns its
// handle serial; once the node is closing the handle is refused.
func (st *node) addChild(k handles.Kind, obj any) (uint64, error) {
	serial, err := addHandle(k, obj)
	if err != nil {
		return 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closing {
		registry.Close(serial, k, nil)
		return 0, engine.ErrClosed
	}
	st.children[serial] = k
	return serial, nil
}

// openChild makes a child object (an offer, proxy or finder) with its
// registration r: open makes the engine's object, then obj gets its
// handle. On failure nothing is left, and no destroy runs.
func (st *node) openChild(r *reg, k handles.Kind, obj child, open func() (io.Closer, error)) (uint64, error) {
	if err := st.add(r); err != nil {
		return 0, err
	}
	c, err := open()
	if err != nil {
		st.forget(r)
		return 0, err
	}
	serial, err := st.addChild(k, obj)
	if err != nil {
		c.Close()
		st.forget(r)
		return 0, err
	}
	return serial, nil
}

// dropChild forgets a child whose handle was closed.
func (st *node) dropChild(serial uint64) {
	st.mu.Lock()
	delete(st.children, serial)
	st.mu.Unlock()
}

// close closes the node (closeEngine is its Close or Shutdown): every
// child handle becomes stale, and once the engine node is closed and no
// loop runs, every destroy due is run. Called from one of the node's
// callbacks, the loop finishes the close when that dispatch returns.
func (st *node) close(closeEngine func() error) error {
	st.mu.Lock()
	st.closing = true
	children := st.children
	st.children = nil
	st.mu.Unlock()
	for serial, k := range children {
		registry.Close(serial, k, nil)
	}
	err := closeEngine()
	st.closed.Store(true)
	if st.onLoop() {
		return err
	}
	st.loop.Lock()
	defer st.loop.Unlock()
	st.finish()
	return err
}

// finish ends the node's registrations and runs their destroys, once,
// after the engine node closed and its last callback returned.
func (st *node) finish() {
	st.mu.Lock()
	if st.finished {
		st.mu.Unlock()
		return
	}
	st.finished = true
	regs := st.due
	for r := range st.regs {
		regs = append(regs, r)
	}
	peers := st.peers
	st.regs, st.due, st.peers, st.calls = nil, nil, nil, nil
	st.mu.Unlock()
	for _, r := range regs {
		r.end()
	}
	for _, r := range regs {
		r.runDestroy()
	}
	for _, p := range peers {
		p.free()
	}
	st.res.release()
}

// takeLoop makes the caller the node's loop, or fails: ErrClosed once
// closed, else ErrBusy (another loop, or a callback of this node).
func (st *node) takeLoop() error {
	if !st.loop.TryLock() {
		if st.closed.Load() {
			return engine.ErrClosed
		}
		return engine.ErrBusy
	}
	return nil
}

// drive runs f as the node's loop on the calling thread (which must stay
// the goroutine's for the duration: an exported call or a locked thread),
// with the loop already taken; it gives the loop back, finishing a close
// that one of f's callbacks made.
func (st *node) drive(f func() error) error {
	defer st.loop.Unlock()
	st.loopTid.Store(int32(unix.Gettid()))
	defer func() {
		st.loopTid.Store(0)
		if st.closed.Load() {
			st.finish()
		}
	}()
	return f()
}

// beginRun makes the caller the loop of a gwipc_node_run or run thread: it
// returns the context gwipc_node_stop cancels, and the function to call
// when the run returns.
func (st *node) beginRun() (context.Context, func(), error) {
	if err := st.takeLoop(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	st.mu.Lock()
	st.stopRun, st.runDone = cancel, done
	st.mu.Unlock()
	return ctx, func() {
		cancel()
		st.mu.Lock()
		st.stopRun, st.runDone = nil, nil
		st.mu.Unlock()
		close(done)
	}, nil
}

// runLoop is engine Run until stopped or closed.
func (st *node) runLoop(ctx context.Context) error {
	if err := st.n.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// nodeFn runs fn with the node of handle h.
func nodeFn(h *C.gwipc_node, fn func(*node) error) error {
	return use(unsafe.Pointer(h), kindNode, fn)
}

// openNode is gwipc_node_listen and gwipc_node_dial.
func openNode(path C.capi_cstr, cfg C.capi_cconfig, out **C.gwipc_node, errp *C.gwipc_error,
	open func(string, *engine.Config) (*engine.Node, error)) C.int {
	if out != nil {
		*out = nil
	}
	return check(errp, func() error {
		if out == nil {
			return errNull
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		res := nodeResources{}
		if cfg != nil {
			if err := use(unsafe.Pointer(cfg), kindConfig, func(c *config) error {
				res = c.resources()
				return nil
			}); err != nil {
				return err
			}
		}
		st := &node{res: res, regs: map[*reg]struct{}{}, children: map[uint64]handles.Kind{},
			peers: map[uint64]*peerRec{}, calls: map[engine.CallKey]uint64{}}
		ec := st.engineConfig()
		n, err := open(p, &ec)
		if err != nil {
			res.release()
			return err
		}
		st.n = n
		st.res.logs.attach(n)
		if st.serial, err = addHandle(kindNode, st); err != nil {
			n.Close()
			st.finish()
			return err
		}
		*out = st.handle()
		return nil
	})
}

//export capi_node_listen
func capi_node_listen(path C.capi_cstr, cfg C.capi_cconfig, out **C.gwipc_node, errp *C.gwipc_error) C.int {
	return openNode(path, cfg, out, errp, engine.Listen)
}

//export capi_node_dial
func capi_node_dial(path C.capi_cstr, cfg C.capi_cconfig, out **C.gwipc_node, errp *C.gwipc_error) C.int {
	return openNode(path, cfg, out, errp, engine.Dial)
}

//export capi_node_close
func capi_node_close(h *C.gwipc_node) {
	serial := handleSerial(unsafe.Pointer(h))
	runVoid(func() {
		if obj, ok := registry.Close(serial, kindNode, nil); ok {
			st := obj.(*node)
			_ = st.close(st.n.Close)
		}
	})
}

//export capi_node_shutdown
func capi_node_shutdown(h *C.gwipc_node, timeoutUsec C.int64_t) C.int {
	serial := handleSerial(unsafe.Pointer(h))
	return check(nil, func() error {
		if h == nil {
			return errNull
		}
		t, err := timeoutOf(timeoutUsec)
		if err != nil {
			return err
		}
		if err := useSerial(serial, kindNode, func(st *node) error {
			if st.onLoop() {
				return engine.ErrDeadlock
			}
			return nil
		}); err != nil {
			return err
		}
		obj, ok := registry.Close(serial, kindNode, nil)
		if !ok {
			return errBadHandle // closed meanwhile
		}
		st := obj.(*node)
		ctx, cancel := t.context()
		defer cancel()
		return st.close(func() error { return st.n.Shutdown(ctx) })
	})
}

//export capi_node_fd
func capi_node_fd(h *C.gwipc_node) C.int {
	return run(nil, func() (fd int, err error) {
		err = nodeFn(h, func(st *node) error {
			fd = st.n.Fd()
			return nil
		})
		return fd, err
	})
}

// maxRan bounds the callback count gwipc_node_dispatch returns, below
// GWIPC_DISPATCH_MORE.
const maxRan = C.GWIPC_DISPATCH_MORE - 1

//export capi_node_dispatch
func capi_node_dispatch(h *C.gwipc_node, timeoutUsec C.int64_t) C.int {
	return run(nil, func() (int, error) {
		t, err := timeoutOf(timeoutUsec)
		if err != nil {
			return 0, err
		}
		d := t.d
		if t.forever {
			d = -1
		}
		var ran int
		var more bool
		err = nodeFn(h, func(st *node) error {
			if err := st.takeLoop(); err != nil {
				return err
			}
			return st.drive(func() (err error) {
				ran, more, err = st.n.Dispatch(d)
				return err
			})
		})
		ran = min(ran, maxRan)
		if more {
			ran |= C.GWIPC_DISPATCH_MORE
		}
		return ran, err
	})
}

//export capi_node_wait
func capi_node_wait(h *C.gwipc_node, timeoutUsec C.int64_t) C.int {
	return run(nil, func() (ready int, err error) {
		t, err := timeoutOf(timeoutUsec)
		if err != nil {
			return 0, err
		}
		err = nodeFn(h, func(st *node) error {
			ready, err = pollReadable(st.n.Fd(), t)
			return err
		})
		return ready, err
	})
}

// pollReadable waits until fd is readable (1) or the time is up (0).
func pollReadable(fd int, t timeout) (int, error) {
	deadline := time.Now().Add(t.d)
	for {
		ms := -1
		if !t.forever {
			// Round up, so a short wait is not a busy loop.
			ms = int((time.Until(deadline) + time.Millisecond - 1) / time.Millisecond)
			ms = max(ms, 0)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		k, err := unix.Poll(fds, ms)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case k > 0:
			return 1, nil
		case !t.forever && !time.Now().Before(deadline):
			return 0, nil
		}
	}
}

//export capi_node_post
func capi_node_post(h *C.gwipc_node, fn C.gwipc_post_cb, userdata unsafe.Pointer, destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return check(nil, func() error {
		if fn == nil {
			return errNull
		}
		return nodeFn(h, func(st *node) error {
			r := newReg(ud, destroy)
			if err := st.add(r); err != nil {
				return err
			}
			err := st.n.Post(func() {
				if r.live() {
					C.capi_post(fn, r.ud)
				}
				st.destroyNow(r)
			})
			if err != nil && !st.forget(r) {
				return nil // the close destroyed it: as if it had closed first
			}
			return err
		})
	})
}

//export capi_node_run
func capi_node_run(h *C.gwipc_node) C.int {
	return check(nil, func() error {
		return nodeFn(h, func(st *node) error {
			ctx, done, err := st.beginRun()
			if err != nil {
				return err
			}
			defer done()
			return st.drive(func() error { return st.runLoop(ctx) })
		})
	})
}

//export capi_node_run_thread
func capi_node_run_thread(h *C.gwipc_node) C.int {
	return check(nil, func() error {
		return nodeFn(h, func(st *node) error {
			ctx, done, err := st.beginRun()
			if err != nil {
				return err
			}
			go func() {
				// The thread is the node's until it exits (a locked thread
				// ends with its goroutine).
				runtime.LockOSThread()
				defer done()
				defer func() { _ = recover() }() // never take the host down
				_ = st.drive(func() error { return st.runLoop(ctx) })
			}()
			return nil
		})
	})
}

//export capi_node_stop
func capi_node_stop(h *C.gwipc_node) C.int {
	return check(nil, func() error {
		return nodeFn(h, func(st *node) error {
			st.mu.Lock()
			stop, done := st.stopRun, st.runDone
			st.mu.Unlock()
			if stop == nil {
				return nil
			}
			stop()
			if !st.onLoop() {
				<-done
			}
			return nil
		})
	})
}

//export capi_node_status_json
func capi_node_status_json(h *C.gwipc_node, out **C.char, n *C.size_t) C.int {
	if out != nil {
		*out = nil
	}
	return check(nil, func() error {
		if out == nil {
			return errNull
		}
		return nodeFn(h, func(st *node) error {
			b, err := json.Marshal(st.n.Status())
			if err != nil {
				return err
			}
			*out = cBytes(b)
			if n != nil {
				*n = C.size_t(len(b))
			}
			return nil
		})
	})
}

// cBytes copies b into C memory with a NUL after it (free with C.free).
func cBytes(b []byte) *C.char {
	p := (*C.char)(C.malloc(C.size_t(len(b) + 1)))
	buf := unsafe.Slice((*byte)(unsafe.Pointer(p)), len(b)+1)
	copy(buf, b)
	buf[len(b)] = 0
	return p
}
