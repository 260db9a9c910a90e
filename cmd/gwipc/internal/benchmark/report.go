package benchmark

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

// Figures are one contender's numbers from one run, or their medians over
// the passes. Latency rows have P50 and P99, throughput rows Rate and GBps.
// A is the publisher or caller, B the subscriber or provider (fan-out: the
// mean of the subscribers).
type Figures struct {
	// Messages is how many the run timed: the latency samples, or the
	// messages the receiver counted (and the sender sent).
	Messages uint64   `json:"messages"`
	P50      float64  `json:"p50_us,omitempty"`
	P99      float64  `json:"p99_us,omitempty"`
	Rate     float64  `json:"msgs_per_s,omitempty"`
	GBps     float64  `json:"gb_per_s,omitempty"`
	CPUA     float64  `json:"cpu_us_per_op_a"` // user+system CPU µs per timed message
	CPUB     float64  `json:"cpu_us_per_op_b"`
	AllocsA  *float64 `json:"allocs_per_op_a,omitempty"` // Go heap allocations per timed message (Go processes)
	AllocsB  *float64 `json:"allocs_per_op_b,omitempty"`
	// OtherLoad is the share of the machine's CPU time during the run that
	// went to other work (other processes, the hypervisor's steal).
	OtherLoad float64 `json:"other_load"`
}

// primary is the figure ratios and spreads are about: p50 or messages/s.
func (f Figures) primary(throughput bool) float64 {
	if throughput {
		return f.Rate
	}
	return f.P50
}

// Report is the outcome of Main. It marshals to the JSON that -json and -o
// write.
type Report struct {
	Command    string            `json:"command"`
	Seconds    float64           `json:"seconds"` // wall time of the whole run
	Machine    Machine           `json:"machine"`
	Passes     int               `json:"passes"`
	Quick      bool              `json:"quick"`
	N          int               `json:"n"`           // timed messages per latency run up to 64 KiB
	DurationMs int               `json:"duration_ms"` // timed part of each throughput run
	Method     []string          `json:"method"`
	Missing    map[string]string `json:"missing,omitempty"`            // baseline families that did not run, and why
	Skipped    map[string]string `json:"skipped_placements,omitempty"` // placements that did not run, and why
	Placements []PlacementReport `json:"placements"`
	Targets    []Target          `json:"targets,omitempty"` // the goals of docs/PERFORMANCE.md, checked
}

// Machine describes where the report was made.
type Machine struct {
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	CPUModel  string `json:"cpu_model"`
	CPUs      []int  `json:"cpus"` // the CPUs the harness may use
}

// PlacementReport is every section in one placement.
type PlacementReport struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Sections    []SectionReport `json:"sections"`
}

// SectionReport is one scenario's table.
type SectionReport struct {
	Key        string      `json:"key"`
	Title      string      `json:"title"`
	Throughput bool        `json:"throughput"`
	Baselines  []string    `json:"baselines"` // the baseline families compared with, in column order
	Rows       []RowReport `json:"rows"`
}

// RowReport is one payload size.
type RowReport struct {
	Size       int               `json:"size"`
	Contenders []ContenderReport `json:"contenders"`
}

// ContenderReport is one transport's figures in a row.
type ContenderReport struct {
	Name   string    `json:"name"`
	Family string    `json:"family"` // gwipc, uds, libqb, zmq or memfd
	Passes []Figures `json:"passes"`
	Median Figures   `json:"median"`
	// Spread is (max − min) / median of the primary figure (p50, or
	// messages/s) over the passes.
	Spread float64 `json:"spread"`
	// Ratios (gwipc only) are against each baseline of the row.
	Ratios []Ratio `json:"ratios,omitempty"`
}

// Ratio is gwipc's figure over a baseline's, computed inside each pass
// (both ran in it), then the median over the passes: p50 (and p99) for
// latency, lower is better; messages/s for throughput, higher is better.
type Ratio struct {
	Baseline  string    `json:"baseline"`
	Family    string    `json:"family"`
	Passes    []float64 `json:"passes"`
	Median    float64   `json:"median"`
	Spread    float64   `json:"spread"`
	P99Passes []float64 `json:"p99_passes,omitempty"`
	P99Median float64   `json:"p99_median,omitempty"`
}

func newReport(o options, cpus []int, pls []placement, rows [][]*row, missing, skipped map[string]string) *Report {
	rep := &Report{
		Machine:    machine(cpus),
		Passes:     o.passes,
		Quick:      o.quick,
		N:          o.n,
		DurationMs: int(o.dur.Milliseconds()),
		Method:     method,
		Missing:    missing,
		Skipped:    skipped,
	}
	if len(missing) == 0 {
		rep.Missing = nil
	}
	if len(skipped) == 0 {
		rep.Skipped = nil
	}
	for i, pl := range pls {
		pr := PlacementReport{Name: pl.name, Description: pl.desc}
		for _, r := range rows[i] {
			if n := len(pr.Sections); n == 0 || pr.Sections[n-1].Key != r.sec.key {
				pr.Sections = append(pr.Sections, SectionReport{
					Key: r.sec.key, Title: r.sec.title, Throughput: r.sec.throughput, Baselines: r.sec.families(),
				})
			}
			s := &pr.Sections[len(pr.Sections)-1]
			s.Rows = append(s.Rows, rowReport(r))
		}
		rep.Placements = append(rep.Placements, pr)
	}
	rep.Targets = rep.targets()
	return rep
}

// method says how the figures are made, for both forms of the report.
var method = []string{
	"Every run is fresh processes: the publisher or caller (A) and the subscriber(s) or provider (B); A stamps CLOCK_MONOTONIC into the payload just before sending, B subtracts it from its clock when the message is in (the subscriber's callback, or after the read).",
	"One-way and fan-out: one message in flight; the next is sent once every receiver acknowledged the last (baselines: an 8-byte reply; gwipc: the slot of a 1-slot pool coming back, i.e. the subscriber's release). Fan-out latency is the last of the 4 subscribers' latencies, message by message.",
	"Throughput: A sends for the duration, then a stop message; B checks every sequence number and sums every 64-bit word of every payload, and the sum is checked. Rate = B's messages / B's time from the first timed message to the stop.",
	"Round trip: A sends a request and waits for the reply of the same size (B echoes the request's bytes).",
	gwDescription,
	"uds: raw AF_UNIX SOCK_SEQPACKET socketpairs, SOCK_STREAM above 64 KiB, blocking send/recv of whole payloads. memfd: a sealed memfd with 2 slots, FUTEX_WAIT/FUTEX_WAKE hand-off, the writer copies every byte in, the reader sums every byte. libqb: QB_IPC_SHM, qb_ipcs_event_send / qb_ipcc_event_recv (acknowledged with qb_ipcc_send) and qb_ipcc_sendv_recv. zmq: ipc:// PAIR (one-way; throughput, where only the stop message is acknowledged: PUSH/PULL is as fast but may lose its last messages when the sender closes), REQ/REP (round trip).",
	"CPU time is getrusage user+system over the timed part, per message; allocations are runtime.MemStats.Mallocs deltas over the same part, per message (Go processes only).",
	"Other work: the machine's busy CPU time during a run (/proc/stat, steal included) less the CPU time of the run's processes and of the harness, as a share of all the machine's CPU time then.",
}

func rowReport(r *row) RowReport {
	rr := RowReport{Size: r.size}
	for j, c := range r.cs {
		cr := ContenderReport{Name: c.name, Family: c.family, Passes: r.figs[j]}
		cr.Median, cr.Spread = medianFigures(r.figs[j], r.sec.throughput)
		rr.Contenders = append(rr.Contenders, cr)
	}
	for j, c := range r.cs {
		if !c.gwipc() {
			continue
		}
		for k, b := range r.cs {
			if b.gwipc() {
				continue
			}
			rr.Contenders[j].Ratios = append(rr.Contenders[j].Ratios, ratioOf(r.figs[j], r.figs[k], b, r.sec.throughput))
		}
	}
	return rr
}

// ratioOf pairs gwipc's figures with a baseline's pass by pass.
func ratioOf(gw, base []Figures, b contender, throughput bool) Ratio {
	rt := Ratio{Baseline: b.name, Family: b.family}
	for p := range min(len(gw), len(base)) {
		rt.Passes = append(rt.Passes, ratio(gw[p].primary(throughput), base[p].primary(throughput)))
		if !throughput {
			rt.P99Passes = append(rt.P99Passes, ratio(gw[p].P99, base[p].P99))
		}
	}
	rt.Median, rt.Spread = medianSpread(rt.Passes)
	if !throughput {
		rt.P99Median, _ = medianSpread(rt.P99Passes)
	}
	return rt
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// medianFigures is the field-by-field median of fs and the spread of the
// primary figure.
func medianFigures(fs []Figures, throughput bool) (Figures, float64) {
	field := func(get func(Figures) float64) float64 {
		var v []float64
		for _, f := range fs {
			v = append(v, get(f))
		}
		m, _ := medianSpread(v)
		return m
	}
	m := Figures{
		Messages:  uint64(field(func(f Figures) float64 { return float64(f.Messages) })),
		P50:       field(func(f Figures) float64 { return f.P50 }),
		P99:       field(func(f Figures) float64 { return f.P99 }),
		Rate:      field(func(f Figures) float64 { return f.Rate }),
		GBps:      field(func(f Figures) float64 { return f.GBps }),
		CPUA:      field(func(f Figures) float64 { return f.CPUA }),
		CPUB:      field(func(f Figures) float64 { return f.CPUB }),
		OtherLoad: field(func(f Figures) float64 { return f.OtherLoad }),
	}
	if len(fs) > 0 && fs[0].AllocsA != nil {
		a := field(func(f Figures) float64 { return *f.AllocsA })
		m.AllocsA = &a
	}
	if len(fs) > 0 && fs[0].AllocsB != nil {
		b := field(func(f Figures) float64 { return *f.AllocsB })
		m.AllocsB = &b
	}
	var prim []float64
	for _, f := range fs {
		prim = append(prim, f.primary(throughput))
	}
	_, spread := medianSpread(prim)
	return m, spread
}

// medianSpread is the median of v (the mean of the middle two for an even
// count) and (max − min) / median.
func medianSpread(v []float64) (median, spread float64) {
	if len(v) == 0 {
		return 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	median = s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	if median != 0 {
		spread = (s[n-1] - s[0]) / median
	}
	return median, spread
}

// percentileUs is the nearest-rank q-quantile of ns samples, in µs: the
// smallest sample with at least q of them at or below it.
func percentileUs(ns []int64, q float64) float64 {
	if len(ns) == 0 {
		return 0
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return float64(s[min(max(i, 0), len(s)-1)]) / 1e3
}

func machine(cpus []int) Machine {
	m := Machine{GoVersion: runtime.Version(), CPUs: cpus}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// WriteText writes the report as plain-text tables: one per section in
// each placement.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "gwipc bench: passes %d, %.0f s; %s, %s, %s, CPUs %v\n",
		r.Passes, r.Seconds, r.Machine.GoVersion, r.Machine.Kernel, r.Machine.CPUModel, r.Machine.CPUs)
	b.WriteString("\nFigures are medians over the passes; ±x% = (max − min) / median. Ratios are gwipc / baseline,\n" +
		"computed inside each pass (both ran in it), then the median: latency \"p50/p99 ±spread of p50\", lower is better;\n" +
		"throughput, higher is better. CPU µs/op: user+system CPU per message in A (publisher, caller) / B (subscriber,\n" +
		"provider; fan-out: the mean of the 4). allocs/op: Go heap allocations per message in A / B (\"-\": a C program).\n")
	busy, runs := 0, 0
	for _, p := range r.Placements {
		_, _, k, n := p.otherLoad()
		busy, runs = busy+k, runs+n
	}
	if busy > 0 {
		fmt.Fprintf(&b, "\nWARNING: other work took more than %.0f %% of the machine's CPU time during %d of the %d runs\n"+
			"(see each placement): their figures, and the ratios of their passes, are less trustworthy.\n", 100*busyLoad, busy, runs)
	}
	b.WriteString("\n")
	for _, m := range r.Method {
		b.WriteString(wrap("- ", m, 110))
	}
	for _, f := range families {
		if why, ok := r.Missing[f]; ok {
			fmt.Fprintf(&b, "\n%s: %s\n", f, why)
		}
	}
	for _, name := range placeNames {
		if why, ok := r.Skipped[name]; ok {
			fmt.Fprintf(&b, "\n%s skipped: %s\n", name, why)
		}
	}
	for _, p := range r.Placements {
		b.WriteString("\n" + wrap("== "+p.Name+": ", p.Description, 110))
		med, worst, busy, runs := p.otherLoad()
		fmt.Fprintf(&b, "other work during its runs (share of the machine's CPU time): median %.0f %%, worst %.0f %%; %d of %d runs above %.0f %%\n",
			100*med, 100*worst, busy, runs, 100*busyLoad)
		for _, s := range p.Sections {
			r.writeSection(&b, s)
		}
	}
	r.writeTargets(&b)
	_, err := w.Write(b.Bytes())
	return err
}

// busyLoad is the share of the machine's CPU time taken by other work
// above which a run's figures deserve suspicion.
const busyLoad = 0.2

// otherLoad summarizes the other load over every run of the placement:
// median, worst, and how many of the runs were above busyLoad.
func (p PlacementReport) otherLoad() (median, worst float64, busy, runs int) {
	var v []float64
	for _, s := range p.Sections {
		for _, row := range s.Rows {
			for _, c := range row.Contenders {
				for _, f := range c.Passes {
					v = append(v, f.OtherLoad)
					worst = max(worst, f.OtherLoad)
					if f.OtherLoad > busyLoad {
						busy++
					}
				}
			}
		}
	}
	median, _ = medianSpread(v)
	return median, worst, busy, len(v)
}

func (r *Report) writeSection(b *bytes.Buffer, s SectionReport) {
	fmt.Fprintf(b, "\n%s\n", s.Title)
	fams := s.Baselines
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	head := "size\tcontender\tp50 µs\tp99 µs"
	if s.Throughput {
		head = "size\tcontender\tmsg/s\tGB/s"
	}
	head += "\tCPU µs/op A/B\tallocs/op A/B"
	for _, f := range fams {
		head += "\t×" + f
	}
	fmt.Fprintln(tw, head)
	for _, row := range s.Rows {
		for i, c := range row.Contenders {
			size := ""
			if i == 0 {
				size = sizeName(row.Size)
			}
			m := c.Median
			cells := []string{size, c.Name}
			if s.Throughput {
				cells = append(cells, rate(m.Rate)+" "+spread(c.Spread), fmt.Sprintf("%.2f", m.GBps))
			} else {
				cells = append(cells, us(m.P50)+" "+spread(c.Spread), us(m.P99))
			}
			cells = append(cells, us(m.CPUA)+"/"+us(m.CPUB), allocs(m.AllocsA)+"/"+allocs(m.AllocsB))
			for _, f := range fams {
				cells = append(cells, ratioCell(c, f, s.Throughput, r.Missing[f] != ""))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	tw.Flush()
	for line := range strings.Lines(table.String()) {
		b.WriteString(strings.TrimRight(line, " \n") + "\n") // the blank cells of baseline rows
	}
}

// ratioCell is a gwipc contender's ratio to the row's baseline of family f.
func ratioCell(c ContenderReport, f string, throughput, missing bool) string {
	for _, rt := range c.Ratios {
		if rt.Family != f {
			continue
		}
		if throughput {
			return fmt.Sprintf("%.2f %s", rt.Median, spread(rt.Spread))
		}
		return fmt.Sprintf("%.2f/%.2f %s", rt.Median, rt.P99Median, spread(rt.Spread))
	}
	if missing && c.Family == "gwipc" {
		return "n/i"
	}
	return ""
}

// wrap breaks text into lines of at most width columns (words permitting),
// the first starting with prefix and the others indented as far.
func wrap(prefix, text string, width int) string {
	var b strings.Builder
	line := prefix
	for i, w := range strings.Fields(text) {
		switch {
		case i == 0:
		case len(line)+1+len(w) > width:
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", len(prefix))
		default:
			line += " "
		}
		line += w
	}
	return b.String() + line + "\n"
}

func spread(v float64) string { return fmt.Sprintf("±%.0f%%", 100*v) }

func sizeName(n int) string {
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	}
	return fmt.Sprintf("%d B", n)
}

func us(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func rate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func allocs(a *float64) string {
	if a == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *a)
}
