package engine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInProcessEventFlow(t *testing.T) {
	path := socketPath(t)
	l := listen(t, path, &Config{Name: "provider"})
	d := dial(t, path, &Config{Name: "consumer"})
	offer, err := l.Offer(sensor, &OfferConfig{Events: 2})
	require.NoError(t, err)
	px, err := d.Require(sensor, nil)
	require.NoError(t, err)
	got := make(chan string, 10)
	require.NoError(t, px.Subscribe(1, Updates, func(s Sample) { got <- string(s.Data()) }))
	eventually(t, func() bool { st, _ := px.Subscription(1); return st == SubscriptionActive }, "subscription active")
	require.NoError(t, offer.Publish(1, []byte("hello")))
	require.Equal(t, "hello", recvWithin(t, got, "the update"))
	eventually(t, func() bool { return slotsInUse(l.Status().Offers[0]) == 0 }, "slot released")
}
