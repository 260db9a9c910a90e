package benchmark

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// loadSample is the machine's CPU time so far (/proc/stat, in clock
// ticks: all CPUs together) and this process's.
type loadSample struct {
	busy, total uint64
	self        time.Duration
}

func sampleLoad() loadSample {
	var s loadSample
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return loadSample{self: s.self}
		}
		s.total += v
		if i != 4 && i != 5 { // idle, iowait
			s.busy += v
		}
	}
	return s
}

// otherLoad is the share of the machine's CPU time from a to b that went
// to neither this process nor the run's processes (their CPU time is ours),
// steal time included: other work that competed with the run.
func otherLoad(a, b loadSample, ours time.Duration) float64 {
	total := b.total - a.total
	if total == 0 {
		return 0
	}
	tick := float64(time.Second) / clockTicks
	other := float64(b.busy-a.busy) - float64(ours+b.self-a.self)/tick
	return max(0, other/float64(total))
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100
