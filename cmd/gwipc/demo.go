package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gwipc/gwipc/engine"
)

func init() {
	register(&command{
		name:    "demo",
		summary: "run the demo: a provider and a consumer process exchanging sensor events",
		usage: `gwipc demo [--duration D]
gwipc demo --sensor-daemon PATH --python-consumer SCRIPT [--python PYTHON]

Starts two processes connected over a gwipc socket in a temporary directory:
a provider that offers "demo.sensor" and publishes a temperature reading (a
field) five times a second, and a consumer that calls its "describe" method,
subscribes and prints what it receives.
Halfway through, the demo asks the provider's status endpoint for its status
(what "gwipc status --socket PATH" prints). Both stop after the duration; the
demo fails if the consumer missed readings or either process failed.

With --role provider|consumer --socket PATH it runs one side only (that is
how the demo starts its two processes).

With --sensor-daemon and --python-consumer (what "make run" runs) it shows
the whole system instead, C, Python and Go: the C sensor daemon
(examples/c/sensor_daemon) offers "example.sensor" (an event, a field, a
method); the Python script finds it, subscribes, reads the field and calls
the method; a Go consumer (--role sensor-consumer) receives the same events;
and "gwipc status" shows the daemon's live status. Every line says which
process printed it; every child is bounded by a deadline and killed at it;
the demo exits 1 if any part fails.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			duration := fs.Duration("duration", 3*time.Second, "how long the provider publishes")
			role := fs.String("role", "", "run one side only: provider, consumer or sensor-consumer")
			socket := fs.String("socket", "", "socket path (with --role)")
			statusSocket := fs.String("status-socket", "", "where the provider serves its status (with --role provider)")
			daemon := fs.String("sensor-daemon", "", "the C sensor daemon (build/examples/sensor_daemon): run the system demo")
			pyScript := fs.String("python-consumer", "", "the Python consumer script of the system demo")
			python := fs.String("python", "python3", "the Python interpreter for --python-consumer")
			count := fs.Int("count", 5, "readings the consumers wait for (system demo; --role sensor-consumer)")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return usageError(e, commands["demo"], "unexpected arguments")
				}
				switch *role {
				case "":
					if *daemon != "" || *pyScript != "" {
						if *daemon == "" || *pyScript == "" {
							return usageError(e, commands["demo"], "--sensor-daemon and --python-consumer go together")
						}
						return runSystemDemo(ctx, e, systemDemo{daemon: *daemon, python: *python, script: *pyScript, count: *count})
					}
					return runDemo(ctx, e, *duration)
				case "sensor-consumer":
					return demoSensorConsumer(ctx, e, *socket, *count)
				case "provider":
					return demoProvider(ctx, e, *socket, *statusSocket, *duration)
				case "consumer":
					return demoConsumer(ctx, e, *socket, *duration)
				}
				return usageError(e, commands["demo"], "--role must be provider, consumer or sensor-consumer")
			}
		},
	})
}

var demoService = engine.ServiceID{Interface: engine.Interface{ID: "demo.sensor", Major: 1}, Instance: "living-room"}

const demoPeriod = 200 * time.Millisecond

// demoSetup finds this executable (the demo runs it again in other roles)
// and makes the demo's temporary directory; the caller removes it.
func demoSetup(e *env) (self, dir string, code int) {
	self, err := os.Executable()
	if err != nil {
		return "", "", fail(e, "demo", "finding my own executable: %v", err)
	}
	if dir, err = os.MkdirTemp("", "gwipc-demo"); err != nil {
		return "", "", fail(e, "demo", "%v", err)
	}
	return self, dir, exitOK
}

// runDemo starts the provider and the consumer and relays their output.
func runDemo(ctx context.Context, e *env, duration time.Duration) int {
	self, dir, code := demoSetup(e)
	if code != exitOK {
		return code
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "sensor.sock")
	statusSocket := filepath.Join(dir, "status.sock")
	fmt.Fprintf(e.stdout, "gwipc demo: provider and consumer over %s for %v\n", socket, duration)

	var out sync.Mutex
	start := func(role string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, self, "demo", "--role", role, "--socket", socket, "--status-socket", statusSocket, "--duration", duration.String())
		cmd.Stderr = e.stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				out.Lock()
				fmt.Fprintf(e.stdout, "[%-8s pid %d] %s\n", role, cmd.Process.Pid, sc.Text())
				out.Unlock()
			}
		}()
		return cmd, nil
	}
	prov, err := start("provider")
	if err != nil {
		return fail(e, "demo", "starting the provider: %v", err)
	}
	cons, err := start("consumer")
	if err != nil {
		prov.Process.Kill()
		prov.Wait()
		return fail(e, "demo", "starting the consumer: %v", err)
	}
	select {
	case <-time.After(duration / 2):
		status := exec.CommandContext(ctx, self, "status", "--socket", statusSocket)
		out, err := status.CombinedOutput()
		e.stdout.Write([]byte("gwipc demo: $ gwipc status --socket " + statusSocket + "\n"))
		e.stdout.Write(out)
		if err != nil {
			fmt.Fprintf(e.stderr, "gwipc demo: status: %v\n", err)
		}
	case <-ctx.Done():
	}
	errProv, errCons := prov.Wait(), cons.Wait()
	if errProv != nil || errCons != nil {
		return fail(e, "demo", "provider: %v, consumer: %v", errProv, errCons)
	}
	fmt.Fprintln(e.stdout, "gwipc demo: both processes exited cleanly")
	return exitOK
}

// demoProvider listens, offers the sensor and publishes readings.
func demoProvider(ctx context.Context, e *env, socket, statusSocket string, duration time.Duration) int {
	subscribed := make(chan struct{}, 1)
	node, err := engine.Listen(socket, &engine.Config{Name: "demo-provider", StatusPath: statusSocket,
		OnPeerConnected: func(p *engine.Peer) {
			fmt.Fprintf(e.stdout, "peer %q connected (pid %d, uid %d)\n", p.Name(), p.PID(), p.UID())
		}})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	defer node.Close()
	go node.Run(ctx)
	offer, err := node.Offer(demoService, &engine.OfferConfig{Events: 1, Fields: []uint16{0}, Methods: 1, OnCall: func(c engine.Call) {
		fmt.Fprintf(e.stdout, "call %d from %q\n", c.Method(), c.Peer().Name())
		c.Reply([]byte("living-room thermometer, degrees Celsius, 5 readings/s"))
	}, OnSubscription: func(ev uint16, on bool) {
		if on {
			select {
			case subscribed <- struct{}{}:
			default:
			}
		}
	}})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	fmt.Fprintf(e.stdout, "offering %v, waiting for a subscriber\n", demoService)
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		return fail(e, "demo", "no subscriber within 10s")
	case <-ctx.Done():
		return exitFailure
	}
	tick := time.NewTicker(demoPeriod)
	defer tick.Stop()
	n := int(duration / demoPeriod)
	for i := range n {
		reading := fmt.Sprintf("temperature=%.1fC", 21+2*math.Sin(float64(i)/3))
		if err := offer.Publish(0, []byte(reading)); err != nil {
			return fail(e, "demo", "publishing: %v", err)
		}
		fmt.Fprintf(e.stdout, "published #%d %s\n", i+1, reading)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return exitFailure
		}
	}
	st := node.Status()
	fmt.Fprintf(e.stdout, "done: %d published, %d sent, %d dropped; withdrawing\n",
		st.Offers[0].Counters.Published, st.Offers[0].Counters.Sent, st.Offers[0].Counters.Dropped)
	offer.Close()
	return exitOK
}

// demoConsumer dials, subscribes and prints readings until the provider
// withdraws the service.
func demoConsumer(ctx context.Context, e *env, socket string, duration time.Duration) int {
	node, err := engine.Dial(socket, &engine.Config{Name: "demo-consumer"})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	defer node.Close()
	gone := make(chan struct{})
	var once sync.Once
	var proxy *engine.Proxy
	proxy, err = node.Require(demoService, &engine.ProxyConfig{OnAvailability: func(up bool) {
		if up {
			fmt.Fprintf(e.stdout, "%v is available\n", demoService)
			// Inside a callback: asynchronous, the reply comes in a later Dispatch.
			proxy.CallAsync(0, nil, engine.CallOptions{Timeout: 5 * time.Second}, func(r engine.Reply, err error) {
				if err != nil {
					fmt.Fprintf(e.stdout, "describe failed: %v\n", err)
					return
				}
				fmt.Fprintf(e.stdout, "describe: %s\n", r.Data())
			})
		} else {
			fmt.Fprintf(e.stdout, "%v was withdrawn\n", demoService)
			once.Do(func() { close(gone) })
		}
	}})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	received := 0
	err = proxy.Subscribe(0, engine.InitialValue, func(s engine.Sample) {
		received++
		fmt.Fprintf(e.stdout, "received #%d %s\n", s.Seq(), s.Data())
	})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	runErr := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { runErr <- node.Run(runCtx) }()
	select {
	case <-gone:
	case <-time.After(duration + 10*time.Second):
		return fail(e, "demo", "the provider never withdrew")
	case <-ctx.Done():
		return exitFailure
	}
	cancel()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		return fail(e, "demo", "%v", err)
	}
	gaps := node.Status().Proxies[0].Counters.Gaps
	fmt.Fprintf(e.stdout, "done: %d readings received, %d missed\n", received, gaps)
	if want := int(duration / demoPeriod); received != want || gaps != 0 {
		return fail(e, "demo", "received %d readings (want %d), %d missed", received, want, gaps)
	}
	return exitOK
}

// ---- the system demo: C provider, Python and Go consumers -------------------

// sensorService is examples/c/sensor.h's service: event 0 the readings,
// event 1 the setpoint field, method 0 sets the setpoint.
var sensorService = engine.ServiceID{Interface: engine.Interface{ID: "example.sensor", Major: 1}, Instance: "kitchen"}

// systemDemoDeadline bounds the whole system demo; every child is killed
// at it.
const systemDemoDeadline = 30 * time.Second

type systemDemo struct {
	daemon, python, script string
	count                  int
}

// demoChild is a process of the system demo whose output lines are relayed
// with a label and its pid; marks are substrings that others wait for.
type demoChild struct {
	cmd   *exec.Cmd
	marks map[string]*demoMark // fixed at start
	done  chan struct{}        // its output is drained
}

// demoMark is closed once a line containing it was printed.
type demoMark struct {
	seen chan struct{}
	once sync.Once
}

// waitMark reports whether the child printed mark (false if it ended or
// the demo's deadline passed first).
func (c *demoChild) waitMark(ctx context.Context, mark string) bool {
	m := c.marks[mark]
	select {
	case <-m.seen:
		return true
	case <-c.done:
		select {
		case <-m.seen:
			return true
		default:
			return false
		}
	case <-ctx.Done():
		return false
	}
}

// runSystemDemo runs the sensor daemon, the Go consumer and the Python
// consumer, then the status query, relaying every line with its origin.
func runSystemDemo(ctx context.Context, e *env, d systemDemo) int {
	self, dir, code := demoSetup(e)
	if code != exitOK {
		return code
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, systemDemoDeadline)
	defer cancel()
	socket, status := filepath.Join(dir, "sensor.sock"), filepath.Join(dir, "sensor.status")
	var out sync.Mutex
	say := func(label string, pid int, line string) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(e.stdout, "[%-19s pid %d] %s\n", label, pid, line)
	}
	me := os.Getpid()
	say("Go demo", me, "C provider, Python and Go consumers over "+socket)

	var children []*demoChild
	start := func(label string, argv []string, marks ...string) (*demoChild, error) {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = os.Environ()
		cmd.WaitDelay = 2 * time.Second
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := &demoChild{cmd: cmd, marks: map[string]*demoMark{}, done: make(chan struct{})}
		for _, m := range marks {
			c.marks[m] = &demoMark{seen: make(chan struct{})}
		}
		children = append(children, c)
		go func() {
			defer close(c.done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				say(label, cmd.Process.Pid, sc.Text())
				for text, m := range c.marks {
					if strings.Contains(sc.Text(), text) {
						m.once.Do(func() { close(m.seen) })
					}
				}
			}
		}()
		return c, nil
	}
	// Whatever happens, no child outlives the demo.
	defer func() {
		for _, c := range children {
			if c.cmd.ProcessState == nil {
				c.cmd.Process.Kill()
				c.cmd.Wait()
			}
		}
	}()
	failed := func(format string, a ...any) int {
		say("Go demo", me, "FAILED: "+fmt.Sprintf(format, a...))
		return exitFailure
	}
	wait := func(c *demoChild) error {
		<-c.done
		return c.cmd.Wait()
	}

	daemon, err := start("C  sensor_daemon", []string{d.daemon, "-s", socket, "-S", status, "-i", "250"}, "offering")
	if err != nil {
		return failed("starting the sensor daemon: %v", err)
	}
	if !daemon.waitMark(ctx, "offering") {
		return failed("the sensor daemon did not start")
	}
	goCons, err := start("Go consumer", []string{self, "demo", "--role", "sensor-consumer", "--socket", socket,
		"--count", fmt.Sprint(d.count + 2)}, "subscribed")
	if err != nil {
		return failed("starting the Go consumer: %v", err)
	}
	if !goCons.waitMark(ctx, "subscribed") {
		return failed("the Go consumer did not subscribe")
	}
	pyCons, err := start("Py consumer", []string{d.python, d.script, "--socket", socket, "--readings", fmt.Sprint(d.count)},
		"set_setpoint")
	if err != nil {
		return failed("starting the Python consumer: %v", err)
	}
	if !pyCons.waitMark(ctx, "set_setpoint") {
		return failed("the Python consumer did not call the method")
	}
	// Live status over Simple-IPC while both consumers are connected.
	st, err := start("Go gwipc status", []string{self, "status", "--socket", status, "--timeout", "5s"})
	if err != nil {
		return failed("starting gwipc status: %v", err)
	}
	errStatus := wait(st)
	errPy, errGo := wait(pyCons), wait(goCons)
	daemon.cmd.Process.Signal(syscall.SIGTERM)
	errDaemon := wait(daemon)
	for _, r := range []struct {
		what string
		err  error
	}{{"gwipc status", errStatus}, {"the Python consumer", errPy}, {"the Go consumer", errGo}, {"the sensor daemon", errDaemon}} {
		if r.err != nil {
			return failed("%s: %v", r.what, r.err)
		}
	}
	say("Go demo", me, "all four processes exited cleanly")
	return exitOK
}

// demoSensorConsumer subscribes to the sensor daemon's readings and
// setpoint field and exits after count readings.
func demoSensorConsumer(ctx context.Context, e *env, socket string, count int) int {
	node, err := engine.Dial(socket, &engine.Config{Name: "go-consumer"})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	defer node.Close()
	readings := make(chan struct{}, count)
	proxy, err := node.Require(sensorService, &engine.ProxyConfig{OnSubscription: func(ev uint16, err error) {
		if ev == 0 && err == nil {
			fmt.Fprintln(e.stdout, "subscribed to the readings")
		}
	}})
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	err = proxy.Subscribe(0, engine.Updates, func(s engine.Sample) {
		fmt.Fprintf(e.stdout, "reading #%d: %s C\n", s.Seq(), s.Data())
		select {
		case readings <- struct{}{}:
		default:
		}
	})
	if err == nil {
		err = proxy.Subscribe(1, engine.InitialValue, func(s engine.Sample) {
			fmt.Fprintf(e.stdout, "setpoint field: %s\n", s.Data())
		})
	}
	if err != nil {
		return fail(e, "demo", "%v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go node.Run(runCtx)
	deadline := time.After(systemDemoDeadline)
	for range count {
		select {
		case <-readings:
		case <-deadline:
			return fail(e, "demo", "no %d readings within %v", count, systemDemoDeadline)
		case <-ctx.Done():
			return exitFailure
		}
	}
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.Background(), time.Second)
	defer stop()
	node.Shutdown(shutdownCtx)
	fmt.Fprintf(e.stdout, "done: %d readings\n", count)
	return exitOK
}
