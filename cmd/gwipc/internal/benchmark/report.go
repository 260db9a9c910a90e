package benchmark

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of Main: one row per (size, placement) for each
// scenario. It marshals to the JSON that -json prints.
type Report struct {
	GoVersion  string          `json:"go_version"`
	CPUs       int             `json:"cpus"`  // CPUs this process may use
	Slots      int             `json:"slots"` // gwipc pool slot count
	Quick      bool            `json:"quick"`
	Baseline   string          `json:"baseline"`    // what the baseline is
	GwipcDrive string          `json:"gwipc_drive"` // how the gwipc side is driven
	Seconds    float64         `json:"seconds"`     // wall time of the whole run
	Latency    []LatencyRow    `json:"latency"`
	Throughput []ThroughputRow `json:"throughput"`
}

// LatencyStats summarises round-trip times, in microseconds.
type LatencyStats struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Allocs are heap allocations per message (per round trip for latency) in
// the measuring process (A: publisher) and the peer (B: subscriber).
type Allocs struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

// LatencyRow is one round-trip comparison. Ratios are gwipc/baseline: lower
// is better, 1 is parity.
type LatencyRow struct {
	Size           int          `json:"size"`
	Pinned         bool         `json:"pinned"`
	Gwipc          LatencyStats `json:"gwipc"`
	Baseline       LatencyStats `json:"baseline"`
	RatioP50       float64      `json:"ratio_p50"`
	RatioP99       float64      `json:"ratio_p99"`
	RatioMean      float64      `json:"ratio_mean"`
	GwipcAllocs    Allocs       `json:"gwipc_allocs_per_rt"`
	BaselineAllocs Allocs       `json:"baseline_allocs_per_rt"`
	NoSlot         uint64       `json:"gwipc_noslot"`
}

// ThroughputStats is one transport's one-way throughput. Messages and Bytes
// are what the receiver counted; rates divide them by Seconds, from the
// first timed send to the receiver's acknowledgement of the last.
type ThroughputStats struct {
	Messages   uint64  `json:"messages"`
	Bytes      uint64  `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MiBPerSec  float64 `json:"mib_per_sec"`
	Sent       uint64  `json:"sent"`    // messages the sender sent (gwipc: published)
	NoSlot     uint64  `json:"noslot"`  // gwipc: publishes that found the pool exhausted (then retried)
	Dropped    uint64  `json:"dropped"` // gwipc: updates not sent (subscriber's socket full)
}

// ThroughputRow is one throughput comparison. Ratio is gwipc/baseline in
// messages per second: higher is better, 1 is parity.
type ThroughputRow struct {
	Size           int             `json:"size"`
	Pinned         bool            `json:"pinned"`
	Gwipc          ThroughputStats `json:"gwipc"`
	Baseline       ThroughputStats `json:"baseline"`
	Ratio          float64         `json:"ratio"`
	GwipcAllocs    Allocs          `json:"gwipc_allocs_per_msg"`
	BaselineAllocs Allocs          `json:"baseline_allocs_per_msg"`
}

func latencyStats(rtts []time.Duration) LatencyStats {
	if len(rtts) == 0 {
		return LatencyStats{}
	}
	s := slices.Clone(rtts)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	// Nearest rank: the smallest value with at least q of the samples at or
	// below it.
	pct := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return us(s[min(max(i, 0), len(s)-1)])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return LatencyStats{
		N:    len(s),
		Min:  us(s[0]),
		P50:  pct(0.50),
		P90:  pct(0.90),
		P99:  pct(0.99),
		P999: pct(0.999),
		Max:  us(s[len(s)-1]),
		Mean: us(sum) / float64(len(s)),
	}
}

func throughputStats(r side) ThroughputStats {
	secs := r.elapsed.Seconds()
	t := ThroughputStats{
		Messages: r.peer.Messages,
		Bytes:    r.peer.Bytes,
		Seconds:  secs,
		Sent:     r.sent,
		NoSlot:   r.noSlot,
		Dropped:  r.dropped,
	}
	if secs > 0 {
		t.MsgsPerSec = float64(t.Messages) / secs
		t.MiBPerSec = float64(t.Bytes) / secs / (1 << 20)
	}
	return t
}

// WriteText writes the report as plain-text tables.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "gwipc bench: two processes, %s, %d CPUs, %d slots per pool, %.1fs\n", r.GoVersion, r.CPUs, r.Slots, r.Seconds)
	fmt.Fprintf(&b, "baseline: %s\n", r.Baseline)
	fmt.Fprintf(&b, "gwipc:    %s\n", r.GwipcDrive)
	b.WriteString("pinned: both processes on one CPU; unpinned: wherever the scheduler puts them.\n")
	b.WriteString("The machine may be shared and noisy: compare ratios, not absolute numbers.\n")

	if len(r.Latency) > 0 {
		b.WriteString("\nRound-trip latency, µs (A sends, B echoes the same size). Lower is better; ratio = gwipc/baseline.\n")
		b.WriteString("allocs/rt = heap allocations per round trip in A (sender) / B (echoer).\n\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "size\tpinned\tn\tgwipc p50/p90/p99/p99.9\tmean\tbaseline p50/p90/p99/p99.9\tmean\tratio p50\tratio p99\tratio mean\tallocs/rt gwipc\tbaseline\t")
		for _, row := range r.Latency {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n",
				sizeName(row.Size), yesNo(row.Pinned), row.Gwipc.N,
				pcts(row.Gwipc), us(row.Gwipc.Mean), pcts(row.Baseline), us(row.Baseline.Mean),
				row.RatioP50, row.RatioP99, row.RatioMean, allocs(row.GwipcAllocs), allocs(row.BaselineAllocs))
		}
		tw.Flush()
	}

	if len(r.Throughput) > 0 {
		b.WriteString("\nOne-way throughput (A sends as fast as it can, B counts). Higher is better; ratio = gwipc/baseline msg/s.\n")
		b.WriteString("noslot = gwipc publishes that found the pool exhausted and waited; dropped = updates not sent.\n")
		b.WriteString("allocs/msg = heap allocations per message in A (publisher) / B (subscriber).\n")
		b.WriteString("gwipc's subscriber reads only the length (zero copy); the baseline's receiver must copy the bytes out of the socket.\n\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "size\tpinned\tgwipc msg/s\tMiB/s\tbaseline msg/s\tMiB/s\tratio\tnoslot\tdropped\tallocs/msg gwipc\tbaseline\t")
		for _, row := range r.Throughput {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%.1f\t%.2f\t%d\t%d\t%s\t%s\t\n",
				sizeName(row.Size), yesNo(row.Pinned),
				rate(row.Gwipc.MsgsPerSec), row.Gwipc.MiBPerSec, rate(row.Baseline.MsgsPerSec), row.Baseline.MiBPerSec,
				row.Ratio, row.Gwipc.NoSlot, row.Gwipc.Dropped, allocs(row.GwipcAllocs), allocs(row.BaselineAllocs))
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func us(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func pcts(s LatencyStats) string {
	return us(s.P50) + "/" + us(s.P90) + "/" + us(s.P99) + "/" + us(s.P999)
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

func allocs(a Allocs) string {
	return fmt.Sprintf("%.2f/%.2f", a.A, a.B)
}
