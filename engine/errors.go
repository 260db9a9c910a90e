package engine

import (
	"errors"
	"fmt"

	"github.com/gwipc/gwipc/engine/wire"
	"github.com/gwipc/gwipc/shm"
)

// Errors returned by the engine. Wrapped errors keep these as their cause, so
// test with errors.Is.
var (
	// ErrClosed is returned by any call on a closed Node, Offer or Proxy.
	ErrClosed = errors.New("engine: closed")
	// ErrBusy is returned by Dispatch when another goroutine is dispatching.
	ErrBusy = errors.New("engine: another goroutine is dispatching")
	// ErrInvalidService is returned for a malformed service or instance id.
	ErrInvalidService = errors.New("engine: invalid service identifier")
	// ErrDuplicate is returned when the node already offers or requires the
	// same service instance.
	ErrDuplicate = errors.New("engine: service instance already offered or required on this node")
	// ErrUnknownEvent is returned for an event id outside the service's range.
	ErrUnknownEvent = errors.New("engine: unknown event id")
	// ErrNoSlot is returned when every slot of the pool is in use. It is
	// shm.ErrNoSlot, so either name matches.
	ErrNoSlot = shm.ErrNoSlot
	// ErrTooLarge is returned when a payload does not fit in one slot.
	ErrTooLarge = errors.New("engine: payload larger than a slot")
	// ErrLoanDone is returned when a Loan is used after Publish or Discard.
	ErrLoanDone = errors.New("engine: loan already published or discarded")
	// ErrNotAvailable is returned when the service is not (or no longer)
	// available to a proxy.
	ErrNotAvailable = errors.New("engine: service not available")
	// ErrInvalidConfig is returned for an unusable configuration value.
	ErrInvalidConfig = errors.New("engine: invalid configuration")
	// ErrUnsupported is returned when the bound peer did not announce the
	// capability an operation needs (methods, fields).
	ErrUnsupported = errors.New("engine: not supported by the peer")
)

// RejectedError reports that the listener refused the session (a
// Connect_reply with a non-OK status). The dialler keeps retrying with its
// maximum back-off; the error is visible in Status and in the log.
type RejectedError struct {
	Status wire.Status // why
	Reason string      // the listener's explanation, if any
}

func (e *RejectedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("engine: connection rejected: %v: %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("engine: connection rejected: %v", e.Status)
}

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
