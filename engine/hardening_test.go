package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine/internal/transport"
	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Regression tests for the engine-hardening issue: each failed on the
// engine before it.

// recvMsgs waits (bounded) for one packet and returns its messages and the
// fds it carried (the caller closes them).
func (r *rawPeer) recvMsgs() ([]wire.Message, []int) {
	r.t.Helper()
	buf := make([]byte, wire.MaxPacket)
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		unix.Poll([]unix.PollFd{{Fd: int32(r.conn.Fd()), Events: unix.POLLIN}}, 100)
		fds := make([]int, transport.MaxFDs)
		n, nfds, err := r.conn.Recv(buf, fds)
		if errors.Is(err, transport.ErrWouldBlock) {
			continue
		}
		require.NoError(r.t, err)
		var ms []wire.Message
		for pkt := buf[:n]; len(pkt) > 0; {
			m, rest, err := wire.Decode(pkt)
			require.NoError(r.t, err)
			ms, pkt = append(ms, m), rest
		}
		return ms, fds[:nfds]
	}
	r.t.Fatal("no packet within the deadline")
	return nil, nil
}

// await reads packets until a message of type T arrives; it returns it and
// the fds of its packet (fds of other packets are closed).
func await[T wire.Message](r *rawPeer) (T, []int) {
	r.t.Helper()
	for {
		ms, fds := r.recvMsgs()
		for _, m := range ms {
			if v, ok := m.(T); ok {
				return v, fds
			}
		}
		closeAll(fds)
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// rawConsumer is a raw peer that has completed the handshake with caps.
func rawConsumer(t *testing.T, path string, caps uint32) *rawPeer {
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version, Caps: caps, MaxPacket: wire.MaxPacket, Name: "raw"})
	reply, fds := await[*wire.ConnectReply](r)
	closeAll(fds)
	require.Equal(t, wire.StatusOK, reply.Status, reply.Reason)
	return r
}

// bindRaw sends Connect_service for svc (with an optional call pool) and
// returns the reply with the fds it carried.
func (r *rawPeer) bindRaw(svc ServiceID, id uint64, callPool *shm.Pool) (*wire.ConnectServiceReply, []int) {
	m := &wire.ConnectService{Service: svc.wire(), RequiredID: id, InUse: true}
	var fds []int
	if callPool != nil {
		m.HasPool, m.Pool = true, wireGeometry(callPool.Geometry())
		fds = []int{callPool.Fd()}
	}
	r.send(encode(r.t, m), fds...)
	return await[*wire.ConnectServiceReply](r)
}

func inode(t testing.TB, fd int) uint64 {
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	return st.Ino
}

func echoOffer() *OfferConfig {
	return &OfferConfig{Events: 1, Methods: 1, OnCall: func(c Call) { c.Reply(c.Data()) }}
}

// A bound peer maps only what it is entitled to: the event pool if it may
// subscribe, a reply pool of its own if it may call, nothing otherwise.
func TestPeerGetsOnlyThePoolsItIsEntitledTo(t *testing.T) {
	deny := func(acts Action) []Rule { return []Rule{{Actions: acts, Deny: true}} }
	for _, tc := range []struct {
		name          string
		policy        []Rule
		events, reply bool
	}{
		{"may subscribe and call", nil, true, true},
		{"may only call", deny(ActionSubscribe), false, true},
		{"may only subscribe", deny(ActionCall), true, false},
		{"may neither", deny(ActionSubscribe | ActionCall), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			l := listen(t, path, &Config{Policy: tc.policy})
			_, err := l.Offer(sensor, echoOffer())
			require.NoError(t, err)
			r := rawConsumer(t, path, wire.CapAll)
			reply, fds := r.bindRaw(sensor, 1, nil)
			defer closeAll(fds)
			require.Equal(t, wire.StatusOK, reply.Status)
			assert.Equal(t, tc.events, reply.HasEventPool, "event pool")
			assert.Equal(t, tc.reply, reply.HasReplyPool, "reply pool")
			want := 0
			for _, has := range []bool{tc.events, tc.reply} {
				if has {
					want++
				}
			}
			require.Len(t, fds, want, "one fd per pool, none other")
			if len(fds) == 2 {
				assert.NotEqual(t, inode(t, fds[0]), inode(t, fds[1]), "replies never share the event pool")
			}
		})
	}
}

// Method replies live in a pool only the calling binding sees; the event
// pool is shared by the subscribers.
func TestEachBindingHasItsOwnReplyPool(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, echoOffer())
	require.NoError(t, err)
	a, b := rawConsumer(t, path, wire.CapAll), rawConsumer(t, path, wire.CapAll)
	_, fa := a.bindRaw(sensor, 1, nil)
	defer closeAll(fa)
	_, fb := b.bindRaw(sensor, 1, nil)
	defer closeAll(fb)
	require.Len(t, fa, 2)
	require.Len(t, fb, 2)
	assert.Equal(t, inode(t, fa[0]), inode(t, fb[0]), "one event pool for every subscriber")
	assert.NotEqual(t, inode(t, fa[1]), inode(t, fb[1]), "reply pools are per binding")
}

// A proxy gives each provider it binds a new call pool: a new provider
// never sees requests sent to an old one.
func TestRebindingGivesTheNewProviderANewCallPool(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	p1 := dial(t, path, &Config{Name: "p1"})
	o1, err := p1.Offer(sensor, echoOffer())
	require.NoError(t, err)
	px, err := l.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "bound to p1")
	p2 := dial(t, path, &Config{Name: "p2"})
	_, err = p2.Offer(sensor, echoOffer())
	require.NoError(t, err)
	eventually(t, func() bool { return len(l.Status().Proxies[0].Candidates) == 2 }, "p2 is a standby")

	callPool := func() *shm.Pool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if px.bind == nil || !px.bind.connected {
			return nil
		}
		return px.bind.callPool
	}
	first := callPool()
	require.NotNil(t, first)
	firstInode := inode(t, first.Fd())
	_, err = px.Call(context.Background(), 0, []byte("for p1 only"))
	require.NoError(t, err)

	require.NoError(t, o1.Close())
	eventually(t, func() bool { p := callPool(); return p != nil && p != first }, "rebound to p2")
	assert.Equal(t, -1, first.Fd(), "the old call pool is closed")
	assert.NotEqual(t, firstInode, inode(t, callPool().Fd()), "a new memfd for the new provider")
	r, err := px.Call(context.Background(), 0, []byte("for p2"))
	require.NoError(t, err)
	assert.Equal(t, "for p2", string(r.Data()))
	r.Release()
}

// A dialler's Connect hints size only pools of its own, and the listener
// refuses hints beyond its limits.
func TestPoolHintsSizeOnlyTheDiallersOwnPools(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, Methods: 1, OnCall: func(c Call) {
		if err := c.Reply(c.Data()); err != nil {
			c.Fail(7, nil)
		}
	}})
	require.NoError(t, err)
	tiny := shm.Geometry{SlotSize: 1, SlotCount: 1}
	small := dial(t, path, &Config{Name: "tiny", Pools: []PoolConfig{{ServiceID: sensor.ID, Kind: ReplyPool, Geometry: tiny}}})
	plain := dial(t, path, &Config{Name: "plain"})
	got := make(chan int, 4)
	for _, d := range []*Node{small, plain} {
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		require.NoError(t, px.Subscribe(0, Updates, func(s Sample) { got <- len(s.Data()) }))
		eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
		r, err := px.Call(context.Background(), 0, []byte("hundred bytes, more or less: hundred bytes, more or less: hundred bytes, more or less"))
		if d == small {
			code, ok := AppErrorCode(err)
			assert.True(t, ok && code == 7, "the tiny reply pool is the hinting dialler's alone: %v", err)
		} else {
			require.NoError(t, err)
		}
		r.Release()
	}
	require.NoError(t, o.Publish(0, make([]byte, 100)), "the shared event pool is the offer's size, not a hint's")
	assert.Equal(t, 100, recvWithin(t, got, "event"))
	assert.Equal(t, 100, recvWithin(t, got, "event"))

	huge := dial(t, path, &Config{Pools: []PoolConfig{{ServiceID: sensor.ID, Kind: ReplyPool, Geometry: shm.Geometry{SlotSize: 64, SlotCount: 1 << 20}}}})
	eventually(t, func() bool { d := huge.Status().Dialler; return strings.Contains(d.LastError, "quota exceeded") }, "a hint beyond the limits is refused")
}

// Find applies the Offer rule to offers it already knows, as to new ones.
func TestFindAppliesTheOfferRule(t *testing.T) {
	path := socketPath(t)
	front, rear := sensor, sensor
	rear.Instance = "rear"
	l := listen(t, path, &Config{Policy: []Rule{{Service: sensor.ID, Instance: "front", Actions: ActionOffer, Deny: true}}})
	d := dial(t, path, nil)
	for _, svc := range []ServiceID{front, rear} {
		_, err := d.Offer(svc, &OfferConfig{Events: 1})
		require.NoError(t, err)
	}
	// A proxy makes the listener learn of the offers before it finds.
	for _, svc := range []ServiceID{front, rear} {
		_, err := l.Require(svc, nil)
		require.NoError(t, err)
	}
	eventually(t, func() bool { return len(l.Status().Peers) == 1 && len(l.Status().Peers[0].Offers) == 2 }, "both offers recorded")
	var mu sync.Mutex
	var seen []string
	_, err := l.Find(sensor.Interface, "*", func(ev FindEvent) {
		mu.Lock()
		seen = append(seen, ev.Service.Instance)
		mu.Unlock()
	})
	require.NoError(t, err)
	barrier := make(chan struct{})
	require.NoError(t, l.Post(func() { close(barrier) }))
	recvWithin(t, barrier, "callbacks queued before the barrier")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"rear"}, seen, "the refused offer is not reported")
}

// The status endpoint's socket is private by default whatever the umask,
// and a file that is not a socket at its path is left alone.
func TestStatusEndpointSocketIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Dir(socketPath(t))
	mode := func(name string, cfg *Config) os.FileMode {
		cfg.StatusPath = filepath.Join(dir, name+".status")
		n, err := Listen(filepath.Join(dir, name), cfg)
		require.NoError(t, err)
		defer n.Close()
		st, err := os.Stat(cfg.StatusPath)
		require.NoError(t, err)
		return st.Mode().Perm()
	}
	assert.Equal(t, os.FileMode(0o600), mode("a", &Config{}))
	assert.Equal(t, os.FileMode(0o660), mode("b", &Config{StatusMode: 0o660}))

	file := filepath.Join(dir, "c.status")
	require.NoError(t, os.WriteFile(file, []byte("precious"), 0o644))
	_, err := Listen(filepath.Join(dir, "c"), &Config{StatusPath: file})
	require.Error(t, err)
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(data), "not unlinked")
}

// A peer that sends and never reads is disconnected once MaxOutput bytes
// are queued for it; queued bytes are never negative.
func TestMaxOutputDisconnectsAPeerThatDoesNotRead(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{MaxOutput: 64 << 10})
	_, err := l.Offer(sensor, echoOffer())
	require.NoError(t, err)
	r := rawConsumer(t, path, wire.CapAll)
	reply, fds := r.bindRaw(sensor, 1, nil)
	closeAll(fds)
	var calls []wire.Message
	for i := range 1000 {
		calls = append(calls, &wire.CallMethod{ProvidedID: reply.ProvidedID, InvocationID: uint64(i + 1), Method: 9, Payload: wire.Payload{Slot: wire.NoSlot}})
	}
	pkt := encode(t, calls...)
	deadline := time.Now().Add(waitFor)
	for sent := 0; ; sent++ {
		require.True(t, time.Now().Before(deadline), "never disconnected after %d packets", sent)
		err := r.conn.Send(pkt, nil)
		if errors.Is(err, transport.ErrPeerClosed) {
			break
		}
		if errors.Is(err, transport.ErrWouldBlock) {
			unix.Poll([]unix.PollFd{{Fd: int32(r.conn.Fd()), Events: unix.POLLOUT}}, 10)
		}
		st := l.Status()
		if len(st.Peers) == 0 {
			break
		}
		require.GreaterOrEqual(t, st.Peers[0].QueuedBytes, 0)
	}
	eventually(t, func() bool { return len(l.Status().Peers) == 0 }, "the peer was disconnected")
}

// One dispatch round takes a flood in bounded slices and reports that more
// is pending; the memory of the burst is given back.
func TestDispatchTakesAFloodInBoundedSlices(t *testing.T) {
	path := socketPath(t)
	var handled atomic.Int64
	l, err := Listen(path, &Config{Limits: Limits{PendingCalls: 1 << 20}})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) { handled.Add(1) }})
	require.NoError(t, err)
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket})
	pump := func() (ran int, more bool) {
		ran, more, err := l.Dispatch(0)
		require.NoError(t, err)
		return ran, more
	}
	var reply *wire.ConnectServiceReply
	for reply == nil {
		pump()
		unix.Poll([]unix.PollFd{{Fd: int32(r.conn.Fd()), Events: unix.POLLIN}}, 10)
		buf, fds := make([]byte, wire.MaxPacket), make([]int, transport.MaxFDs)
		if n, nfds, err := r.conn.Recv(buf, fds); err == nil {
			closeAll(fds[:nfds])
			for pkt := buf[:n]; len(pkt) > 0; {
				m, rest, err := wire.Decode(pkt)
				require.NoError(t, err)
				pkt = rest
				switch m := m.(type) {
				case *wire.ConnectReply:
					r.sendMsg(&wire.ConnectService{Service: sensor.wire(), RequiredID: 1, InUse: true})
				case *wire.ConnectServiceReply:
					reply = m
				}
			}
		}
	}
	const packets, perPacket = 12, 250 // fits the socket's buffer
	var calls []wire.Message
	for i := range perPacket {
		calls = append(calls, &wire.CallMethod{ProvidedID: reply.ProvidedID, InvocationID: uint64(i + 1), FireAndForget: true, Payload: wire.Payload{Slot: wire.NoSlot}})
	}
	pkt := encode(t, calls...)
	for range packets {
		r.send(pkt)
	}
	ran, more := pump()
	assert.LessOrEqual(t, ran, maxRoundCallbacks+perPacket, "one round is bounded")
	assert.True(t, more, "and says more is pending")
	for i := 0; handled.Load() < packets*perPacket; i++ {
		require.Less(t, i, 10*packets, "the flood is never drained")
		pump()
	}
	l.mu.Lock()
	assert.LessOrEqual(t, cap(l.run), retainCallbacks, "the burst's callback queue is given back")
	assert.LessOrEqual(t, cap(l.callbacks), retainCallbacks)
	l.mu.Unlock()
}

// Fire-and-forget calls count against PendingCalls until their handler ran.
func TestFireAndForgetCallsCountAgainstTheLimit(t *testing.T) {
	path := socketPath(t)
	var handled atomic.Int64
	l := listen(t, path, &Config{Limits: Limits{PendingCalls: 10}})
	block := make(chan struct{})
	_, err := l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(Call) {
		if handled.Add(1) == 1 {
			<-block // the rest of the calls wait in the queue meanwhile
		}
	}})
	require.NoError(t, err)
	r := rawConsumer(t, path, wire.CapAll)
	reply, fds := r.bindRaw(sensor, 1, nil)
	closeAll(fds)
	var calls []wire.Message
	for i := range 50 {
		calls = append(calls, &wire.CallMethod{ProvidedID: reply.ProvidedID, InvocationID: uint64(i + 1), FireAndForget: true, Payload: wire.Payload{Slot: wire.NoSlot}})
	}
	r.send(encode(t, calls...))
	eventually(t, func() bool { return handled.Load() == 1 }, "first call in its handler")
	close(block)
	eventually(t, func() bool { return l.Status().Counters.QuotaHits == 40 }, "calls beyond the limit refused")
	eventually(t, func() bool { return handled.Load() == 10 }, "the calls within the limit handled")
}

// A listener refuses peers beyond MaxPeers with a clear status.
func TestListenerRefusesPeersBeyondMaxPeers(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{MaxPeers: 2})
	for range 2 {
		d := dial(t, path, nil)
		eventually(t, func() bool { return d.Status().Dialler.Connected }, "within the limit")
	}
	third := dial(t, path, nil)
	eventually(t, func() bool { return strings.Contains(third.Status().Dialler.LastError, "quota exceeded") }, "refused")
	assert.Len(t, l.Status().Peers, 2)
}

// At MaxHandshakes the listener stops accepting until a handshake ends;
// the waiting connections are accepted later.
func TestListenerPausesAtMaxHandshakes(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{MaxHandshakes: 2, HandshakeTimeout: 200 * time.Millisecond})
	for range 4 {
		rawDial(t, path) // never says Connect
	}
	eventually(t, func() bool { return l.Status().Counters.PeersAccepted == 2 }, "two accepted")
	assert.LessOrEqual(t, len(l.Status().Peers), 2, "no more than MaxHandshakes at once")
	eventually(t, func() bool { return l.Status().Counters.PeersAccepted == 4 }, "the rest after the first time out")
}

// Out of file descriptors, the listener backs off instead of spinning.
func TestAcceptBacksOffWhenOutOfFileDescriptors(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	running := make(chan struct{})
	require.NoError(t, l.Post(func() { close(running) }))
	recvWithin(t, running, "Run dispatching") // it has all the descriptors it needs
	var waiting []int
	defer func() { closeAll(waiting) }()
	for range 2 { // sockets made now, connected once no descriptor is left
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		waiting = append(waiting, fd)
	}
	pid := os.Getpid()
	var old unix.Rlimit
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old))
	tight := unix.Rlimit{Cur: 256, Max: old.Max}
	require.NoError(t, unix.Prlimit(pid, unix.RLIMIT_NOFILE, &tight, nil))
	defer unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil)
	var fillers []int
	defer func() { closeAll(fillers) }()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			require.ErrorIs(t, err, unix.EMFILE)
			break
		}
		fillers = append(fillers, fd)
	}
	for _, fd := range waiting {
		require.NoError(t, unix.Connect(fd, &unix.SockaddrUnix{Name: path}))
	}
	eventually(t, func() bool { return l.Status().Counters.AcceptErrors > 0 }, "accept fails with EMFILE")
	before := l.Status().Counters.AcceptErrors
	time.Sleep(300 * time.Millisecond) // a measurement window, not a wait for an event
	errs := l.Status().Counters.AcceptErrors - before
	assert.LessOrEqual(t, errs, uint64(10), "backing off, not spinning")
	closeAll(fillers)
	fillers = nil
	eventually(t, func() bool { return l.Status().Counters.PeersAccepted == 2 }, "accepted once descriptors are free")
}

// A pool a peer sends is mapped only within the node's limits.
func TestMappedPoolsAreBounded(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{Limits: Limits{MappedBytes: 1 << 20}})
	two := sensor
	two.Instance = "two"
	for _, svc := range []ServiceID{sensor, two} {
		_, err := l.Offer(svc, echoOffer())
		require.NoError(t, err)
	}
	r := rawConsumer(t, path, wire.CapAll)
	huge, err := shm.NewPool("huge", shm.Geometry{SlotSize: 1 << 20, SlotCount: 4096}) // 4 GiB, sparse
	require.NoError(t, err)
	defer huge.Close()
	reply, fds := r.bindRaw(sensor, 1, huge)
	closeAll(fds)
	assert.Equal(t, wire.StatusQuotaExceeded, reply.Status, "a pool beyond PoolBytes is not mapped")

	threeQuarters, err := shm.NewPool("part", shm.Geometry{SlotSize: 192 << 10, SlotCount: 4})
	require.NoError(t, err)
	defer threeQuarters.Close()
	reply, fds = r.bindRaw(sensor, 2, threeQuarters)
	closeAll(fds)
	require.Equal(t, wire.StatusOK, reply.Status)
	reply, fds = r.bindRaw(two, 3, threeQuarters)
	closeAll(fds)
	assert.Equal(t, wire.StatusQuotaExceeded, reply.Status, "the peer's pools together stay within MappedBytes")
	assert.Equal(t, int64(768<<10), l.Status().Peers[0].MappedBytes)
}

// One subscriber that never releases cannot stop a default-configured
// offer: it holds at most half the pool, everyone else is served.
func TestStalledSubscriberCannotStopPublishing(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	o, err := l.Offer(sensor, &OfferConfig{Events: 1, NoInline: true})
	require.NoError(t, err)
	var kept []Sample
	var keptMu sync.Mutex
	var seqs []uint64
	var seqMu sync.Mutex
	for i, handler := range []func(Sample){
		func(s Sample) { s.Keep(); keptMu.Lock(); kept = append(kept, s); keptMu.Unlock() },
		func(s Sample) { seqMu.Lock(); seqs = append(seqs, s.Seq()); seqMu.Unlock() },
	} {
		d := dial(t, path, &Config{Name: fmt.Sprint("sub", i)})
		px, err := d.Require(sensor, nil)
		require.NoError(t, err)
		require.NoError(t, px.Subscribe(0, Updates, handler))
		eventually(t, func() bool { st, _ := px.Subscription(0); return st == SubscriptionActive }, "subscribed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	const n = 3 * 64
	for i := range n {
		require.NoError(t, o.PublishWait(ctx, 0, []byte("x")), "publish %d", i)
		eventually(t, func() bool { seqMu.Lock(); defer seqMu.Unlock(); return len(seqs) == i+1 }, "the other subscriber got update %d", i)
	}
	share := int(DefaultGeometry.SlotCount / 2)
	eventually(t, func() bool { keptMu.Lock(); defer keptMu.Unlock(); return len(kept) >= share }, "the stalled one got its share")
	keptMu.Lock()
	assert.Equal(t, share, len(kept), "the stalled one holds half the pool, no more")
	for _, s := range kept {
		s.Release()
	}
	keptMu.Unlock()
	assert.Greater(t, l.Status().Offers[0].Counters.Dropped, uint64(0), "its excess updates are dropped and counted")
}

// readOnlyMappings counts this process's read-only mappings (a reader's
// views) of memfds with the name.
func readOnlyMappings(t testing.TB, name string) int {
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(string(maps), "\n") {
		if f := strings.Fields(line); len(f) >= 6 && f[1] == "r--s" && f[5] == "/memfd:gwipc:"+name {
			n++
		}
	}
	return n
}

// Close releases the memory of calls the application never answered.
func TestCloseReleasesUnansweredCalls(t *testing.T) {
	path := socketPath(t)
	svc := ServiceID{Interface: Interface{ID: "close.releases.calls", Major: 1}, Instance: "only-here"}
	l, err := Listen(path, nil)
	require.NoError(t, err)
	go l.Run(context.Background())
	held := make(chan Call, 1)
	_, err = l.Offer(svc, &OfferConfig{Methods: 1, OnCall: func(c Call) { held <- c }})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(svc, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	_, err = px.CallAsync(0, []byte("never answered"), CallOptions{}, func(Reply, error) {})
	require.NoError(t, err)
	c := recvWithin(t, held, "call")
	calls := poolName(svc) + "-calls"
	require.Equal(t, 1, readOnlyMappings(t, calls), "the provider's view of the consumer's call pool")
	require.NoError(t, l.Close())
	assert.Zero(t, readOnlyMappings(t, calls), "gone with Close, though the call was never answered")
	assert.ErrorIs(t, c.Reply(nil), ErrClosed)
}

// Close from another goroutine while OnCall runs waits for it before it
// unmaps anything: the request the callback is reading stays mapped until
// the callback returns (it used to be unmapped under the callback's feet:
// a SIGSEGV in a C on_call reading call->data).
func TestCloseFromAnotherGoroutineKeepsARunningCallsRequestMapped(t *testing.T) {
	path := socketPath(t)
	svc := ServiceID{Interface: Interface{ID: "close.during.call", Major: 1}, Instance: "only-here"}
	l, err := Listen(path, nil)
	require.NoError(t, err)
	ran := make(chan error, 1)
	go func() { ran <- l.Run(context.Background()) }()
	request := bytes.Repeat([]byte("r"), 1000)
	inCall := make(chan struct{})
	read := make(chan error, 1)
	_, err = l.Offer(svc, &OfferConfig{Methods: 1, OnCall: func(c Call) {
		close(inCall)
		// Close has begun: it set the flag and the teardown would now
		// take the node's lock, as it did before it waited.
		deadline := time.Now().Add(waitFor)
		for !l.closedFlag.Load() && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		l.mu.Lock()
		//lint:ignore SA2001 the teardown's lock, taken and left: it is done, if it did not wait
		l.mu.Unlock()
		calls := poolName(svc) + "-calls"
		if readOnlyMappings(t, calls) != 1 {
			read <- errors.New("the caller's pool was unmapped while OnCall ran")
			return
		}
		if !bytes.Equal(c.Data(), request) {
			read <- errors.New("the request changed under OnCall")
			return
		}
		read <- nil
	}})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(svc, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	_, err = px.CallAsync(0, request, CallOptions{}, func(Reply, error) {})
	require.NoError(t, err)
	recvWithin(t, inCall, "OnCall")
	require.NoError(t, l.Close())
	require.NoError(t, recvWithin(t, read, "OnCall's verdict"))
	assert.Zero(t, readOnlyMappings(t, poolName(svc)+"-calls"), "unmapped once Close returned")
	assert.NoError(t, recvWithin(t, ran, "Run's end"))
}

// A second Close, concurrent with a first one that waits for a running
// callback, returns only once the first has released everything (it used
// to return at once, with the listener's socket still there).
func TestAConcurrentCloseReturnsAfterTheTeardown(t *testing.T) {
	path := socketPath(t)
	svc := ServiceID{Interface: Interface{ID: "close.twice", Major: 1}, Instance: "only-here"}
	l, err := Listen(path, nil)
	require.NoError(t, err)
	go l.Run(context.Background())
	inCall, release := make(chan struct{}), make(chan struct{})
	_, err = l.Offer(svc, &OfferConfig{Methods: 1, OnCall: func(c Call) {
		close(inCall)
		<-release
	}})
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(svc, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	_, err = px.CallAsync(0, nil, CallOptions{}, func(Reply, error) {})
	require.NoError(t, err)
	recvWithin(t, inCall, "OnCall")
	first := make(chan error, 1)
	go func() { first <- l.Close() }() // waits for OnCall
	eventually(t, l.closedFlag.Load, "the first Close under way")
	calling, second := make(chan struct{}), make(chan error, 1)
	go func() {
		close(calling)
		assert.NoError(t, l.Close())
		_, err := os.Stat(path)
		second <- err
	}()
	recvWithin(t, calling, "the second Close")
	close(release)
	assert.ErrorIs(t, recvWithin(t, second, "the second Close's end"), os.ErrNotExist,
		"the second Close returned before the first removed the socket")
	assert.NoError(t, recvWithin(t, first, "the first Close's end"))
}

// The authorizer runs inside Dispatch but outside the node's lock: it may
// call the node.
func TestAuthorizerMayCallTheNode(t *testing.T) {
	path := socketPath(t)
	var node atomic.Pointer[Node]
	var inDispatch atomic.Bool
	authorize := func(c PeerCred) error {
		l := node.Load()
		inDispatch.Store(l.appTid.Load() != 0)
		done := make(chan struct{})
		go func() { l.Status(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			return errors.New("deadlock: the node's lock is held")
		}
		if c.Name == "panic" {
			panic("authorizer bug")
		}
		return nil
	}
	node.Store(listen(t, path, &Config{Authorize: authorize}))
	d := dial(t, path, &Config{Name: "ok"})
	eventually(t, func() bool { return d.Status().Dialler.Connected }, "admitted")
	assert.True(t, inDispatch.Load(), "the authorizer runs inside the dispatch")
	bad := dial(t, path, &Config{Name: "panic"})
	eventually(t, func() bool { return strings.Contains(bad.Status().Dialler.LastError, "authorizer failed") }, "a panicking authorizer refuses the peer")
}

// logCounter is a slog.Handler that counts records and may call a node.
type logCounter struct {
	mu         sync.Mutex
	records    map[string]int
	suppressed int
	onRecord   func()
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	if h.onRecord != nil {
		h.onRecord()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.records == nil {
		h.records = map[string]int{}
	}
	h.records[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.suppressed += int(a.Value.Int64())
		}
		return true
	})
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) count(msg string) (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.records[msg], h.suppressed
}

// Log records are emitted outside the node's lock (a handler may call the
// node) and what a peer can make the node log is rate-limited.
func TestLogRecordsAreOffTheLockAndRateLimited(t *testing.T) {
	path := socketPath(t)
	h := &logCounter{}
	var node atomic.Pointer[Node]
	var deadlocks atomic.Int32
	h.onRecord = func() {
		l := node.Load()
		if l == nil {
			return // a record from Listen itself
		}
		done := make(chan struct{})
		go func() { l.Status(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			deadlocks.Add(1)
		}
	}
	l := listen(t, path, &Config{Logger: slog.New(h), Policy: []Rule{{Actions: ActionSubscribe, Deny: true}}})
	node.Store(l)
	_, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	r := rawConsumer(t, path, wire.CapAll)
	reply, fds := r.bindRaw(sensor, 1, nil)
	closeAll(fds)
	const refusals = 200
	var subs []wire.Message
	for range refusals {
		subs = append(subs, &wire.SubscribeEvent{ProvidedID: reply.ProvidedID, Subscribe: true})
	}
	start := time.Now()
	r.sendMsg(subs...)
	eventually(t, func() bool { return l.Status().Counters.PolicyRejections == refusals }, "every refusal counted")
	records, _ := h.count("refused by policy")
	assert.LessOrEqual(t, records, logBurst+1+int(time.Since(start)/logEvery), "rate-limited")
	// Once a token is back, the next record reports what was suppressed.
	sent := refusals
	for deadline := time.Now().Add(waitFor); ; {
		require.True(t, time.Now().Before(deadline), "no record reported the suppressed ones")
		if _, suppressed := h.count("refused by policy"); suppressed > 0 {
			break
		}
		r.sendMsg(&wire.SubscribeEvent{ProvidedID: reply.ProvidedID, Subscribe: true})
		sent++
		eventually(t, func() bool { return l.Status().Counters.PolicyRejections == uint64(sent) }, "counted")
		time.Sleep(100 * time.Millisecond) // pacing the refusals, not waiting for an event
	}
	records, suppressed := h.count("refused by policy")
	assert.Equal(t, sent, records+suppressed, "every refusal is logged or counted as suppressed")
	assert.Zero(t, deadlocks.Load(), "a handler calling the node does not deadlock")
}

// A stale copy of a Sample or Reply never releases a later delivery that
// reuses its record.
func TestStaleHandlesNeverReleaseALaterDelivery(t *testing.T) {
	var stale Sample
	second := make(chan Sample, 1)
	n := 0
	o, _, l, _ := boundPair(t, &OfferConfig{Events: 1, NoInline: true}, func(s Sample) {
		n++
		if n == 1 {
			stale = s // not kept: released when the handler returns
			return
		}
		s.Keep()
		second <- s
	})
	require.NoError(t, o.Publish(0, []byte("one")))
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "first released")
	require.NoError(t, o.Publish(0, []byte("two")))
	s := recvWithin(t, second, "second delivery")
	stale.Release()
	assert.False(t, stale.Keep(), "a stale copy cannot be kept")
	assert.Nil(t, stale.Data())
	assert.Equal(t, "two", string(s.Data()), "the second delivery is untouched")
	assert.Equal(t, 1, slotsInUse(l.Status().Offers[0]), "and still holds its slot")
	s.Release()
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "released by its own handle")
}

func TestStaleReplyNeverReleasesALaterReply(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	_, err := l.Offer(sensor, echoOffer())
	require.NoError(t, err)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	eventually(t, px.Available, "available")
	replies := make(chan Reply, 2)
	for i, keep := range []bool{false, true} {
		_, err := px.CallAsync(0, []byte(fmt.Sprint("reply", i)), CallOptions{}, func(r Reply, err error) {
			if keep {
				r.Keep()
			}
			replies <- r
		})
		require.NoError(t, err)
		if i == 0 {
			recvWithin(t, replies, "first reply")
			eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "first released")
		}
	}
	kept := recvWithin(t, replies, "second reply")
	var stale Reply
	_, err = px.CallAsync(0, []byte("x"), CallOptions{}, func(r Reply, err error) { stale = r; replies <- r })
	require.NoError(t, err)
	recvWithin(t, replies, "third")
	stale.Release()
	assert.Equal(t, "reply1", string(kept.Data()))
	kept.Release()
}

// Proxy.Call waits within its context for the service and for a call slot.
func TestCallWaitsForTheServiceAndASlot(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, nil)
	d := dial(t, path, nil)
	px, err := d.Require(sensor, &ProxyConfig{CallGeometry: shm.Geometry{SlotSize: 64, SlotCount: 1}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		r, err := px.Call(ctx, 0, []byte("early"))
		r.Release()
		first <- err
	}()
	held := make(chan Call, 2)
	_, err = l.Offer(sensor, &OfferConfig{Methods: 1, OnCall: func(c Call) { held <- c }})
	require.NoError(t, err)
	c1 := recvWithin(t, held, "the early call, once the service appeared")
	second := make(chan error, 1)
	go func() {
		r, err := px.Call(ctx, 0, []byte("needs the slot"))
		r.Release()
		second <- err
	}()
	eventually(t, func() bool { return d.Status().Proxies[0].CallPool.InUse == 1 }, "the one slot is taken")
	require.NoError(t, c1.Reply(nil))
	require.NoError(t, recvWithin(t, first, "first call"))
	c2 := recvWithin(t, held, "the second call got the slot")
	assert.Equal(t, "needs the slot", string(c2.Data()))
	require.NoError(t, c2.Reply(nil))
	require.NoError(t, recvWithin(t, second, "second call"))
}

// One loop owns a node: the second caller gets ErrBusy, whichever came
// first.
func TestOneLoopOwnsANode(t *testing.T) {
	n, err := Listen(socketPath(t), nil)
	require.NoError(t, err)
	defer n.Close()
	running := make(chan struct{})
	require.NoError(t, n.Post(func() { close(running) }))
	runDone := make(chan error, 1)
	go func() { runDone <- n.Run(context.Background()) }()
	recvWithin(t, running, "Run dispatching")
	_, _, err = n.Dispatch(0)
	assert.ErrorIs(t, err, ErrBusy, "Dispatch while Run runs")
	require.NoError(t, n.Close())
	require.NoError(t, recvWithin(t, runDone, "Run"))

	m, err := Listen(socketPath(t), nil)
	require.NoError(t, err)
	defer m.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	require.NoError(t, m.Post(func() { close(entered); <-release }))
	dispatched := make(chan error, 1)
	go func() { _, _, err := m.Dispatch(-1); dispatched <- err }()
	recvWithin(t, entered, "dispatching")
	assert.ErrorIs(t, m.Run(context.Background()), ErrBusy, "Run while Dispatch runs")
	_, _, err = m.Dispatch(0)
	assert.ErrorIs(t, err, ErrBusy, "a second Dispatch")
	close(release)
	require.NoError(t, recvWithin(t, dispatched, "Dispatch"))
}

// OnPeerDisconnected tells an orderly departure (nil) from a crash
// (ErrPeerLost).
func TestDisconnectReasons(t *testing.T) {
	path := socketPath(t)
	reasons := make(chan error, 2)
	listen(t, path, &Config{OnPeerDisconnected: func(_ *Peer, err error) { reasons <- err }})
	d, err := Dial(path, nil)
	require.NoError(t, err)
	go d.Run(context.Background())
	eventually(t, func() bool { return d.Status().Dialler.Connected }, "connected")
	require.NoError(t, d.Close())
	assert.NoError(t, recvWithin(t, reasons, "orderly close"), "Close says goodbye")

	killed := startPeer(t, "dial", path, "doomed")
	killed.expect("peer+")
	killed.kill()
	assert.ErrorIs(t, recvWithin(t, reasons, "kill"), ErrPeerLost)
}

func TestConfigAndNameValidation(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	for _, bad := range []ServiceID{
		{Interface: Interface{ID: "nul\x00"}, Instance: "i"},
		{Interface: Interface{ID: "line\nfeed"}, Instance: "i"},
		{Interface: Interface{ID: "a"}, Instance: "with space"},
		{Interface: Interface{ID: "a"}, Instance: "\xff\xfe"},
		{Interface: Interface{ID: "a"}, Instance: "*"},
	} {
		_, err := n.Offer(bad, nil)
		assert.ErrorIs(t, err, ErrInvalidService, "%q", bad)
	}
	_, err := n.Offer(sensor, &OfferConfig{Methods: 1})
	assert.ErrorIs(t, err, ErrInvalidConfig, "methods need OnCall")
	for _, cfg := range []Config{{MaxOutput: -1}, {HandshakeTimeout: -time.Second}, {MaxPeers: -1}, {Limits: Limits{PoolBytes: -1}}} {
		_, err := Dial("/tmp/none", &cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

// Post runs a function inside the next Dispatch on the dispatching
// goroutine, wakes Fd, and never runs after Close.
func TestPostRunsInsideTheNextDispatch(t *testing.T) {
	n, err := Listen(socketPath(t), nil)
	require.NoError(t, err)
	ran := make(chan bool, 1)
	go func() { require.NoError(t, n.Post(func() { ran <- n.appTid.Load() != 0 })) }()
	pfd := []unix.PollFd{{Fd: int32(n.Fd()), Events: unix.POLLIN}}
	k, err := unix.Poll(pfd, int(waitFor/time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 1, k, "Fd became readable")
	got, _, err := n.Dispatch(0)
	require.NoError(t, err)
	assert.Equal(t, 1, got)
	assert.True(t, recvWithin(t, ran, "posted function"), "inside the dispatch")

	require.NoError(t, n.Post(func() { t.Error("ran after Close") }))
	require.NoError(t, n.Close())
	_, _, err = n.Dispatch(0)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, n.Post(func() {}), ErrClosed)
}

// Shutdown withdraws, says Goodbye and flushes: the peer sees the service
// go, then an orderly departure.
func TestShutdownSaysGoodbyeAndFlushes(t *testing.T) {
	path := socketPath(t)
	events := make(chan string, 4)
	l, err := Listen(path, nil)
	require.NoError(t, err)
	go l.Run(context.Background())
	_, err = l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	d := dial(t, path, &Config{OnPeerDisconnected: func(_ *Peer, err error) { events <- fmt.Sprint("disconnected ", err) }})
	_, err = d.Require(sensor, &ProxyConfig{OnAvailability: func(up bool) { events <- fmt.Sprint("available ", up) }})
	require.NoError(t, err)
	assert.Equal(t, "available true", recvWithin(t, events, "bound"))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, l.Shutdown(ctx))
	assert.Equal(t, "available false", recvWithin(t, events, "withdrawn"))
	assert.Equal(t, "disconnected <nil>", recvWithin(t, events, "goodbye"))
}

// A blocking call from a callback of the same node returns ErrDeadlock
// instead of hanging.
func TestBlockingCallsFromACallbackReturnErrDeadlock(t *testing.T) {
	errs := make(chan error, 3)
	o, px, _, _ := boundPair(t, &OfferConfig{Events: 1, Methods: 1, OnCall: func(c Call) { c.Reply(nil) }}, func(Sample) {})
	require.NoError(t, px.Subscribe(0, Updates, func(Sample) {
		_, err := px.Call(context.Background(), 0, nil)
		errs <- err
		own, err := px.n.Offer(ServiceID{Interface: Interface{ID: "own"}, Instance: "i"}, &OfferConfig{Events: 1})
		if err != nil {
			errs <- err
			errs <- err
			return
		}
		_, err = own.LoanWait(context.Background(), 0)
		errs <- err
		errs <- own.PublishWait(context.Background(), 0, []byte("small")) // refused though a slot is free
	}))
	require.NoError(t, o.Publish(0, nil))
	assert.ErrorIs(t, recvWithin(t, errs, "Call"), ErrDeadlock)
	assert.ErrorIs(t, recvWithin(t, errs, "LoanWait"), ErrDeadlock)
	assert.ErrorIs(t, recvWithin(t, errs, "PublishWait"), ErrDeadlock)
}

// A peer that says Goodbye and closes while our data is still unread in its
// socket is an orderly departure: the reset Linux reports first does not
// hide the Goodbye behind it.
func TestGoodbyeAfterAResetIsStillRead(t *testing.T) {
	path := socketPath(t)
	reasons := make(chan error, 1)
	l, err := Listen(path, &Config{OnPeerDisconnected: func(_ *Peer, err error) { reasons <- err }})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	r := rawDial(t, path)
	r.sendMsg(&wire.Connect{Version: wire.Version, Caps: wire.CapAll, MaxPacket: wire.MaxPacket},
		&wire.RequestService{Service: sensor.wire(), InUse: true})
	// Dispatched by hand: it answers (Connect_reply, Offer_service), and the
	// raw peer never reads the answers.
	for i := 0; ; i++ {
		require.Less(t, i, 1000, "never answered")
		_, _, err := l.Dispatch(10 * time.Millisecond)
		require.NoError(t, err)
		if st := l.Status(); len(st.Peers) == 1 && st.Peers[0].MessagesOut >= 2 {
			break
		}
	}
	r.sendMsg(&wire.Goodbye{Status: wire.StatusShuttingDown})
	require.NoError(t, r.conn.Close()) // with unread data: a reset
	for i := 0; len(reasons) == 0; i++ {
		require.Less(t, i, 1000, "the departure was never noticed")
		_, _, err := l.Dispatch(10 * time.Millisecond)
		require.NoError(t, err)
	}
	assert.NoError(t, <-reasons, "Goodbye, not a reset")
}
