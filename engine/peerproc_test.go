package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gwipc/gwipc/shm"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as a scriptable peer process: TestMain runs
// peerMain when GWIPC_TEST_PEER is set. The peer reads one command per line
// on stdin and answers "ok ..." or "err ..."; asynchronous events (callbacks)
// are printed as lines of their own.
//
// Services are named by a short token: "a" is test.a/i@1.0.

const peerEnv = "GWIPC_TEST_PEER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(peerEnv); spec != "" {
		os.Exit(peerMain(spec))
	}
	os.Exit(m.Run())
}

func testService(name string) ServiceID {
	return ServiceID{Interface: Interface{ID: "test." + name, Major: 1, Minor: 0}, Instance: "i"}
}

type peerRole struct {
	node    *Node
	out     *bufio.Writer
	outMu   sync.Mutex
	mu      sync.Mutex
	offers  map[string]*Offer
	proxies map[string]*Proxy
	held    map[string][]*Sample
}

func (r *peerRole) emit(format string, args ...any) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintf(r.out, format+"\n", args...)
	r.out.Flush()
}

// peerMain runs the peer: spec is "listen:PATH:NAME" or "dial:PATH:NAME".
func peerMain(spec string) int {
	mode, rest, _ := strings.Cut(spec, ":")
	path, name, _ := strings.Cut(rest, ":")
	r := &peerRole{out: bufio.NewWriter(os.Stdout), offers: map[string]*Offer{}, proxies: map[string]*Proxy{}, held: map[string][]*Sample{}}
	cfg := &Config{Name: name,
		ReconnectMax:       200 * time.Millisecond,
		OnPeerConnected:    func(p *Peer) { r.emit("peer+ %d %s %d", p.ID(), p.Name(), p.PID()) },
		OnPeerDisconnected: func(p *Peer, err error) { r.emit("peer- %d %s", p.ID(), p.Name()) },
	}
	var err error
	if mode == "listen" {
		r.node, err = Listen(path, cfg)
	} else {
		r.node, err = Dial(path, cfg)
	}
	if err != nil {
		fmt.Printf("fatal %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- r.node.Run(context.Background()) }()
	r.emit("ready %d", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		args := strings.Fields(in.Text())
		if len(args) == 0 {
			continue
		}
		if args[0] == "exit" {
			break
		}
		res, err := r.do(args)
		if err != nil {
			r.emit("err %v", err)
		} else {
			r.emit("ok %s", res)
		}
	}
	r.node.Close()
	<-done
	return 0
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return v
}

// do runs one command.
func (r *peerRole) do(a []string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch a[0] {
	case "offer": // offer NAME EVENTS [SLOTCOUNT SLOTSIZE]
		cfg := &OfferConfig{Events: uint16(atoi(a[2])), OnSubscription: func(ev uint16, on bool) { r.emit("subscribed %s %d %v", a[1], ev, on) }}
		if len(a) > 3 {
			cfg.Geometry = shm.Geometry{SlotCount: uint32(atoi(a[3])), SlotSize: uint32(atoi(a[4]))}
		}
		o, err := r.node.Offer(testService(a[1]), cfg)
		if err != nil {
			return "", err
		}
		r.offers[a[1]] = o
	case "withdraw": // withdraw NAME
		return "", r.offers[a[1]].Close()
	case "publish": // publish NAME EVENT DATA
		return "", r.offers[a[1]].Publish(uint16(atoi(a[2])), []byte(a[3]))
	case "require": // require NAME
		name := a[1]
		px, err := r.node.Require(testService(name), &ProxyConfig{
			OnAvailability: func(up bool) { r.emit("avail %s %v", name, up) },
			OnSubscription: func(ev uint16, err error) { r.emit("suback %s %d %v", name, ev, err) },
		})
		if err != nil {
			return "", err
		}
		r.proxies[name] = px
	case "subscribe": // subscribe NAME EVENT [hold]
		name, hold := a[1], len(a) > 3 && a[3] == "hold"
		return "", r.proxies[name].Subscribe(uint16(atoi(a[2])), Updates, func(s *Sample) {
			r.emit("recv %s %d %d %s", name, s.Event(), s.Seq(), s.Data())
			if hold {
				s.Keep()
				r.mu.Lock()
				r.held[name] = append(r.held[name], s)
				r.mu.Unlock()
			}
		})
	case "unsubscribe": // unsubscribe NAME EVENT
		return "", r.proxies[a[1]].Unsubscribe(uint16(atoi(a[2])))
	case "release": // release NAME [COUNT]: release held samples, oldest first
		held := r.held[a[1]]
		k := len(held)
		if len(a) > 2 {
			k = min(k, atoi(a[2]))
		}
		for _, s := range held[:k] {
			s.Release()
		}
		r.held[a[1]] = held[k:]
		return strconv.Itoa(k), nil
	case "unrequire": // unrequire NAME
		return "", r.proxies[a[1]].Close()
	case "status":
		b, err := json.Marshal(r.node.Status())
		return string(b), err
	default:
		return "", fmt.Errorf("unknown command %q", a[0])
	}
	return "", nil
}

// peerProc is the test's handle on a peer process.
type peerProc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int
	replies chan string
	mu      sync.Mutex
	events  []string
	notify  chan struct{}
	exited  chan struct{}
}

// startPeer starts a peer process: mode is "listen" or "dial".
func startPeer(t testing.TB, mode, path, name string) *peerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a -race binary otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), peerEnv+"="+mode+":"+path+":"+name, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &peerProc{t: t, name: name, cmd: cmd, stdin: stdin, pid: cmd.Process.Pid,
		replies: make(chan string, 16), notify: make(chan struct{}, 1), exited: make(chan struct{})}
	go p.read(stdout)
	t.Cleanup(p.stop)
	p.expect("ready")
	return p
}

func (p *peerProc) read(r io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ok") || strings.HasPrefix(line, "err ") {
			p.replies <- line
			continue
		}
		p.mu.Lock()
		p.events = append(p.events, line)
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
}

// do sends a command and returns its reply (without the "ok " prefix); an
// "err" reply fails the test.
func (p *peerProc) do(format string, args ...any) string {
	p.t.Helper()
	reply := p.try(format, args...)
	require.True(p.t, strings.HasPrefix(reply, "ok"), "%s: %s -> %s", p.name, fmt.Sprintf(format, args...), reply)
	return strings.TrimSpace(strings.TrimPrefix(reply, "ok"))
}

// try sends a command and returns its raw reply line.
func (p *peerProc) try(format string, args ...any) string {
	p.t.Helper()
	cmd := fmt.Sprintf(format, args...)
	_, err := fmt.Fprintln(p.stdin, cmd)
	require.NoError(p.t, err, "%s: sending %q", p.name, cmd)
	select {
	case r := <-p.replies:
		return r
	case <-p.exited:
		p.t.Fatalf("%s exited while running %q", p.name, cmd)
	case <-time.After(waitFor):
		p.t.Fatalf("%s: no reply to %q", p.name, cmd)
	}
	return ""
}

// expect waits (bounded) for an event line starting with prefix, removes it
// and returns it. Lines before it are kept for later expects.
func (p *peerProc) expect(prefix string) string {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		p.mu.Lock()
		for i, e := range p.events {
			if strings.HasPrefix(e, prefix) {
				p.events = append(p.events[:i], p.events[i+1:]...)
				p.mu.Unlock()
				return e
			}
		}
		pending := strings.Join(p.events, " | ")
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-deadline:
			p.t.Fatalf("%s: no event %q within %v; have: %s", p.name, prefix, waitFor, pending)
		}
	}
}

// never checks that no event with prefix has arrived (call after a
// synchronising command so the window is meaningful).
func (p *peerProc) never(prefix string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		require.False(p.t, strings.HasPrefix(e, prefix), "%s: unexpected event %q", p.name, e)
	}
}

func (p *peerProc) status() Status {
	p.t.Helper()
	var st Status
	require.NoError(p.t, json.Unmarshal([]byte(p.do("status")), &st))
	return st
}

// waitStatus polls the peer's status until cond holds (bounded).
func (p *peerProc) waitStatus(cond func(Status) bool, what string) Status {
	p.t.Helper()
	var st Status
	eventually(p.t, func() bool { st = p.status(); return cond(st) }, "%s: %s", p.name, what)
	return st
}

// kill ends the process with SIGKILL and waits for it.
func (p *peerProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	<-p.exited
}

// stop asks the peer to exit and waits; it kills it if it does not.
func (p *peerProc) stop() {
	select {
	case <-p.exited:
		p.cmd.Wait()
		return
	default:
	}
	fmt.Fprintln(p.stdin, "exit")
	select {
	case <-p.exited:
		if err := p.cmd.Wait(); err != nil {
			p.t.Errorf("%s: exit: %v", p.name, err)
		}
	case <-time.After(waitFor):
		p.t.Errorf("%s did not exit; killing it", p.name)
		p.kill()
	}
}

// fdCount returns how many fds the process has open.
func (p *peerProc) fdCount() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	require.NoError(p.t, err)
	return len(ents)
}
