package simpleipc

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func reply(s string) HandlerFunc {
	return func(_ context.Context, _ []byte, w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

// route returns what r replies to req.
func route(t *testing.T, r *Router, req string) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.ServeIPC(context.Background(), []byte(req), &b))
	return b.String()
}

func TestRouterDispatch(t *testing.T) {
	r := NewRouter()
	require.NoError(t, r.Handle("ping", reply("pong")))
	require.NoError(t, r.HandleFunc("echo", func(_ context.Context, req []byte, w io.Writer) error {
		_, err := w.Write(req)
		return err
	}))
	assert.Equal(t, "pong", route(t, r, "ping"))
	assert.Equal(t, "echo a b", route(t, r, "echo a b"), "the whole request, name included")
	assert.Equal(t, "unhandled command: ping\n", route(t, r, "ping\n"), "matched exactly")
	assert.Equal(t, "unhandled command: ab", route(t, r, "ab\x00cd"), "up to the first NUL")
	assert.Equal(t, []string{"echo", "ping"}, r.Commands())

	r.SetDefault(reply("default"))
	assert.Equal(t, "default", route(t, r, "nope"))
	r.SetDefault(nil)
	assert.Equal(t, "unhandled command: nope", route(t, r, "nope"))
}

func TestRouterReplace(t *testing.T) {
	r := NewRouter()
	require.NoError(t, r.Replace("ping", reply("pong")), "registers a new command")
	assert.Equal(t, "pong", route(t, r, "ping"))
	require.NoError(t, r.Replace("ping", reply("PONG")))
	assert.Equal(t, "PONG", route(t, r, "ping"))
	assert.Equal(t, []string{"ping"}, r.Commands())
	require.ErrorIs(t, r.Handle("ping", reply("again")), ErrCommandExists)
	assert.Equal(t, "PONG", route(t, r, "ping"))
}

func TestRouterRegistrationErrors(t *testing.T) {
	r := NewRouter()
	require.NoError(t, r.Handle("ping", reply("pong")))
	var nilFunc func(context.Context, []byte, io.Writer) error
	tests := []struct {
		name     string
		register func() error
		want     error
	}{
		{"empty name", func() error { return r.Handle("", reply("x")) }, ErrInvalidCommand},
		{"name with a space", func() error { return r.Handle("a b", reply("x")) }, ErrInvalidCommand},
		{"name with a NUL", func() error { return r.Handle("a\x00b", reply("x")) }, ErrInvalidCommand},
		{"nil handler", func() error { return r.Handle("x", nil) }, ErrInvalidCommand},
		{"nil HandlerFunc", func() error { return r.Handle("x", HandlerFunc(nil)) }, ErrInvalidCommand},
		{"HandleFunc: bad name", func() error { return r.HandleFunc("a b", reply("x")) }, ErrInvalidCommand},
		{"HandleFunc: nil func", func() error { return r.HandleFunc("x", nilFunc) }, ErrInvalidCommand},
		{"duplicate", func() error { return r.Handle("ping", reply("other")) }, ErrCommandExists},
		{"HandleFunc: duplicate", func() error { return r.HandleFunc("ping", reply("other")) }, ErrCommandExists},
		{"Replace: empty name", func() error { return r.Replace("", reply("x")) }, ErrInvalidCommand},
		{"Replace: name with a space", func() error { return r.Replace("ping ", reply("x")) }, ErrInvalidCommand},
		{"Replace: name with a NUL", func() error { return r.Replace("ping\x00", reply("x")) }, ErrInvalidCommand},
		{"Replace: nil handler", func() error { return r.Replace("ping", nil) }, ErrInvalidCommand},
		{"Replace: nil HandlerFunc", func() error { return r.Replace("ping", HandlerFunc(nil)) }, ErrInvalidCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.register()
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), "registering command")
		})
	}
	// Nothing was registered or replaced.
	assert.Equal(t, []string{"ping"}, r.Commands())
	assert.Equal(t, "pong", route(t, r, "ping"))
}
