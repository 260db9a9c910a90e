package main

/*
#include "capi.h"
*/
import "C"

import (
	"io"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// finder is a gwipc_finder.
type finder struct {
	owner
	st     *node
	f      *engine.Finder
	serial uint64
	cb     C.gwipc_find_cb
}

func (f *finder) handle() *C.gwipc_finder { return (*C.gwipc_finder)(registry.Pointer(f.serial)) }

func (f *finder) node() *node { return f.st }

func (f *finder) close() {
	f.f.Close()
	f.st.end(&f.owner)
}

// found runs the callback; the event's strings are C memory for the
// callback's duration.
func (f *finder) found(ev engine.FindEvent) {
	if !f.enter() {
		return
	}
	defer f.leave()
	id, instance := C.CString(ev.Service.ID), C.CString(ev.Service.Instance)
	defer C.free(unsafe.Pointer(id))
	defer C.free(unsafe.Pointer(instance))
	C.capi_find(f.cb, f.ud, f.handle(), id, C.uint16_t(ev.Service.Major),
		C.uint16_t(ev.Service.Minor), instance, C.gwipc_peer_id(ev.Peer.ID()), cBool(ev.Available))
}

//export capi_node_find
func capi_node_find(h *C.gwipc_node, id C.capi_cstr, major, minMinor C.uint16_t, instance C.capi_cstr,
	cb C.gwipc_find_cb, userdata unsafe.Pointer, destroy C.gwipc_destroy_cb, out **C.gwipc_finder) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	if out != nil {
		*out = nil
	}
	return check(nil, func() error {
		if out == nil || cb == nil {
			return errNull
		}
		iface, err := goString(id, "service id")
		if err != nil {
			return err
		}
		return nodeFn(h, func(st *node) error {
			f := &finder{owner: owner{reg: reg{ud: ud, destroy: destroy}}, st: st, cb: cb}
			var err error
			f.serial, err = st.openChild(&f.reg, kindFinder, f, func() (io.Closer, error) {
				f.f, err = st.n.Find(engine.Interface{ID: iface, Major: uint16(major), Minor: uint16(minMinor)},
					optString(instance), f.found)
				return f.f, err
			})
			if err != nil {
				return err
			}
			*out = f.handle()
			return nil
		})
	})
}

//export capi_finder_close
func capi_finder_close(h *C.gwipc_finder) { closeChild(unsafe.Pointer(h), kindFinder) }
