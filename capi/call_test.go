package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gwipc/gwipc/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallKeyOf checks that on_cancel can name the call on_call got: the
// engine hands OnCancel a Call of its own, and callKeyOf must give it the
// key of the one OnCall received, and other calls other keys.
func TestCallKeyOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.sock")
	svc := engine.ServiceID{Interface: engine.Interface{ID: "capi.key", Major: 1}, Instance: "i"}
	calls, cancels := make(chan engine.Call, 2), make(chan engine.Call, 1)

	ln, err := engine.Listen(path, nil)
	require.NoError(t, err)
	defer ln.Close()
	_, err = ln.Offer(svc, &engine.OfferConfig{Methods: 1,
		OnCall:   func(c engine.Call) { calls <- c },
		OnCancel: func(c engine.Call) { cancels <- c }})
	require.NoError(t, err)
	dn, err := engine.Dial(path, nil)
	require.NoError(t, err)
	defer dn.Close()
	px, err := dn.Require(svc, nil)
	require.NoError(t, err)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go ln.Run(ctx)
	go dn.Run(ctx)
	require.Eventually(t, px.Available, 5*time.Second, time.Millisecond)

	done := func(engine.Reply, error) {}
	first, err := px.CallAsync(0, []byte("a"), engine.CallOptions{}, done)
	require.NoError(t, err)
	_, err = px.CallAsync(0, []byte("b"), engine.CallOptions{}, done)
	require.NoError(t, err)
	a, b := <-calls, <-calls
	if string(a.Data()) != "a" {
		a, b = b, a
	}
	require.True(t, first.Cancel())
	c := <-cancels

	assert.NotZero(t, callKeyOf(a).binding)
	assert.Equal(t, callKeyOf(a), callKeyOf(c), "the cancelled call has the key of the call it cancels")
	assert.NotEqual(t, callKeyOf(a), callKeyOf(b))
	a.Reply(nil)
	b.Reply(nil)
}
