package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gwipc/gwipc/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// In a process confined to one CPU the library's runtime still gets two
// Ps, unless GOMAXPROCS is set in the environment.
func TestAtLeastTwoPsOnOneCPU(t *testing.T) {
	if os.Getenv("GWIPC_PRINT_GOMAXPROCS") != "" {
		os.Stdout.WriteString(strconv.Itoa(runtime.GOMAXPROCS(0)))
		os.Exit(0)
	}
	procs := func(env ...string) string {
		// The child inherits the CPU mask of the thread that starts it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var old, one unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(0, &old))
		one.Set(firstCPU(old))
		require.NoError(t, unix.SchedSetaffinity(0, &one))
		defer unix.SchedSetaffinity(0, &old)
		cmd := exec.Command(os.Args[0], "-test.run=^TestAtLeastTwoPsOnOneCPU$")
		cmd.Env = append(os.Environ(), append(env, "GWIPC_PRINT_GOMAXPROCS=1")...)
		out, err := cmd.Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}
	assert.Equal(t, "2", procs("GOMAXPROCS="), "raised from 1")
	assert.Equal(t, "1", procs("GOMAXPROCS=1"), "the environment wins")
}

func firstCPU(set unix.CPUSet) int {
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	return 0
}

// The header's version is the engine's: gwipc_version and the status
// endpoint's "version" name the same release.
func TestHeaderVersionIsTheEngines(t *testing.T) {
	h, err := os.ReadFile("../include/gwipc.h")
	require.NoError(t, err)
	assert.Contains(t, string(h), `#define GWIPC_VERSION_STRING "`+engine.Version+`"`)
}
