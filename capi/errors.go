package main

/*
#include "capi.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/shm"
	"github.com/gwipc/gwipc/simpleipc"
)

// codeError is an error the capi makes itself (a bad argument, a stale
// handle, a recovered panic), with its code.
type codeError struct {
	code C.int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func codeErr(code C.int, msg string) error { return &codeError{code: code, msg: msg} }

// details are what gwipc_error carries besides the message.
type details struct {
	code   C.int
	app    int32  // GWIPC_E_APP: the application's code
	status uint16 // a refusal's wire status
	errno  int32  // GWIPC_E_OS
}

// sentinels map the engine's and simpleipc's errors to codes, matched with
// errors.Is in this order (the first match wins).
var sentinels = []struct {
	err  error
	code C.int
}{
	{engine.ErrClosed, C.GWIPC_E_CLOSED},
	{shm.ErrClosed, C.GWIPC_E_CLOSED},
	{engine.ErrBusy, C.GWIPC_E_BUSY},
	{engine.ErrDeadlock, C.GWIPC_E_DEADLOCK},
	{engine.ErrInvalidService, C.GWIPC_E_INVALID_SERVICE},
	{engine.ErrDuplicate, C.GWIPC_E_DUPLICATE},
	{engine.ErrUnknownEvent, C.GWIPC_E_UNKNOWN_EVENT},
	{engine.ErrUnknownMethod, C.GWIPC_E_UNKNOWN_METHOD},
	{engine.ErrNoSlot, C.GWIPC_E_NOSLOT},
	{engine.ErrTooLarge, C.GWIPC_E_TOO_LARGE},
	{simpleipc.ErrTooLarge, C.GWIPC_E_TOO_LARGE},
	{shm.ErrBadLength, C.GWIPC_E_TOO_LARGE},
	{engine.ErrLoanDone, C.GWIPC_E_LOAN_DONE},
	{engine.ErrNotAvailable, C.GWIPC_E_NOT_AVAILABLE},
	{engine.ErrInvalidConfig, C.GWIPC_E_INVALID_CONFIG},
	{shm.ErrBadGeometry, C.GWIPC_E_INVALID_CONFIG},
	{engine.ErrUnsupported, C.GWIPC_E_UNSUPPORTED},
	{engine.ErrCancelled, C.GWIPC_E_CANCELLED},
	{context.Canceled, C.GWIPC_E_CANCELLED},
	{engine.ErrCallDone, C.GWIPC_E_CALL_DONE},
	{engine.ErrPermissionDenied, C.GWIPC_E_PERMISSION},
	{engine.ErrQuotaExceeded, C.GWIPC_E_QUOTA},
	{engine.ErrPeerLost, C.GWIPC_E_PEER_LOST},
	{simpleipc.ErrProtocol, C.GWIPC_E_SIPC_PROTOCOL},
	{simpleipc.ErrTruncated, C.GWIPC_E_SIPC_TRUNCATED},
}

// osErrors are sentinels that stand for a system error (GWIPC_E_OS with
// this errno).
var osErrors = []struct {
	err   error
	errno syscall.Errno
}{
	{engine.ErrAddrInUse, syscall.EADDRINUSE},
	{simpleipc.ErrInUse, syscall.EADDRINUSE},
	{engine.ErrNotSocket, syscall.ENOTSOCK},
	{simpleipc.ErrNotSocket, syscall.ENOTSOCK},
	{simpleipc.ErrLocked, syscall.EBUSY},
}

// describe maps any error the capi returns to its code and details: the
// one place where Go errors become GWIPC_E_* codes.
func describe(err error) details {
	if err == nil {
		return details{code: C.GWIPC_OK}
	}
	var (
		ce   *codeError
		call *engine.CallError
		rej  *engine.RejectedError
		sub  *engine.SubscriptionError
		conn *simpleipc.ConnectError
	)
	switch {
	case errors.As(err, &ce):
		return details{code: ce.code}
	// Before NotAvailable: a call that timed out waiting for the service
	// wraps both.
	case errors.Is(err, engine.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return details{code: C.GWIPC_E_TIMEOUT}
	case errors.As(err, &call):
		if call.App {
			return details{code: C.GWIPC_E_APP, app: call.Code}
		}
		d := details{code: C.GWIPC_E_REFUSED, status: uint16(call.Status)}
		if code, ok := sentinelCode(err); ok {
			d.code = code
		}
		return d
	case errors.As(err, &rej):
		return details{code: C.GWIPC_E_REFUSED, status: uint16(rej.Status)}
	case errors.As(err, &sub):
		return details{code: C.GWIPC_E_REFUSED, status: uint16(sub.Status)}
	case errors.As(err, &conn):
		return details{code: C.GWIPC_E_SIPC_CONNECT, errno: errnoOf(conn.Err)}
	}
	if code, ok := sentinelCode(err); ok {
		return details{code: code}
	}
	for _, s := range osErrors {
		if errors.Is(err, s.err) {
			return details{code: C.GWIPC_E_OS, errno: int32(s.errno)}
		}
	}
	if errno := errnoOf(err); errno != 0 {
		return details{code: C.GWIPC_E_OS, errno: errno}
	}
	return details{code: C.GWIPC_E_INTERNAL}
}

func sentinelCode(err error) (C.int, bool) {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code, true
		}
	}
	return 0, false
}

// errnoOf is the errno err wraps, or 0.
func errnoOf(err error) int32 {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int32(errno)
	}
	return 0
}

// setError fills *errp with err (nil: GWIPC_OK and an empty message).
func setError(errp *C.gwipc_error, err error) {
	if err == nil {
		C.capi_set_error(errp, C.GWIPC_OK, 0, 0, 0, nil, 0)
		return
	}
	e, msg, n := cErr(err)
	C.capi_set_error(errp, e.code, e.app_code, e.status, e.sys_errno, msg, n)
}

// errorName is the name of a code, from the header's list (used by the
// tests, which cannot use cgo themselves).
func errorName(code C.int) string { return C.GoString(C.gwipc_error_name(code)) }

// cErr views an error as the plain values a callback's gwipc_error is
// built from, with its message for C (non-empty, so never NULL).
func cErr(err error) (C.capi_err, *C.char, C.size_t) {
	d := describe(err)
	msg := err.Error()
	if msg == "" {
		msg = "error"
	}
	e := C.capi_err{code: d.code, app_code: C.int32_t(d.app), status: C.uint16_t(d.status), sys_errno: C.int32_t(d.errno)}
	return e, (*C.char)(unsafe.Pointer(unsafe.StringData(msg))), C.size_t(len(msg))
}

// errNull and errBadHandle are the handle errors.
var (
	errNull      = codeErr(C.GWIPC_E_INVAL, "NULL handle or argument")
	errBadHandle = codeErr(C.GWIPC_E_BADHANDLE, "stale, closed or wrong kind of handle")
)

// panicError is the error of a recovered panic.
func panicError(p any) error { return codeErr(C.GWIPC_E_INTERNAL, fmt.Sprintf("panic: %v", p)) }
