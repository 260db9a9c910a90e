package engine

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chaosFrames are valid messages of every type, aimed at plausible handles,
// for the hostile peer to send as they are or mutated.
func chaosFrames(t testing.TB, handles []uint64) [][]byte {
	svc := testService("a").wire()
	h := func(i int) uint64 { return handles[i%len(handles)] }
	var out [][]byte
	for i := range 4 {
		for _, m := range []wire.Message{
			&wire.RequestService{Service: svc, InUse: i%2 == 0},
			&wire.OfferService{Service: svc, Offered: i%2 == 0, Events: 1, Methods: 2},
			&wire.ConnectService{Service: svc, RequiredID: uint64(100 + i), InUse: i != 3},
			&wire.ConnectServiceReply{RequiredID: h(i), ProvidedID: 7, Events: 1},
			&wire.CallMethod{ProvidedID: h(i), InvocationID: uint64(i), Method: uint16(i % 3), FireAndForget: i == 1, Payload: wire.Payload{Slot: wire.NoSlot}},
			&wire.CallMethodHandle{RequiredID: h(i), InvocationID: 1},
			&wire.CallMethodReply{RequiredID: h(i), InvocationID: uint64(i), Payload: wire.Payload{Slot: uint32(i)}},
			&wire.CancelMethodCall{ProvidedID: h(i), InvocationID: uint64(i)},
			&wire.SubscribeEvent{ProvidedID: h(i), Event: uint16(i % 2), Mode: wire.Mode(i % 2), Subscribe: i != 2},
			&wire.SubscribeEventReply{RequiredID: h(i), Event: 0},
			&wire.EventUpdate{RequiredID: h(i), Event: 0, Seq: 1, Payload: wire.Payload{Slot: uint32(i), Len: 3}},
			&wire.EventUpdateRequest{ProvidedID: h(i), Event: uint16(i % 2)},
			&wire.PayloadConsumed{Handle: h(i), Payload: wire.Payload{Slot: uint32(i), Len: 1}},
			&wire.FindService{Service: wire.Service{ID: "test.a", Major: 1}, Add: i%2 == 0},
		} {
			b, err := m.Append(nil)
			require.NoError(t, err)
			out = append(out, b)
		}
	}
	return out
}

func mutate(rng *rand.Rand, b []byte) []byte {
	b = append([]byte(nil), b...)
	switch rng.IntN(5) {
	case 0: // flip bytes
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
	case 1: // truncate
		b = b[:rng.IntN(len(b))]
	case 2: // append garbage
		for range 1 + rng.IntN(16) {
			b = append(b, byte(rng.IntN(256)))
		}
	case 3: // random bytes
		b = make([]byte, 1+rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
	}
	return b // case 4: unchanged
}

// A hostile peer sends random and mutated valid frames for a bounded time,
// reconnecting whenever it is thrown out. The provider keeps serving its
// other peers and leaks nothing.
func TestHostilePeerCannotDisturbOthers(t *testing.T) {
	// share=4: a hostile peer may bind and hold slots like any slow
	// consumer; its share leaves room for the good one.
	path, prov, good := providerWithConsumer(t, "2 16 64 methods=3 fields=1 share=4")
	baseline := prov.fdCount()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	// Handles the provider really issued (its bindings), so some frames hit.
	var handles []uint64
	for _, b := range prov.status().Offers[0].Bindings {
		handles = append(handles, b.ProvidedID, b.RequiredID)
	}
	handles = append(handles, 1, 2, 3, 1<<40)
	frames := chaosFrames(t, handles)

	connects, packets := 0, 0
	var r *rawPeer
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if r == nil {
			c, err := transport.Dial(path)
			require.NoError(t, err)
			r = &rawPeer{t: t, conn: c}
			connects++
			if rng.IntN(4) != 0 { // mostly get past the handshake first
				r.sendMsg(&wire.Connect{Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket, Name: "chaos"})
			}
		}
		var pkt []byte
		for range 1 + rng.IntN(3) {
			pkt = append(pkt, mutate(rng, frames[rng.IntN(len(frames))])...)
		}
		if len(pkt) == 0 {
			continue
		}
		if err := r.conn.Send(pkt, nil); err != nil {
			r.conn.Close() // thrown out (or its buffer full): start again
			r = nil
			continue
		}
		packets++
		if packets%50 == 0 {
			// The good consumer's releases are asynchronous: wait until the
			// last one is in, so its share is never what drops an update.
			prov.waitStatus(func(s Status) bool { return goodHolds(s) == 0 }, "good consumer released")
			// A hostile connection being torn down may still hold its share.
			eventually(t, func() bool { return strings.HasPrefix(prov.try("publish a 0 p%d", packets), "ok") }, "publish during chaos")
			good.expect("recv a 0")
		}
	}
	if r != nil {
		r.conn.Close()
	}
	t.Logf("%d connections, %d packets", connects, packets)
	prov.do("publish a 0 after-chaos")
	good.expect("recv a 0")
	assert.Equal(t, "still-works", good.do("call a 0 still-works"))
	st := prov.waitStatus(func(s Status) bool {
		return len(s.Peers) == 1 && len(s.Offers[0].Bindings) == 1 && s.Offers[0].Bindings[0].Holds == 0
	}, "only the good consumer is left, holding nothing")
	assert.Equal(t, "consumer", st.Peers[0].Name)
	eventually(t, func() bool { return prov.fdCount() == baseline }, "no socket or memfd leaked (baseline %d)", baseline)
	prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) <= 1 }, "no slot leaked (one may hold the field's cached value)")
}

// goodHolds is how many slots the peer named "consumer" holds.
func goodHolds(s Status) int {
	if b, ok := bindingOf(s, "consumer"); ok {
		return b.Holds
	}
	return -1
}
