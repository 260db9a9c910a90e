package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/shm"
	"github.com/gwipc/gwipc/simpleipc"
	"github.com/stretchr/testify/assert"
)

func TestDescribe(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("engine: doing something: %w", err) }
	cases := []struct {
		err    error
		name   string
		app    int32
		status uint16
		errno  int32
	}{
		{nil, "GWIPC_OK", 0, 0, 0},
		{errNull, "GWIPC_E_INVAL", 0, 0, 0},
		{errBadHandle, "GWIPC_E_BADHANDLE", 0, 0, 0},
		{wrap(engine.ErrClosed), "GWIPC_E_CLOSED", 0, 0, 0},
		{shm.ErrClosed, "GWIPC_E_CLOSED", 0, 0, 0},
		{engine.ErrBusy, "GWIPC_E_BUSY", 0, 0, 0},
		{engine.ErrDeadlock, "GWIPC_E_DEADLOCK", 0, 0, 0},
		{wrap(engine.ErrInvalidService), "GWIPC_E_INVALID_SERVICE", 0, 0, 0},
		{wrap(engine.ErrDuplicate), "GWIPC_E_DUPLICATE", 0, 0, 0},
		{wrap(engine.ErrUnknownEvent), "GWIPC_E_UNKNOWN_EVENT", 0, 0, 0},
		{wrap(engine.ErrUnknownMethod), "GWIPC_E_UNKNOWN_METHOD", 0, 0, 0},
		{wrap(engine.ErrNoSlot), "GWIPC_E_NOSLOT", 0, 0, 0},
		{wrap(engine.ErrTooLarge), "GWIPC_E_TOO_LARGE", 0, 0, 0},
		{simpleipc.ErrTooLarge, "GWIPC_E_TOO_LARGE", 0, 0, 0},
		{engine.ErrLoanDone, "GWIPC_E_LOAN_DONE", 0, 0, 0},
		{wrap(engine.ErrNotAvailable), "GWIPC_E_NOT_AVAILABLE", 0, 0, 0},
		{wrap(engine.ErrInvalidConfig), "GWIPC_E_INVALID_CONFIG", 0, 0, 0},
		{wrap(shm.ErrBadGeometry), "GWIPC_E_INVALID_CONFIG", 0, 0, 0},
		{engine.ErrUnsupported, "GWIPC_E_UNSUPPORTED", 0, 0, 0},
		{engine.ErrTimeout, "GWIPC_E_TIMEOUT", 0, 0, 0},
		{context.DeadlineExceeded, "GWIPC_E_TIMEOUT", 0, 0, 0},
		// A call that timed out waiting for the service wraps both.
		{fmt.Errorf("%w: %w", engine.ErrNotAvailable, fmt.Errorf("%w: %w", engine.ErrTimeout, context.DeadlineExceeded)),
			"GWIPC_E_TIMEOUT", 0, 0, 0},
		{fmt.Errorf("%w: %w", engine.ErrCancelled, context.Canceled), "GWIPC_E_CANCELLED", 0, 0, 0},
		{engine.ErrCallDone, "GWIPC_E_CALL_DONE", 0, 0, 0},
		{engine.ErrPermissionDenied, "GWIPC_E_PERMISSION", 0, 0, 0},
		{engine.ErrQuotaExceeded, "GWIPC_E_QUOTA", 0, 0, 0},
		{&engine.CallError{App: true, Code: 42}, "GWIPC_E_APP", 42, 0, 0},
		{&engine.CallError{Status: engine.StatusPermissionDenied}, "GWIPC_E_PERMISSION", 0, uint16(engine.StatusPermissionDenied), 0},
		{&engine.CallError{Status: engine.StatusQuotaExceeded}, "GWIPC_E_QUOTA", 0, uint16(engine.StatusQuotaExceeded), 0},
		{&engine.CallError{Status: engine.StatusUnknownMethod}, "GWIPC_E_UNKNOWN_METHOD", 0, uint16(engine.StatusUnknownMethod), 0},
		{&engine.CallError{Status: engine.StatusHandlerFailed}, "GWIPC_E_REFUSED", 0, uint16(engine.StatusHandlerFailed), 0},
		{&engine.RejectedError{Status: engine.StatusPermissionDenied}, "GWIPC_E_REFUSED", 0, uint16(engine.StatusPermissionDenied), 0},
		{&engine.SubscriptionError{Status: engine.StatusUnknownEvent}, "GWIPC_E_REFUSED", 0, uint16(engine.StatusUnknownEvent), 0},
		{engine.ErrPeerLost, "GWIPC_E_PEER_LOST", 0, 0, 0},
		{wrap(engine.ErrAddrInUse), "GWIPC_E_OS", 0, 0, int32(syscall.EADDRINUSE)},
		{wrap(engine.ErrNotSocket), "GWIPC_E_OS", 0, 0, int32(syscall.ENOTSOCK)},
		{simpleipc.ErrInUse, "GWIPC_E_OS", 0, 0, int32(syscall.EADDRINUSE)},
		{wrap(os.NewSyscallError("socket", syscall.EMFILE)), "GWIPC_E_OS", 0, 0, int32(syscall.EMFILE)},
		{&simpleipc.ProtocolError{Length: -1}, "GWIPC_E_SIPC_PROTOCOL", 0, 0, 0},
		{fmt.Errorf("%w: %w", simpleipc.ErrTruncated, io.ErrUnexpectedEOF), "GWIPC_E_SIPC_TRUNCATED", 0, 0, 0},
		{&simpleipc.ConnectError{Path: "/x", State: simpleipc.NotListening, Err: syscall.ECONNREFUSED},
			"GWIPC_E_SIPC_CONNECT", 0, 0, int32(syscall.ECONNREFUSED)},
		{panicError("boom"), "GWIPC_E_INTERNAL", 0, 0, 0},
		{errors.New("something else"), "GWIPC_E_INTERNAL", 0, 0, 0},
	}
	for _, c := range cases {
		d := describe(c.err)
		assert.Equal(t, c.name, errorName(d.code), "%v", c.err)
		assert.Equal(t, c.app, d.app, "app code of %v", c.err)
		assert.Equal(t, c.status, d.status, "status of %v", c.err)
		assert.Equal(t, c.errno, d.errno, "errno of %v", c.err)
	}
}
