package engine

import (
	"context"
	"encoding/json"
	"errors"
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

// HandleCommand validates what it is given and returns errors (it used to
// panic); a built-in may be replaced once, and application commands run
// inside Dispatch, on the dispatching goroutine.
func TestHandleCommandRefusesBadNamesAndDuplicates(t *testing.T) {
	path := socketPath(t)
	statusPath := filepath.Join(filepath.Dir(path), "status")
	n := listen(t, path, &Config{StatusPath: statusPath})
	echo := func(ctx context.Context, req []byte, w io.Writer) error {
		_, err := w.Write(req)
		return err
	}
	require.NoError(t, n.HandleCommand("echo", echo))
	assert.ErrorIs(t, n.HandleCommand("echo", echo), ErrDuplicate)
	for _, bad := range []string{"", "two words", "tab\there", "nul\x00", strings.Repeat("x", 65)} {
		assert.ErrorIs(t, n.HandleCommand(bad, echo), ErrInvalidConfig, "%q", bad)
	}
	assert.ErrorIs(t, n.HandleCommand("nil", nil), ErrInvalidConfig)

	inDispatch := make(chan bool, 1)
	require.NoError(t, n.HandleCommand("ping", func(ctx context.Context, req []byte, w io.Writer) error {
		inDispatch <- n.appTid.Load() != 0
		_, err := io.WriteString(w, "my pong")
		return err
	}), "a built-in may be replaced")
	assert.ErrorIs(t, n.HandleCommand("ping", echo), ErrDuplicate, "but only once")
	resp, err := simpleipc.Send(context.Background(), statusPath, []byte("ping"), nil)
	require.NoError(t, err)
	assert.Equal(t, "my pong", string(resp))
	assert.True(t, recvWithin(t, inDispatch, "command"), "the command ran inside Dispatch")
	resp, err = simpleipc.Send(context.Background(), statusPath, []byte("echo hi"), nil)
	require.NoError(t, err)
	assert.Equal(t, "echo hi", string(resp))
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

// A failing application command reaches the client as a reply cut short,
// never as an empty or partial answer that looks complete.
func TestFailingCommandIsNotAnAnswer(t *testing.T) {
	path := socketPath(t)
	statusPath := filepath.Join(filepath.Dir(path), "status")
	n := listen(t, path, &Config{StatusPath: statusPath})
	require.NoError(t, n.HandleCommand("fail", func(ctx context.Context, req []byte, w io.Writer) error {
		io.WriteString(w, "half an answer")
		return errors.New("it went wrong")
	}))
	_, err := simpleipc.Send(context.Background(), statusPath, []byte("fail"), nil)
	assert.ErrorIs(t, err, simpleipc.ErrTruncated)
}
