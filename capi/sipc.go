package main

/*
#include "capi.h"
*/
import "C"

import (
	"github.com/gwipc/gwipc/simpleipc"
)

//export capi_sipc_query
func capi_sipc_query(path C.capi_cstr, request C.capi_cbytes, n C.size_t, timeoutUsec C.int64_t,
	response **C.char, responseLen *C.size_t, errp *C.gwipc_error) C.int {
	if response != nil {
		*response = nil
	}
	return check(errp, func() error {
		if response == nil {
			return errNull
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		req, t, err := payloadWait(request, n, timeoutUsec)
		if err != nil {
			return err
		}
		ctx, cancel := t.context()
		defer cancel()
		resp, err := simpleipc.Send(ctx, p, req, nil)
		if err != nil {
			return err
		}
		*response = cBytes(resp)
		if responseLen != nil {
			*responseLen = C.size_t(len(resp))
		}
		return nil
	})
}
