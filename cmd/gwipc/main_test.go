package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gwipc/gwipc/simpleipc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var gwipcBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gwipc-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gwipcBin = filepath.Join(dir, "gwipc")
	out, err := exec.Command("go", "build", "-o", gwipcBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building gwipc: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func sockPath(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "gwcli")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "s")
}

type result struct {
	stdout, stderr string
	code           int
}

func gwipc(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gwipcBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// serve starts "gwipc serve-sipc" and waits until it listens. The returned
// channel yields its exit code.
func serve(t *testing.T, path string, extra ...string) (*exec.Cmd, <-chan int) {
	t.Helper()
	cmd := exec.Command(gwipcBin, append([]string{"serve-sipc", "--socket", path}, extra...)...)
	// A file, not a buffer: the test may read it while the server runs.
	stderr, err := os.Create(filepath.Join(filepath.Dir(path), "serve.stderr"))
	require.NoError(t, err)
	t.Cleanup(func() { stderr.Close() })
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	done := make(chan int, 1)
	go func() {
		cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
		close(done) // the cleanup below may receive after waitExit did
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for simpleipc.GetActiveState(path) != simpleipc.Listening {
		if time.Now().After(deadline) {
			msg, _ := os.ReadFile(stderr.Name())
			t.Fatalf("serve-sipc did not start: %s", msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, done
}

func waitExit(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("serve-sipc did not exit")
	}
	return -1
}

func bigResponse() string {
	var b strings.Builder
	for row := range 10000 {
		fmt.Fprintf(&b, "big: %075d\n", row)
	}
	return b.String()
}

func TestServeAndQuery(t *testing.T) {
	path := sockPath(t)
	_, done := serve(t, path, "--threads", "3")

	r := gwipc(t, "", "query", "--socket", path, "ping")
	assert.Equal(t, result{"pong", "", 0}, r, "byte-exact, nothing added")

	r = gwipc(t, "", "query", "ping", "--socket", path) // flags after the argument
	assert.Equal(t, result{"pong", "", 0}, r)

	r = gwipc(t, "", "query", "--socket", path, "hello")
	assert.Equal(t, result{"unhandled command: hello", "", 0}, r)

	r = gwipc(t, "", "query", "--socket", path, "ping\n")
	assert.Equal(t, "unhandled command: ping\n", r.stdout)

	r = gwipc(t, "", "query", "--socket", path, "--", "-dash")
	assert.Equal(t, "unhandled command: -dash", r.stdout)

	for _, tok := range []string{"big", "chunk"} {
		r = gwipc(t, "", "query", "--socket", path, tok)
		assert.Equal(t, 0, r.code)
		assert.True(t, r.stdout == bigResponse(), "%s: %d bytes", tok, len(r.stdout))
	}

	r = gwipc(t, "sendbytes "+strings.Repeat("Q", 200000), "query", "--socket", path, "--stdin")
	assert.Equal(t, result{"rcvd:Q00200000\n", "", 0}, r)
	r = gwipc(t, "", "query", "--socket", path, "sendbytes QQx")
	assert.Equal(t, "errs:1\n", r.stdout)

	// A second server on the same path is refused; the first keeps going.
	r = gwipc(t, "", "serve-sipc", "--socket", path)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "already in use")
	assert.Equal(t, "pong", gwipc(t, "", "query", "--socket", path, "ping").stdout)

	// quit: empty response, exit 0, socket removed.
	r = gwipc(t, "", "query", "--socket", path, "quit")
	assert.Equal(t, result{"", "", 0}, r)
	assert.Equal(t, 0, waitExit(t, done))
	_, err := os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)

	r = gwipc(t, "", "query", "--socket", path, "ping")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "no server answering at "+path)
}

func TestServeSignalStopsCleanly(t *testing.T) {
	path := sockPath(t)
	cmd, done := serve(t, path)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, waitExit(t, done))
	_, err := os.Lstat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestTestToolRouterCommands(t *testing.T) {
	r, err := testToolRouter()
	require.NoError(t, err)
	assert.Equal(t, []string{"big", "chunk", "ping", "quit", "sendbytes", "slow"}, r.Commands())
}

func TestServeSocketModeAndNonSocketPath(t *testing.T) {
	path := sockPath(t)
	serve(t, path)
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "owner only, whatever the umask")

	file := filepath.Join(filepath.Dir(path), "file")
	require.NoError(t, os.WriteFile(file, []byte("keep me"), 0o644))
	r := gwipc(t, "", "serve-sipc", "--socket", file)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "not a socket")
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(data))
}

func TestQueryFailures(t *testing.T) {
	dir := filepath.Dir(sockPath(t))

	// No server: nothing at the path, a stale socket.
	r := gwipc(t, "", "query", "--socket", filepath.Join(dir, "missing"), "ping")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "no server answering")

	// Incomplete response: data without the flush packet.
	path := filepath.Join(dir, "fake")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var got []byte
			buf := make([]byte, 64)
			for !bytes.HasSuffix(got, []byte("0000")) {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				got = append(got, buf[:n]...)
			}
			c.Write([]byte("0006ok"))
			c.Close()
		}
	}()
	r = gwipc(t, "", "query", "--socket", path, "ping")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout, "nothing printed for an incomplete response")
	assert.Contains(t, r.stderr, "incomplete response")
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no arguments", nil, 2, "", "Commands:"},
		{"help", []string{"help"}, 0, "serve-sipc", ""},
		{"--help", []string{"--help"}, 0, "query", ""},
		{"help query", []string{"help", "query"}, 0, "--socket PATH", ""},
		{"query --help", []string{"query", "--help"}, 0, "Usage: gwipc query", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", "unknown command"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, 0, "gwipc version ", ""},
		{"--version", []string{"--version"}, 0, "gwipc version ", ""},
		{"query without socket", []string{"query", "ping"}, 2, "", "--socket is required"},
		{"query without request", []string{"query", "--socket", "/x"}, 2, "", "exactly one REQUEST"},
		{"query two requests", []string{"query", "--socket", "/x", "a", "b"}, 2, "", "exactly one REQUEST"},
		{"query --stdin and request", []string{"query", "--socket", "/x", "--stdin", "a"}, 2, "", "no REQUEST argument"},
		{"bad flag", []string{"query", "--bogus"}, 2, "", "flag provided but not defined"},
		{"bad duration", []string{"query", "--timeout", "soon"}, 2, "", "invalid value"},
		{"serve without socket", []string{"serve-sipc"}, 2, "", "--socket is required"},
		{"serve extra argument", []string{"serve-sipc", "--socket", "/x", "extra"}, 2, "", "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr})
			assert.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			assert.Contains(t, stdout.String(), tt.inStdout)
			assert.Contains(t, stderr.String(), tt.inStderr)
			if tt.code == 0 {
				assert.Empty(t, stderr.String())
			}
		})
	}
	// The binary agrees on exit codes.
	assert.Equal(t, 2, gwipc(t, "").code)
	assert.Equal(t, 0, gwipc(t, "", "help").code)
}

func TestQueryTimeout(t *testing.T) {
	path := sockPath(t)
	serve(t, path)
	start := time.Now()
	r := gwipc(t, "", "query", "--socket", path, "--timeout", "200ms", "slow")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "timed out")
	assert.Less(t, time.Since(start), 5*time.Second)
}
