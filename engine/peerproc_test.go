package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// Services are named by a short token: "a" is test.a/i@1.0, "a:j" is
// test.a/j@1.0. An offer's method 0 echoes, method 1 fails with code 42,
// method 2 is held until "answer"; other methods echo.

const (
	peerEnv    = "GWIPC_TEST_PEER"
	peerCfgEnv = "GWIPC_TEST_PEER_CFG"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(peerEnv); spec != "" {
		os.Exit(peerMain(spec))
	}
	os.Exit(m.Run())
}

func testService(name string) ServiceID {
	id, inst, ok := strings.Cut(name, ":")
	if !ok {
		inst = "i"
	}
	return ServiceID{Interface: Interface{ID: "test." + id, Major: 1, Minor: 0}, Instance: inst}
}

// peerConfig is the part of Config a test passes to a peer process.
type peerConfig struct {
	Policy       []Rule   `json:",omitempty"`
	Limits       Limits   `json:",omitempty"`
	AllowUIDs    []uint32 `json:",omitempty"`
	ListenerUIDs []uint32 `json:",omitempty"`
	SocketMode   uint32   `json:",omitempty"`
}

type peerRole struct {
	node    *Node
	out     *bufio.Writer
	outMu   sync.Mutex
	mu      sync.Mutex
	offers  map[string]*Offer
	proxies map[string]*Proxy
	held    map[string][]Sample
	calls   map[string][]Call
	pending map[string]PendingCall
	finders map[string]*Finder
	nextID  int
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
	r := &peerRole{out: bufio.NewWriter(os.Stdout), offers: map[string]*Offer{}, proxies: map[string]*Proxy{},
		held: map[string][]Sample{}, calls: map[string][]Call{}, pending: map[string]PendingCall{}, finders: map[string]*Finder{}}
	var pc peerConfig
	if js := os.Getenv(peerCfgEnv); js != "" {
		if err := json.Unmarshal([]byte(js), &pc); err != nil {
			fmt.Printf("fatal %v\n", err)
			return 1
		}
	}
	cfg := &Config{Name: name,
		ReconnectMax:       200 * time.Millisecond,
		OnPeerConnected:    func(p *Peer) { r.emit("peer+ %d %s %d", p.ID(), p.Name(), p.PID()) },
		OnPeerDisconnected: func(p *Peer, err error) { r.emit("peer- %d %s", p.ID(), p.Name()) },
		Policy:             pc.Policy, Limits: pc.Limits, AllowUIDs: pc.AllowUIDs, ListenerUIDs: pc.ListenerUIDs,
		SocketMode: os.FileMode(pc.SocketMode),
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
	select {
	case <-done:
		return 0
	case <-time.After(waitFor):
		fmt.Printf("fatal Run did not return after Close\n")
		return 1
	}
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return v
}

// options splits "k=v" words from positional ones.
func options(a []string) ([]string, map[string]string) {
	var pos []string
	opts := map[string]string{}
	for _, w := range a {
		if k, v, ok := strings.Cut(w, "="); ok {
			opts[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	return pos, opts
}

func (r *peerRole) offer(a []string) error {
	pos, opts := options(a)
	name := pos[1]
	cfg := &OfferConfig{Events: uint16(atoi(pos[2])),
		OnSubscription:  func(ev uint16, on bool) { r.emit("subscribed %s %d %v", name, ev, on) },
		OnCancel:        func(c Call) { r.emit("cancelled %s %d", name, c.Method()) },
		OnUpdateRequest: func(ev uint16) { r.emit("updreq %s %d", name, ev) },
	}
	if len(pos) > 3 {
		// Sizes the event pool and every binding's reply pool alike.
		cfg.Geometry = shm.Geometry{SlotCount: uint32(atoi(pos[3])), SlotSize: uint32(atoi(pos[4]))}
		cfg.ReplyGeometry = cfg.Geometry
	}
	if v, ok := opts["methods"]; ok {
		cfg.Methods = uint16(atoi(v))
	}
	if v, ok := opts["fields"]; ok {
		for _, f := range strings.Split(v, ",") {
			cfg.Fields = append(cfg.Fields, uint16(atoi(f)))
		}
	}
	if v, ok := opts["share"]; ok {
		cfg.SubscriberSlots = atoi(v)
	}
	cfg.NoInline = opts["noinline"] == "1"
	if cfg.Methods > 0 {
		cfg.OnCall = func(c Call) { r.onCall(name, c) }
	}
	o, err := r.node.Offer(testService(name), cfg)
	if err == nil {
		r.offers[name] = o
	}
	return err
}

func (r *peerRole) onCall(name string, c Call) {
	ff := ""
	if c.FireAndForget() {
		ff = " ff"
	}
	r.emit("call %s %d %s%s", name, c.Method(), c.Data(), ff)
	switch {
	case c.FireAndForget():
	case c.Method() == 1:
		c.Fail(42, append([]byte("bad:"), c.Data()...))
	case c.Method() == 2:
		r.mu.Lock()
		r.calls[name] = append(r.calls[name], c)
		r.mu.Unlock()
	default:
		if err := c.Reply(c.Data()); err != nil {
			r.emit("reply-failed %s %v", name, err)
		}
	}
}

func (r *peerRole) call(a []string) (string, error) {
	r.mu.Lock()
	px := r.proxies[a[1]]
	r.mu.Unlock()
	ctx := context.Background()
	if len(a) > 4 {
		d, err := time.ParseDuration(a[4])
		if err != nil {
			return "", err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	reply, err := px.Call(ctx, uint16(atoi(a[2])), []byte(strings.TrimPrefix(a[3], "-")))
	if reply.Data() != nil || err == nil {
		defer reply.Release()
		if err != nil {
			return "", fmt.Errorf("%w data=%s", err, reply.Data())
		}
		return string(reply.Data()), nil
	}
	return "", err
}

func (r *peerRole) acall(a []string) (string, error) {
	var opts CallOptions
	if len(a) > 4 {
		d, err := time.ParseDuration(a[4])
		if err != nil {
			return "", err
		}
		opts.Timeout = d
	}
	r.nextID++
	id := fmt.Sprintf("c%d", r.nextID)
	h, err := r.proxies[a[1]].CallAsync(uint16(atoi(a[2])), []byte(strings.TrimPrefix(a[3], "-")), opts, func(rep Reply, err error) {
		if err != nil {
			r.emit("done %s err %v", id, err)
			return
		}
		r.emit("done %s ok %s", id, rep.Data())
	})
	if err != nil {
		return "", err
	}
	r.pending[id] = h
	return id, nil
}

// burst makes n concurrent echo calls and reports when all are back.
func (r *peerRole) burst(name string, n int) error {
	var mu sync.Mutex
	good, bad := 0, 0
	for i := range n {
		want := fmt.Sprintf("m%d", i)
		_, err := r.proxies[name].CallAsync(0, []byte(want), CallOptions{}, func(rep Reply, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil && string(rep.Data()) == want {
				good++
			} else {
				bad++
			}
			if good+bad == n {
				r.emit("burst %s ok=%d bad=%d", name, good, bad)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// do runs one command.
func (r *peerRole) do(a []string) (string, error) {
	if a[0] == "call" { // call NAME METHOD DATA [TIMEOUT]: blocks, so not under r.mu
		return r.call(a)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch a[0] {
	case "offer": // offer NAME EVENTS [SLOTCOUNT SLOTSIZE] [methods=N] [fields=E,..] [share=K] [nohandler=1] [noinline=1]
		return "", r.offer(a)
	case "withdraw": // withdraw NAME
		return "", r.offers[a[1]].Close()
	case "publish": // publish NAME EVENT DATA
		return "", r.offers[a[1]].Publish(uint16(atoi(a[2])), []byte(a[3]))
	case "require": // require NAME [callslots=N]
		pos, opts := options(a)
		name := pos[1]
		cfg := &ProxyConfig{
			OnAvailability: func(up bool) { r.emit("avail %s %v", name, up) },
			OnSubscription: func(ev uint16, err error) { r.emit("suback %s %d %v", name, ev, err) },
		}
		if v, ok := opts["callslots"]; ok {
			cfg.CallGeometry = shm.Geometry{SlotSize: 256, SlotCount: uint32(atoi(v))}
		}
		px, err := r.node.Require(testService(name), cfg)
		if err != nil {
			return "", err
		}
		r.proxies[name] = px
	case "subscribe": // subscribe NAME EVENT [hold] [initial]
		name := a[1]
		hold, mode := slices.Contains(a[3:], "hold"), Updates
		if slices.Contains(a[3:], "initial") {
			mode = InitialValue
		}
		return "", r.proxies[name].Subscribe(uint16(atoi(a[2])), mode, func(s Sample) {
			req := ""
			if s.Requested() {
				req = " req"
			}
			if hold { // before the line: a "release" sent on seeing it finds the sample
				s.Keep()
				r.mu.Lock()
				r.held[name] = append(r.held[name], s)
				r.mu.Unlock()
			}
			r.emit("recv %s %d %d %s%s", name, s.Event(), s.Seq(), s.Data(), req)
		})
	case "unsubscribe": // unsubscribe NAME EVENT
		return "", r.proxies[a[1]].Unsubscribe(uint16(atoi(a[2])))
	case "request": // request NAME EVENT
		return "", r.proxies[a[1]].RequestUpdate(uint16(atoi(a[2])))
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
	case "acall": // acall NAME METHOD DATA [TIMEOUT]: prints "done ID ..." later
		return r.acall(a)
	case "cancel": // cancel ID
		r.pending[a[1]].Cancel()
	case "send": // send NAME METHOD DATA: fire-and-forget
		return "", r.proxies[a[1]].Send(uint16(atoi(a[2])), []byte(a[3]))
	case "burst": // burst NAME N: N concurrent echo calls
		return "", r.burst(a[1], atoi(a[2]))
	case "answer": // answer NAME: reply "late" to every held call
		var res []string
		for _, c := range r.calls[a[1]] {
			if err := c.Reply([]byte("late")); err != nil {
				res = append(res, err.Error())
			} else {
				res = append(res, "replied")
			}
		}
		r.calls[a[1]] = nil
		return strings.Join(res, ","), nil
	case "find": // find ID SERVICE INSTANCE|*
		inst := a[3]
		if inst == "*" {
			inst = ""
		}
		id := a[1]
		f, err := r.node.Find(testService(a[2]).Interface, inst, func(ev FindEvent) {
			r.emit("found %s %s %s %v", id, ev.Service.Instance, ev.Peer.Name(), ev.Available)
		})
		if err != nil {
			return "", err
		}
		r.finders[id] = f
	case "unfind": // unfind ID
		return "", r.finders[a[1]].Close()
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
	exited  chan struct{}
}

// startPeer starts a peer process: mode is "listen" or "dial".
func startPeer(t testing.TB, mode, path, name string) *peerProc {
	t.Helper()
	return startPeerWith(t, mode, path, name, nil, nil)
}

// startPeerWith starts a peer process with a configuration and, if cred is
// set, as another user.
func startPeerWith(t testing.TB, mode, path, name string, pc *peerConfig, cred *syscall.Credential) *peerProc {
	t.Helper()
	bin := os.Args[0]
	if cred != nil {
		bin = worldExecutableCopy(t)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	// GORACE: a -race binary otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), peerEnv+"="+mode+":"+path+":"+name, "GORACE=atexit_sleep_ms=0")
	if pc != nil {
		js, err := json.Marshal(pc)
		require.NoError(t, err)
		cmd.Env = append(cmd.Env, peerCfgEnv+"="+string(js))
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &peerProc{t: t, name: name, cmd: cmd, stdin: stdin, pid: cmd.Process.Pid,
		replies: make(chan string, 16), exited: make(chan struct{})}
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
	for deadline := time.Now().Add(waitFor); ; time.Sleep(200 * time.Microsecond) {
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
		if time.Now().After(deadline) {
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

// subscribeTo requires service name, waits until it is available, subscribes
// to ev (with options such as "hold" or "initial") and waits for the ack.
func (p *peerProc) subscribeTo(name string, ev int, opts ...string) {
	p.t.Helper()
	p.do("require %s", name)
	p.expect("avail " + name + " true")
	p.do("subscribe %s %d %s", name, ev, strings.Join(opts, " "))
	p.expect(fmt.Sprintf("suback %s %d <nil>", name, ev))
}

// providerWithConsumer starts a listening provider offering "a" (offerArgs)
// and a dialling consumer subscribed to its event 0.
func providerWithConsumer(t *testing.T, offerArgs string) (path string, prov, cons *peerProc) {
	t.Helper()
	path = socketPath(t)
	prov = startPeer(t, "listen", path, "provider")
	prov.do("offer a %s", offerArgs)
	cons = startPeer(t, "dial", path, "consumer")
	cons.subscribeTo("a", 0)
	return path, prov, cons
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
	select {
	case <-p.exited: // its output is read to the end: Wait may close the pipe
		p.cmd.Wait()
	case <-time.After(waitFor):
		p.t.Errorf("%s: still running %v after SIGKILL", p.name, waitFor)
	}
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

// worldExecutableCopy copies the test binary where another user can run
// it (the build directory is private).
func worldExecutableCopy(t testing.TB) string {
	dir, err := os.MkdirTemp("/tmp", "gwbin")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	src, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	bin := filepath.Join(dir, "peer.test")
	require.NoError(t, os.WriteFile(bin, src, 0o755))
	return bin
}

// fdCount returns how many sockets and memfds the process has open: the
// kinds of fd gwipc creates per peer and per pool. (The Go runtime opens
// an epoll fd and an eventfd of its own, lazily.)
func (p *peerProc) fdCount() int {
	dir := fmt.Sprintf("/proc/%d/fd", p.pid)
	ents, err := os.ReadDir(dir)
	require.NoError(p.t, err)
	n := 0
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, "/memfd:") {
			n++
		}
	}
	return n
}
