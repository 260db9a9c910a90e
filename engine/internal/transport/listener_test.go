package transport

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestListenMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  os.FileMode
		want os.FileMode
	}{
		{"default", 0, 0o600},
		{"configured", 0o660, 0o660},
		{"world", 0o666, 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sockPath(t)
			l := listenT(t, path, ListenConfig{Mode: tc.cfg})
			fi, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.ModeSocket, fi.Mode().Type())
			assert.Equal(t, tc.want, fi.Mode().Perm(), "got %#o, want %#o", fi.Mode().Perm(), tc.want)
			requireNotExist(t, path+".lock")
			requireWorks(t, l)
		})
	}
}

func TestListenAddrInUse(t *testing.T) {
	checkFDLeaks(t)
	path := sockPath(t)
	l := listenT(t, path, ListenConfig{})
	_, err := Listen(path, ListenConfig{})
	require.ErrorIs(t, err, ErrAddrInUse)
	requireWorks(t, l)
	requireNotExist(t, path+".lock")
}

// A live socket of another type (here a stream listener) is left alone too.
func TestListenAddrInUseOtherType(t *testing.T) {
	path := sockPath(t)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	require.NoError(t, unix.Listen(fd, 1))

	_, err = Listen(path, ListenConfig{})
	require.ErrorIs(t, err, ErrAddrInUse)
	requireSocketFile(t, path)
}

func TestListenReplacesStale(t *testing.T) {
	checkFDLeaks(t)
	path := sockPath(t)
	staleSocket(t, path)
	_, err := Dial(path)
	require.ErrorIs(t, err, ErrNoListener)
	require.ErrorIs(t, err, unix.ECONNREFUSED)

	l := listenT(t, path, ListenConfig{})
	requireWorks(t, l)
}

// TestHelperListenAndHang is not a test: TestListenReplacesKilled runs the
// test binary with it as a listener process that gets SIGKILLed.
func TestHelperListenAndHang(t *testing.T) {
	path := os.Getenv("GWIPC_TRANSPORT_HELPER_PATH")
	if path == "" {
		t.Skip("helper process for TestListenReplacesKilled")
	}
	l, err := Listen(path, ListenConfig{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour) // until killed
	runtime.KeepAlive(l)
}

func TestListenReplacesKilled(t *testing.T) {
	path := sockPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperListenAndHang$")
	cmd.Env = append(os.Environ(), "GWIPC_TRANSPORT_HELPER_PATH="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		require.Equal(t, "ready\n", s)
	case <-time.After(waitTimeout):
		require.Fail(t, "helper did not start")
	}

	_, err = Listen(path, ListenConfig{})
	require.ErrorIs(t, err, ErrAddrInUse, "while the helper lives")

	require.NoError(t, cmd.Process.Signal(unix.SIGKILL))
	_ = cmd.Wait()
	requireSocketFile(t, path) // left behind

	l := listenT(t, path, ListenConfig{})
	requireWorks(t, l)
}

func TestListenNotSocket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		create func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("precious"), 0o644))
		}},
		{"directory", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o755))
		}},
		{"dangling symlink", func(t *testing.T, path string) {
			require.NoError(t, os.Symlink(path+".nowhere", path))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sockPath(t)
			tc.create(t, path)
			before, err := os.Lstat(path)
			require.NoError(t, err)

			_, err = Listen(path, ListenConfig{})
			require.ErrorIs(t, err, ErrNotSocket)

			after, err := os.Lstat(path)
			require.NoError(t, err)
			assert.True(t, os.SameFile(before, after), "path untouched")
			assert.Equal(t, before.Size(), after.Size())
			requireNotExist(t, path+".lock")
		})
	}
}

func TestListenerClose(t *testing.T) {
	checkFDLeaks(t)
	path := sockPath(t)
	l, err := Listen(path, ListenConfig{})
	require.NoError(t, err)
	requireSocketFile(t, path)
	require.NoError(t, l.Close())
	requireNotExist(t, path)
	requireNotExist(t, path+".lock")
	require.NoError(t, l.Close(), "second Close")
	assert.Equal(t, -1, l.Fd())
	_, err = l.Accept()
	assert.ErrorIs(t, err, ErrClosed)
	_, err = Dial(path)
	assert.ErrorIs(t, err, ErrNoListener)
	assert.ErrorIs(t, err, unix.ENOENT)
}

func TestListenerCloseKeepsReplacement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		evict func(t *testing.T, path string)
	}{
		{"renamed away", func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path, path+".old"))
		}},
		{"unlinked", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFDLeaks(t)
			path := sockPath(t)
			first, err := Listen(path, ListenConfig{})
			require.NoError(t, err)
			tc.evict(t, path)
			second := listenT(t, path, ListenConfig{})

			require.NoError(t, first.Close())
			requireSocketFile(t, path)
			requireWorks(t, second)
		})
	}
}

func TestListenPathLength(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "gw")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })

	longest := dir + "/" + strings.Repeat("a", 107-len(dir)-1)
	require.Len(t, longest, 107)
	l := listenT(t, longest, ListenConfig{})
	requireWorks(t, l)

	tooLong := longest + "b"
	_, err = Listen(tooLong, ListenConfig{})
	assert.ErrorIs(t, err, ErrPathTooLong)
	_, err = Dial(tooLong)
	assert.ErrorIs(t, err, ErrPathTooLong)
	requireNotExist(t, tooLong+".lock")
}

func TestInvalidPath(t *testing.T) {
	for _, path := range []string{"", "@abstract", "a\x00b"} {
		_, err := Listen(path, ListenConfig{})
		assert.ErrorIs(t, err, ErrInvalidPath, "Listen(%q)", path)
		_, err = Dial(path)
		assert.ErrorIs(t, err, ErrInvalidPath, "Dial(%q)", path)
	}
}

func TestDialMissing(t *testing.T) {
	_, err := Dial(filepath.Join(sockDir(t), "nobody"))
	assert.ErrorIs(t, err, ErrNoListener)
	assert.ErrorIs(t, err, unix.ENOENT)
}

func TestListenRace(t *testing.T) {
	checkFDLeaks(t)
	const racers = 8
	for round := range 20 {
		path := sockPath(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		ls := make([]*Listener, racers)
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				<-start
				ls[i], errs[i] = Listen(path, ListenConfig{})
			})
		}
		close(start)
		wg.Wait()

		var winner *Listener
		for i := range racers {
			if errs[i] == nil {
				require.Nil(t, winner, "round %d: two winners", round)
				winner = ls[i]
				continue
			}
			if !errors.Is(errs[i], ErrAddrInUse) && !errors.Is(errs[i], ErrLocked) {
				t.Fatalf("round %d: loser %d: unexpected error %v", round, i, errs[i])
			}
		}
		require.NotNil(t, winner, "round %d: no winner", round)
		requireWorks(t, winner)
		requireNotExist(t, path+".lock")
		require.NoError(t, winner.Close())
	}
}

func TestListenLocked(t *testing.T) {
	path := sockPath(t)
	fd, err := unix.Open(path+".lock", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	require.NoError(t, err)
	held := true
	t.Cleanup(func() {
		if held {
			unix.Close(fd)
		}
	})
	require.NoError(t, unix.Flock(fd, unix.LOCK_EX))

	_, err = Listen(path, ListenConfig{LockTimeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked)
	requireNotExist(t, path)

	// Once the holder lets go (here: unlinks its lock file and unlocks, as
	// Listen does), Listen goes ahead.
	require.NoError(t, os.Remove(path+".lock"))
	held = false
	require.NoError(t, unix.Close(fd))
	l := listenT(t, path, ListenConfig{})
	requireWorks(t, l)
}

// A lock file left by a killed process (exists, nobody holds it) does not
// stop Listen and is cleaned up.
func TestListenLeftoverLockFile(t *testing.T) {
	path := sockPath(t)
	require.NoError(t, os.WriteFile(path+".lock", nil, 0o600))
	l := listenT(t, path, ListenConfig{})
	requireNotExist(t, path+".lock")
	requireWorks(t, l)
}

func TestDialBacklogFull(t *testing.T) {
	checkFDLeaks(t)
	path := sockPath(t)
	l := listenT(t, path, ListenConfig{Backlog: 1})
	var err error
	for range 16 {
		var c *Conn
		if c, err = Dial(path); err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	require.ErrorIs(t, err, unix.EAGAIN, "backlog never filled")
	assert.NotErrorIs(t, err, ErrNoListener)

	// The start-up probe counts a full backlog as a live listener.
	_, err = Listen(path, ListenConfig{})
	require.ErrorIs(t, err, ErrAddrInUse)
	requireSocketFile(t, path)
	for {
		c, err := l.Accept()
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		require.NoError(t, err)
		c.Close()
	}
}
