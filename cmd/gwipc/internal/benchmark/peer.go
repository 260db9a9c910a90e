package benchmark

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// PeerEnv is the environment variable that turns a re-executed binary into
// the benchmark's peer process. Its value is a JSON peerSpec.
const PeerEnv = "GWIPC_BENCH_PEER"

// Transports and scenarios a peer can serve.
const (
	transportGWIPC  = "gwipc"
	transportSocket = "socket"

	scenarioLatency    = "latency"
	scenarioThroughput = "throughput"
)

// peerSpec tells the peer what to do.
type peerSpec struct {
	Transport string `json:"transport"`
	Scenario  string `json:"scenario"`
	Size      int    `json:"size"`
	Slots     int    `json:"slots"`
	Pinned    bool   `json:"pinned"`
	Path      string `json:"path,omitempty"` // gwipc: the listener's socket
	FD        int    `json:"fd,omitempty"`   // socket: the inherited stream socket
	// MemProfile, if set, is a directory: the peer samples every allocation
	// and writes its profile there when it is done.
	MemProfile string `json:"memprofile,omitempty"`
}

// profileName is the file a peer writes its allocation profile to.
func (s peerSpec) profileName() string {
	return fmt.Sprintf("b-%s-%s-%d-%s.pprof", s.Transport, s.Scenario, s.Size, pinName(s.Pinned))
}

// writeMemProfile writes the allocation profile (every allocation since the
// start, if MemProfileRate is 1) to path.
func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("benchmark: writing the allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("benchmark: writing the allocation profile: %w", err)
	}
	return f.Close()
}

// peerResult is what the peer prints on stdout (one JSON object) when it
// exits successfully. Counts cover the measured part only: from the
// parent's mark to its stop.
type peerResult struct {
	Messages   uint64 `json:"messages"` // messages received
	Bytes      uint64 `json:"bytes"`    // payload bytes received
	Mallocs    uint64 `json:"mallocs"`  // runtime.MemStats.Mallocs delta
	NoSlot     uint64 `json:"noslot"`   // echoes that found the pong pool exhausted
	CPUs       int    `json:"cpus"`     // CPUs the peer's thread may run on
	GOMAXPROCS int    `json:"gomaxprocs"`
}

// ServePeerIfRequested runs the benchmark's peer role and exits the process
// if PeerEnv is set; otherwise it returns at once. Call it first thing in
// main (and in TestMain of any test that runs Main).
func ServePeerIfRequested() {
	v, ok := os.LookupEnv(PeerEnv)
	if !ok {
		return
	}
	res, err := servePeer(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gwipc bench peer: %v\n", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "gwipc bench peer: writing the result: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func servePeer(v string) (peerResult, error) {
	var spec peerSpec
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		return peerResult{}, fmt.Errorf("decoding %s: %w", PeerEnv, err)
	}
	if spec.MemProfile != "" {
		runtime.MemProfileRate = 1
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if spec.Pinned {
		if err := pinSelf(); err != nil {
			return peerResult{}, err
		}
	}
	var (
		res peerResult
		err error
	)
	switch spec.Transport {
	case transportGWIPC:
		res, err = gwipcPeer(spec)
	case transportSocket:
		res, err = socketPeer(spec)
	default:
		err = fmt.Errorf("unknown transport %q", spec.Transport)
	}
	res.CPUs = allowedCPUs()
	res.GOMAXPROCS = runtime.GOMAXPROCS(0)
	if err == nil && spec.MemProfile != "" {
		err = writeMemProfile(filepath.Join(spec.MemProfile, spec.profileName()))
	}
	return res, err
}

// child is a running peer process, seen from the measuring side.
type child struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	exited chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, valid once exited is closed
}

// peerTimeout bounds every wait on the peer (setup, a round trip, the final
// acknowledgement, the exit).
const peerTimeout = 20 * time.Second

// startChild starts the peer for spec. extra, if not nil, becomes the
// child's fd 3. The child's stderr is kept for error messages. It is killed if
// the thread that started it exits, so call this from a thread that stays
// (the locked measuring goroutine unlocks, never exits locked).
func startChild(spec peerSpec, extra *os.File) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("benchmark: finding this executable: %w", err)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	c := &child{exited: make(chan struct{})}
	c.cmd = exec.Command(exe)
	c.cmd.Env = append(envWithout(os.Environ(), PeerEnv), PeerEnv+"="+string(js))
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	if extra != nil {
		c.cmd.ExtraFiles = []*os.File{extra}
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("benchmark: starting the peer: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func envWithout(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if len(kv) > len(name) && kv[:len(name)] == name && kv[len(name)] == '=' {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// dead reports (without blocking) whether the child has exited.
func (c *child) dead() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// deadErr describes an exit that happened before the parent expected it.
func (c *child) deadErr() error {
	return fmt.Errorf("benchmark: the peer exited early: %v%s", c.err, c.said())
}

// result waits (bounded) for the child to exit and decodes its report.
func (c *child) result() (peerResult, error) {
	select {
	case <-c.exited:
	case <-time.After(peerTimeout):
		c.kill()
		return peerResult{}, errors.New("benchmark: the peer did not exit")
	}
	if c.err != nil {
		return peerResult{}, fmt.Errorf("benchmark: the peer failed: %w%s", c.err, c.said())
	}
	var res peerResult
	if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
		return peerResult{}, fmt.Errorf("benchmark: decoding the peer's result %q: %w", c.stdout.String(), err)
	}
	return res, nil
}

// said is the child's stderr, for an error message ("" if none).
func (c *child) said() string {
	s := strings.TrimSpace(c.stderr.String())
	if s == "" {
		return ""
	}
	const maxSaid = 2000
	if len(s) > maxSaid {
		s = s[:maxSaid] + "..."
	}
	return " (peer's stderr: " + s + ")"
}

// kill stops the child (if still running) and waits for it.
func (c *child) kill() {
	if !c.dead() {
		c.cmd.Process.Kill()
	}
	<-c.exited
}

// mallocs is runtime.MemStats.Mallocs now.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}
