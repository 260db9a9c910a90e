package benchmark

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// section is one scenario of the report: a table with a row per payload
// size, each row comparing the gwipc contenders with the baselines.
type section struct {
	key        string // for -sections and the JSON
	title      string
	scenario   string // the processes' scenario (scenarioLat, ...)
	throughput bool   // a rate (receiver's messages and bytes per second), else latency percentiles
	subs       int    // receivers per run (default 1)
	sizes      []int
	quickSizes []int    // -quick (nil: sizes)
	modes      []string // gwipc payload modes
	baselines  []func(sec *section, size int) contender
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// sections is the scenario table: what `gwipc bench` measures, in order.
var sections = []*section{
	{
		key:      "oneway",
		title:    "event one-way latency, µs: publisher's stamp to the subscriber's callback (or read), one event in flight",
		scenario: scenarioLat, sizes: []int{64, kib, 64 * kib, mib}, quickSizes: []int{64, 64 * kib},
		modes:     []string{modeCopy, modeLoan},
		baselines: []func(*section, int) contender{udsBaseline, libqbBaseline, zmqBaseline},
	},
	{
		key:      "rate",
		title:    "events/s: the publisher sends as fast as it can, the subscriber reads every byte",
		scenario: scenarioStream, throughput: true, sizes: []int{64},
		modes:     []string{modeCopy},
		baselines: []func(*section, int) contender{udsBaseline, libqbBaseline, zmqBaseline},
	},
	{
		key:      "bandwidth",
		title:    "GB/s: the publisher sends as fast as it can, the subscriber reads every byte",
		scenario: scenarioStream, throughput: true, sizes: []int{64 * kib, mib}, quickSizes: []int{64 * kib},
		modes:     []string{modeCopy},
		baselines: []func(*section, int) contender{udsBaseline, libqbBaseline, zmqBaseline, memfdBaseline},
	},
	{
		key:      "fanout",
		title:    "fan-out to 4 subscribers, µs: publisher's stamp to the last subscriber's callback (or read), one event in flight",
		scenario: scenarioLat, subs: 4, sizes: []int{64},
		modes:     []string{modeCopy},
		baselines: []func(*section, int) contender{udsBaseline},
	},
	{
		key:      "rtt",
		title:    "method round trip, µs: request and reply of the same size, one call in flight",
		scenario: scenarioRTT, sizes: []int{64, 64 * kib}, quickSizes: []int{64, 64 * kib},
		modes:     []string{modeCopy},
		baselines: []func(*section, int) contender{udsBaseline, libqbBaseline, zmqBaseline},
	},
}

// Baseline families: the ratio columns.
const (
	familyUDS   = "uds"
	familyLibqb = "libqb"
	familyZMQ   = "zmq"
	familyMemfd = "memfd"
)

var families = []string{familyUDS, familyLibqb, familyZMQ, familyMemfd}

// contender is one transport measured in a row: a gwipc variant and
// payload mode, or a baseline program.
type contender struct {
	name   string
	family string // "gwipc" or a baseline family
	prog   string // the baseline program's name; "" for gwipc (this executable)
	// variant and mode of a gwipc contender.
	variant, mode string
	// sock is the type of the socketpair made for each receiver (passed
	// as fds), 0 for none.
	sock int
	// pathIn names the -path argument in the run's directory (nil: no
	// -path).
	pathIn func(dir string) string
	// slots overrides the payloads buffered (0: defaultSlots).
	slots int
}

func (c contender) gwipc() bool { return c.family == "gwipc" }

// contenders are a row's gwipc contenders (one per variant and mode) and
// then its baselines.
func (sec *section) contenders(size int) []contender {
	var cs []contender
	for _, v := range gwVariants {
		for _, m := range sec.modes {
			name := "gwipc " + v.name
			if len(sec.modes) > 1 {
				name += " " + m
			}
			cs = append(cs, contender{
				name: name, family: "gwipc", variant: v.name, mode: m,
				pathIn: func(dir string) string { return filepath.Join(dir, "s") },
			})
		}
	}
	for _, b := range sec.baselines {
		cs = append(cs, b(sec, size))
	}
	return cs
}

// families are the section's baseline families, in table order.
func (sec *section) families() []string {
	var fs []string
	for _, b := range sec.baselines {
		fs = append(fs, b(sec, sec.sizes[0]).family)
	}
	return fs
}

// maxDatagram is the largest payload sent as one SOCK_SEQPACKET message;
// larger ones go over SOCK_STREAM (a datagram must fit the socket buffer,
// about 208 KiB by default).
const maxDatagram = 64 * kib

func udsBaseline(_ *section, size int) contender {
	if size > maxDatagram {
		return contender{name: "uds stream", family: familyUDS, prog: "uds", sock: unix.SOCK_STREAM}
	}
	return contender{name: "uds seqpacket", family: familyUDS, prog: "uds", sock: unix.SOCK_SEQPACKET}
}

func libqbBaseline(sec *section, _ int) contender {
	name := "libqb shm events"
	if sec.scenario == scenarioRTT {
		name = "libqb shm sendv_recv"
	}
	// A service name: libqb makes an abstract socket and /dev/shm files
	// of it. The run's directory name is unique.
	return contender{name: name, family: familyLibqb, prog: "qb", pathIn: filepath.Base}
}

func zmqBaseline(sec *section, _ int) contender {
	name := "zmq pair"
	if sec.scenario == scenarioRTT {
		name = "zmq req/rep"
	}
	return contender{name: name, family: familyZMQ, prog: "zmq", pathIn: func(dir string) string { return filepath.Join(dir, "z") }}
}

// memfdSlots is the floor's slot count (the goal is stated against 2).
const memfdSlots = 2

func memfdBaseline(_ *section, _ int) contender {
	return contender{name: fmt.Sprintf("memfd %d slots", memfdSlots), family: familyMemfd, prog: "memfd", sock: unix.SOCK_SEQPACKET, slots: memfdSlots}
}

// defaultSlots is how many payloads a transport may buffer, where it has a
// knob (gwipc's pool, libqb's rings): 1 for one message in flight (so a
// gwipc publisher's next Loan waits for the release of the last event);
// 4 for calls; for streams up to 1024 payloads (ZeroMQ's default
// high-water mark is 1000 messages on each side), 4 MiB at most.
func defaultSlots(scenario string, size int) int {
	switch scenario {
	case scenarioLat:
		return 1
	case scenarioRTT:
		return 4
	}
	return min(1024, max(2, 4*mib/size))
}

// placement is where a run's processes run.
type placement struct {
	name       string
	cpuA, cpuB int // the publisher or caller, the receivers or provider; -1: not pinned
	desc       string
}

// Placement names.
const (
	placePin01    = "pin01"
	placePin00    = "pin00"
	placeUnpinned = "unpinned"
)

var placeNames = []string{placePin01, placePin00, placeUnpinned}

// placements are the named placements on cpus (the CPUs this process may
// use). pin01 needs two CPUs; without them it is skipped, with the reason.
func placements(names []string, cpus []int) (pls []placement, skipped map[string]string) {
	skipped = map[string]string{}
	for _, name := range names {
		switch {
		case name == placePin01 && len(cpus) < 2:
			skipped[name] = "needs two CPUs; this process may use one"
		case name == placePin01:
			pls = append(pls, placement{name, cpus[0], cpus[1], fmt.Sprintf(
				"the two processes on different CPUs (every wake-up crosses CPUs): publisher or caller on CPU %d, subscriber or provider on CPU %d; fan-out: publisher on CPU %d, the 4 subscribers on CPU %d",
				cpus[0], cpus[1], cpus[0], cpus[1])})
		case name == placePin00:
			pls = append(pls, placement{name, cpus[0], cpus[0], fmt.Sprintf(
				"both processes on CPU %d; fan-out: all five processes on CPU %d", cpus[0], cpus[0])})
		case name == placeUnpinned:
			pls = append(pls, placement{name, -1, -1, "not pinned: wherever the scheduler puts them (GOMAXPROCS = all CPUs)"})
		}
	}
	return pls, skipped
}

// trial is one measurement: a contender in a row, in a placement.
type trial struct {
	sec   *section
	size  int
	c     contender
	pl    placement
	n     int // lat, rtt: timed messages
	warm  int
	durMs int // stream
	wMs   int
}

// procs are the run's processes: the publisher or caller first, then the
// receivers or the provider. dir is the run's own directory.
func (r trial) procs(baselineDir, dir string) ([]proc, error) {
	a := args{Scenario: r.sec.scenario, Size: r.size, Variant: r.c.variant, Mode: r.c.mode, Slots: r.c.slots}
	if a.Slots == 0 {
		a.Slots = defaultSlots(r.sec.scenario, r.size)
	}
	if r.sec.scenario == scenarioStream {
		a.DurMs, a.WarmMs = r.durMs, r.wMs
	} else {
		a.N, a.Warm = r.n, r.warm
	}
	if r.c.pathIn != nil {
		a.Path = r.c.pathIn(dir)
	}
	prog := ""
	if !r.c.gwipc() {
		prog = filepath.Join(baselineDir, r.c.prog)
	}
	subs := max(r.sec.subs, 1)
	A := proc{prog: prog, args: a}
	A.args.Role, A.args.CPU, A.args.Subs = rolePub, r.pl.cpuA, subs
	if r.sec.scenario == scenarioRTT {
		A.args.Role = roleCall
	}
	ps := []proc{A}
	for range subs {
		B := proc{prog: prog, args: a}
		B.args.Role, B.args.CPU = roleSub, r.pl.cpuB
		if r.sec.scenario == scenarioRTT {
			B.args.Role = roleServe
		}
		ps = append(ps, B)
	}
	if r.c.sock != 0 {
		for i := 1; i < len(ps); i++ {
			fds, err := unix.Socketpair(unix.AF_UNIX, r.c.sock|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				closeFiles(ps)
				return nil, fmt.Errorf("socketpair: %w", os.NewSyscallError("socketpair", err))
			}
			ps[0].files = append(ps[0].files, os.NewFile(uintptr(fds[0]), "a"))
			ps[i].files = []*os.File{os.NewFile(uintptr(fds[1]), "b")}
		}
	}
	return ps, nil
}

func closeFiles(ps []proc) {
	for _, p := range ps {
		for _, f := range p.files {
			f.Close()
		}
	}
}

// sectionsByKey returns the sections named in keys, in table order.
func sectionsByKey(keys []string) ([]*section, error) {
	for _, k := range keys {
		if !slices.ContainsFunc(sections, func(s *section) bool { return s.key == k }) {
			return nil, fmt.Errorf("unknown section %q", k)
		}
	}
	var out []*section
	for _, s := range sections {
		if slices.Contains(keys, s.key) {
			out = append(out, s)
		}
	}
	return out, nil
}
