package engine

import (
	"errors"
	"fmt"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// Errors returned by the engine. Wrapped errors keep these as their cause, so
// test with errors.Is.
var (
	// ErrClosed is returned by any call on a closed Node, Offer or Proxy, and
	// by Call.Reply and Call.Fail once the node is closed.
	ErrClosed = errors.New("engine: closed")
	// ErrBusy is returned by Dispatch and Run when another goroutine already
	// dispatches the node (or Run runs it), and by Dispatch called from one of
	// the node's own callbacks.
	ErrBusy = errors.New("engine: the node is dispatched by another loop")
	// ErrInvalidService is returned for a malformed service or instance id.
	ErrInvalidService = errors.New("engine: invalid service identifier")
	// ErrDuplicate is returned when the node already offers or requires the
	// same service instance, or already has a command of that name.
	ErrDuplicate = errors.New("engine: already registered on this node")
	// ErrUnknownEvent is returned for an event id outside the service's range.
	ErrUnknownEvent = errors.New("engine: unknown event id")
	// ErrNoSlot is returned when every slot of the pool is in use. It is
	// shm.ErrNoSlot, so either name matches. After it, the node's Fd
	// becomes readable (a Dispatch returns) when a slot comes back, so a
	// loop that waits on Fd and retries loses no time.
	ErrNoSlot = shm.ErrNoSlot
	// ErrTooLarge is returned when a payload does not fit in one slot.
	ErrTooLarge = errors.New("engine: payload larger than a slot")
	// ErrLoanDone is returned when a Loan is used after Publish or Discard.
	ErrLoanDone = errors.New("engine: loan already published or discarded")
	// ErrNotAvailable is returned when the service is not (or no longer)
	// available to a proxy.
	ErrNotAvailable = errors.New("engine: service not available")
	// ErrInvalidConfig is returned for an unusable configuration value or
	// argument.
	ErrInvalidConfig = errors.New("engine: invalid configuration")
	// ErrUnsupported is returned when the bound peer did not announce the
	// capability an operation needs (methods, fields).
	ErrUnsupported = errors.New("engine: not supported by the peer")
	// ErrAddrInUse is returned by Listen when a live listener already
	// answers at the path.
	ErrAddrInUse = transport.ErrAddrInUse
	// ErrNotSocket is returned by Listen when something other than a socket
	// exists at the path; it is left alone. (For Config.StatusPath the error
	// is simpleipc.ErrNotSocket.)
	ErrNotSocket = transport.ErrNotSocket
	// ErrPeerLost is the reason OnPeerDisconnected reports for a peer whose
	// connection ended without a Goodbye: it crashed, was killed, or its
	// connection broke.
	ErrPeerLost = errors.New("engine: peer lost without saying goodbye")
)

// StatusCode is a protocol outcome code: why a peer refused a session, a binding
// or a subscription, or why the middleware failed a call. Values are never
// renumbered.
type StatusCode uint8

// Status values, as they travel on the wire (docs/PROTOCOL.md §3.19).
const (
	StatusOK                  = StatusCode(wire.StatusOK)
	StatusVersionUnsupported  = StatusCode(wire.StatusVersionUnsupported)
	StatusPermissionDenied    = StatusCode(wire.StatusPermissionDenied)
	StatusMalformed           = StatusCode(wire.StatusMalformed)
	StatusQuotaExceeded       = StatusCode(wire.StatusQuotaExceeded)
	StatusShuttingDown        = StatusCode(wire.StatusShuttingDown)
	StatusUnknownService      = StatusCode(wire.StatusUnknownService)
	StatusUnknownEvent        = StatusCode(wire.StatusUnknownEvent)
	StatusIncompatibleVersion = StatusCode(wire.StatusIncompatibleVersion)
	StatusUnknownMethod       = StatusCode(wire.StatusUnknownMethod)
	StatusNoSlot              = StatusCode(wire.StatusNoSlot)
	StatusNotAvailable        = StatusCode(wire.StatusNotAvailable)
	StatusDuplicate           = StatusCode(wire.StatusDuplicate)
	StatusHandlerFailed       = StatusCode(wire.StatusHandlerFailed)
	StatusCancelled           = StatusCode(wire.StatusCancelled)
)

func (s StatusCode) String() string { return wire.Status(s).String() }

// sentinel is the engine error a status stands for, or nil.
func (s StatusCode) sentinel() error {
	switch s {
	case StatusUnknownMethod:
		return ErrUnknownMethod
	case StatusNotAvailable, StatusUnknownService:
		return ErrNotAvailable
	case StatusNoSlot:
		return ErrNoSlot
	case StatusPermissionDenied:
		return ErrPermissionDenied
	case StatusQuotaExceeded:
		return ErrQuotaExceeded
	case StatusUnknownEvent:
		return ErrUnknownEvent
	case StatusCancelled:
		return ErrCancelled
	}
	return nil
}

// RejectedError reports that the listener refused the session (a
// Connect_reply with a non-OK status). The dialler keeps retrying with its
// maximum back-off; the error is visible in Status and in the log.
type RejectedError struct {
	Status StatusCode // why
	Reason string     // the listener's explanation, if any
}

func (e *RejectedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("engine: connection rejected: %v: %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("engine: connection rejected: %v", e.Status)
}

// Is matches the sentinel of the status (ErrPermissionDenied, ...).
func (e *RejectedError) Is(target error) bool { return target != nil && e.Status.sentinel() == target }

// protocolError is why a peer's connection was closed for misbehaving.
type protocolError struct {
	what string
	err  error
}

func (e *protocolError) Error() string {
	if e.err != nil {
		return "protocol error: " + e.what + ": " + e.err.Error()
	}
	return "protocol error: " + e.what
}

func (e *protocolError) Unwrap() error { return e.err }

func protoErr(what string, err error) error { return &protocolError{what: what, err: err} }

func tooLarge(size int, slotSize uint32) error {
	return fmt.Errorf("%w: %d bytes, slot holds %d", ErrTooLarge, size, slotSize)
}

func unknownEvent(event, events uint16) error {
	return fmt.Errorf("%w: %d (service has %d events)", ErrUnknownEvent, event, events)
}
