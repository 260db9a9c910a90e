package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A running node (provider and consumer, bound and subscribed) answers the
// CLI through its status endpoint.
func TestStatusAndQueryAgainstARunningNode(t *testing.T) {
	dir := filepath.Dir(sockPath(t))
	ctrl, endpoint := filepath.Join(dir, "ctrl"), filepath.Join(dir, "status")
	prov, err := engine.Listen(ctrl, &engine.Config{Name: "sensord", StatusPath: endpoint})
	require.NoError(t, err)
	t.Cleanup(func() { prov.Close() })
	cons, err := engine.Dial(ctrl, &engine.Config{Name: "display"})
	require.NoError(t, err)
	t.Cleanup(func() { cons.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go prov.Run(ctx)
	go cons.Run(ctx)
	svc := engine.ServiceID{Interface: engine.Interface{ID: "demo.sensor", Major: 1}, Instance: "front"}
	offer, err := prov.Offer(svc, &engine.OfferConfig{Events: 1})
	require.NoError(t, err)
	proxy, err := cons.Require(svc, nil)
	require.NoError(t, err)
	got := make(chan struct{}, 1)
	require.NoError(t, proxy.Subscribe(0, engine.Updates, func(engine.Sample) { got <- struct{}{} }))
	require.Eventually(t, func() bool {
		st, _ := proxy.Subscription(0)
		return st == engine.SubscriptionActive
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, offer.Publish(0, []byte("21.5")))
	<-got

	r := gwipc(t, "", "status", "--socket", endpoint)
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{`node "sensord": listener at ` + ctrl, "PEERS", "display", "OFFERED", "demo.sensor/front@1.0", "REQUIRED", "none"} {
		assert.Contains(t, r.stdout, want)
	}

	r = gwipc(t, "", "status", "--socket", endpoint, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var st engine.Status
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Len(t, st.Offers, 1)
	assert.Equal(t, uint64(1), st.Offers[0].Counters.Sent)
	require.Len(t, st.Peers, 1)
	assert.Equal(t, "display", st.Peers[0].Name)

	r = gwipc(t, "", "query", "--socket", endpoint, "ping")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, "pong", r.stdout, "query writes the response unchanged")
	r = gwipc(t, "", "query", "--socket", endpoint, "version")
	assert.Equal(t, engine.VersionString(), r.stdout)
}

func TestStatusFailures(t *testing.T) {
	r := gwipc(t, "", "status", "--socket", filepath.Join(filepath.Dir(sockPath(t)), "nobody"))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "gwipc status:")
	r = gwipc(t, "", "status")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--socket is required")

	// A Simple-IPC server that is not a gwipc node.
	path := sockPath(t)
	_, done := serve(t, path)
	r = gwipc(t, "", "status", "--socket", path)
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.Contains(r.stderr, "not a gwipc status"), r.stderr)
	gwipc(t, "", "query", "--socket", path, "quit")
	waitExit(t, done)
}
