package benchmark

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinTo restricts every thread of this process to cpu and sets GOMAXPROCS
// to 2, as gwipc's documentation recommends for a process confined to one
// CPU (and as libgwipc does itself): with 1, the runtime hands the P of
// every blocking wait to another thread. Threads the runtime creates later
// inherit the mask from the thread that creates them, which is already
// pinned, so the whole process (GC workers and sysmon included) stays on
// the CPU.
func pinTo(cpu int) error {
	var one unix.CPUSet
	one.Set(cpu)
	if err := setAllThreads(&one); err != nil {
		return err
	}
	runtime.GOMAXPROCS(2)
	return nil
}

// allowedCPUs lists the CPUs this process may run on, lowest first.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("benchmark: reading CPU affinity: %w", os.NewSyscallError("sched_getaffinity", err))
	}
	var cpus []int
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
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
