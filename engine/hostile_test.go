package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// rawPeer is a hand-driven control connection for sending arbitrary bytes.
type rawPeer struct {
	t    testing.TB
	conn *transport.Conn
}

func rawDial(t testing.TB, path string) *rawPeer {
	c, err := transport.Dial(path)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

func (r *rawPeer) send(pkt []byte, fds ...int) {
	require.NoError(r.t, r.conn.Send(pkt, fds))
}

func (r *rawPeer) sendMsg(ms ...wire.Message) { r.send(encode(r.t, ms...)) }

// recv waits (bounded) for one packet; io.EOF when the other side closed.
func (r *rawPeer) recv() ([]byte, error) {
	buf := make([]byte, wire.MaxPacket)
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(r.conn.Fd()), Events: unix.POLLIN}}
		unix.Poll(pfd, 100)
		fds := make([]int, transport.MaxFDs)
		n, nfds, err := r.conn.Recv(buf, fds)
		for _, fd := range fds[:nfds] {
			unix.Close(fd) // a pool fd; the raw peer maps nothing
		}
		if errors.Is(err, transport.ErrWouldBlock) {
			continue
		}
		return buf[:n], err
	}
	r.t.Fatal("no packet within the deadline")
	return nil, nil
}

// next waits (bounded) for a packet holding one message and decodes it.
func (r *rawPeer) next() wire.Message {
	r.t.Helper()
	pkt, err := r.recv()
	require.NoError(r.t, err)
	m, rest, err := wire.Decode(pkt)
	require.NoError(r.t, err)
	require.Empty(r.t, rest, "one message per packet expected after %T", m)
	return m
}

// expectClosed reads until the other side closes the connection.
func (r *rawPeer) expectClosed() {
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); {
		_, err := r.recv()
		if err != nil {
			require.ErrorIs(r.t, err, io.EOF)
			return
		}
	}
	r.t.Fatal("the connection stayed open")
}

// handshake sends a valid Connect and reads the Connect_reply.
func (r *rawPeer) handshake() *wire.ConnectReply {
	r.sendMsg(&wire.Connect{Version: wire.Version, MaxPacket: wire.MaxPacket, Name: "raw"})
	m := r.next()
	reply, ok := m.(*wire.ConnectReply)
	require.True(r.t, ok, "got %T", m)
	return reply
}

func encode(t testing.TB, ms ...wire.Message) []byte {
	var pkt []byte
	for _, m := range ms {
		var err error
		pkt, err = m.Append(pkt)
		require.NoError(t, err)
	}
	return pkt
}

func TestMalformedFramesCloseOnlyTheirConnection(t *testing.T) {
	path, prov, good := providerWithConsumer(t, "1")
	baseline := prov.fdCount()

	connect := encode(t, &wire.Connect{Version: wire.Version, MaxPacket: wire.MaxPacket})
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	cases := []struct {
		name      string
		handshake bool
		pkt       []byte
		fds       []int
	}{
		{name: "garbage", pkt: []byte("GET / HTTP/1.1\r\n\r\n")},
		{name: "truncated header", pkt: connect[:5]},
		{name: "unknown type", pkt: []byte{99, 0, 0, 0, 0, 0, 0, 0}},
		{name: "length beyond packet", pkt: []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0}},
		{name: "update before handshake", pkt: encode(t, &wire.EventUpdate{RequiredID: 1})},
		{name: "connect with trailing bytes", pkt: append(connect[:len(connect):len(connect)], 0xee)},
		{name: "oversized packet", pkt: make([]byte, wire.MaxPacket+1)},
		{name: "undefined flags", handshake: true, pkt: func() []byte {
			b := encode(t, &wire.RequestService{Service: testService("a").wire(), InUse: true})
			b[1] = 0x80
			return b
		}()},
		{name: "second connect", handshake: true, pkt: connect},
		{name: "never-issued handle", handshake: true, pkt: encode(t, &wire.SubscribeEvent{ProvidedID: 1 << 60, Subscribe: true})},
		{name: "consume for never-issued handle", handshake: true, pkt: encode(t, &wire.PayloadConsumed{Handle: 1 << 60})},
		{name: "fd that no message carries", handshake: true, pkt: encode(t, &wire.RequestService{Service: testService("a").wire(), InUse: true}), fds: []int{int(devnull.Fd())}},
		{name: "pool flag without fd", handshake: true, pkt: encode(t, &wire.ConnectService{Service: testService("a").wire(), RequiredID: 1, InUse: true, HasPool: true, Pool: wire.Geometry{SlotSize: 64, SlotCount: 1}})},
		{name: "call pool without the methods capability", handshake: true, pkt: encode(t, &wire.ConnectService{Service: testService("a").wire(), RequiredID: 1, InUse: true, HasPool: true, Pool: wire.Geometry{SlotSize: 64, SlotCount: 1}}), fds: []int{int(devnull.Fd())}},
		{name: "bad service id", handshake: true, pkt: encode(t, &wire.RequestService{Service: wire.Service{ID: "", Instance: "i"}, InUse: true})},
		{name: "methods capability not negotiated", handshake: true, pkt: encode(t, &wire.CallMethod{ProvidedID: 1})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, path)
			if tc.handshake {
				require.Equal(t, wire.StatusOK, r.handshake().Status)
			}
			r.send(tc.pkt, tc.fds...)
			r.expectClosed()
			// Everyone else keeps working.
			prov.do("publish a 0 %s", "still-serving")
			good.expect("recv a 0")
		})
	}
	st := prov.waitStatus(func(s Status) bool { return len(s.Peers) == 1 }, "only the good consumer is left")
	assert.Equal(t, "consumer", st.Peers[0].Name)
	assert.GreaterOrEqual(t, st.Counters.ProtocolErrors, uint64(len(cases)))
	eventually(t, func() bool { return prov.fdCount() == baseline }, "no fd leaked in the provider (baseline %d)", baseline)
}

func TestProviderSurvivesSlotAbuse(t *testing.T) {
	path := socketPath(t)
	prov := startPeer(t, "listen", path, "provider")
	prov.do("offer a 1 2 64")
	r := rawDial(t, path)
	require.Equal(t, wire.StatusOK, r.handshake().Status)
	r.sendMsg(&wire.ConnectService{Service: testService("a").wire(), RequiredID: 7, InUse: true})
	reply := r.next().(*wire.ConnectServiceReply)
	require.Equal(t, wire.StatusOK, reply.Status)
	// Releasing a slot it never held closes the connection.
	r.sendMsg(&wire.PayloadConsumed{Handle: reply.ProvidedID, Payload: wire.Payload{Slot: 1, Len: 1}})
	r.expectClosed()
	st := prov.waitStatus(func(s Status) bool { return len(s.Peers) == 0 }, "abuser gone")
	assert.Empty(t, st.Offers[0].Bindings)
	prov.do("publish a 0 fine")
}

func TestListenerRejectsAnotherProtocolVersion(t *testing.T) {
	path := socketPath(t)
	startPeer(t, "listen", path, "provider")
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version + 1, MaxPacket: wire.MaxPacket})
	reply := r.next().(*wire.ConnectReply)
	assert.Equal(t, wire.StatusVersionUnsupported, reply.Status)
	assert.Contains(t, reply.Reason, "version")
	r.expectClosed()
}

func TestDiallerReportsRejectionAndKeepsTrying(t *testing.T) {
	path := socketPath(t)
	l, err := transport.Listen(path, transport.ListenConfig{})
	require.NoError(t, err)
	defer l.Close()
	d := dial(t, path, &Config{ReconnectMax: 50 * time.Millisecond})
	accept := func() *rawPeer {
		var c *transport.Conn
		eventually(t, func() bool { c, err = l.Accept(); return err == nil }, "dialler connects")
		return &rawPeer{t: t, conn: c}
	}
	r := accept()
	require.IsType(t, &wire.Connect{}, r.next())
	r.sendMsg(&wire.ConnectReply{Status: wire.StatusPermissionDenied, Version: wire.Version, Reason: "not you"})
	eventually(t, func() bool {
		st := d.Status()
		return st.Dialler.LastError != "" && !st.Dialler.Connected
	}, "rejection visible in status")
	assert.Contains(t, d.Status().Dialler.LastError, "not you")
	r.conn.Close()
	accept() // it tries again
}

func TestHandshakeTimeoutClosesSilentPeers(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{HandshakeTimeout: 50 * time.Millisecond})
	r := rawDial(t, path)
	r.expectClosed()
	eventually(t, func() bool { return len(l.Status().Peers) == 0 }, "silent peer dropped")
	assert.Equal(t, uint64(1), l.Status().Counters.ProtocolErrors)
}

// rawProvider plays a provider by hand: it accepts one dialler, completes
// the handshake announcing caps, and answers its request with an offer.
func rawProvider(t *testing.T, path string, caps uint32, offer wire.OfferService) (*rawPeer, *wire.ConnectService) {
	l, err := transport.Listen(path, transport.ListenConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var c *transport.Conn
	eventually(t, func() bool { c, err = l.Accept(); return err == nil }, "dialler connects")
	r := &rawPeer{t: t, conn: c}
	t.Cleanup(func() { c.Close() })
	require.IsType(t, &wire.Connect{}, r.next())
	// A raw peer speaks the socket protocol only: never the ring capability.
	r.sendMsg(&wire.ConnectReply{Status: wire.StatusOK, Version: wire.Version, Caps: caps &^ wire.CapRing, MaxPacket: wire.MaxPacket})
	require.IsType(t, &wire.RequestService{}, r.next())
	r.sendMsg(&offer)
	cs, ok := r.next().(*wire.ConnectService)
	require.True(t, ok)
	return r, cs
}

func TestConsumerSurvivesAReplyPayloadWithoutAPool(t *testing.T) {
	path := socketPath(t)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	r, cs := rawProvider(t, path, wire.CapAll, wire.OfferService{Service: sensor.wire(), Offered: true})
	// Accept the binding with no pool (the service has no events or methods)...
	r.sendMsg(&wire.ConnectServiceReply{RequiredID: cs.RequiredID, ProvidedID: 5, Status: wire.StatusOK})
	eventually(t, px.Available, "bound")
	// ...then claim a reply payload in the pool it never sent.
	r.sendMsg(&wire.CallMethodReply{RequiredID: cs.RequiredID, InvocationID: 1, Payload: wire.Payload{Slot: 0, Len: 1}})
	r.expectClosed()
	eventually(t, func() bool { return d.Status().Counters.ProtocolErrors == 1 }, "counted as a protocol error")
}

func TestLongRejectionReasonsReachTheDialler(t *testing.T) {
	path := socketPath(t)
	long := strings.Repeat("é", 300) // 600 bytes, cut at a character boundary
	listen(t, path, &Config{Authorize: func(PeerCred) error { return errors.New(long) }})
	d := dial(t, path, &Config{ReconnectMax: 50 * time.Millisecond})
	eventually(t, func() bool { return d.Status().Dialler.LastError != "" }, "rejected")
	msg := d.Status().Dialler.LastError
	assert.Contains(t, msg, "permission denied")
	assert.True(t, utf8.ValidString(msg))
	assert.Contains(t, msg, strings.Repeat("é", 100))
}

// Against a provider that announces no capabilities the consumer sends
// nothing the provider cannot take: no call pool, no calls, no update
// requests, and initial-value subscriptions as plain ones.
func TestConsumerRespectsAPeersMissingCapabilities(t *testing.T) {
	path := socketPath(t)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	r, cs := rawProvider(t, path, 0, wire.OfferService{Service: sensor.wire(), Offered: true, Methods: 1, Events: 1})
	assert.False(t, cs.HasPool, "no call pool without the methods capability")
	pool, err := shm.NewPool("raw-provider", shm.Geometry{SlotSize: 64, SlotCount: 1})
	require.NoError(t, err)
	defer pool.Close()
	r.send(encode(t, &wire.ConnectServiceReply{RequiredID: cs.RequiredID, ProvidedID: 5, Status: wire.StatusOK,
		Methods: 1, Events: 1, HasEventPool: true, EventPool: wire.Geometry{SlotSize: 64, SlotCount: 1}}), pool.Fd())
	eventually(t, px.Available, "bound")

	_, err = px.Call(context.Background(), 0, nil)
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.ErrorIs(t, px.Send(0, nil), ErrUnsupported)
	require.NoError(t, px.Subscribe(0, InitialValue, func(Sample) {}))
	m := r.next()
	sub, ok := m.(*wire.SubscribeEvent)
	require.True(t, ok, "got %T", m)
	assert.Equal(t, wire.ModeUpdates, sub.Mode, "initial value needs the fields capability")
	assert.ErrorIs(t, px.RequestUpdate(0), ErrUnsupported)
	assert.Zero(t, d.Status().Counters.ProtocolErrors)
}
