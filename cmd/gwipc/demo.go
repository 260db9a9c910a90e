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
	"sync"
	"time"

	"github.com/gwipc/gwipc/engine"
)

func init() {
	register(&command{
		name:    "demo",
		summary: "run the demo: a provider and a consumer process exchanging sensor events",
		usage: `gwipc demo [--duration D]

Starts two processes connected over a gwipc socket in a temporary directory:
a provider that offers "demo.sensor" and publishes a temperature reading (a
field) five times a second, and a consumer that calls its "describe" method,
subscribes and prints what it receives.
Halfway through, the demo asks the provider's status endpoint for its status
(what "gwipc status --socket PATH" prints). Both stop after the duration; the
demo fails if the consumer missed readings or either process failed.

With --role provider|consumer --socket PATH it runs one side only (that is
how the demo starts its two processes).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *env, []string) int {
			duration := fs.Duration("duration", 3*time.Second, "how long the provider publishes")
			role := fs.String("role", "", "run one side only: provider or consumer")
			socket := fs.String("socket", "", "socket path (with --role)")
			statusSocket := fs.String("status-socket", "", "where the provider serves its status (with --role provider)")
			return func(ctx context.Context, e *env, args []string) int {
				if len(args) > 0 {
					return usageError(e, commands["demo"], "unexpected arguments")
				}
				switch *role {
				case "":
					return runDemo(ctx, e, *duration)
				case "provider":
					return demoProvider(ctx, e, *socket, *statusSocket, *duration)
				case "consumer":
					return demoConsumer(ctx, e, *socket, *duration)
				}
				return usageError(e, commands["demo"], "--role must be provider or consumer")
			}
		},
	})
}

var demoService = engine.ServiceID{Interface: engine.Interface{ID: "demo.sensor", Major: 1}, Instance: "living-room"}

const demoPeriod = 200 * time.Millisecond

// runDemo starts the provider and the consumer and relays their output.
func runDemo(ctx context.Context, e *env, duration time.Duration) int {
	self, err := os.Executable()
	if err != nil {
		return fail(e, "demo", "finding my own executable: %v", err)
	}
	dir, err := os.MkdirTemp("", "gwipc-demo")
	if err != nil {
		return fail(e, "demo", "%v", err)
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
