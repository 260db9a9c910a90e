package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var svc = Service{ID: "com.example.sensor", Major: 1, Minor: 2, Instance: "front"}

// samples holds one fully populated value of every message type.
var samples = []Message{
	&Connect{Version: Version, Caps: CapAll, MaxPacket: MaxPacket, Name: "gatewayd",
		Find:  []Service{svc, {ID: "any.instance", Major: 3}},
		Pools: []PoolConfig{{ID: "com.example.sensor", Instance: "front", Dir: DirProvider, Geometry: Geometry{256, 8}}, {ID: "x", Dir: DirConsumer, Geometry: Geometry{1, 1}}}},
	&Connect{Version: Version, Name: ""},
	&ConnectReply{Status: StatusOK, Version: Version, Caps: CapMethods, MaxPacket: 8192, Name: "someipd"},
	&ConnectReply{Status: StatusPermissionDenied, Version: Version, Reason: "uid 1000 not allowed"},
	&RequestService{Service: svc, InUse: true},
	&RequestService{Service: svc},
	&OfferService{Service: svc, Offered: true, Methods: 3, Events: 65535},
	&ConnectService{Service: svc, RequiredID: 1<<63 + 5, InUse: true, HasPool: true, Pool: Geometry{4096, 16}},
	&ConnectService{Service: svc, RequiredID: 9},
	&ConnectServiceReply{RequiredID: 7, ProvidedID: 8, Status: StatusOK, Methods: 1, Events: 2,
		HasEventPool: true, EventPool: Geometry{64, 1024}, HasReplyPool: true, ReplyPool: Geometry{4096, 16}},
	&ConnectServiceReply{RequiredID: 7, ProvidedID: 8, Status: StatusOK, Methods: 1, HasReplyPool: true, ReplyPool: Geometry{128, 2}},
	&ConnectServiceReply{RequiredID: 7, Status: StatusIncompatibleVersion},
	&CallMethod{ProvidedID: 3, InvocationID: 4, Method: 65535, FireAndForget: true, Payload: Payload{Slot: 2, Len: 100}},
	&CallMethodHandle{RequiredID: 1, InvocationID: 2},
	&CallMethodReply{RequiredID: 1, InvocationID: 2, Result: ResultAppError, Code: -42, Payload: Payload{Slot: NoSlot}},
	&CancelMethodCall{ProvidedID: 1, InvocationID: 2, Method: 3},
	&SubscribeEvent{ProvidedID: 11, Event: 4, Mode: ModeInitialValue, Subscribe: true},
	&SubscribeEventReply{RequiredID: 12, Event: 4, Status: StatusUnknownEvent},
	&EventUpdate{RequiredID: 12, Event: 4, Seq: 1 << 40, Requested: true, Payload: Payload{Slot: 7, Len: 4096}},
	&EventUpdateRequest{ProvidedID: 11, Event: 4},
	&PayloadConsumed{Handle: 11, Payload: Payload{Slot: 7, Len: 4096}},
	&PayloadConsumed{Handle: 11, Payload: Payload{Slot: 1, Len: 2}, Reply: true},
	&FindService{Service: Service{ID: "com.example.sensor", Major: 1}, Add: true},
	&Goodbye{Status: StatusShuttingDown},
	&Ring{Entries: 4096},
}

func TestRoundTripEveryMessage(t *testing.T) {
	seen := map[Type]bool{}
	for _, m := range samples {
		t.Run(m.Type().String(), func(t *testing.T) {
			b, err := m.Append(nil)
			require.NoError(t, err)
			got, rest, err := Decode(b)
			require.NoError(t, err)
			assert.Empty(t, rest)
			assert.Equal(t, m, got)
			seen[m.Type()] = true
		})
	}
	for typ := TypeConnect; typ <= typeLast; typ++ {
		assert.True(t, seen[typ], "no round-trip sample for %v", typ)
	}
}

func TestSeveralMessagesInOnePacket(t *testing.T) {
	var pkt []byte
	var err error
	for _, m := range samples {
		pkt, err = m.Append(pkt)
		require.NoError(t, err)
	}
	for i := 0; len(pkt) > 0; i++ {
		var m Message
		m, pkt, err = Decode(pkt)
		require.NoError(t, err)
		assert.Equal(t, samples[i], m)
	}
}

// Golden vectors pin the byte layout documented in docs/PROTOCOL.md.
func TestGoldenBytes(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		hex  string
	}{
		{"Event_update", &EventUpdate{RequiredID: 0x0102, Event: 3, Seq: 9, Requested: true, Payload: Payload{Slot: 5, Len: 0x40}},
			"0d010000" + "1a000000" + "0201000000000000" + "0300" + "0900000000000000" + "05000000" + "40000000"},
		{"Payload_consumed", &PayloadConsumed{Handle: 7, Payload: Payload{Slot: 5, Len: 0x40}},
			"0f000000" + "10000000" + "0700000000000000" + "05000000" + "40000000"},
		{"Request_service", &RequestService{Service: Service{ID: "ab", Major: 1, Minor: 2, Instance: "i"}, InUse: true},
			"03010000" + "09000000" + "026162" + "0100" + "0200" + "0169"},
		{"Subscribe_event", &SubscribeEvent{ProvidedID: 1, Event: 2, Mode: ModeInitialValue, Subscribe: true},
			"0b010000" + "0b000000" + "0100000000000000" + "0200" + "01"},
		{"Call_method_reply", &CallMethodReply{RequiredID: 1, InvocationID: 2, Result: ResultAppError, Code: -1, Payload: Payload{Slot: NoSlot}},
			"09000000" + "1d000000" + "0100000000000000" + "0200000000000000" + "01" + "ffffffff" + "ffffffff" + "00000000"},
		{"Connect_service_reply", &ConnectServiceReply{RequiredID: 1, ProvidedID: 2, Methods: 1, Events: 0, HasReplyPool: true, ReplyPool: Geometry{SlotSize: 0x80, SlotCount: 2}},
			"06020000" + "1d000000" + "0100000000000000" + "0200000000000000" + "00" + "0100" + "0000" + "80000000" + "02000000"},
		{"Payload_consumed reply pool", &PayloadConsumed{Handle: 7, Payload: Payload{Slot: 5, Len: 0x40}, Reply: true},
			"0f010000" + "10000000" + "0700000000000000" + "05000000" + "40000000"},
		{"Goodbye", &Goodbye{Status: StatusShuttingDown}, "11000000" + "01000000" + "05"},
		{"Connect_reply", &ConnectReply{Status: StatusVersionUnsupported, Version: 1, Caps: 7, MaxPacket: 0x10000, Name: "s", Reason: "no"},
			"02000000" + "10000000" + "01" + "0100" + "07000000" + "00000100" + "0173" + "026e6f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.msg.Append(nil)
			require.NoError(t, err)
			assert.Equal(t, tt.hex, hex.EncodeToString(b))
		})
	}
}

func mustAppend(t testing.TB, m Message) []byte {
	b, err := m.Append(nil)
	require.NoError(t, err)
	return b
}

func TestDecodeErrors(t *testing.T) {
	update := mustAppend(t, &EventUpdate{RequiredID: 1, Event: 2, Seq: 3})
	request := mustAppend(t, &RequestService{Service: svc, InUse: true})
	with := func(b []byte, f func([]byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return c
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", update[:7], ErrTruncated},
		{"type zero", with(update, func(b []byte) { b[0] = 0 }), ErrUnknownType},
		{"unknown type", with(update, func(b []byte) { b[0] = 200 }), ErrUnknownType},
		{"reserved set", with(update, func(b []byte) { b[3] = 1 }), ErrBadReserved},
		{"undefined flag", with(update, func(b []byte) { b[1] = 0x80 }), ErrBadFlags},
		{"flag on flagless type", with(mustAppend(t, &CallMethodHandle{}), func(b []byte) { b[1] = 1 }), ErrBadFlags},
		{"length past packet", update[:len(update)-1], ErrTruncated},
		{"huge length", with(update, func(b []byte) { b[7] = 0xff }), ErrTruncated},
		{"body too short", with(update[:HeaderSize+10], func(b []byte) { b[4] = 10 }), ErrTruncated},
		{"trailing garbage in body", append(with(update, func(b []byte) { b[4]++ }), 0), ErrTrailing},
		{"string past body", with(request[:HeaderSize+5], func(b []byte) { b[4] = 5 }), ErrTruncated},
		{"string too long", with(request, func(b []byte) { b[HeaderSize] = MaxIDLen + 1 }), ErrBadString},
		{"bad mode", with(mustAppend(t, &SubscribeEvent{}), func(b []byte) { b[HeaderSize+10] = 9 }), ErrBadValue},
		{"bad result", with(mustAppend(t, &CallMethodReply{}), func(b []byte) { b[HeaderSize+16] = 3 }), ErrBadValue},
		{"too many find elements", func() []byte {
			b := mustAppend(t, &Connect{})
			// version u16, caps u32, max u32, name len u8 -> find count at body offset 11
			le.PutUint16(b[HeaderSize+11:], MaxListLen+1)
			return b
		}(), ErrTooMany},
		{"pool flag without pool", with(mustAppend(t, &ConnectService{Service: svc}), func(b []byte) { b[1] |= FlagPool }), ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, err := Decode(tt.in)
			require.Error(t, err)
			assert.Nil(t, m)
			assert.ErrorIs(t, err, tt.want)
			var de *DecodeError
			require.True(t, errors.As(err, &de))
			assert.NotEmpty(t, de.Error())
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	tests := []struct {
		name string
		msg  Message
		want error
	}{
		{"long service id", &RequestService{Service: Service{ID: long}}, ErrBadString},
		{"long instance", &OfferService{Service: Service{Instance: long}}, ErrBadString},
		{"long peer name", &Connect{Name: long}, ErrBadString},
		{"long reason", &ConnectReply{Reason: strings.Repeat("r", MaxReasonLen+1)}, ErrBadString},
		{"too many finds", &Connect{Find: make([]Service, MaxListLen+1)}, ErrTooMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := tt.msg.Append(prefix)
			assert.ErrorIs(t, err, tt.want)
			assert.Equal(t, []byte("keep"), b, "buffer must be unchanged on error")
		})
	}
}

func TestConnectTooLarge(t *testing.T) {
	id := strings.Repeat("s", MaxIDLen)
	m := &Connect{}
	for range MaxListLen {
		m.Find = append(m.Find, Service{ID: id, Instance: id})
		m.Pools = append(m.Pools, PoolConfig{ID: id, Instance: id})
	}
	_, err := m.Append(nil)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "Event_update", TypeEventUpdate.String())
	assert.Equal(t, "Type(99)", Type(99).String())
	assert.Equal(t, "unknown event", StatusUnknownEvent.String())
	assert.Equal(t, "Status(99)", Status(99).String())
	assert.Nil(t, New(0))
}

// Hot messages must encode and decode without allocating.
func TestHotPathsDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	up := EventUpdate{RequiredID: 1, Event: 2, Seq: 3, Payload: Payload{Slot: 4, Len: 5}}
	pc := PayloadConsumed{Handle: 1, Payload: Payload{Slot: 4, Len: 5}}
	call := CallMethod{ProvidedID: 1, InvocationID: 2, Method: 3}
	reply := CallMethodReply{RequiredID: 1, InvocationID: 2}
	allocs := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		b, _ = up.Append(b)
		b, _ = pc.Append(b)
		b, _ = call.Append(b)
		b, _ = reply.Append(b)
		var u EventUpdate
		var c PayloadConsumed
		var cm CallMethod
		var r CallMethodReply
		h, body, rest, _ := Split(b)
		_ = u.Decode(h, body)
		h, body, rest, _ = Split(rest)
		_ = c.Decode(h, body)
		h, body, rest, _ = Split(rest)
		_ = cm.Decode(h, body)
		h, body, _, _ = Split(rest)
		_ = r.Decode(h, body)
	})
	assert.Zero(t, allocs)
}

func BenchmarkEventUpdateRoundTrip(b *testing.B) {
	buf := make([]byte, 0, 64)
	m := EventUpdate{RequiredID: 1, Event: 2, Seq: 3, Payload: Payload{Slot: 4, Len: 5}}
	var out EventUpdate
	b.ReportAllocs()
	for b.Loop() {
		p, _ := m.Append(buf[:0])
		h, body, _, _ := Split(p)
		if err := out.Decode(h, body); err != nil {
			b.Fatal(err)
		}
	}
}
