package benchmark

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gwipc/gwipc/engine"
	"github.com/gwipc/gwipc/shm"
)

// The two services of a gwipc run. A offers ping and requires pong; B the
// reverse.
var (
	pingSvc = engine.ServiceID{Interface: engine.Interface{ID: "bench.ping", Major: 1}, Instance: "0"}
	pongSvc = engine.ServiceID{Interface: engine.Interface{ID: "bench.pong", Major: 1}, Instance: "0"}
)

// Events. Ping: data and control (one byte: ctlMark or ctlStop). Pong: the
// echo and the acknowledgement of ctlStop.
const (
	evData uint16 = 0
	evCtl  uint16 = 1
	evEcho uint16 = 0
	evAck  uint16 = 1

	ctlMark = 'm' // start counting (messages, allocations) from here
	ctlStop = 's' // report, acknowledge and exit
)

// dispatchWait is how long one Dispatch may wait. It returns as soon as
// there is work; the bound only lets the loops notice a dead peer.
const dispatchWait = 100 * time.Millisecond

// gwSide is the measuring process's gwipc end.
type gwSide struct {
	node   *engine.Node
	ping   *engine.Offer
	pong   *engine.Proxy
	dir    string
	child  *child
	size   int
	subbed int // ping events with a subscriber

	echoes   int // echoes received
	badEcho  int // echoes of the wrong length
	acked    bool
	noSlot   uint64
	deadline time.Time // for the current wait
}

// startGWIPC listens, offers ping, requires pong and starts the peer; it
// returns once both sides' subscriptions are acknowledged.
func startGWIPC(spec peerSpec) (*gwSide, error) {
	dir, err := os.MkdirTemp(shortTempDir(), "gwb")
	if err != nil {
		return nil, fmt.Errorf("benchmark: creating the socket directory: %w", err)
	}
	g := &gwSide{dir: dir, size: spec.Size}
	spec.Path = filepath.Join(dir, "s")
	if g.node, err = engine.Listen(spec.Path, &engine.Config{Name: "bench-a"}); err != nil {
		g.close()
		return nil, err
	}
	g.ping, err = g.node.Offer(pingSvc, &engine.OfferConfig{
		Events:   2,
		Geometry: shm.Geometry{SlotSize: uint32(spec.Size), SlotCount: uint32(spec.Slots)},
		// One subscriber: it may hold the whole pool.
		SubscriberSlots: spec.Slots,
		OnSubscription: func(_ uint16, on bool) {
			if on {
				g.subbed++
			} else {
				g.subbed--
			}
		},
	})
	if err != nil {
		g.close()
		return nil, err
	}
	if g.pong, err = g.node.Require(pongSvc, nil); err != nil {
		g.close()
		return nil, err
	}
	onEcho := func(s engine.Sample) {
		g.echoes++
		if len(s.Data()) != g.size {
			g.badEcho++
		}
	}
	if err := g.pong.Subscribe(evEcho, engine.Updates, onEcho); err != nil {
		g.close()
		return nil, err
	}
	if err := g.pong.Subscribe(evAck, engine.Updates, func(engine.Sample) { g.acked = true }); err != nil {
		g.close()
		return nil, err
	}
	if g.child, err = startChild(spec, nil); err != nil {
		g.close()
		return nil, err
	}
	err = g.waitUntil(func() bool {
		if g.subbed < 2 {
			return false
		}
		s0, _ := g.pong.Subscription(evEcho)
		s1, _ := g.pong.Subscription(evAck)
		return s0 == engine.SubscriptionActive && s1 == engine.SubscriptionActive
	})
	if err != nil {
		g.close()
		return nil, fmt.Errorf("benchmark: setting up gwipc: %w", err)
	}
	return g, nil
}

// shortTempDir is a directory for sockets whose paths fit sun_path.
func shortTempDir() string {
	if d := os.TempDir(); len(d) < 64 {
		return d
	}
	return "/tmp"
}

// dispatch runs one Dispatch and fails if the wait has gone on past the
// deadline or the peer is gone.
func (g *gwSide) dispatch() error {
	k, _, err := g.node.Dispatch(dispatchWait)
	if err != nil {
		return err
	}
	if k == 0 {
		if g.child.dead() {
			return g.child.deadErr()
		}
		if time.Now().After(g.deadline) {
			return errors.New("benchmark: timed out waiting for the gwipc peer")
		}
	}
	return nil
}

// waitUntil dispatches until cond holds (bounded by peerTimeout).
func (g *gwSide) waitUntil(cond func() bool) error {
	g.deadline = time.Now().Add(peerTimeout)
	for !cond() {
		if err := g.dispatch(); err != nil {
			return err
		}
	}
	return nil
}

// publish publishes data on ev, dispatching while the pool is exhausted.
func (g *gwSide) publish(ev uint16, data []byte) error {
	for {
		err := g.ping.Publish(ev, data)
		if !errors.Is(err, engine.ErrNoSlot) {
			return err
		}
		g.noSlot++
		g.deadline = time.Now().Add(peerTimeout)
		if err := g.dispatch(); err != nil {
			return err
		}
	}
}

// stop sends ctlStop, waits for the acknowledgement and the peer's exit, and
// returns the peer's result.
func (g *gwSide) stop() (peerResult, error) {
	if err := g.publish(evCtl, []byte{ctlStop}); err != nil {
		return peerResult{}, err
	}
	if err := g.waitUntil(func() bool { return g.acked }); err != nil {
		return peerResult{}, err
	}
	return g.child.result()
}

func (g *gwSide) close() {
	if g.child != nil {
		g.child.kill()
	}
	if g.node != nil {
		g.node.Close()
	}
	os.RemoveAll(g.dir)
}

// gwipcLatency measures warm+n round trips, timing the last n.
func gwipcLatency(spec peerSpec, n, warm int) (side, error) {
	g, err := startGWIPC(spec)
	if err != nil {
		return side{}, err
	}
	defer g.close()
	data := pattern(spec.Size)
	rtts := make([]time.Duration, n)
	var m0 uint64
	for i := -warm; i < n; i++ {
		if i == -1 || (i == 0 && warm == 0) {
			if err := g.publish(evCtl, []byte{ctlMark}); err != nil {
				return side{}, err
			}
		}
		if i == 0 {
			m0 = mallocs()
		}
		want := g.echoes + 1
		t0 := time.Now()
		g.deadline = t0.Add(peerTimeout)
		if err := g.publish(evData, data); err != nil {
			return side{}, err
		}
		for g.echoes < want {
			if err := g.dispatch(); err != nil {
				return side{}, err
			}
		}
		if i >= 0 {
			rtts[i] = time.Since(t0)
		}
	}
	m1 := mallocs()
	if g.badEcho > 0 {
		return side{}, fmt.Errorf("benchmark: %d gwipc echoes had the wrong length", g.badEcho)
	}
	peer, err := g.stop()
	if err != nil {
		return side{}, err
	}
	return side{rtts: rtts, mallocsA: m1 - m0, msgsA: uint64(n), peer: peer, noSlot: g.noSlot}, nil
}

// gwipcThroughput publishes for warm, marks, publishes for d, stops.
func gwipcThroughput(spec peerSpec, d, warm time.Duration) (side, error) {
	g, err := startGWIPC(spec)
	if err != nil {
		return side{}, err
	}
	defer g.close()
	data := pattern(spec.Size)
	send := func() error { return g.publish(evData, data) }
	if _, err := burst(warm, send); err != nil {
		return side{}, err
	}
	dropped0 := g.dropped()
	if err := g.publish(evCtl, []byte{ctlMark}); err != nil {
		return side{}, err
	}
	g.noSlot = 0
	m0 := mallocs()
	t0 := time.Now()
	sent, err := burst(d, send)
	if err != nil {
		return side{}, err
	}
	m1 := mallocs()
	noSlot := g.noSlot
	peer, err := g.stop()
	if err != nil {
		return side{}, err
	}
	elapsed := time.Since(t0)
	dropped := g.dropped() - dropped0
	return side{elapsed: elapsed, sent: sent, mallocsA: m1 - m0, msgsA: sent, peer: peer, noSlot: noSlot, dropped: dropped}, nil
}

// dropped is the ping offer's count of updates not sent. Status allocates:
// call it outside measurements.
func (g *gwSide) dropped() uint64 {
	for _, o := range g.node.Status().Offers {
		if o.Service == pingSvc.String() {
			return o.Counters.Dropped
		}
	}
	return 0
}

// gwipcPeer is B: require ping, offer pong, echo or count until ctlStop.
func gwipcPeer(spec peerSpec) (peerResult, error) {
	node, err := engine.Dial(spec.Path, &engine.Config{Name: "bench-b"})
	if err != nil {
		return peerResult{}, err
	}
	defer node.Close()
	pongGeo := shm.Geometry{SlotSize: uint32(spec.Size), SlotCount: uint32(spec.Slots)}
	if spec.Scenario != scenarioLatency {
		pongGeo = shm.Geometry{SlotSize: 64, SlotCount: 4} // acknowledgements only
	}
	pong, err := node.Offer(pongSvc, &engine.OfferConfig{Events: 2, Geometry: pongGeo, SubscriberSlots: int(pongGeo.SlotCount)})
	if err != nil {
		return peerResult{}, err
	}
	ping, err := node.Require(pingSvc, nil)
	if err != nil {
		return peerResult{}, err
	}
	var (
		res     peerResult
		m0      uint64
		done    bool
		failure error
	)
	echo := spec.Scenario == scenarioLatency
	onData := func(s engine.Sample) {
		res.Messages++
		res.Bytes += uint64(len(s.Data()))
		if !echo {
			return
		}
		l, err := pong.Loan(evEcho)
		if err != nil {
			// One ping in flight at a time: the pool cannot be exhausted
			// unless slots leak. A cannot go on without its echo.
			res.NoSlot++
			if failure == nil {
				failure = fmt.Errorf("loaning an echo slot: %w", err)
			}
			return
		}
		k := copy(l.Bytes(), s.Data())
		if err := l.Publish(k); err != nil && failure == nil {
			failure = fmt.Errorf("publishing an echo: %w", err)
		}
	}
	onCtl := func(s engine.Sample) {
		if len(s.Data()) != 1 {
			return
		}
		switch s.Data()[0] {
		case ctlMark:
			res = peerResult{}
			m0 = mallocs()
		case ctlStop:
			res.Mallocs = mallocs() - m0
			if err := pong.Publish(evAck, []byte{ctlStop}); err != nil && failure == nil {
				failure = fmt.Errorf("acknowledging stop: %w", err)
			}
			done = true
		}
	}
	if err := ping.Subscribe(evData, engine.Updates, onData); err != nil {
		return peerResult{}, err
	}
	if err := ping.Subscribe(evCtl, engine.Updates, onCtl); err != nil {
		return peerResult{}, err
	}
	idle := time.Now()
	for !done && failure == nil {
		k, _, err := node.Dispatch(dispatchWait)
		if err != nil {
			return res, err
		}
		if k > 0 {
			idle = time.Now()
		} else if time.Since(idle) > 2*peerTimeout {
			return res, errors.New("no message from the measuring side")
		}
	}
	return res, failure
}

// pattern is size bytes of non-zero filler.
func pattern(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}
