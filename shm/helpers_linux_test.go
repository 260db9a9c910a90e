package shm

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newTestPool creates a pool that is closed when the test ends; slots the
// test left allocated are then freed, so the mapping goes too.
func newTestPool(tb testing.TB, name string, g Geometry) *Pool {
	tb.Helper()
	p, err := NewPool(name, g)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		require.NoError(tb, p.Close())
		for i := range g.SlotCount {
			if p.Slot(i) != nil {
				require.NoError(tb, p.Free(i))
			}
		}
	})
	return p
}

// dupFd returns a close-on-exec copy of fd, standing in for the copy that
// SCM_RIGHTS gives the receiving process.
func dupFd(tb testing.TB, fd int) int {
	tb.Helper()
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(tb, err)
	return nfd
}

// mapTestView maps a read-only view of p that is closed when the test ends.
func mapTestView(tb testing.TB, p *Pool) *View {
	tb.Helper()
	v, err := MapView(dupFd(tb, p.Fd()), p.Geometry())
	require.NoError(tb, err)
	tb.Cleanup(func() { v.Close() })
	return v
}

// countFds returns the number of open file descriptors of this process.
func countFds(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(tb, err)
	return len(ents)
}

// countMappings returns the number of mappings of this process whose
// /proc/self/maps line contains substr.
func countMappings(tb testing.TB, substr string) int {
	tb.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(tb, err)
	n := 0
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// gwipcMaps is what every pool mapping shows in /proc/self/maps.
const gwipcMaps = "memfd:gwipc:"

// poolMaps is what the mappings of the pool named name show.
func poolMaps(name string) string { return gwipcMaps + name + " " }

// checkLeaks records the open fds and gwipc memfd mappings now and, when the
// test ends (after every cleanup registered later has run), checks that both
// are back to that baseline. Call it first in a test.
func checkLeaks(tb testing.TB) {
	tb.Helper()
	countFds(tb) // warm up anything the first ReadDir opens
	fds, maps := countFds(tb), countMappings(tb, gwipcMaps)
	tb.Cleanup(func() {
		require.Equal(tb, fds, countFds(tb), "open fds after the test")
		require.Equal(tb, maps, countMappings(tb, gwipcMaps), "gwipc mappings after the test")
	})
}

// waitForWaiter returns once an AllocWait caller is blocked on p (or fails
// the test after a generous bound). It polls a condition; it does not sleep
// and hope.
func waitForWaiter(tb testing.TB, p *Pool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		p.mu.Lock()
		waiting := p.waiters > 0
		p.mu.Unlock()
		if waiting {
			return
		}
		if ctx.Err() != nil {
			tb.Fatal("no AllocWait caller blocked")
		}
		runtime.Gosched()
	}
}
