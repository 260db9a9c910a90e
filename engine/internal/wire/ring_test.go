package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ringSamples holds one value of every type rings carry.
var ringSamples = []Message{
	&EventUpdate{RequiredID: 1 << 60, Event: 7, Seq: 1<<40 + 3, Requested: true, Payload: Payload{Slot: 9, Len: 64}},
	&EventUpdate{RequiredID: 2, Event: 1, Seq: 4, Payload: Payload{Slot: NoSlot, Len: MaxInline}, Inline: true},
	&PayloadConsumed{Handle: 5, Payload: Payload{Slot: 2, Len: 3}, Reply: true},
	&CallMethod{ProvidedID: 3, InvocationID: 4, Method: 65535, FireAndForget: true, Payload: Payload{Slot: NoSlot}},
	&CallMethodHandle{RequiredID: 1, InvocationID: 2},
	&CallMethodReply{RequiredID: 1, InvocationID: 2, Result: ResultAppError, Code: -42, Payload: Payload{Slot: 1, Len: 4}},
	&CancelMethodCall{ProvidedID: 1, InvocationID: 2, Method: 3},
}

func TestRingEntriesRoundTrip(t *testing.T) {
	for _, m := range ringSamples {
		t.Run(m.Type().String(), func(t *testing.T) {
			e := make([]byte, EntrySize)
			require.NoError(t, PutEntry(e, m, 77))
			typ, err := EntryType(e)
			require.NoError(t, err)
			got := New(typ)
			after, err := DecodeEntry(e, got)
			require.NoError(t, err)
			assert.Equal(t, m, got)
			if typ == TypeEventUpdate {
				assert.Equal(t, uint32(77), after)
			}
		})
	}
	assert.ErrorIs(t, PutEntry(make([]byte, EntrySize), &Goodbye{}, 0), ErrNotRingType)
}

func TestRingEntryDecodeErrors(t *testing.T) {
	reply := make([]byte, EntrySize)
	require.NoError(t, PutEntry(reply, &CallMethodReply{RequiredID: 1}, 0))
	handle := make([]byte, EntrySize)
	require.NoError(t, PutEntry(handle, &CallMethodHandle{RequiredID: 1}, 0))
	inline := make([]byte, EntrySize)
	require.NoError(t, PutEntry(inline, &EventUpdate{RequiredID: 1, Payload: Payload{Len: 5}, Inline: true}, 0))
	consumed := make([]byte, EntrySize)
	require.NoError(t, PutEntry(consumed, &PayloadConsumed{Handle: 1}, 0))
	for _, tc := range []struct {
		name  string
		entry []byte
		into  Message
		err   error
	}{
		{"not a ring type", append([]byte{byte(TypeConnect)}, make([]byte, EntrySize-1)...), new(Connect), ErrNotRingType},
		{"wrong message for the type", reply, new(EventUpdate), ErrNotRingType},
		{"undefined flag", with(reply, 1, 0x80), new(CallMethodReply), ErrBadFlags},
		{"result out of range", with(reply, 2, 3), new(CallMethodReply), ErrBadValue},
		{"unused bytes set", with(handle, 30, 1), new(CallMethodHandle), ErrBadReserved},
		{"inline with a slot", with(inline, 24, 7), new(EventUpdate), ErrBadValue},
		{"inline longer than MaxInline", with(inline, 28, MaxInline+1), new(EventUpdate), ErrBadValue},
		{"inline flag on another type", with(consumed, 1, FlagInline), new(PayloadConsumed), ErrBadFlags},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEntry(tc.entry, tc.into)
			assert.ErrorIs(t, err, tc.err)
		})
	}
	_, err := EntryType(append([]byte{99}, make([]byte, EntrySize-1)...))
	assert.ErrorIs(t, err, ErrNotRingType)
}

func TestInlineEventUpdates(t *testing.T) {
	e := make([]byte, EntrySize)
	assert.ErrorIs(t, PutEntry(e, &EventUpdate{Payload: Payload{Len: MaxInline + 1}, Inline: true}, 0), ErrBadValue)
	require.NoError(t, PutEntry(e, &EventUpdate{Payload: Payload{Slot: 3, Len: 40}, Inline: true}, 0))
	var m EventUpdate
	_, err := DecodeEntry(e, &m)
	require.NoError(t, err)
	assert.Equal(t, Payload{Slot: NoSlot, Len: 40}, m.Payload, "the slot stays with the writer")

	_, err = (&EventUpdate{Inline: true}).Append(nil)
	assert.ErrorIs(t, err, ErrInlineOnSocket)
	onSocket, err := (&EventUpdate{}).Append(nil)
	require.NoError(t, err)
	reused := EventUpdate{Inline: true} // a message last decoded from an inline entry
	h, body, _, err := Split(onSocket)
	require.NoError(t, err)
	require.NoError(t, reused.Decode(h, body))
	assert.False(t, reused.Inline, "a socket update is never inline")
	onSocket[1] = FlagInline
	_, _, err = Decode(onSocket)
	assert.ErrorIs(t, err, ErrBadFlags, "the inline flag is for ring entries only")

	for n, entries := range map[uint32]int{0: 0, 1: 1, 32: 1, 33: 2, MaxInline: 7} {
		assert.Equal(t, entries, InlineEntries(n), "%d bytes", n)
	}
	data := make([]byte, 2*EntrySize)
	assert.NoError(t, CheckInline(data, 40))
	data[63] = 1
	assert.ErrorIs(t, CheckInline(data, 40), ErrBadReserved)
	assert.NoError(t, CheckInline(data, 64))
}

func with(e []byte, i int, v byte) []byte {
	c := append([]byte(nil), e...)
	c[i] = v
	return c
}

// FuzzDecodeEntry: any 32 bytes decode or fail with a *DecodeError, never
// panic, and what decodes re-encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	for _, m := range ringSamples {
		e := make([]byte, EntrySize)
		if err := PutEntry(e, m, 5); err != nil {
			f.Fatal(err)
		}
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, e []byte) {
		if len(e) < EntrySize {
			return
		}
		typ, err := EntryType(e)
		if err != nil {
			return
		}
		m := New(typ)
		after, err := DecodeEntry(e, m)
		if err != nil {
			return
		}
		again := make([]byte, EntrySize)
		if err := PutEntry(again, m, after); err != nil {
			t.Fatal(err)
		}
		if string(again) != string(e[:EntrySize]) {
			t.Fatalf("%T re-encodes to %x, decoded from %x", m, again, e[:EntrySize])
		}
	})
}
