package main

/*
#include "capi.h"
*/
import "C"

import (
	"context"
	"errors"
	"io"
	"unsafe"
)

// errCommandFailed is a command callback's non-zero return.
var errCommandFailed = errors.New("the command callback failed")

//export capi_node_handle_command
func capi_node_handle_command(h *C.gwipc_node, name C.capi_cstr, cb C.gwipc_command_cb, userdata unsafe.Pointer,
	destroy C.gwipc_destroy_cb) C.int {
	ud := C.uintptr_t(uintptr(userdata))
	return check(nil, func() error {
		if cb == nil {
			return errNull
		}
		s, err := goString(name, "command name")
		if err != nil {
			return err
		}
		return nodeFn(h, func(st *node) error {
			r := newReg(ud, destroy) // destroyed by the node's close
			if err := st.add(r); err != nil {
				return err
			}
			err := st.n.HandleCommand(s, func(_ context.Context, req []byte, w io.Writer) error {
				return runCommand(r, cb, req, w)
			})
			if err != nil {
				st.forget(r)
			}
			return err
		})
	})
}

// runCommand runs a command callback (inside a dispatch) with a writer
// handle valid for the callback only.
func runCommand(r *reg, cb C.gwipc_command_cb, req []byte, w io.Writer) error {
	if !r.live() {
		return errCommandFailed
	}
	serial, err := addHandle(kindWriter, w)
	if err != nil {
		return err
	}
	defer registry.Close(serial, kindWriter, nil)
	// req is Go memory, borrowed by C for the call only.
	if C.capi_command(cb, r.ud, dataPtr(req), C.size_t(len(req)), (*C.gwipc_writer)(registry.Pointer(serial))) != 0 {
		return errCommandFailed
	}
	return nil
}

//export capi_writer_write
func capi_writer_write(h *C.gwipc_writer, data C.capi_cbytes, n C.size_t) C.int {
	return check(nil, func() error {
		b, err := bytesOf(data, n)
		if err != nil {
			return err
		}
		return use(unsafe.Pointer(h), kindWriter, func(w io.Writer) error {
			if _, err := w.Write(b); err != nil {
				return codeErr(C.GWIPC_E_TOO_LARGE, err.Error())
			}
			return nil
		})
	})
}
