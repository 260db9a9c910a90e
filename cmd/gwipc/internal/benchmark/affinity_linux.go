package benchmark

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinning restricts every thread of this process to one CPU and undoes it.
// Threads created later inherit the mask from the thread that creates them,
// and the runtime creates threads from threads that are already pinned, so
// the whole process (GC workers and sysmon included) stays on the CPU. A
// child started while the process is pinned inherits the mask too.
type pinning struct {
	orig       unix.CPUSet
	maxprocs   int
	restoreAll bool
}

// pinProcess pins every thread to the lowest CPU this process may use and
// sets GOMAXPROCS to 1 (what a process started on one CPU gets).
func pinProcess() (*pinning, error) {
	var p pinning
	if err := unix.SchedGetaffinity(0, &p.orig); err != nil {
		return nil, fmt.Errorf("benchmark: reading CPU affinity: %w", os.NewSyscallError("sched_getaffinity", err))
	}
	cpu := lowestCPU(&p.orig)
	if cpu < 0 {
		return nil, errors.New("benchmark: empty CPU affinity mask")
	}
	var one unix.CPUSet
	one.Set(cpu)
	p.restoreAll = true
	if err := setAllThreads(&one); err != nil {
		p.restore()
		return nil, err
	}
	p.maxprocs = runtime.GOMAXPROCS(1)
	return &p, nil
}

// restore gives every thread the original mask and GOMAXPROCS back.
func (p *pinning) restore() error {
	if p.maxprocs > 0 {
		runtime.GOMAXPROCS(p.maxprocs)
		p.maxprocs = 0
	}
	if !p.restoreAll {
		return nil
	}
	p.restoreAll = false
	return setAllThreads(&p.orig)
}

// pinSelf is the peer's side: pin every thread to the lowest allowed CPU
// (normally inherited already; this makes it certain).
func pinSelf() error {
	var cur unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cur); err != nil {
		return fmt.Errorf("benchmark: reading CPU affinity: %w", os.NewSyscallError("sched_getaffinity", err))
	}
	cpu := lowestCPU(&cur)
	if cpu < 0 {
		return errors.New("benchmark: empty CPU affinity mask")
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := setAllThreads(&one); err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// allowedCPUs is the number of CPUs the calling thread may run on.
func allowedCPUs() int {
	var cur unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cur); err != nil {
		return 0
	}
	return cur.Count()
}

func lowestCPU(set *unix.CPUSet) int {
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			return i
		}
	}
	return -1
}

// setAllThreads applies set to every thread in /proc/self/task, repeating
// until a pass changes nothing (a thread may be created during a pass).
func setAllThreads(set *unix.CPUSet) error {
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("benchmark: listing threads: %w", err)
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &cur); err != nil {
				continue // the thread exited
			}
			if cur == *set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue
				}
				return fmt.Errorf("benchmark: setting CPU affinity of thread %d: %w", tid, os.NewSyscallError("sched_setaffinity", err))
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return errors.New("benchmark: threads keep appearing while setting CPU affinity")
}
