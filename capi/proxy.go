package main

/*
#include "capi.h"
*/
import "C"

import (
	"errors"
	"io"
	"sync"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// proxy is a gwipc_proxy: the engine proxy, its callbacks, its
// subscriptions and its calls in flight.
type proxy struct {
	owner
	st     *node
	px     *engine.Proxy
	serial uint64

	onAvailability C.gwipc_availability_cb
	onSubscription C.gwipc_suback_cb

	mu      sync.Mutex // guards subs and pending; held across the engine's Subscribe/Unsubscribe
	subs    map[uint16]*subscription
	pending map[uint64]engine.PendingCall
}

// subscription is one event's sample callback.
type subscription struct {
	reg
	cb C.gwipc_sample_cb
}

func (p *proxy) handle() *C.gwipc_proxy { return (*C.gwipc_proxy)(registry.Pointer(p.serial)) }

func (p *proxy) node() *node { return p.st }

// close ends the proxy and its subscriptions (calls in flight complete
// with GWIPC_E_CLOSED, in a dispatch).
func (p *proxy) close() {
	p.px.Close()
	p.mu.Lock()
	regs := make([]*reg, 0, len(p.subs))
	for _, s := range p.subs {
		regs = append(regs, &s.reg)
	}
	p.subs = nil
	p.mu.Unlock()
	p.st.end(&p.owner, regs...)
}

func (p *proxy) availability(up bool) {
	if !p.enter() {
		return
	}
	defer p.leave()
	C.capi_availability(p.onAvailability, p.ud, p.handle(), cBool(up))
}

func (p *proxy) subscribed(event uint16, err error) {
	if !p.enter() {
		return
	}
	defer p.leave()
	var status C.int
	var refusal *engine.SubscriptionError
	switch {
	case errors.As(err, &refusal):
		status = C.int(refusal.Status)
	case err != nil:
		status = C.int(engine.StatusHandlerFailed)
	}
	C.capi_suback(p.onSubscription, p.ud, p.handle(), C.uint16_t(event), status)
}

//export capi_node_require
func capi_node_require(h *C.gwipc_node, svc C.capi_csvc, params C.capi_cproxy_params, out **C.gwipc_proxy,
	errp *C.gwipc_error) C.int {
	if out != nil {
		*out = nil
	}
	return check(errp, func() error {
		if out == nil || params == nil || params.struct_size != C.sizeof_gwipc_proxy_params {
			return errNull
		}
		return nodeFn(h, func(st *node) error {
			id, err := serviceID(svc)
			if err != nil {
				return err
			}
			p := &proxy{st: st, onAvailability: params.on_availability, onSubscription: params.on_subscription,
				subs: map[uint16]*subscription{}, pending: map[uint64]engine.PendingCall{}}
			p.ud, p.destroy = C.uintptr_t(uintptr(params.userdata)), params.destroy
			cfg := engine.ProxyConfig{CallGeometry: geometry(params.call_geometry)}
			if p.onAvailability != nil {
				cfg.OnAvailability = p.availability
			}
			if p.onSubscription != nil {
				cfg.OnSubscription = p.subscribed
			}
			p.serial, err = st.openChild(&p.reg, kindProxy, p, func() (io.Closer, error) {
				p.px, err = st.n.Require(id, &cfg)
				return p.px, err
			})
			if err != nil {
				return err
			}
			*out = p.handle()
			return nil
		})
	})
}

// proxyFn runs fn with the proxy of handle h.
func proxyFn(h *C.gwipc_proxy, fn func(*proxy) error) error {
	return use(unsafe.Pointer(h), kindProxy, fn)
}

//export capi_proxy_close
func capi_proxy_close(h *C.gwipc_proxy) { closeChild(unsafe.Pointer(h), kindProxy) }

//export capi_proxy_is_available
func capi_proxy_is_available(h *C.gwipc_proxy) C.int {
	return run(nil, func() (up int, err error) {
		err = proxyFn(h, func(p *proxy) error {
			if p.px.Available() {
				up = 1
			}
			return nil
		})
		return up, err
	})
}

//export capi_proxy_subscribe
func capi_proxy_subscribe(h *C.gwipc_proxy, event C.uint16_t, mode C.int, cb C.gwipc_sample_cb,
	userdata unsafe.Pointer, destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return check(nil, func() error {
		if cb == nil {
			return errNull
		}
		if mode != C.GWIPC_UPDATES && mode != C.GWIPC_INITIAL_VALUE {
			return errRange
		}
		return proxyFn(h, func(p *proxy) error {
			s := &subscription{reg: reg{ud: ud, destroy: destroy}, cb: cb}
			if err := p.st.add(&s.reg); err != nil {
				return err
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.subs == nil {
				p.st.forget(&s.reg)
				return engine.ErrClosed
			}
			ev := uint16(event)
			err := p.px.Subscribe(ev, engine.SubscribeMode(mode), func(smp engine.Sample) { p.deliver(s, smp) })
			if err != nil {
				p.st.forget(&s.reg)
				return err
			}
			if old := p.subs[ev]; old != nil {
				p.st.retire(&old.reg)
			}
			p.subs[ev] = s
			return nil
		})
	})
}

//export capi_proxy_unsubscribe
func capi_proxy_unsubscribe(h *C.gwipc_proxy, event C.uint16_t) C.int {
	return check(nil, func() error {
		return proxyFn(h, func(p *proxy) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			ev := uint16(event)
			if err := p.px.Unsubscribe(ev); err != nil {
				return err
			}
			if old := p.subs[ev]; old != nil {
				delete(p.subs, ev)
				p.st.retire(&old.reg)
			}
			return nil
		})
	})
}

//export capi_proxy_subscription_state
func capi_proxy_subscription_state(h *C.gwipc_proxy, event C.uint16_t, state *C.int) C.int {
	return check(nil, func() error {
		if state == nil {
			return errNull
		}
		return proxyFn(h, func(p *proxy) error {
			s, ok := p.px.Subscription(uint16(event))
			if !ok {
				return codeErr(C.GWIPC_E_NOTFOUND, "event not subscribed")
			}
			*state = C.int(s)
			return nil
		})
	})
}

//export capi_proxy_request_update
func capi_proxy_request_update(h *C.gwipc_proxy, event C.uint16_t) C.int {
	return check(nil, func() error {
		return proxyFn(h, func(p *proxy) error { return p.px.RequestUpdate(uint16(event)) })
	})
}
