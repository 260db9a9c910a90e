// Command capi is libgwipc.so.1, the C interface of gwipc, built with
// -buildmode=c-shared (make build). include/gwipc.h is the contract.
//
// The exported functions are C, in guard.c, generated from the header by
// gen-guard.sh: each returns GWIPC_E_FORKED at once in a forked child
// (fork.c watches for fork), where even entering Go can hang, and else
// calls its Go implementation here, capi_NAME for gwipc_NAME. guard.c
// includes the header and the Go prototypes cgo generates, and is compiled
// with -Werror, so the compiler checks both against each other; make
// abi-check checks that guard.c is current and that the library exports
// exactly the functions the header declares.
//
// Every Go implementation has the same frame (see run): a deferred recover
// that turns a panic into GWIPC_E_INTERNAL, argument checks, the work, and
// the mapping of its error to a code. Handles come from the registry in
// internal/handles.
//
// Pointer parameters are turned into integers at once and userdata is kept
// as an integer (C.uintptr_t): C may pass any value there, and a small
// integer held in a Go pointer would crash the runtime's stack copier.
//
// Structs passed in with a struct_size (parameters, limits, rules, and the
// library's own per-message structs) must carry this version's size: a
// larger one comes from a newer header whose fields this library cannot
// read. A gwipc_error is written only as far as its struct_size reaches.
//
// The library never exits the process, installs no signal handler and
// writes nothing to stderr.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -Wall -Werror
#include "capi.h"
*/
import "C"

import (
	"context"
	"errors"
	"math"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/gwipc/gwipc/capi/internal/handles"
)

func main() {}

// init gives the library's Go runtime at least two Ps, even in a process
// confined to one CPU (unless GOMAXPROCS is set in the environment). With
// one P, the runtime's monitor hands the P of every blocking wait longer
// than 20 µs to another thread, which costs a futex wake and two context
// switches per message on a dispatching thread; a second, idle P stops
// that. It costs nothing while idle.
func init() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}

// Handle kinds.
const (
	kindConfig handles.Kind = iota + 1
	kindNode
	kindOffer
	kindProxy
	kindFinder
	kindWriter
	kindSample // a kept sample
	kindReply  // an owned reply
	kindLoan
	kindCall
)

// registry holds every live handle of the process. It is nil if no
// address space could be reserved for handles: then no handle is ever
// made (GWIPC_E_NOMEM) and the process goes on.
var registry, _ = handles.New()

// run is the frame of every exported function that returns a code: a
// recover that turns a panic into GWIPC_E_INTERNAL, and the mapping of
// body's error to a code (also written to *errp, as far as its struct_size
// reaches, when errp is not NULL). body returns a count (>= 0) or an error.
func run(errp *C.gwipc_error, body func() (int, error)) (rc C.int) {
	var err error
	var n int
	defer func() {
		if p := recover(); p != nil {
			err = panicError(p)
		}
		if err == nil {
			rc = C.int(n)
		} else {
			rc = describe(err).code
		}
		if errp != nil {
			setError(errp, err)
		}
	}()
	n, err = body()
	return
}

// check is run for bodies that return only an error.
func check(errp *C.gwipc_error, body func() error) C.int {
	return run(errp, func() (int, error) { return 0, body() })
}

// runVoid is the frame of exported functions returning void: panics are
// swallowed (there is no way to report them).
func runVoid(body func()) {
	defer func() { _ = recover() }()
	body()
}

// handleSerial is the serial of a handle pointer, 0 if it is none.
func handleSerial(p unsafe.Pointer) uint64 { return registry.Serial(uintptr(p)) }

// use runs fn with the object of the handle at p, of kind k and type T,
// holding a reference for the call: GWIPC_E_INVAL for NULL,
// GWIPC_E_BADHANDLE for anything but an open handle of that kind.
func use[T any](p unsafe.Pointer, k handles.Kind, fn func(T) error) error {
	if p == nil {
		return errNull
	}
	return useSerial(handleSerial(p), k, fn)
}

// useSerial is use for a serial.
func useSerial[T any](serial uint64, k handles.Kind, fn func(T) error) error {
	ref, ok := registry.Acquire(serial, k)
	if !ok {
		return errBadHandle
	}
	defer ref.Release()
	return fn(ref.Object().(T))
}

// useStored is use for a caller-stored struct's private_ words {serial,
// tag}.
func useStored[T any](private *[2]C.uint64_t, k handles.Kind, fn func(T) error) error {
	if uint64(private[1]) != handles.Tag(k) {
		return errBadHandle
	}
	return useSerial(uint64(private[0]), k, fn)
}

// useConsumable is useStored for the structs a call consumes (loans,
// received calls): once consumed their serial is gone, and using them again
// is the ended error (GWIPC_E_LOAN_DONE, GWIPC_E_CALL_DONE), not a bad
// handle.
func useConsumable[T any](private *[2]C.uint64_t, k handles.Kind, ended error, fn func(T) error) error {
	err := useStored(private, k, fn)
	if errors.Is(err, errBadHandle) && uint64(private[1]) == handles.Tag(k) && registry.Issued(uint64(private[0])) {
		return ended
	}
	return err
}

// stored is the private_ words naming serial of kind k.
func stored(serial uint64, k handles.Kind) [2]C.uint64_t {
	return [2]C.uint64_t{C.uint64_t(serial), C.uint64_t(handles.Tag(k))}
}

// addHandle registers obj and returns its serial (GWIPC_E_NOMEM once the
// handle space is used up, which takes 2^36 handles).
func addHandle(k handles.Kind, obj any) (uint64, error) {
	s := registry.Add(k, obj)
	if s == 0 {
		return 0, codeErr(C.GWIPC_E_NOMEM, "no handle left")
	}
	return s, nil
}

// goString copies a C string; NULL is an error.
func goString(s C.capi_cstr, what string) (string, error) {
	if s == nil {
		return "", codeErr(C.GWIPC_E_INVAL, "NULL "+what)
	}
	return C.GoString((*C.char)(unsafe.Pointer(s))), nil
}

// optString copies a C string; NULL is "".
func optString(s C.capi_cstr) string {
	if s == nil {
		return ""
	}
	return C.GoString((*C.char)(unsafe.Pointer(s)))
}

// bytesOf views (data, len) of C memory without copying; nil for len 0.
// NULL with a length is an error.
func bytesOf(data C.capi_cbytes, n C.size_t) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if data == nil {
		return nil, codeErr(C.GWIPC_E_INVAL, "NULL data with a length")
	}
	if uint64(n) > math.MaxInt32 {
		return nil, codeErr(C.GWIPC_E_TOO_LARGE, "payload length out of range")
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)), nil
}

// payloadWait converts the payload and the wait of a call that sends and may
// wait.
func payloadWait(data C.capi_cbytes, n C.size_t, waitUsec C.int64_t) ([]byte, timeout, error) {
	b, err := bytesOf(data, n)
	if err != nil {
		return nil, timeout{}, err
	}
	t, err := timeoutOf(waitUsec)
	return b, t, err
}

// dataPtr is the address of b's first byte for C (b is shared memory or C
// memory, never the Go heap), or NULL.
func dataPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// timeout is a wait given in microseconds: 0 is none, GWIPC_FOREVER
// no limit.
type timeout struct {
	d       time.Duration
	forever bool
}

// timeoutOf converts a wait (GWIPC_E_INVAL for other negative values).
func timeoutOf(usec C.int64_t) (timeout, error) {
	switch {
	case usec == C.GWIPC_FOREVER:
		return timeout{forever: true}, nil
	case usec < 0:
		return timeout{}, codeErr(C.GWIPC_E_INVAL, "negative duration other than GWIPC_FOREVER")
	case int64(usec) > math.MaxInt64/int64(time.Microsecond):
		return timeout{forever: true}, nil // longer than time can say: no limit
	}
	return timeout{d: time.Duration(usec) * time.Microsecond}, nil
}

// none reports a wait of zero.
func (t timeout) none() bool { return !t.forever && t.d == 0 }

// context is the context of a blocking call waiting t.
func (t timeout) context() (context.Context, context.CancelFunc) {
	if t.forever {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), t.d)
}

// duration converts a setting in microseconds, which must be >= 0.
func duration(usec C.int64_t) (time.Duration, error) {
	t, err := timeoutOf(usec)
	if err != nil || t.forever {
		return 0, errRange
	}
	return t.d, nil
}

// child is an object whose handle the node's close makes stale: an offer,
// a proxy or a finder.
type child interface {
	node() *node
	close() // after its handle is closed: the object's own close
}

// closeChild is the *_close of a child handle: its close runs once.
func closeChild(h unsafe.Pointer, k handles.Kind) {
	serial := handleSerial(h)
	runVoid(func() {
		obj, ok := registry.Close(serial, k, nil)
		if !ok {
			return
		}
		c := obj.(child)
		c.node().dropChild(serial)
		c.close()
	})
}
