package benchmark

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// options are Main's settings.
type options struct {
	passes    int
	places    []string
	sections  []string
	n         int           // timed messages per latency run (up to 64 KiB)
	dur       time.Duration // timed part of each stream run
	baselines string        // the directory of the baseline programs
	json      bool
	out       string // also write the JSON report here
	quick     bool
}

const usage = `usage: gwipc bench [flags]

Measures gwipc between processes against baselines in the same run: raw
AF_UNIX sockets, a bare memfd hand-off, and (when built) libqb's
shared-memory IPC and ZeroMQ over ipc://. Every scenario runs in three
placements (pin01: the two processes on different CPUs, pin00: both on one
CPU, unpinned), in several passes; gwipc and the baselines take turns within
each pass and every ratio is computed inside a pass, then the median over
the passes is reported with its spread. Figures: p50/p99 latency,
throughput, CPU time per operation and allocations per operation in each
process.

flags:
`

// Main runs the benchmark with the command-line arguments args (without
// the program or command name), writes the report to stdout and progress
// and errors to stderr. It returns the process exit code: 0 success, 1 a
// run failed, 2 bad usage. The program must call ServePeerIfRequested
// before anything else in main, or the processes Main starts will run the
// program again.
func Main(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwipc bench: %v\n", err)
		return 2
	}
	rep, err := run(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gwipc bench: %v\n", err)
		return 1
	}
	rep.Command = strings.Join(append([]string{"gwipc bench"}, args...), " ")
	js, err := json.MarshalIndent(rep, "", "  ")
	if err == nil && o.out != "" {
		err = os.WriteFile(o.out, append(js, '\n'), 0o644)
	}
	if err == nil {
		if o.json {
			_, err = stdout.Write(append(js, '\n'))
		} else {
			err = rep.WriteText(stdout)
		}
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
	var keys []string
	for _, s := range sections {
		keys = append(keys, s.key)
	}
	o := options{}
	fs.IntVar(&o.passes, "passes", 5, "passes over every scenario and placement")
	place := fs.String("place", strings.Join(placeNames, ","), "placements, comma-separated: "+strings.Join(placeNames, ", "))
	secs := fs.String("sections", strings.Join(keys, ","), "scenarios, comma-separated: "+strings.Join(keys, ", "))
	fs.IntVar(&o.n, "n", 1500, "timed messages per latency run (a quarter of it above 64 KiB)")
	fs.DurationVar(&o.dur, "d", 200*time.Millisecond, "timed part of each throughput run")
	fs.StringVar(&o.baselines, "baselines", "", "directory of the baseline programs (default: bench/ beside this executable, where make build puts them)")
	fs.BoolVar(&o.json, "json", false, "write the report as JSON instead of tables")
	fs.StringVar(&o.out, "o", "", "also write the JSON report to this file")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run for tests: 2 passes, fewer sizes, -n 200, -d 50ms (explicit flags win)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["passes"] {
			o.passes = 2
		}
		if !set["n"] {
			o.n = 200
		}
		if !set["d"] {
			o.dur = 50 * time.Millisecond
		}
	}
	o.places = splitList(*place)
	o.sections = splitList(*secs)
	for _, p := range o.places {
		if !slices.Contains(placeNames, p) {
			return o, fmt.Errorf("-place: unknown placement %q", p)
		}
	}
	if _, err := sectionsByKey(o.sections); err != nil {
		return o, fmt.Errorf("-sections: %w", err)
	}
	switch {
	case o.passes < 1:
		return o, fmt.Errorf("-passes %d: want at least 1", o.passes)
	case o.n < 10:
		return o, fmt.Errorf("-n %d: want at least 10", o.n)
	case o.dur < 10*time.Millisecond:
		return o, fmt.Errorf("-d %v: want at least 10ms", o.dur)
	}
	if o.baselines == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding this executable: %w", err)
		}
		o.baselines = filepath.Join(filepath.Dir(exe), "bench")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// sizes are the section's payload sizes in this run.
func (o options) sizes(sec *section) []int {
	if o.quick && sec.quickSizes != nil {
		return sec.quickSizes
	}
	return sec.sizes
}

// samples are the timed and untimed messages of a latency run: n up to 64
// KiB, a quarter of it above (each message costs more).
func (o options) samples(size int) (n, warm int) {
	n = o.n
	if size > 64*kib {
		n = max(o.n/4, 10)
	}
	return n, max(n/10, 10)
}

// row is one size of one section in one placement: its contenders and
// their figures, pass by pass.
type row struct {
	sec  *section
	size int
	cs   []contender
	figs [][]Figures // [contender][pass]
}

// missingPrograms checks the baseline programs: uds and memfd are always
// built; qb and zmq only when their libraries are installed. It returns
// the families that cannot run, with the reason.
func missingPrograms(dir string) (map[string]string, error) {
	missing := map[string]string{}
	for _, p := range []struct{ family, prog, need string }{
		{familyUDS, "uds", ""},
		{familyMemfd, "memfd", ""},
		{familyLibqb, "qb", "libqb-dev"},
		{familyZMQ, "zmq", "libzmq3-dev"},
	} {
		path := filepath.Join(dir, p.prog)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if p.need == "" {
			return nil, fmt.Errorf("baseline program %s not found: run make build (or pass -baselines)", path)
		}
		missing[p.family] = "not installed: run make bench-deps (" + p.need + "), then make build"
	}
	return missing, nil
}

// run measures everything o asks for and returns the report.
func run(o options, progress io.Writer) (*Report, error) {
	start := time.Now()
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, err
	}
	pls, skipped := placements(o.places, cpus)
	secs, err := sectionsByKey(o.sections)
	if err != nil {
		return nil, err
	}
	missing, err := missingPrograms(o.baselines)
	if err != nil {
		return nil, err
	}
	rows := make([][]*row, len(pls))
	for i := range pls {
		for _, sec := range secs {
			for _, size := range o.sizes(sec) {
				r := &row{sec: sec, size: size}
				for _, c := range sec.contenders(size) {
					if _, gone := missing[c.family]; !gone {
						r.cs = append(r.cs, c)
					}
				}
				r.figs = make([][]Figures, len(r.cs))
				rows[i] = append(rows[i], r)
			}
		}
	}
	for pass := range o.passes {
		for i, pl := range pls {
			for _, r := range rows[i] {
				// Take turns: a different contender goes first in each
				// pass, so slow drift does not always hit the same one.
				for k := range r.cs {
					j := (k + pass) % len(r.cs)
					f, err := o.measure(r, j, pl)
					if err != nil {
						return nil, fmt.Errorf("pass %d, %s, %s %s, %s: %w", pass+1, pl.name, r.sec.key, sizeName(r.size), r.cs[j].name, err)
					}
					r.figs[j] = append(r.figs[j], f)
				}
			}
			fmt.Fprintf(progress, "gwipc bench: pass %d/%d, %s done (%.0fs)\n", pass+1, o.passes, pl.name, time.Since(start).Seconds())
		}
	}
	rep := newReport(o, cpus, pls, rows, missing, skipped)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// measure runs contender j of r once in pl and returns its figures.
func (o options) measure(r *row, j int, pl placement) (Figures, error) {
	dir, err := os.MkdirTemp(shortTempDir(), "gwb")
	if err != nil {
		return Figures{}, fmt.Errorf("creating the run's directory: %w", err)
	}
	defer os.RemoveAll(dir)
	rn := trial{sec: r.sec, size: r.size, c: r.cs[j], pl: pl, durMs: int(o.dur.Milliseconds()), wMs: int(max(o.dur/4, 20*time.Millisecond).Milliseconds())}
	rn.n, rn.warm = o.samples(r.size)
	ps, err := rn.procs(o.baselines, dir)
	if err != nil {
		return Figures{}, err
	}
	before := sampleLoad()
	res, err := runProcs(ps, runTimeout)
	if err != nil {
		return Figures{}, err
	}
	after := sampleLoad()
	f, err := rn.figures(res)
	var ours time.Duration
	for _, r := range res {
		ours += r.procCPU
	}
	f.OtherLoad = otherLoad(before, after, ours)
	return f, err
}

// shortTempDir is a directory for sockets whose paths fit sun_path.
func shortTempDir() string {
	if d := os.TempDir(); len(d) < 64 {
		return d
	}
	return "/tmp"
}

// figures checks a run's results (a lost, extra or corrupted message fails
// the run) and computes its figures.
func (r trial) figures(res []result) (Figures, error) {
	a, bs := res[0], res[1:]
	var f Figures
	switch r.sec.scenario {
	case scenarioLat:
		if a.Ops != uint64(r.n) {
			return f, fmt.Errorf("the publisher sent %d timed messages, want %d", a.Ops, r.n)
		}
		worst := make([]int64, r.n) // the last receiver's latency, message by message
		for i, b := range bs {
			if b.Ops != uint64(r.n) || len(b.Samples) != r.n {
				return f, fmt.Errorf("receiver %d got %d timed messages (%d samples), want %d", i+1, b.Ops, len(b.Samples), r.n)
			}
			for k, s := range b.Samples {
				worst[k] = max(worst[k], s)
			}
		}
		f.P50, f.P99 = percentileUs(worst, 0.50), percentileUs(worst, 0.99)
	case scenarioRTT:
		b := bs[0]
		if a.Ops != uint64(r.n) || len(a.Samples) != r.n || b.Ops != uint64(r.n) {
			return f, fmt.Errorf("the caller made %d timed calls (%d samples), the provider served %d, want %d", a.Ops, len(a.Samples), b.Ops, r.n)
		}
		f.P50, f.P99 = percentileUs(a.Samples, 0.50), percentileUs(a.Samples, 0.99)
	case scenarioStream:
		b := bs[0]
		want := sumPayload(payload(r.size)) * b.Ops
		switch {
		case b.Ops == 0 || b.ElapsedNs == 0:
			return f, errors.New("the receiver timed no message")
		case b.Ops != a.Ops:
			return f, fmt.Errorf("the receiver got %d timed messages, the sender sent %d", b.Ops, a.Ops)
		case b.Bytes != b.Ops*uint64(r.size):
			return f, fmt.Errorf("the receiver got %d bytes in %d messages of %d", b.Bytes, b.Ops, r.size)
		case b.Checksum != want:
			return f, fmt.Errorf("the receiver's checksum is %d, want %d (it did not read every byte)", b.Checksum, want)
		}
		secs := float64(b.ElapsedNs) / 1e9
		f.Rate, f.GBps = float64(b.Ops)/secs, float64(b.Bytes)/secs/1e9
	}
	f.Messages = bs[0].Ops
	f.CPUA, f.AllocsA = perOp(a)
	var allocs float64
	for _, b := range bs {
		cpu, al := perOp(b)
		f.CPUB += cpu / float64(len(bs))
		if al != nil {
			allocs += *al / float64(len(bs))
			f.AllocsB = &allocs
		}
	}
	return f, nil
}

// perOp is a process's CPU µs and allocations per timed message.
func perOp(r result) (cpuUs float64, allocs *float64) {
	if r.Ops == 0 {
		return 0, nil
	}
	cpuUs = float64(r.CPUNs) / 1e3 / float64(r.Ops)
	if r.Mallocs != nil {
		a := float64(*r.Mallocs) / float64(r.Ops)
		allocs = &a
	}
	return cpuUs, allocs
}
