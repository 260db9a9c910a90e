package benchmark

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"
	_ "unsafe" // go:linkname

	"golang.org/x/sys/unix"
)

// This file is the gwipc side of the protocol every measurement process
// speaks (baseline/bench.h is the C side): its arguments, the payload
// header, the sender's and receiver's bookkeeping and the result line.

// PeerEnv is the environment variable that turns a re-executed binary into
// a gwipc measurement process; its arguments are then the process's
// -name=value parameters.
const PeerEnv = "GWIPC_BENCH_PEER"

// Process scenarios (baseline/bench.h explains them).
const (
	scenarioLat    = "lat"
	scenarioStream = "stream"
	scenarioRTT    = "rtt"
)

// Roles.
const (
	rolePub   = "pub"
	roleSub   = "sub"
	roleCall  = "call"
	roleServe = "serve"
)

// peerTimeout bounds every wait of a measurement process on its peer; the
// harness kills a run that takes longer than runTimeout.
const (
	peerTimeout = 25 * time.Second
	runTimeout  = 30 * time.Second
)

// args are one measurement process's parameters, passed as -name=value.
type args struct {
	Role, Scenario string
	Path           string // where to meet the peer (gwipc, libqb, ZeroMQ)
	Size           int    // payload bytes: a multiple of 8, at least hdrBytes
	N, Warm        int    // lat, rtt: timed and untimed messages
	DurMs, WarmMs  int    // stream: timed and untimed milliseconds
	Subs           int    // pub: receivers
	Slots          int    // buffering in payloads (gwipc: slots per pool)
	CPU            int    // -1: not pinned
	Variant, Mode  string // gwipc: a gwVariant's name; copy or loan
}

// argv is a as command-line arguments, leaving out what is unset.
func (a args) argv() []string {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, "-"+name+"="+v)
		}
	}
	num := func(name string, v int) {
		if v > 0 {
			add(name, strconv.Itoa(v))
		}
	}
	add("role", a.Role)
	add("scenario", a.Scenario)
	add("path", a.Path)
	num("size", a.Size)
	num("n", a.N)
	num("warm", a.Warm)
	num("dur_ms", a.DurMs)
	num("warm_ms", a.WarmMs)
	num("subs", a.Subs)
	num("slots", a.Slots)
	if a.CPU >= 0 {
		add("cpu", strconv.Itoa(a.CPU))
	}
	add("variant", a.Variant)
	add("mode", a.Mode)
	return out
}

// parseArgs is the inverse of argv.
func parseArgs(argv []string) (args, error) {
	var a args
	fs := flag.NewFlagSet("gwipc bench peer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.Role, "role", "", "")
	fs.StringVar(&a.Scenario, "scenario", "", "")
	fs.StringVar(&a.Path, "path", "", "")
	fs.IntVar(&a.Size, "size", 0, "")
	fs.IntVar(&a.N, "n", 0, "")
	fs.IntVar(&a.Warm, "warm", 0, "")
	fs.IntVar(&a.DurMs, "dur_ms", 0, "")
	fs.IntVar(&a.WarmMs, "warm_ms", 0, "")
	fs.IntVar(&a.Subs, "subs", 1, "")
	fs.IntVar(&a.Slots, "slots", 1, "")
	fs.IntVar(&a.CPU, "cpu", -1, "")
	fs.StringVar(&a.Variant, "variant", "", "")
	fs.StringVar(&a.Mode, "mode", "", "")
	if err := fs.Parse(argv); err != nil {
		return a, err
	}
	if a.Size < hdrBytes || a.Size%8 != 0 {
		return a, fmt.Errorf("-size=%d: want a multiple of 8, at least %d", a.Size, hdrBytes)
	}
	return a, nil
}

// result is what a measurement process prints: one JSON line. Counts and
// times cover its measurement window only.
type result struct {
	Ops       uint64  `json:"ops"`        // messages sent, received or called in the window
	CPUNs     uint64  `json:"cpu_ns"`     // user+system CPU time (getrusage, all threads)
	ElapsedNs uint64  `json:"elapsed_ns"` // wall time
	Bytes     uint64  `json:"bytes"`      // stream receiver: payload bytes
	Checksum  uint64  `json:"checksum"`   // stream receiver: sum of the payload words read
	Samples   []int64 `json:"samples"`    // lat receiver, rtt caller: ns per timed message
	Mallocs   *uint64 `json:"mallocs"`    // Go processes: runtime.MemStats.Mallocs delta

	procCPU time.Duration // the whole process's CPU time, from its exit status (the harness's)
}

// ServePeerIfRequested runs a measurement process and exits if PeerEnv is
// set; otherwise it returns at once. Call it first thing in main (and in
// TestMain of any test that runs Main).
func ServePeerIfRequested() {
	if _, ok := os.LookupEnv(PeerEnv); !ok {
		return
	}
	res, err := servePeer(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "gwipc bench peer %v: %v\n", os.Args[1:], err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "gwipc bench peer: writing the result: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func servePeer(argv []string) (result, error) {
	a, err := parseArgs(argv)
	if err != nil {
		return result{}, err
	}
	if a.CPU >= 0 {
		if err := pinTo(a.CPU); err != nil {
			return result{}, err
		}
	}
	return gwipcRole(a)
}

// The payload header: three little-endian words (see baseline/bench.h).
const (
	hdrSeq = iota
	hdrStamp
	hdrPhase
	hdrWords
	hdrBytes = 8 * hdrWords
)

// Stream phases.
const (
	phaseWarm uint64 = iota
	phaseTimed
	phaseStop
)

func word(b []byte, i int) uint64       { return binary.LittleEndian.Uint64(b[8*i:]) }
func putWord(b []byte, i int, v uint64) { binary.LittleEndian.PutUint64(b[8*i:], v) }

// nanotime is CLOCK_MONOTONIC in nanoseconds (the runtime's vDSO clock, the
// clock the C programs stamp with).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// stamp writes the clock into b's header: the last thing before sending.
func stamp(b []byte) { putWord(b, hdrStamp, uint64(nanotime())) }

// payload is size bytes of the pattern the C programs use.
func payload(size int) []byte {
	b := make([]byte, size)
	for i := hdrBytes; i < size; i++ {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// sumPayload adds up the 64-bit words after the header: a receiver's read
// of every byte, the same loop as the C programs'.
func sumPayload(b []byte) uint64 {
	var s0, s1, s2, s3 uint64
	b = b[hdrBytes:]
	for len(b) >= 32 {
		s0 += binary.LittleEndian.Uint64(b[0:8])
		s1 += binary.LittleEndian.Uint64(b[8:16])
		s2 += binary.LittleEndian.Uint64(b[16:24])
		s3 += binary.LittleEndian.Uint64(b[24:32])
		b = b[32:]
	}
	for len(b) >= 8 {
		s0 += binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	return s0 + s1 + s2 + s3
}

// window is a measurement window: clock, CPU time and allocations at its
// start and end.
type window struct {
	t0, t1     int64
	cpu0, cpu1 uint64
	m0, m1     uint64
}

func (w *window) start() { w.t0, w.cpu0, w.m0 = nanotime(), cpuTime(), mallocs() }
func (w *window) end()   { w.t1, w.cpu1, w.m1 = nanotime(), cpuTime(), mallocs() }

func (w *window) result(ops uint64) result {
	m := w.m1 - w.m0
	return result{Ops: ops, CPUNs: w.cpu1 - w.cpu0, ElapsedNs: uint64(w.t1 - w.t0), Mallocs: &m}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() uint64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return uint64(ru.Utime.Nano() + ru.Stime.Nano())
}

// mallocs is runtime.MemStats.Mallocs now.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// sender is the sending side of lat, stream and rtt, as sender_next in
// baseline/bench.c: next writes the next message's header into buf (the
// stamp last) and reports false when the run is over.
type sender struct {
	a        *args
	buf      []byte
	seq, ops uint64
	deadline int64
	phase    uint64
	over     bool
	w        window
}

func newSender(a *args, buf []byte) *sender {
	return &sender{a: a, buf: buf, deadline: nanotime() + int64(a.WarmMs)*1e6}
}

func (s *sender) next() bool {
	if s.over {
		return false
	}
	if s.a.Scenario == scenarioStream {
		if s.phase == phaseStop { // the stop message went out
			s.over = true
			return false
		}
		s.streamPhase()
		if s.phase == phaseTimed {
			s.ops++
		}
	} else {
		warm := uint64(s.a.Warm)
		if s.seq == warm+uint64(s.a.N) {
			s.w.end()
			s.over = true
			return false
		}
		if s.seq == warm {
			s.w.start()
		}
		if s.seq >= warm {
			s.ops++
		}
	}
	putWord(s.buf, hdrSeq, s.seq)
	putWord(s.buf, hdrPhase, s.phase)
	s.seq++
	stamp(s.buf)
	return true
}

// streamPhase advances the phase by the clock, read for every message from
// 1 KiB up and every 64th below.
func (s *sender) streamPhase() {
	if s.a.Size < 1024 && s.seq%64 != 0 {
		return
	}
	t := nanotime()
	if t < s.deadline {
		return
	}
	switch s.phase {
	case phaseWarm:
		s.phase = phaseTimed
		s.deadline = t + int64(s.a.DurMs)*1e6
		s.w.start()
	case phaseTimed:
		s.w.end()
		s.phase = phaseStop
	}
}

func (s *sender) result() result { return s.w.result(s.ops) }

// receiver is the receiving side of lat, stream and rtt (the rtt server),
// as receiver_got in baseline/bench.c.
type receiver struct {
	a                       *args
	expect, ops, bytes, sum uint64
	samples                 []int64
	w                       window
	finished                bool
}

func newReceiver(a *args) *receiver {
	r := &receiver{a: a}
	if a.Scenario == scenarioLat {
		r.samples = make([]int64, a.N)
	}
	return r
}

// got checks one message and reports whether it was the last.
func (r *receiver) got(msg []byte) (bool, error) {
	t := nanotime()
	if len(msg) != r.a.Size {
		return false, fmt.Errorf("a message of %d bytes, want %d", len(msg), r.a.Size)
	}
	seq := word(msg, hdrSeq)
	if seq != r.expect {
		return false, fmt.Errorf("message %d arrived, want %d (lost or reordered)", seq, r.expect)
	}
	r.expect++
	if r.a.Scenario == scenarioStream {
		switch word(msg, hdrPhase) {
		case phaseTimed:
			if r.ops == 0 {
				r.w.start()
			}
			r.ops++
			r.bytes += uint64(len(msg))
			r.sum += sumPayload(msg)
		case phaseStop:
			if r.ops == 0 {
				return false, errors.New("stop before any timed message")
			}
			r.w.end()
			r.finished = true
		}
		return r.finished, nil
	}
	warm := uint64(r.a.Warm)
	if seq == warm {
		r.w.start()
	}
	if seq < warm {
		return false, nil
	}
	if r.samples != nil {
		r.samples[seq-warm] = t - int64(word(msg, hdrStamp))
	}
	r.ops++
	if seq+1 < warm+uint64(r.a.N) {
		return false, nil
	}
	r.w.end()
	r.finished = true
	return true, nil
}

func (r *receiver) result() result {
	res := r.w.result(r.ops)
	res.Bytes, res.Checksum, res.Samples = r.bytes, r.sum, r.samples
	return res
}

// caller is the rtt caller: a sender that records each round trip from
// the stamp its reply echoes.
type caller struct {
	*sender
	samples []int64
}

func newCaller(a *args, buf []byte) *caller {
	return &caller{sender: newSender(a, buf), samples: make([]int64, a.N)}
}

func (c *caller) got(reply []byte) error {
	t := nanotime()
	if len(reply) != c.a.Size || word(reply, hdrSeq)+1 != c.seq {
		return fmt.Errorf("a reply of %d bytes to call %d, want %d bytes to call %d", len(reply), word(reply, hdrSeq), c.a.Size, c.seq-1)
	}
	if seq := c.seq - 1; seq >= uint64(c.a.Warm) {
		c.samples[seq-uint64(c.a.Warm)] = t - int64(word(reply, hdrStamp))
	}
	return nil
}

func (c *caller) result() result {
	res := c.sender.result()
	res.Samples = c.samples
	return res
}
