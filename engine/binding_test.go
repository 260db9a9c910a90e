package engine

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fields.

func TestFieldInitialValueOnSubscribe(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.prov.do("offer a 2 fields=1")
		tp.prov.do("publish a 1 v1") // no subscriber yet: cached
		tp.prov.do("publish a 1 v2")
		tp.cons.do("require a")
		tp.cons.expect("avail a true")
		tp.cons.do("subscribe a 1 initial")
		tp.cons.expect("recv a 1 2 v2 req")
		tp.prov.never("updreq")
		tp.prov.do("publish a 1 v3")
		tp.cons.expect("recv a 1 3 v3")
		st := tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 1 }, "only the cached value's slot stays in use")
		require.Len(t, st.Offers[0].Fields, 1)
		assert.True(t, st.Offers[0].Fields[0].Cached)
		assert.Equal(t, uint64(3), st.Offers[0].Fields[0].Seq)
	})
}

func TestFieldUpdateRequest(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1 fields=0", 0, false)
		tp.prov.do("publish a 0 current")
		tp.cons.expect("recv a 0 1 current")
		tp.cons.do("request a 0")
		tp.cons.expect("recv a 0 1 current req")
		assert.Zero(t, tp.cons.status().Proxies[0].Counters.Gaps, "a requested update is not a gap")
	})
}

func TestFieldRequestsWithoutAValueAreCoalescedAcrossPeers(t *testing.T) {
	path := socketPath(t)
	prov := startPeer(t, "listen", path, "provider")
	prov.do("offer a 1 fields=0")
	var cons []*peerProc
	for i := range 2 {
		c := startPeer(t, "dial", path, fmt.Sprintf("consumer%d", i))
		c.subscribeTo("a", 0, "initial")
		if i == 0 {
			// Asked again before the other consumer binds, so the provider
			// has the request before both wait (after the publish, the
			// cached value would answer it).
			c.do("request a 0")
		}
		cons = append(cons, c)
	}
	prov.expect("updreq a 0")
	prov.waitStatus(func(s Status) bool { return s.Offers[0].Fields[0].Requesters == 2 }, "both requests wait")
	prov.never("updreq") // one application callback for both peers
	prov.do("publish a 0 first")
	for _, c := range cons {
		c.expect("recv a 0 1 first")
		c.never("recv a 0 1 first req")
	}
	assert.Zero(t, prov.status().Offers[0].Fields[0].Requesters)
}

func TestRequestForANonFieldWaitsForTheNextPublish(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1", 0, false)
		tp.cons.do("request a 0")
		tp.prov.expect("updreq a 0")
		tp.prov.do("publish a 0 answer")
		tp.cons.expect("recv a 0 1 answer")
	})
}

// Find-service.

func TestFindWildcardSeesInstancesComeAndGo(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.cons.do("find f a *")
		tp.prov.do("offer a:north 1")
		tp.cons.expect("found f north provider true")
		tp.prov.do("offer a:south 1")
		tp.cons.expect("found f south provider true")
		tp.prov.do("offer b 1") // another interface: not reported
		tp.prov.do("withdraw a:north")
		tp.cons.expect("found f north provider false")
		st := tp.prov.status()
		require.Len(t, st.Peers, 1)
		assert.Equal(t, []string{"test.a/*@1.0"}, st.Peers[0].Finds, "the provider reports what its peer finds")
		tp.cons.do("find g a south") // a second finder learns of what is known at once
		tp.cons.expect("found g south provider true")
		tp.prov.kill()
		tp.cons.expect("found f south provider false")
		tp.cons.expect("found g south provider false")
		tp.cons.never("found f b")
	})
}

func TestClosedFinderForgetsWhatItWatched(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.prov.do("offer a:north 1")
		tp.cons.do("find f a *")
		tp.cons.expect("found f north provider true")
		tp.cons.do("unfind f")
		tp.prov.do("withdraw a:north") // not told to us any more
		tp.prov.waitStatus(func(s Status) bool { return len(s.Peers[0].Finds) == 0 }, "find removed at the provider")
		tp.cons.do("find g a *")
		tp.cons.do("status") // let a (wrong) report arrive
		tp.cons.never("found g north")
	})
}

func TestFindBeforeConnectGoesInTheHandshake(t *testing.T) {
	path := socketPath(t)
	prov := startPeer(t, "listen", path, "provider")
	prov.do("offer a 1")
	d, err := Dial(path, &Config{Name: "finder"})
	require.NoError(t, err)
	found := make(chan FindEvent, 4)
	_, err = d.Find(testService("a").Interface, "", func(ev FindEvent) { found <- ev })
	require.NoError(t, err)
	running(t, d)
	select {
	case ev := <-found:
		assert.True(t, ev.Available)
		assert.Equal(t, "i", ev.Service.Instance)
		assert.Equal(t, "provider", ev.Peer.Name())
	case <-time.After(waitFor):
		t.Fatal("nothing found")
	}
	st := prov.status()
	assert.Equal(t, []string{"test.a/*@1.0"}, st.Peers[0].Finds)
	assert.Equal(t, []string{"test.a/*@1.0"}, d.Status().Finders)
}

// Access control.

func TestListenerAllowListRejectsOtherUsers(t *testing.T) {
	path := socketPath(t)
	startPeerWith(t, "listen", path, "provider", &peerConfig{AllowUIDs: []uint32{uint32(os.Getuid()) + 4242}}, nil)
	d := dial(t, path, &Config{ReconnectMax: 50 * time.Millisecond})
	eventually(t, func() bool {
		return d.Status().Dialler.LastError != ""
	}, "rejection reported")
	st := d.Status()
	assert.Contains(t, st.Dialler.LastError, "permission denied")
	assert.Contains(t, st.Dialler.LastError, "not allowed")
	assert.False(t, st.Dialler.Connected)
}

func TestAuthorizeCallbackDecides(t *testing.T) {
	path := socketPath(t)
	asked := make(chan PeerCred, 8)
	l := listen(t, path, &Config{Authorize: func(c PeerCred) error {
		select { // the rejected dialler keeps retrying: never block the listener
		case asked <- c:
		default:
		}
		if c.Name == "intruder" {
			return fmt.Errorf("no intruders")
		}
		return nil
	}})
	bad := dial(t, path, &Config{Name: "intruder", ReconnectMax: 50 * time.Millisecond})
	eventually(t, func() bool { return bad.Status().Dialler.LastError != "" }, "rejected")
	assert.Contains(t, bad.Status().Dialler.LastError, "no intruders")
	good := dial(t, path, &Config{Name: "friend"})
	eventually(t, func() bool { return good.Status().Dialler.Connected }, "admitted")
	assert.Equal(t, os.Getpid(), recvWithin(t, asked, "the authorizer's question").PID)
	assert.GreaterOrEqual(t, l.Status().Counters.PolicyRejections, uint64(1))
}

func TestDiallerRefusesAListenerRunningAsAnotherUser(t *testing.T) {
	path := socketPath(t)
	startPeer(t, "listen", path, "imposter")
	d := dial(t, path, &Config{ListenerUIDs: []uint32{uint32(os.Getuid()) + 4242}, ReconnectMax: 50 * time.Millisecond})
	eventually(t, func() bool { return d.Status().Dialler.LastError != "" }, "refused")
	assert.Contains(t, d.Status().Dialler.LastError, "runs as uid")
	assert.False(t, d.Status().Dialler.Connected)
	assert.Empty(t, d.Status().Peers)
}

func TestPolicyRefusesSubscribeAndCallPerService(t *testing.T) {
	me := uint32(os.Getuid())
	policy := &peerConfig{Policy: []Rule{
		{Service: "test.a", Actions: ActionSubscribe | ActionCall, UIDs: []uint32{me}, Deny: true},
	}}
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			path := socketPath(t)
			var prov, cons *peerProc
			if d.providerListens {
				prov = startPeerWith(t, "listen", path, "provider", policy, nil)
				cons = startPeer(t, "dial", path, "consumer")
			} else {
				cons = startPeer(t, "listen", path, "consumer")
				prov = startPeerWith(t, "dial", path, "provider", policy, nil)
			}
			prov.do("offer a 1 methods=1")
			prov.do("offer b 1 methods=1")
			cons.do("require a")
			cons.do("require b")
			cons.expect("avail a true")
			cons.expect("avail b true")
			cons.do("subscribe a 0")
			assert.Contains(t, cons.expect("suback a 0"), "permission denied")
			assert.Contains(t, cons.try("call a 0 x"), "permission denied")
			cons.do("subscribe b 0")
			cons.expect("suback b 0 <nil>")
			assert.Equal(t, "x", cons.do("call b 0 x"), "the rule names service a only")
			assert.Equal(t, uint64(2), prov.status().Counters.PolicyRejections)
		})
	}
}

func TestPolicyRefusesBindingAndIgnoresUnauthorizedOffers(t *testing.T) {
	me := uint32(os.Getuid())
	path := socketPath(t)
	prov := startPeerWith(t, "listen", path, "provider", &peerConfig{Policy: []Rule{{Service: "test.a", Actions: ActionRequire, UIDs: []uint32{me}, Deny: true}}}, nil)
	cons := startPeerWith(t, "dial", path, "consumer", &peerConfig{Policy: []Rule{{Service: "test.b", Actions: ActionOffer, Deny: true}}}, nil)
	prov.do("offer a 1")
	prov.do("offer b 1")
	cons.do("require a")
	cons.do("require b")
	st := cons.waitStatus(func(s Status) bool { return s.Proxies[1].Counters.RefusedOffers == 1 }, "offer of b refused locally")
	prov.waitStatus(func(s Status) bool { return s.Counters.PolicyRejections == 1 }, "binding to a refused by the provider")
	assert.False(t, st.Proxies[0].Available)
	assert.False(t, st.Proxies[1].Available)
	cons.never("avail")
}

// A peer process running as another user is refused by the listener's
// allow-list. Needs root to start a process as another uid.
func TestPeerRunningAsAnotherUIDIsRejectedByPolicy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipped: starting a peer as another user needs root; run the tests as root to cover this")
	}
	path := socketPath(t)
	require.NoError(t, os.Chmod(path[:len(path)-2], 0o755))
	cfg := &peerConfig{AllowUIDs: []uint32{0}, SocketMode: 0o666, Policy: []Rule{{UIDs: []uint32{65534}, Deny: true}}}
	prov := startPeerWith(t, "listen", path, "provider", cfg, nil)
	prov.do("offer a 1")
	nobody := startPeerWith(t, "dial", path, "nobody", nil, &syscall.Credential{Uid: 65534, Gid: 65534})
	st := nobody.waitStatus(func(s Status) bool { return s.Dialler.LastError != "" }, "nobody rejected")
	assert.Contains(t, st.Dialler.LastError, "uid 65534")
	pst := prov.status()
	assert.Empty(t, pst.Peers)
	assert.GreaterOrEqual(t, pst.Counters.PolicyRejections, uint64(1))
	root := startPeer(t, "dial", path, "root")
	root.do("require a")
	root.expect("avail a true")
}

// Limits.

func TestLimitsRefuseWhatExceedsThem(t *testing.T) {
	limits := &peerConfig{Limits: Limits{Services: 1, Subscriptions: 1, PendingCalls: 1, FindElements: 1}}
	path := socketPath(t)
	prov := startPeerWith(t, "listen", path, "provider", limits, nil)
	cons := startPeer(t, "dial", path, "consumer")
	prov.do("offer a 2 methods=3")
	prov.do("offer b 1")
	cons.do("require a")
	cons.expect("avail a true")
	cons.do("require b") // a second service: the request is not recorded
	cons.do("subscribe a 0")
	cons.expect("suback a 0 <nil>")
	cons.do("subscribe a 1")
	assert.Contains(t, cons.expect("suback a 1"), "quota exceeded")
	cons.do("acall a 2 held")
	prov.expect("call a 2 held")
	assert.Contains(t, cons.try("call a 0 second"), "quota exceeded")
	cons.do("find f1 a *")
	cons.do("find f2 b *")
	st := prov.waitStatus(func(s Status) bool { return s.Counters.QuotaHits >= 4 }, "every limit counted")
	assert.Len(t, st.Peers[0].Finds, 1)
	assert.Len(t, st.Peers[0].Requests, 1)
	assert.Equal(t, 1, st.Peers[0].Subscriptions)
	assert.False(t, cons.status().Proxies[1].Available)
	prov.do("answer a")
	assert.Equal(t, "again", cons.do("call a 0 again"), "a freed call slot can be used again")
}

// Slow consumers.

func TestOneSlowSubscriberDoesNotStallTheOthers(t *testing.T) {
	path := socketPath(t)
	prov := startPeer(t, "listen", path, "provider")
	prov.do("offer a 1 4 64 share=2 noinline=1")
	slow := startPeer(t, "dial", path, "slow")
	fast := startPeer(t, "dial", path, "fast")
	for _, c := range []*peerProc{slow, fast} {
		c.do("require a")
		c.expect("avail a true")
	}
	slow.do("subscribe a 0 hold")
	fast.do("subscribe a 0")
	slow.expect("suback a 0 <nil>")
	fast.expect("suback a 0 <nil>")
	holds := func(name string) int {
		if b, ok := bindingOf(prov.status(), name); ok {
			return b.Holds
		}
		return -1
	}
	for i := 1; i <= 10; i++ {
		prov.do("publish a 0 m%d", i)
		fast.expect(fmt.Sprintf("recv a 0 %d m%d", i, i))
		// The fast consumer's release is asynchronous: wait for it, so only
		// the slow one ever reaches its share.
		eventually(t, func() bool { return holds("fast") == 0 }, "fast released m%d", i)
	}
	slow.expect("recv a 0 1 m1")
	slow.expect("recv a 0 2 m2")
	slow.never("recv a 0 3")
	st := prov.status()
	slowB, _ := bindingOf(st, "slow")
	assert.Equal(t, uint64(8), slowB.Drops[0], "dropped for the slow peer only, and counted")
	assert.Equal(t, uint64(8), st.Peers[0].UpdatesDropped)
	slow.do("release a")
	eventually(t, func() bool { return holds("slow") == 0 }, "slow released everything")
	prov.do("publish a 0 m11")
	slow.expect("recv a 0 11 m11")
	assert.Equal(t, uint64(8), slow.status().Proxies[0].Counters.Gaps, "the consumer sees the gap")
}

func TestPublishWaitForASlot(t *testing.T) {
	kept := make(chan Sample, 1)
	o, _, _, _ := boundPair(t, &OfferConfig{Events: 1, Geometry: shm.Geometry{SlotSize: 8, SlotCount: 1}, NoInline: true},
		func(s Sample) { s.Keep(); kept <- s })
	require.NoError(t, o.Publish(0, []byte("1")))
	s := recvWithin(t, kept, "the kept sample")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := o.PublishWait(ctx, 0, []byte("2"))
	assert.ErrorIs(t, err, ErrNoSlot)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	done := make(chan error, 1)
	wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
	defer wcancel()
	go func() { done <- o.PublishWait(wctx, 0, []byte("3")) }()
	s.Release()
	require.NoError(t, recvWithin(t, done, "PublishWait"))
	assert.Equal(t, "3", string(recvWithin(t, kept, "the waited-for update").Data()))
}

func TestOfferConfigValidation(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	for _, cfg := range []*OfferConfig{
		{Events: 1, Fields: []uint16{1}},
		{Events: 1, SubscriberSlots: -1},
		{Events: 1, Geometry: shm.Geometry{SlotSize: 0, SlotCount: 1}},
	} {
		_, err := n.Offer(sensor, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
	}
	_, err := n.Find(Interface{}, "", func(FindEvent) {})
	assert.ErrorIs(t, err, ErrInvalidService)
	_, err = n.Find(sensor.Interface, "", nil)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}
