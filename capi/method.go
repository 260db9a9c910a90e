package main

/*
#include "capi.h"
*/
import "C"

import (
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// asyncCall is a gwipc_proxy_call_async registration.
type asyncCall struct {
	reg
	cb    C.gwipc_reply_cb
	id    uint64
	ready chan struct{} // closed once id is known
}

// ownReply fills *out with an owned reply (no handle when it has no
// payload: nothing to release).
func ownReply(r engine.Reply, out *C.gwipc_reply) error {
	*out = C.gwipc_reply{struct_size: C.sizeof_gwipc_reply}
	data := r.Data()
	if len(data) == 0 {
		return nil
	}
	serial, err := addHandle(kindReply, r)
	if err != nil {
		r.Release()
		return err
	}
	out.data, out.len, out.private_ = dataPtr(data), C.size_t(len(data)), stored(serial, kindReply)
	return nil
}

//export capi_proxy_call
func capi_proxy_call(h *C.gwipc_proxy, method C.uint16_t, request C.capi_cbytes, n C.size_t,
	timeoutUsec C.int64_t, reply *C.gwipc_reply, errp *C.gwipc_error) C.int {
	if reply != nil {
		*reply = C.gwipc_reply{}
	}
	return check(errp, func() error {
		if reply == nil {
			return errNull
		}
		req, t, err := payloadWait(request, n, timeoutUsec)
		if err != nil {
			return err
		}
		return proxyFn(h, func(p *proxy) error {
			ctx, cancel := t.context()
			defer cancel()
			r, err := p.px.Call(ctx, uint16(method), req)
			if _, app := engine.AppErrorCode(err); err == nil || app {
				if oerr := ownReply(r, reply); oerr != nil {
					return oerr
				}
			}
			return err
		})
	})
}

//export capi_proxy_call_async
func capi_proxy_call_async(h *C.gwipc_proxy, method C.uint16_t, request C.capi_cbytes, n C.size_t,
	timeoutUsec C.int64_t, cb C.gwipc_reply_cb, userdata unsafe.Pointer, destroy C.gwipc_destroy_cb,
	id *C.gwipc_call_id) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return check(nil, func() error {
		if cb == nil {
			return errNull
		}
		req, t, err := payloadWait(request, n, timeoutUsec)
		if err != nil {
			return err
		}
		var opts engine.CallOptions
		if !t.forever {
			opts.Timeout = t.d
		}
		return proxyFn(h, func(p *proxy) error {
			ac := &asyncCall{reg: reg{ud: ud, destroy: destroy}, cb: cb, ready: make(chan struct{})}
			if err := p.st.add(&ac.reg); err != nil {
				return err
			}
			pc, err := p.px.CallAsync(uint16(method), req, opts, func(r engine.Reply, err error) { p.complete(ac, r, err) })
			if err != nil {
				p.st.forget(&ac.reg)
				return err
			}
			ac.id = pc.ID()
			p.mu.Lock()
			p.pending[ac.id] = pc
			p.mu.Unlock()
			close(ac.ready)
			if id != nil {
				*id = C.gwipc_call_id(ac.id)
			}
			return nil
		})
	})
}

// complete runs a call's completion, then its destroy.
func (p *proxy) complete(ac *asyncCall, r engine.Reply, err error) {
	<-ac.ready // CallAsync has returned its id
	p.mu.Lock()
	delete(p.pending, ac.id)
	p.mu.Unlock()
	st := p.st
	defer st.destroyNow(&ac.reg)
	if !ac.live() {
		return
	}
	// Under the proxy's lock, so its close waits for it, but not skipped
	// once the proxy is closed: its calls complete with GWIPC_E_CLOSED.
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	n := beginDelivery(st, &st.reply, r)
	defer func() { st.reply = current[engine.Reply]{} }()
	data := r.Data()
	_, app := engine.AppErrorCode(err)
	hasReply := C.int(0)
	if app || (err == nil && len(data) > 0) {
		hasReply = 1
	}
	var e C.capi_err
	var msg *C.char
	var mlen C.size_t
	if err != nil {
		e, msg, mlen = cErr(err)
	}
	C.capi_completion(ac.cb, ac.ud, p.handle(), C.gwipc_call_id(ac.id), hasReply, dataPtr(data), C.size_t(len(data)),
		C.uint64_t(st.serial), C.uint64_t(n), e, msg, mlen)
}

//export capi_proxy_send
func capi_proxy_send(h *C.gwipc_proxy, method C.uint16_t, request C.capi_cbytes, n C.size_t) C.int {
	return check(nil, func() error {
		req, err := bytesOf(request, n)
		if err != nil {
			return err
		}
		return proxyFn(h, func(p *proxy) error { return p.px.Send(uint16(method), req) })
	})
}

//export capi_proxy_cancel
func capi_proxy_cancel(h *C.gwipc_proxy, id C.gwipc_call_id) C.int {
	return check(nil, func() error {
		return proxyFn(h, func(p *proxy) error {
			p.mu.Lock()
			pc, ok := p.pending[uint64(id)]
			p.mu.Unlock()
			if !ok || !pc.Cancel() {
				return codeErr(C.GWIPC_E_NOTFOUND, "no such pending call")
			}
			return nil
		})
	})
}

//export capi_reply_keep
func capi_reply_keep(reply C.capi_creply, kept *C.gwipc_reply) C.int {
	return check(nil, func() error {
		if reply == nil || kept == nil || reply.struct_size != C.sizeof_gwipc_reply {
			return errNull
		}
		serial, err := keepDelivery(&reply.private_, func(st *node) *current[engine.Reply] { return &st.reply },
			engine.Reply.Keep, kindReply)
		if err != nil {
			return err
		}
		*kept = *reply
		kept.private_ = stored(serial, kindReply)
		return nil
	})
}

//export capi_reply_release
func capi_reply_release(reply *C.gwipc_reply) {
	runVoid(func() {
		if reply == nil {
			return
		}
		releaseKept(&reply.private_, kindReply, engine.Reply.Release)
	})
}
