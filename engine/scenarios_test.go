package engine

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These scenarios port the reference binding's acceptance tests (★ in
// shared/notes/score_gateway_reference.md §5) to processes: every peer is a
// separate process, and each scenario runs in both directions (the provider
// on the listener and on the dialler).

type direction struct {
	name            string
	providerListens bool
}

var directions = []direction{{"provider-listens", true}, {"provider-dials", false}}

// topology is one provider and one consumer process connected to each other.
type topology struct {
	path       string
	dir        direction
	prov, cons *peerProc
}

func connectPair(t *testing.T, d direction) *topology {
	tp := &topology{path: socketPath(t), dir: d}
	if d.providerListens {
		tp.prov = startPeer(t, "listen", tp.path, "provider")
		tp.cons = startPeer(t, "dial", tp.path, "consumer")
	} else {
		tp.cons = startPeer(t, "listen", tp.path, "consumer")
		tp.prov = startPeer(t, "dial", tp.path, "provider")
	}
	tp.prov.expect("peer+")
	tp.cons.expect("peer+")
	return tp
}

// restart kills one side (SIGKILL) and starts it again in the same role.
func (tp *topology) restart(t *testing.T, provider bool) *peerProc {
	old, name := tp.cons, "consumer"
	if provider {
		old, name = tp.prov, "provider"
	}
	old.kill()
	mode := "dial"
	if provider == tp.dir.providerListens {
		mode = "listen"
	}
	p := startPeer(t, mode, tp.path, name)
	if provider {
		tp.prov = p
	} else {
		tp.cons = p
	}
	return p
}

func bothWays(t *testing.T, f func(t *testing.T, tp *topology)) {
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, connectPair(t, d))
		})
	}
}

// subscribed sets up: consumer requires "a" and subscribes to ev; provider
// offers "a" with events (and optional pool geometry); waits until the
// provider has the subscriber and the consumer has the ack.
func subscribed(t *testing.T, tp *topology, offerArgs string, ev int, hold bool) {
	tp.cons.do("require a")
	tp.prov.do("offer a %s", offerArgs)
	tp.cons.expect("avail a true")
	if hold {
		tp.cons.do("subscribe a %d hold", ev)
	} else {
		tp.cons.do("subscribe a %d", ev)
	}
	tp.prov.expect(fmt.Sprintf("subscribed a %d true", ev))
	tp.cons.expect(fmt.Sprintf("suback a %d <nil>", ev))
}

func TestPeersConnectAndSeeEachOthersCredentials(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		for _, pair := range [][2]*peerProc{{tp.prov, tp.cons}, {tp.cons, tp.prov}} {
			st := pair[0].status()
			require.Len(t, st.Peers, 1)
			got := st.Peers[0]
			assert.Equal(t, pair[1].pid, got.PID)
			assert.Equal(t, pair[1].name, got.Name)
			assert.Equal(t, uint32(os.Getuid()), got.UID)
			assert.Equal(t, uint32(os.Getgid()), got.GID)
			assert.Equal(t, "ready", got.State)
		}
	})
}

func TestServiceAvailableWhenOfferedAndUnavailableWhenWithdrawn(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.cons.do("require a")
		tp.cons.do("status") // the request is on its way before the offer exists
		tp.prov.do("offer a 1")
		tp.cons.expect("avail a true")
		tp.prov.do("withdraw a")
		tp.cons.expect("avail a false")
	})
}

func TestOfferMadeBeforeRequireIsFound(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.prov.do("offer a 1")
		tp.cons.do("require a")
		tp.cons.expect("avail a true")
		st := tp.cons.status()
		require.Len(t, st.Proxies, 1)
		assert.True(t, st.Proxies[0].Available)
	})
}

func TestEventUpdateDeliversBytesAndShrunkPayloads(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "2", 1, false)
		tp.prov.do("publish a 1 hello-world")
		tp.cons.expect("recv a 1 1 hello-world")
		tp.prov.do("publish a 1 hi")
		tp.cons.expect("recv a 1 2 hi")
		tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "slots released")
	})
}

func TestUnsubscribeReachesTheProvider(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1", 0, false)
		tp.cons.do("unsubscribe a 0")
		tp.prov.expect("subscribed a 0 false")
		tp.prov.do("publish a 0 after")
		st := tp.prov.status()
		assert.Zero(t, st.Offers[0].Counters.Sent, "no update may go to an unsubscribed peer")
	})
}

func TestUpdatesGoOnlyToSubscribedEvents(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "4", 0, false)
		tp.cons.do("subscribe a 2")
		tp.prov.expect("subscribed a 2 true")
		tp.cons.expect("suback a 2")
		for ev := range 4 {
			tp.prov.do("publish a %d marker%d", ev, ev)
		}
		tp.cons.expect("recv a 0 1 marker0")
		tp.cons.expect("recv a 2 1 marker2")
		tp.cons.never("recv a 1")
		tp.cons.never("recv a 3")
		assert.Equal(t, uint64(2), tp.prov.status().Offers[0].Counters.Sent)
	})
}

func TestSubscriptionToUnknownEventIsRefused(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		tp.cons.do("require a")
		tp.prov.do("offer a 2")
		tp.cons.expect("avail a true")
		reply := tp.cons.try("subscribe a 5")
		assert.Contains(t, reply, "unknown event", "a bound proxy knows the event count")
		// A subscription made while unbound is kept, then refused by the
		// provider once the service is bound again.
		tp.prov.do("withdraw a")
		tp.cons.expect("avail a false")
		tp.cons.do("subscribe a 7")
		tp.prov.do("offer a 2")
		tp.cons.expect("avail a true")
		line := tp.cons.expect("suback a 7")
		assert.Contains(t, line, "refused: unknown event")
	})
}

func TestSlotExhaustionAndRecovery(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1 2 64 share=2 noinline=1", 0, true)
		tp.prov.do("publish a 0 one")
		tp.prov.do("publish a 0 two")
		tp.cons.expect("recv a 0 1 one")
		tp.cons.expect("recv a 0 2 two")
		assert.Contains(t, tp.prov.try("publish a 0 three"), "no free slot")
		assert.Equal(t, uint64(1), tp.prov.status().Offers[0].Counters.NoSlot)
		assert.Equal(t, "1", tp.cons.do("release a 1"))
		eventually(t, func() bool { return strings.HasPrefix(tp.prov.try("publish a 0 three"), "ok") }, "a slot comes back after release")
		tp.cons.expect("recv a 0 3 three")
	})
}

func TestFanOutToManyConsumersSharesOneSlot(t *testing.T) {
	path := socketPath(t)
	prov := startPeer(t, "listen", path, "provider")
	prov.do("offer a 1 1 64 noinline=1")
	var cons []*peerProc
	for i := range 3 {
		c := startPeer(t, "dial", path, fmt.Sprintf("consumer%d", i))
		c.subscribeTo("a", 0, "hold")
		cons = append(cons, c)
	}
	prov.do("publish a 0 shared")
	for _, c := range cons {
		c.expect("recv a 0 1 shared")
	}
	st := prov.status()
	require.Equal(t, 1, slotsInUse(st.Offers[0]), "one slot for three consumers")
	assert.Equal(t, uint64(3), st.Offers[0].Counters.Sent)
	assert.Contains(t, prov.try("publish a 0 more"), "no free slot")
	cons[0].do("release a")
	cons[1].do("release a")
	st = prov.waitStatus(func(s Status) bool {
		h := 0
		for _, b := range s.Offers[0].Bindings {
			h += b.Holds
		}
		return h == 1
	}, "two of three released")
	assert.Equal(t, 1, slotsInUse(st.Offers[0]), "the slot stays until the last consumer releases it")
	assert.Contains(t, prov.try("publish a 0 more"), "no free slot")
	cons[2].do("release a")
	prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "slot free after the last release")
	prov.do("publish a 0 more")
	for _, c := range cons {
		c.expect("recv a 0 2 more")
	}
}

func TestWithdrawAndReofferRestoresSubscriptions(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1", 0, false)
		tp.prov.do("withdraw a")
		tp.cons.expect("avail a false")
		tp.prov.expect("subscribed a 0 false")
		tp.prov.do("offer a 1")
		tp.cons.expect("avail a true")
		tp.prov.expect("subscribed a 0 true")
		tp.prov.do("publish a 0 again")
		tp.cons.expect("recv a 0 1 again")
	})
}

func TestListenerRestartKeepsOffersAndRequests(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1", 0, false)
		listenerIsProvider := tp.dir.providerListens
		dialler := tp.prov
		if listenerIsProvider {
			dialler = tp.cons
		}
		l := tp.restart(t, listenerIsProvider)
		dialler.expect("peer-")
		if listenerIsProvider {
			tp.cons.expect("avail a false")
			l.do("offer a 1")
		} else {
			l.do("require a")
			l.do("subscribe a 0")
		}
		dialler.expect("peer+")
		tp.cons.expect("avail a true")
		tp.prov.expect("subscribed a 0 true")
		tp.prov.do("publish a 0 after-restart")
		tp.cons.expect("recv a 0 1 after-restart")
	})
}

func TestDiallerRestartIsReboundAndReleasesSlots(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1 4 64", 0, true)
		tp.prov.do("publish a 0 held")
		tp.cons.expect("recv a 0 1 held")
		diallerIsProvider := !tp.dir.providerListens
		listener := tp.prov
		if diallerIsProvider {
			listener = tp.cons
		}
		d := tp.restart(t, diallerIsProvider)
		listener.expect("peer-")
		if diallerIsProvider {
			tp.cons.expect("avail a false")
			d.do("offer a 1 4 64")
		} else {
			tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "the dead consumer's slot is back")
			d.do("require a")
			d.do("subscribe a 0")
		}
		listener.expect("peer+")
		tp.cons.expect("avail a true")
		tp.prov.expect("subscribed a 0 true")
		tp.prov.do("publish a 0 after-restart")
		tp.cons.expect("recv a 0")
	})
}

func TestKilledSubscriberGivesBackEverySlot(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1 3 64 share=3 noinline=1", 0, true)
		for i := range 3 {
			tp.prov.do("publish a 0 m%d", i)
		}
		tp.cons.expect("recv a 0 3 m2")
		assert.Contains(t, tp.prov.try("publish a 0 full"), "no free slot")
		tp.cons.kill()
		tp.prov.expect("peer-")
		tp.prov.expect("subscribed a 0 false")
		st := tp.prov.waitStatus(func(s Status) bool { return slotsInUse(s.Offers[0]) == 0 }, "all slots back")
		assert.Empty(t, st.Offers[0].Bindings)
		tp.prov.do("publish a 0 free-again")
	})
}

func TestKilledProviderMakesServiceUnavailableUntilRestarted(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		subscribed(t, tp, "1", 0, false)
		tp.prov.do("publish a 0 before")
		tp.cons.expect("recv a 0 1 before")
		p := tp.restart(t, true)
		tp.cons.expect("avail a false")
		p.do("offer a 1")
		tp.cons.expect("avail a true")
		p.expect("subscribed a 0 true")
		p.do("publish a 0 after")
		tp.cons.expect("recv a 0 1 after")
	})
}

func TestStandbyProviderTakesOverWhenTheBoundOneDies(t *testing.T) {
	path := socketPath(t)
	cons := startPeer(t, "listen", path, "consumer")
	cons.do("require a")
	cons.do("subscribe a 0")
	p1 := startPeer(t, "dial", path, "p1")
	p1.do("offer a 1")
	cons.expect("avail a true")
	p1.expect("subscribed a 0 true")
	p2 := startPeer(t, "dial", path, "p2")
	p2.do("offer a 1")
	st := cons.waitStatus(func(s Status) bool { return len(s.Proxies[0].Candidates) == 2 }, "two candidates")
	require.Equal(t, st.Proxies[0].Candidates[0], st.Proxies[0].Provider, "the first offer is bound")
	p2.never("subscribed")
	p1.kill()
	cons.expect("avail a false")
	cons.expect("avail a true")
	p2.expect("subscribed a 0 true")
	p2.do("publish a 0 from-standby")
	cons.expect("recv a 0 1 from-standby")
}

func TestServicesFlowBothWaysBetweenTwoPeers(t *testing.T) {
	bothWays(t, func(t *testing.T, tp *topology) {
		x, y := tp.prov, tp.cons
		x.do("offer a 1")
		y.do("offer b 1")
		x.do("require b")
		y.do("require a")
		x.expect("avail b true")
		y.expect("avail a true")
		x.do("subscribe b 0")
		y.do("subscribe a 0")
		y.expect("subscribed b 0 true")
		x.expect("subscribed a 0 true")
		x.do("publish a 0 from-x")
		y.do("publish b 0 from-y")
		y.expect("recv a 0 1 from-x")
		x.expect("recv b 0 1 from-y")
	})
}
