package engine

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gwipc/gwipc/simpleipc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusEndpointAnswersOneShotQueries(t *testing.T) {
	path := socketPath(t)
	statusPath := filepath.Join(filepath.Dir(path), "status")
	l := listen(t, path, &Config{Name: "provider", StatusPath: statusPath})
	_, err := l.Offer(sensor, &OfferConfig{Events: 1})
	require.NoError(t, err)
	require.NoError(t, l.HandleCommand("echo", func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := w.Write(req)
		return err
	}))
	ask := func(req string) string {
		t.Helper()
		resp, err := simpleipc.Send(context.Background(), statusPath, []byte(req), nil)
		require.NoError(t, err)
		return string(resp)
	}
	assert.Equal(t, "pong", ask("ping"))
	assert.Equal(t, VersionString(), ask("version"))
	assert.Equal(t, "echo hello", ask("echo hello"))
	assert.Equal(t, "unhandled command: nope", ask("nope"))
	assert.ElementsMatch(t, []string{"echo", "help", "ping", "status", "version"}, strings.Fields(ask("help")))
	var st Status
	require.NoError(t, json.Unmarshal([]byte(ask("status")), &st))
	assert.Equal(t, "provider", st.Name)
	require.Len(t, st.Offers, 1)
	assert.Equal(t, sensor.String(), st.Offers[0].Service)

	require.NoError(t, l.Close())
	_, err = os.Stat(statusPath)
	assert.True(t, os.IsNotExist(err), "the endpoint's socket goes with the node")
}

func TestHandleCommandRefusesBadNamesAndDuplicates(t *testing.T) {
	path := socketPath(t)
	statusPath := filepath.Join(filepath.Dir(path), "status")
	n := listen(t, path, &Config{StatusPath: statusPath})
	echo := func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := w.Write(req)
		return err
	}
	require.NoError(t, n.HandleCommand("echo", echo))
	assert.ErrorIs(t, n.HandleCommand("echo", echo), simpleipc.ErrCommandExists)
	assert.ErrorIs(t, n.HandleCommand("ping", echo), simpleipc.ErrCommandExists, "built-in")
	assert.ErrorIs(t, n.HandleCommand("two words", echo), simpleipc.ErrInvalidCommand)
	assert.ErrorIs(t, n.HandleCommand("nil", nil), simpleipc.ErrInvalidCommand)

	resp, err := simpleipc.Send(context.Background(), statusPath, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(resp), "the built-in is kept")
}

func TestHandleCommandNeedsAnEndpoint(t *testing.T) {
	n := listen(t, socketPath(t), nil)
	assert.ErrorIs(t, n.HandleCommand("x", func(context.Context, []byte, io.Writer) error { return nil }), ErrInvalidConfig)
}

func TestStatusEndpointInUseFailsTheNode(t *testing.T) {
	path := socketPath(t)
	statusPath := filepath.Join(filepath.Dir(path), "status")
	listen(t, path, &Config{StatusPath: statusPath})
	_, err := Dial(path, &Config{StatusPath: statusPath})
	assert.ErrorIs(t, err, simpleipc.ErrInUse)
}
