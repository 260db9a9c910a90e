// Package wire encodes and decodes gwipc control messages.
//
// It is pure (no I/O) and allocation-free on the hot messages: encoders append
// to a caller-owned buffer and decoders fill caller-owned structs. Every
// decoder bounds-checks its input and returns a *DecodeError (matching one of
// the sentinel errors with errors.Is) instead of panicking.
//
// A packet carries one or more messages back to back. Each message is an
// 8-byte header (type, flags, reserved zero, body length, all little-endian)
// followed by its body. The byte layout of every message is documented in
// docs/PROTOCOL.md; this package is its executable form.
package wire
