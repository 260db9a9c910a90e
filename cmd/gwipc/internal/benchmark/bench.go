package benchmark

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options are Main's settings.
type options struct {
	sizes      []int
	n          int           // timed round trips per latency run
	warm       int           // untimed round trips before them
	duration   time.Duration // timed part of each throughput run
	warmDur    time.Duration // untimed publishing before it
	pins       []bool        // pinned modes to run (false: unpinned)
	slots      int           // gwipc pool slot count
	latency    bool          // run the round-trip scenario
	throughput bool          // run the throughput scenario
	json       bool
	quick      bool
	memprofile string // directory for allocation profiles, "" for none
}

const usage = `usage: gwipc bench [flags]

Measures gwipc between two processes against a raw Unix stream socket
(4-byte length prefix, blocking read/write) in the same run: round-trip
latency, one-way throughput and allocations per message, pinned (both
processes on one CPU) and unpinned. The machine may be shared and noisy:
compare the ratios, not the absolute numbers.

flags:
`

// Main runs the benchmarks with the command-line arguments args (without
// the program or command name) and writes the report to stdout, errors to
// stderr. It returns the process exit code: 0 success, 1 a run failed, 2 bad
// usage. The program must call ServePeerIfRequested before anything else in
// main, or the peer processes Main starts will run the program again.
func Main(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwipc bench: %v\n", err)
		return 2
	}
	if opts.memprofile != "" {
		if err := os.MkdirAll(opts.memprofile, 0o755); err != nil {
			fmt.Fprintf(stderr, "gwipc bench: %v\n", err)
			return 1
		}
		runtime.MemProfileRate = 1
	}
	rep, err := run(opts)
	if err == nil && opts.memprofile != "" {
		err = writeMemProfile(filepath.Join(opts.memprofile, "a.pprof"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwipc bench: %v\n", err)
		return 1
	}
	if opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwipc bench: writing the report: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("gwipc bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	sizes := fs.String("sizes", "64,1024,65536,1048576", "payload sizes in bytes, comma-separated (suffixes K and M allowed)")
	n := fs.Int("n", 5000, "timed round trips per latency run (fewer for sizes above 64 KiB: n*64KiB/size, at least 300)")
	d := fs.Duration("d", time.Second, "timed duration of each throughput run")
	pin := fs.String("pin", "both", "CPU placement: both, pinned (both processes on one CPU) or unpinned")
	slots := fs.Int("slots", 64, "slots per gwipc pool (slot size = payload size)")
	scenarios := fs.String("scenarios", "latency,throughput", "scenarios to run, comma-separated")
	memprofile := fs.String("memprofile", "", "write allocation profiles (every allocation sampled) to this directory: one per gwipc peer run, and a.pprof for this process; slows the run down")
	js := fs.Bool("json", false, "write the report as JSON")
	quick := fs.Bool("quick", false, "a few seconds' smoke run: sizes 64 and 65536, n=300, d=150ms (explicit -sizes, -n, -d win)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o := options{n: *n, duration: *d, slots: *slots, json: *js, quick: *quick, memprofile: *memprofile}
	for s := range strings.SplitSeq(*scenarios, ",") {
		switch strings.TrimSpace(s) {
		case scenarioLatency:
			o.latency = true
		case scenarioThroughput:
			o.throughput = true
		default:
			return options{}, fmt.Errorf("-scenarios: %q is not latency or throughput", s)
		}
	}
	if *quick {
		if !set["sizes"] {
			*sizes = "64,65536"
		}
		if !set["n"] {
			o.n = 300
		}
		if !set["d"] {
			o.duration = 150 * time.Millisecond
		}
	}
	var err error
	if o.sizes, err = parseSizes(*sizes); err != nil {
		return options{}, err
	}
	switch *pin {
	case "both":
		o.pins = []bool{false, true}
	case "pinned":
		o.pins = []bool{true}
	case "unpinned":
		o.pins = []bool{false}
	default:
		return options{}, fmt.Errorf("-pin %q: want both, pinned or unpinned", *pin)
	}
	switch {
	case o.n < 1:
		return options{}, fmt.Errorf("-n %d: want at least 1", o.n)
	case o.duration <= 0:
		return options{}, fmt.Errorf("-d %v: want a positive duration", o.duration)
	case o.slots < 2 || o.slots > 4096:
		return options{}, fmt.Errorf("-slots %d: want 2 to 4096", o.slots)
	}
	o.warm = max(20, o.n/10)
	o.warmDur = max(20*time.Millisecond, o.duration/10)
	return o, nil
}

// maxSize bounds -sizes: a gwipc pool holds slots×size bytes.
const maxSize = 16 << 20

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		switch {
		case strings.HasSuffix(f, "K"), strings.HasSuffix(f, "k"):
			mult, f = 1<<10, f[:len(f)-1]
		case strings.HasSuffix(f, "M"), strings.HasSuffix(f, "m"):
			mult, f = 1<<20, f[:len(f)-1]
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 || v*mult > maxSize {
			return nil, fmt.Errorf("-sizes: %q is not a size from 1 byte to %d MiB", f, maxSize>>20)
		}
		if !slices.Contains(out, v*mult) {
			out = append(out, v*mult)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-sizes: no size given")
	}
	return out, nil
}

// roundTrips is the number of timed round trips for size: n up to 64 KiB,
// then scaled down with the size (the bytes moved stay about the same), but
// never below 300 (or n, if smaller).
func (o options) roundTrips(size int) (n, warm int) {
	n = o.n
	if size > 64<<10 {
		n = max(min(o.n, 300), o.n*(64<<10)/size)
	}
	return n, max(min(o.warm, n), 10)
}

// side is one transport's raw outcome of one run.
type side struct {
	rtts     []time.Duration // latency
	elapsed  time.Duration   // throughput: first timed send to the stop's acknowledgement
	sent     uint64          // throughput: messages A sent (gwipc: published) while timed
	mallocsA uint64
	msgsA    uint64
	peer     peerResult
	noSlot   uint64
	dropped  uint64
}

// run executes every scenario and returns the report.
func run(o options) (*Report, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	rep := &Report{
		GoVersion:  runtime.Version(),
		CPUs:       allowedCPUs(),
		Slots:      o.slots,
		Quick:      o.quick,
		Baseline:   "AF_UNIX SOCK_STREAM socketpair, 4-byte length prefix, blocking read/write",
		GwipcDrive: "Dispatch on the measuring goroutine (no Run goroutine); Publish copies into the slot",
	}
	for _, pinned := range o.pins {
		if err := runPinMode(o, pinned, rep); err != nil {
			return nil, err
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func runPinMode(o options, pinned bool, rep *Report) (err error) {
	if pinned {
		p, err := pinProcess()
		if err != nil {
			return err
		}
		defer func() {
			if rerr := p.restore(); err == nil {
				err = rerr
			}
		}()
	}
	for _, size := range o.sizes {
		if !o.latency {
			break
		}
		spec := o.spec(size, pinned)
		row, err := latencyRow(o, spec)
		if err != nil {
			return fmt.Errorf("latency, %s, %s: %w", sizeName(size), pinName(pinned), err)
		}
		rep.Latency = append(rep.Latency, row)
	}
	for _, size := range o.sizes {
		if !o.throughput {
			break
		}
		spec := o.spec(size, pinned)
		row, err := throughputRow(o, spec)
		if err != nil {
			return fmt.Errorf("throughput, %s, %s: %w", sizeName(size), pinName(pinned), err)
		}
		rep.Throughput = append(rep.Throughput, row)
	}
	return nil
}

// spec is the common part of a peer's spec.
func (o options) spec(size int, pinned bool) peerSpec {
	return peerSpec{Size: size, Slots: o.slots, Pinned: pinned, MemProfile: o.memprofile}
}

func pinName(pinned bool) string {
	if pinned {
		return "pinned"
	}
	return "unpinned"
}

func latencyRow(o options, spec peerSpec) (LatencyRow, error) {
	spec.Scenario = scenarioLatency
	n, warm := o.roundTrips(spec.Size)
	spec.Transport = transportSocket
	runtime.GC()
	base, err := socketLatency(spec, n, warm)
	if err != nil {
		return LatencyRow{}, fmt.Errorf("baseline: %w", err)
	}
	spec.Transport = transportGWIPC
	runtime.GC()
	gw, err := gwipcLatency(spec, n, warm)
	if err != nil {
		return LatencyRow{}, fmt.Errorf("gwipc: %w", err)
	}
	if err := checkPeer(spec, base.peer, uint64(n)); err != nil {
		return LatencyRow{}, fmt.Errorf("baseline: %w", err)
	}
	if err := checkPeer(spec, gw.peer, uint64(n)); err != nil {
		return LatencyRow{}, fmt.Errorf("gwipc: %w", err)
	}
	row := LatencyRow{
		Size:     spec.Size,
		Pinned:   spec.Pinned,
		Gwipc:    latencyStats(gw.rtts),
		Baseline: latencyStats(base.rtts),
		GwipcAllocs: Allocs{
			A: perMsg(gw.mallocsA, gw.msgsA),
			B: perMsg(gw.peer.Mallocs, gw.peer.Messages),
		},
		BaselineAllocs: Allocs{
			A: perMsg(base.mallocsA, base.msgsA),
			B: perMsg(base.peer.Mallocs, base.peer.Messages),
		},
		NoSlot: gw.noSlot + gw.peer.NoSlot,
	}
	row.RatioP50 = ratio(row.Gwipc.P50, row.Baseline.P50)
	row.RatioP99 = ratio(row.Gwipc.P99, row.Baseline.P99)
	row.RatioMean = ratio(row.Gwipc.Mean, row.Baseline.Mean)
	return row, nil
}

func throughputRow(o options, spec peerSpec) (ThroughputRow, error) {
	spec.Scenario = scenarioThroughput
	spec.Transport = transportSocket
	runtime.GC()
	base, err := socketThroughput(spec, o.duration, o.warmDur)
	if err != nil {
		return ThroughputRow{}, fmt.Errorf("baseline: %w", err)
	}
	spec.Transport = transportGWIPC
	runtime.GC()
	gw, err := gwipcThroughput(spec, o.duration, o.warmDur)
	if err != nil {
		return ThroughputRow{}, fmt.Errorf("gwipc: %w", err)
	}
	if err := checkPeer(spec, base.peer, 1); err != nil {
		return ThroughputRow{}, fmt.Errorf("baseline: %w", err)
	}
	if err := checkPeer(spec, gw.peer, 1); err != nil {
		return ThroughputRow{}, fmt.Errorf("gwipc: %w", err)
	}
	if base.peer.Messages != base.sent {
		return ThroughputRow{}, fmt.Errorf("baseline: peer received %d messages, %d sent", base.peer.Messages, base.sent)
	}
	if gw.peer.Messages+gw.dropped < gw.sent {
		return ThroughputRow{}, fmt.Errorf("gwipc: peer received %d messages and %d were dropped, but %d were published", gw.peer.Messages, gw.dropped, gw.sent)
	}
	row := ThroughputRow{
		Size:     spec.Size,
		Pinned:   spec.Pinned,
		Gwipc:    throughputStats(gw),
		Baseline: throughputStats(base),
		GwipcAllocs: Allocs{
			A: perMsg(gw.mallocsA, gw.msgsA),
			B: perMsg(gw.peer.Mallocs, gw.peer.Messages),
		},
		BaselineAllocs: Allocs{
			A: perMsg(base.mallocsA, base.msgsA),
			B: perMsg(base.peer.Mallocs, base.peer.Messages),
		},
	}
	row.Ratio = ratio(row.Gwipc.MsgsPerSec, row.Baseline.MsgsPerSec)
	return row, nil
}

// checkPeer checks what the peer reports about its run.
func checkPeer(spec peerSpec, p peerResult, minMsgs uint64) error {
	switch {
	case p.Messages < minMsgs:
		return fmt.Errorf("peer counted %d messages, want at least %d", p.Messages, minMsgs)
	case p.Bytes != p.Messages*uint64(spec.Size):
		return fmt.Errorf("peer counted %d bytes in %d messages of %d", p.Bytes, p.Messages, spec.Size)
	case spec.Pinned && p.CPUs != 1:
		return fmt.Errorf("peer runs on %d CPUs, want 1 (pinned)", p.CPUs)
	}
	return nil
}

func perMsg(mallocs, msgs uint64) float64 {
	if msgs == 0 {
		return 0
	}
	return float64(mallocs) / float64(msgs)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// burst sends messages for d (checking the clock every 16) and returns how
// many it sent.
func burst(d time.Duration, send func() error) (uint64, error) {
	var sent uint64
	for end := time.Now().Add(d); ; {
		for range 16 {
			if err := send(); err != nil {
				return sent, err
			}
		}
		sent += 16
		if !time.Now().Before(end) {
			return sent, nil
		}
	}
}
