package benchmark

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is one measurement process of a run, as the harness starts it.
type proc struct {
	prog  string     // the program; "" for this executable (a gwipc process)
	args  args       //
	files []*os.File // become fds 3, 4, ...; the harness closes its copies once started
}

// name identifies the process in error messages.
func (p proc) name() string {
	prog := "gwipc"
	if p.prog != "" {
		prog = p.prog
	}
	return prog + " " + p.args.Role
}

// running is a started proc.
type running struct {
	proc
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer // read only once exited
	err            error        // Wait's result, written before the process is reported exited
	exited         bool
}

// runProcs starts every process, waits for all of them (at most timeout)
// and returns their results in order. The first process that fails, or the
// timeout, kills the others; the error says which process and what it said.
func runProcs(ps []proc, timeout time.Duration) ([]result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable: %w", err)
	}
	var rs []*running
	exited := make(chan *running, len(ps))
	waited := 0
	// stop kills what still runs and waits for every started process.
	stop := func() {
		for _, r := range rs {
			if !r.exited {
				r.cmd.Process.Kill()
			}
		}
		for ; waited < len(rs); waited++ {
			(<-exited).exited = true
		}
	}
	for _, p := range ps {
		r := &running{proc: p}
		if p.prog == "" {
			r.cmd = exec.Command(self, p.args.argv()...)
			r.cmd.Env = append(os.Environ(), PeerEnv+"=1")
		} else {
			r.cmd = exec.Command(p.prog, p.args.argv()...)
		}
		r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
		r.cmd.ExtraFiles = p.files
		// Killed with the harness (the thread that starts it is a Go
		// runtime thread, which does not exit).
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err := r.cmd.Start()
		for _, f := range p.files {
			f.Close()
		}
		if err != nil {
			stop()
			return nil, fmt.Errorf("starting %s: %w", p.name(), err)
		}
		rs = append(rs, r)
		go func() {
			r.err = r.cmd.Wait()
			exited <- r
		}()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for waited < len(rs) {
		select {
		case r := <-exited:
			waited++
			r.exited = true
			if r.err != nil {
				stop()
				return nil, fmt.Errorf("%s failed: %v%s", r.name(), r.err, said(r))
			}
		case <-timer.C:
			var still []*running
			for _, r := range rs {
				if !r.exited {
					still = append(still, r)
				}
			}
			stop()
			var names []string
			for _, r := range still {
				names = append(names, r.name()+said(r))
			}
			return nil, fmt.Errorf("timed out after %v (a hung peer?), killed: %s", timeout, strings.Join(names, "; "))
		}
	}
	out := make([]result, len(rs))
	for i, r := range rs {
		if err := json.Unmarshal(r.stdout.Bytes(), &out[i]); err != nil {
			return nil, fmt.Errorf("decoding the result of %s %q: %w", r.name(), r.stdout.String(), err)
		}
		out[i].procCPU = r.cmd.ProcessState.UserTime() + r.cmd.ProcessState.SystemTime()
	}
	return out, nil
}

// said is a process's stderr for an error message ("" if none).
func said(r *running) string {
	s := strings.TrimSpace(r.stderr.String())
	if s == "" {
		return ""
	}
	const maxSaid = 2000
	if len(s) > maxSaid {
		s = s[:maxSaid] + "..."
	}
	return " (stderr: " + s + ")"
}
