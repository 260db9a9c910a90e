package simpleipc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run against Git's own Simple-IPC implementation, the
// "test-tool simple-ipc" helper from Git's source tree. Build it with
// .ci/build-git-test-tool and point GWIPC_GIT_TEST_TOOL at it.

func gitTestTool(t *testing.T) string {
	t.Helper()
	tool := os.Getenv("GWIPC_GIT_TEST_TOOL")
	if tool == "" {
		t.Skip("GWIPC_GIT_TEST_TOOL not set: build Git's test-tool with .ci/build-git-test-tool to run the Git interop tests")
	}
	if out, err := exec.Command(tool, "simple-ipc", "SUPPORTS_SIMPLE_IPC").CombinedOutput(); err != nil {
		t.Fatalf("%s does not support simple-ipc: %v\n%s", tool, err, out)
	}
	return tool
}

// runGit runs test-tool and returns its stdout and exit code.
func runGit(t *testing.T, tool string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, append([]string{"simple-ipc"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running test-tool: %v", err)
		code = ee.ExitCode()
	}
	if code != 0 {
		t.Logf("test-tool simple-ipc %s: exit %d, stderr: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String(), code
}

func bigResponse() []byte {
	var b bytes.Buffer
	for row := range 10000 {
		fmt.Fprintf(&b, "big: %075d\n", row)
	}
	return b.Bytes()
}

// gitLikeHandler answers like Git's test-tool daemon (ping, big, chunk,
// sendbytes, quit).
var gitLikeHandler = HandlerFunc(func(ctx context.Context, req []byte, w io.Writer) error {
	switch s := string(req); {
	case s == "quit":
		return ErrQuit
	case s == "ping":
		_, err := io.WriteString(w, "pong")
		return err
	case s == "big":
		_, err := w.Write(bigResponse())
		return err
	case s == "chunk":
		for row := range 10000 {
			if _, err := fmt.Fprintf(w, "big: %075d\n", row); err != nil {
				return err
			}
		}
		return nil
	case len(s) >= 10 && strings.HasPrefix(s, "sendbytes "):
		ballast := s[len("sendbytes "):]
		if i := strings.IndexByte(ballast, 0); i >= 0 {
			ballast = ballast[:i]
		}
		if ballast == "" {
			return Unhandled(w, req)
		}
		errs := 0
		for i := 1; i < len(ballast); i++ {
			if ballast[i] != ballast[0] {
				errs++
			}
		}
		if errs > 0 {
			_, err := fmt.Fprintf(w, "errs:%d\n", errs)
			return err
		}
		_, err := fmt.Fprintf(w, "rcvd:%c%08d\n", ballast[0], len(ballast))
		return err
	}
	return Unhandled(w, req)
})

func TestGitClientAgainstGwipcServer(t *testing.T) {
	tool := gitTestTool(t)
	checkNoLeaks(t)
	path := sockPath(t)
	s, err := Start(path, gitLikeHandler, &Config{Threads: 8})
	require.NoError(t, err)
	defer s.Close()
	name := "--name=" + path

	_, code := runGit(t, tool, "is-active", name)
	assert.Equal(t, 0, code, "is-active")

	out, code := runGit(t, tool, "send", name, "--token=ping")
	assert.Equal(t, 0, code)
	assert.Equal(t, "pong\n", out)

	out, code = runGit(t, tool, "send", name, "--token=nope")
	assert.Equal(t, 0, code)
	assert.Equal(t, "unhandled command: nope\n", out)

	for _, tok := range []string{"big", "chunk"} {
		out, code = runGit(t, tool, "send", name, "--token="+tok)
		assert.Equal(t, 0, code)
		assert.True(t, out == string(bigResponse())+"\n", "%s: %d bytes", tok, len(out))
	}

	out, code = runGit(t, tool, "sendbytes", name, "--bytecount=100000", "--byte=A")
	assert.Equal(t, 0, code)
	assert.Equal(t, "sent:A00100000 rcvd:A00100000\n", out)

	// t0052's "multiple" check: 7 threads x 13 requests on fresh
	// connections.
	out, code = runGit(t, tool, "multiple", name, "--threads=7", "--bytecount=19", "--batchsize=13")
	assert.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	assert.Len(t, lines, 92)
	assert.Contains(t, out, "client (good 91) (join 0), (errors 0)")
	for size := 19; size <= 31; size++ {
		assert.Contains(t, lines, fmt.Sprintf("sent:A%08d rcvd:A%08d", size, size))
	}

	// A Git daemon refuses to start over our live socket.
	_, code = runGit(t, tool, "run-daemon", name)
	assert.Equal(t, 1, code)

	// stop-daemon: probe, send quit (needs the flush), poll until gone.
	_, code = runGit(t, tool, "stop-daemon", name, "--max-wait=10")
	assert.Equal(t, 0, code)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop on Git's quit")
	}
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, code = runGit(t, tool, "is-active", name)
	assert.Equal(t, 1, code)
	_, code = runGit(t, tool, "send", name, "--token=ping")
	assert.Equal(t, 1, code)
	assert.Equal(t, uint64(0), s.Stats().Errors)
}

func TestGwipcClientAgainstGitServer(t *testing.T) {
	tool := gitTestTool(t)
	path := sockPath(t)
	daemon := exec.Command(tool, "simple-ipc", "run-daemon", "--name="+path, "--threads=4")
	var stderr bytes.Buffer
	daemon.Stderr = &stderr
	require.NoError(t, daemon.Start())
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	t.Cleanup(func() {
		daemon.Process.Kill()
		<-exited
	})
	waitFor(t, 10*time.Second, "Git daemon listening", func() bool { return GetActiveState(path) == Listening })

	send := func(req string) string {
		t.Helper()
		resp, err := Send(ctxT(t), path, []byte(req), &ClientOptions{WaitIfBusy: true})
		require.NoError(t, err, "request %.20q", req)
		return string(resp)
	}
	assert.Equal(t, "pong", send("ping"))
	assert.Equal(t, "unhandled command: ", send(""))
	assert.Equal(t, "unhandled command: ping\n", send("ping\n"))
	assert.True(t, send("big") == string(bigResponse()))
	assert.True(t, send("chunk") == string(bigResponse()))
	assert.Equal(t, "rcvd:A00100000\n", send("sendbytes "+strings.Repeat("A", 100000)))
	assert.Equal(t, "errs:1\n", send("sendbytes AAB"))
	// A multi-packet request (3 MB).
	assert.Equal(t, "rcvd:z03000000\n", send("sendbytes "+strings.Repeat("z", 3000000)))

	// Streaming client.
	var out bytes.Buffer
	_, err := SendStream(ctxT(t), path, strings.NewReader("chunk"), &out, nil)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(bigResponse(), out.Bytes()))

	// Git's reader, byte for byte as our codec: upper-case hex accepted,
	// 0004 ends a request, and the reply framing is what we write.
	assert.Equal(t, "0008pong0000", rawExchange(t, path, "0008ping0000"))
	assert.Equal(t, "001dunhandled command: abcdef0000", rawExchange(t, path, "000Aabcdef0000"))
	assert.Equal(t, "0017unhandled command: 0000", rawExchange(t, path, "00040008ping0000"))
	assert.Equal(t, "", rawExchange(t, path, "0003"))
	assert.Equal(t, "", rawExchange(t, path, "fff1"))

	// Start-up rules against a live Git server.
	_, err = Start(path, pingHandler, nil)
	require.ErrorIs(t, err, ErrInUse)
	assert.Equal(t, Listening, GetActiveState(path))

	// quit: an empty (flush-only) response, then the daemon exits 0 and
	// removes its socket.
	resp, err := Send(ctxT(t), path, []byte("quit"), nil)
	require.NoError(t, err)
	assert.NotNil(t, resp)
	assert.Empty(t, resp)
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err, "daemon exit; stderr: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("Git daemon did not exit after quit")
	}
	assert.Equal(t, NotListening, GetActiveState(path))
	_, err = Send(ctxT(t), path, []byte("ping"), nil)
	var ce *ConnectError
	require.ErrorAs(t, err, &ce)
}

func TestGitServerStaleSocketTakenOver(t *testing.T) {
	tool := gitTestTool(t)
	path := sockPath(t)
	// A Git daemon killed with SIGKILL leaves a stale socket...
	daemon := exec.Command(tool, "simple-ipc", "run-daemon", "--name="+path)
	require.NoError(t, daemon.Start())
	waitFor(t, 10*time.Second, "Git daemon listening", func() bool { return GetActiveState(path) == Listening })
	require.NoError(t, daemon.Process.Kill())
	daemon.Wait()
	assert.Equal(t, NotListening, GetActiveState(path))
	// ...which a gwipc server replaces; Git's client then talks to it.
	s, err := Start(path, gitLikeHandler, nil)
	require.NoError(t, err)
	defer s.Close()
	out, code := runGit(t, tool, "send", "--name="+path, "--token=ping")
	assert.Equal(t, 0, code)
	assert.Equal(t, "pong\n", out)
}
