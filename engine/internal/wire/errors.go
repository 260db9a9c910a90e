package wire

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped in a *DecodeError) by the decoders.
var (
	// ErrTruncated means the input ends inside a header, a body or a field.
	ErrTruncated = errors.New("wire: truncated message")
	// ErrTrailing means a fixed-size body is longer than its fields.
	ErrTrailing = errors.New("wire: trailing bytes after message body")
	// ErrUnknownType means the header names a message type this version does not know.
	ErrUnknownType = errors.New("wire: unknown message type")
	// ErrBadFlags means the header sets flag bits the message type does not define.
	ErrBadFlags = errors.New("wire: undefined flag bits set")
	// ErrBadReserved means a reserved field (of a header, or of a ring
	// entry) is not zero.
	ErrBadReserved = errors.New("wire: reserved field not zero")
	// ErrBadString means a string is longer than its limit.
	ErrBadString = errors.New("wire: string too long")
	// ErrBadValue means an enumerated field holds a value outside its range.
	ErrBadValue = errors.New("wire: field value out of range")
	// ErrTooMany means a list holds more elements than its limit.
	ErrTooMany = errors.New("wire: too many list elements")
	// ErrInlineOnSocket means an inline Event_update was to be encoded
	// for the socket: it travels only in a ring.
	ErrInlineOnSocket = errors.New("wire: an inline Event_update travels only in a ring")
	// ErrTooLarge means an encoded message would not fit the packet limit.
	ErrTooLarge = errors.New("wire: message too large")
)

// DecodeError describes why a message could not be decoded.
type DecodeError struct {
	Type   Type   // message type from the header (0 if the header itself was bad)
	Offset int    // byte offset of the problem within the message body or header
	Field  string // the field being decoded, if any
	Err    error  // one of the sentinel errors above
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("decoding %s.%s at offset %d: %v", e.Type, e.Field, e.Offset, e.Err)
	}
	return fmt.Sprintf("decoding %s at offset %d: %v", e.Type, e.Offset, e.Err)
}

// Unwrap returns the sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }
