package wire

import "errors"

// Ring entries: the hot messages (Event_update, Payload_consumed,
// Call_method, Call_method_handle, Call_method_reply, Cancel_method_call)
// can travel through a connection's shared-memory rings (message 18)
// instead of the socket, each as one fixed-size entry:
//
//	offset size field
//	0      1    type (13, 15, 7, 8, 9, 10)
//	1      1    flags (those of the message type)
//	2      2    event (13), method (7, 10), result (9, low byte)
//	4      4    after (13: socket packets sent before it), code (9)
//	8      8    required_id / provided_id / handle
//	16     8    seq (13), invocation_id (7, 8, 9, 10)
//	24     4    payload slot
//	28     4    payload len
//
// An Event_update entry may depend on socket messages sent before it (the
// Connect_service_reply of its binding): "after" tells the receiver how
// many socket packets it must have read before taking the entry.
//
// With CapInline an Event_update entry may carry flag bit 1 (inline): its
// payload slot is NoSlot, its len at most MaxInline, and the payload
// itself fills the InlineEntries(len) entries that follow it, the unused
// bytes of the last one zero. The writer publishes the whole record at
// once; the reader takes it whole or not at all.

// EntrySize is the size of one ring entry.
const EntrySize = 32

// MaxInline is the largest payload an inline Event_update carries: a
// record of at most 8 entries (256 bytes).
const MaxInline = 7 * EntrySize

// InlineEntries is how many entries the payload of an inline Event_update
// of n bytes takes after the update's own entry.
func InlineEntries(n uint32) int { return int((n + EntrySize - 1) / EntrySize) }

// CheckInline checks the InlineEntries(n) entries of an inline payload of
// n bytes, copied out of the ring into data: the bytes after the payload
// must be zero.
func CheckInline(data []byte, n uint32) error {
	for _, b := range data[n:] {
		if b != 0 {
			return &DecodeError{Type: TypeEventUpdate, Offset: EntrySize + int(n), Err: ErrBadReserved}
		}
	}
	return nil
}

// ErrNotRingType is returned by PutEntry for a message rings do not carry.
var ErrNotRingType = errors.New("wire: message type not carried by rings")

// PutEntry encodes m into the entry e (EntrySize bytes); after is the
// number of socket packets sent before it (used for Event_update).
func PutEntry(e []byte, m Message, after uint32) error {
	e = e[:EntrySize:EntrySize]
	clear(e)
	e[0] = byte(m.Type())
	switch m := m.(type) {
	case *EventUpdate:
		e[1] = flag(m.Requested, FlagRequested)
		le.PutUint16(e[2:], m.Event)
		le.PutUint32(e[4:], after)
		le.PutUint64(e[8:], m.RequiredID)
		le.PutUint64(e[16:], m.Seq)
		putPayload(e, m.Payload)
		if m.Inline {
			if m.Payload.Len > MaxInline {
				return ErrBadValue
			}
			e[1] |= FlagInline
			putPayload(e, Payload{Slot: NoSlot, Len: m.Payload.Len})
		}
	case *PayloadConsumed:
		e[1] = flag(m.Reply, FlagInReplyPool)
		le.PutUint64(e[8:], m.Handle)
		putPayload(e, m.Payload)
	case *CallMethod:
		e[1] = flag(m.FireAndForget, FlagFireAndForget)
		le.PutUint16(e[2:], m.Method)
		le.PutUint64(e[8:], m.ProvidedID)
		le.PutUint64(e[16:], m.InvocationID)
		putPayload(e, m.Payload)
	case *CallMethodHandle:
		le.PutUint64(e[8:], m.RequiredID)
		le.PutUint64(e[16:], m.InvocationID)
	case *CallMethodReply:
		e[2] = byte(m.Result)
		le.PutUint32(e[4:], uint32(m.Code))
		le.PutUint64(e[8:], m.RequiredID)
		le.PutUint64(e[16:], m.InvocationID)
		putPayload(e, m.Payload)
	case *CancelMethodCall:
		le.PutUint16(e[2:], m.Method)
		le.PutUint64(e[8:], m.ProvidedID)
		le.PutUint64(e[16:], m.InvocationID)
	default:
		return ErrNotRingType
	}
	return nil
}

func putPayload(e []byte, p Payload) {
	le.PutUint32(e[24:], p.Slot)
	le.PutUint32(e[28:], p.Len)
}

// EntryType returns the type of entry e, ErrNotRingType when it is not one
// rings carry.
func EntryType(e []byte) (Type, error) {
	switch t := Type(e[0]); t {
	case TypeEventUpdate, TypePayloadConsumed, TypeCallMethod, TypeCallMethodHandle, TypeCallMethodReply, TypeCancelMethodCall:
		return t, nil
	}
	return 0, &DecodeError{Type: Type(e[0]), Err: ErrNotRingType}
}

// DecodeEntry decodes entry e into m, which must be a message of the
// entry's type (see EntryType), and returns the entry's "after" count. The
// entry is checked as strictly as a socket message: undefined flags, a
// result out of range and non-zero unused bytes are errors. Decoding does
// not allocate.
func DecodeEntry(e []byte, m Message) (after uint32, err error) {
	e = e[:EntrySize:EntrySize]
	t := Type(e[0])
	if m.Type() != t {
		return 0, &DecodeError{Type: t, Err: ErrNotRingType}
	}
	allowed := allowedFlags[t]
	if t == TypeEventUpdate {
		allowed |= FlagInline
	}
	if e[1]&^allowed != 0 {
		return 0, &DecodeError{Type: t, Offset: 1, Err: ErrBadFlags}
	}
	unused := func(from, to int) bool {
		for _, b := range e[from:to] {
			if b != 0 {
				return false
			}
		}
		return true
	}
	u16, u32, u64 := le.Uint16(e[2:]), le.Uint32(e[4:]), le.Uint64(e[8:])
	inv, pl := le.Uint64(e[16:]), Payload{Slot: le.Uint32(e[24:]), Len: le.Uint32(e[28:])}
	ok := true
	switch m := m.(type) {
	case *EventUpdate:
		*m = EventUpdate{RequiredID: u64, Event: u16, Seq: inv, Requested: e[1]&FlagRequested != 0, Payload: pl, Inline: e[1]&FlagInline != 0}
		after = u32
		switch {
		case m.Inline && pl.Slot != NoSlot:
			return 0, &DecodeError{Type: t, Offset: 24, Err: ErrBadValue}
		case m.Inline && pl.Len > MaxInline:
			return 0, &DecodeError{Type: t, Offset: 28, Err: ErrBadValue}
		}
	case *PayloadConsumed:
		*m = PayloadConsumed{Handle: u64, Payload: pl, Reply: e[1]&FlagInReplyPool != 0}
		ok = unused(2, 8) && unused(16, 24)
	case *CallMethod:
		*m = CallMethod{ProvidedID: u64, InvocationID: inv, Method: u16, FireAndForget: e[1]&FlagFireAndForget != 0, Payload: pl}
		ok = unused(4, 8)
	case *CallMethodHandle:
		*m = CallMethodHandle{RequiredID: u64, InvocationID: inv}
		ok = unused(2, 8) && unused(24, 32)
	case *CallMethodReply:
		*m = CallMethodReply{RequiredID: u64, InvocationID: inv, Result: Result(e[2]), Code: int32(u32), Payload: pl}
		ok = e[3] == 0
		if m.Result > resultLast {
			return 0, &DecodeError{Type: t, Offset: 2, Err: ErrBadValue}
		}
	case *CancelMethodCall:
		*m = CancelMethodCall{ProvidedID: u64, InvocationID: inv, Method: u16}
		ok = unused(4, 8) && unused(24, 32)
	default:
		return 0, &DecodeError{Type: t, Err: ErrNotRingType}
	}
	if !ok {
		return 0, &DecodeError{Type: t, Err: ErrBadReserved}
	}
	return after, nil
}
