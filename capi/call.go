package main

/*
#include "capi.h"
*/
import "C"

import (
	"errors"

	"github.com/gwipc/gwipc/engine"
)

// received is the object behind a gwipc_call: a method call an offer
// received, registered at delivery and forgotten once answered.
type received struct {
	c      engine.Call
	st     *node
	key    engine.CallKey
	serial uint64
}

// answered forgets the call: its handle goes stale.
func (r *received) answered() {
	registry.Close(r.serial, kindCall, nil)
	r.st.mu.Lock()
	delete(r.st.calls, r.key)
	r.st.mu.Unlock()
}

// call hands a received call to on_call. A fire-and-forget call's handle
// lives for the callback only.
func (of *offer) call(c engine.Call) {
	ff := c.FireAndForget()
	if !of.enter() {
		if !ff {
			_ = c.Reply(nil) // the offer is closed: this only frees the call
		}
		return
	}
	defer of.leave()
	r := &received{c: c, st: of.st, key: c.Key()}
	serial, err := addHandle(kindCall, r)
	if err != nil {
		if !ff {
			_ = c.Fail(0, nil)
		}
		return
	}
	r.serial = serial
	if ff {
		defer registry.Close(serial, kindCall, nil)
	} else {
		of.st.mu.Lock()
		if of.st.calls != nil {
			of.st.calls[r.key] = serial
		}
		of.st.mu.Unlock()
	}
	of.deliverCall(of.onCall, r)
}

// cancelled hands on_cancel the call on_call got (nothing if it was
// answered meanwhile).
func (of *offer) cancelled(c engine.Call) {
	key := c.Key()
	of.st.mu.Lock()
	serial := of.st.calls[key]
	of.st.mu.Unlock()
	if serial == 0 || !of.enter() {
		return
	}
	defer of.leave()
	_ = useSerial(serial, kindCall, func(r *received) error {
		of.deliverCall(of.onCancel, r)
		return nil
	})
}

// deliverCall runs a call callback with r's gwipc_call.
func (of *offer) deliverCall(cb C.gwipc_call_cb, r *received) {
	data := r.c.Data()
	var ff C.uint8_t
	if r.c.FireAndForget() {
		ff = 1
	}
	p := stored(r.serial, kindCall)
	C.capi_call(cb, of.ud, of.handle(), C.uint16_t(r.c.Method()), ff, C.gwipc_peer_id(r.c.Peer().ID()),
		dataPtr(data), C.size_t(len(data)), p[0], p[1])
}

// errCallDone is a call used after it was answered.
var errCallDone = codeErr(C.GWIPC_E_CALL_DONE, "call already answered")

// useCall runs fn with the received call a gwipc_call names.
func useCall(call C.capi_ccall, fn func(*received) error) error {
	if call == nil || call.struct_size != C.sizeof_gwipc_call {
		return errNull
	}
	return useConsumable(&call.private_, kindCall, errCallDone, fn)
}

// answer is gwipc_call_reply and gwipc_call_fail: the call is forgotten
// unless it stays pending (no slot, too large).
func answer(call C.capi_ccall, data C.capi_cbytes, n C.size_t, fn func(engine.Call, []byte) error) C.int {
	return check(nil, func() error {
		b, err := bytesOf(data, n)
		if err != nil {
			return err
		}
		return useCall(call, func(r *received) error {
			err := fn(r.c, b)
			if !errors.Is(err, engine.ErrNoSlot) && !errors.Is(err, engine.ErrTooLarge) {
				r.answered()
			}
			return err
		})
	})
}

//export capi_call_reply
func capi_call_reply(call C.capi_ccall, data C.capi_cbytes, n C.size_t) C.int {
	return answer(call, data, n, engine.Call.Reply)
}

//export capi_call_fail
func capi_call_fail(call C.capi_ccall, appCode C.int32_t, data C.capi_cbytes, n C.size_t) C.int {
	return answer(call, data, n, func(c engine.Call, b []byte) error { return c.Fail(int32(appCode), b) })
}

//export capi_call_is_cancelled
func capi_call_is_cancelled(call C.capi_ccall) C.int {
	return run(nil, func() (cancelled int, err error) {
		err = useCall(call, func(r *received) error {
			if r.c.Cancelled() {
				cancelled = 1
			}
			return nil
		})
		return cancelled, err
	})
}
