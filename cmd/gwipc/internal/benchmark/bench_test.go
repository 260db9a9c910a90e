package benchmark

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary serve as the gwipc measurement processes
// that Main starts.
func TestMain(m *testing.M) {
	ServePeerIfRequested()
	os.Exit(m.Run())
}

// buildBaselines builds the C baselines with the Makefile's own rule into
// a temporary directory and returns it.
func buildBaselines(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"make", "cc", "pkg-config"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the baselines cannot be built", tool)
		}
	}
	root, err := filepath.Abs("../../../..")
	require.NoError(t, err)
	build := t.TempDir()
	out, err := exec.Command("make", "-s", "-C", root, "BUILD="+build, "baselines").CombinedOutput()
	require.NoError(t, err, "make baselines: %s", out)
	return filepath.Join(build, "bench")
}

// TestMainQuick runs the harness for real (-quick: every scenario, fewer
// sizes, two passes, real processes) and checks what the report says: every
// row and contender, the message counts, ratios computed pass by pass, and
// no allocation on gwipc's Dispatch paths. It checks no timing.
func TestMainQuick(t *testing.T) {
	dir := buildBaselines(t)
	// A race-enabled process (the gwipc ones are this test binary) waits a
	// second at exit for late reports; the runs' processes need not.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	// One placement keeps the test short: the two processes on different
	// CPUs where there are two.
	cpus, err := allowedCPUs()
	require.NoError(t, err)
	place := placePin00
	if len(cpus) >= 2 {
		place = placePin01
	}
	var stdout, stderr bytes.Buffer
	code := Main([]string{"-quick", "-json", "-place", place, "-baselines", dir}, &stdout, &stderr)
	require.Equal(t, 0, code, "exit code; stderr: %s", stderr.String())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "report: %s", stdout.String())
	require.Equal(t, 2, rep.Passes)
	require.Len(t, rep.Placements, 1)
	assert.Equal(t, place, rep.Placements[0].Name)

	for _, p := range rep.Placements {
		var keys []string
		for _, s := range p.Sections {
			keys = append(keys, s.Key)
			sec, err := sectionsByKey([]string{s.Key})
			require.NoError(t, err)
			checkSection(t, rep, p.Name, sec[0], s)
		}
		assert.Equal(t, []string{"oneway", "rate", "bandwidth", "fanout", "rtt"}, keys, "%s: sections", p.Name)
	}

	// The quick run has the 64 B one-way and round-trip rows against uds
	// (always built): their targets are checked, in this placement only.
	goals := map[string]bool{}
	for _, tg := range rep.Targets {
		assert.Equal(t, place, tg.Placement, "%s", tg.Goal)
		assert.Positive(t, tg.Ratio, "%s", tg.Goal)
		goals[tg.Goal] = true
	}
	if place == placePin01 {
		for _, g := range []string{"event one-way 64 B p50, parked", "event one-way 64 B p50, spinning",
			"method round trip 64 B p50, parked", "method round trip 64 B p50, spinning"} {
			assert.True(t, goals[g], "no target %q in %+v", g, rep.Targets)
		}
	}

	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	for _, p := range rep.Placements {
		assert.Contains(t, text.String(), "== "+p.Name+": ")
	}
	assert.Contains(t, text.String(), "\ntargets (docs/PERFORMANCE.md): ")
	for _, sec := range sections {
		assert.Equal(t, len(rep.Placements), strings.Count(text.String(), sec.title+"\n"), "tables titled %q", sec.title)
	}
	t.Logf("\n%s", text.String())
}

// checkSection checks one section of the quick report.
func checkSection(t *testing.T, rep Report, place string, sec *section, s SectionReport) {
	t.Helper()
	var sizes []int
	for _, row := range s.Rows {
		sizes = append(sizes, row.Size)
		var want []string
		for _, c := range sec.contenders(row.Size) {
			if _, gone := rep.Missing[c.family]; !gone {
				want = append(want, c.name)
			}
		}
		var got []string
		byName := map[string]ContenderReport{}
		for _, c := range row.Contenders {
			got = append(got, c.Name)
			byName[c.Name] = c
		}
		require.Equal(t, want, got, "%s %s %d: contenders", place, s.Key, row.Size)

		n, _ := options{n: rep.N}.samples(row.Size)
		for _, c := range row.Contenders {
			what := place + " " + s.Key + " " + sizeName(row.Size) + " " + c.Name
			require.Len(t, c.Passes, rep.Passes, "%s: passes", what)
			for _, f := range c.Passes {
				if s.Throughput {
					assert.Positive(t, f.Messages, "%s: messages", what)
					assert.InEpsilon(t, f.Rate*float64(row.Size)/1e9, f.GBps, 1e-9, "%s: GB/s = msg/s × size", what)
				} else {
					assert.Equal(t, uint64(n), f.Messages, "%s: timed messages", what)
					assert.True(t, 0 < f.P50 && f.P50 <= f.P99, "%s: 0 < p50 %v <= p99 %v", what, f.P50, f.P99)
				}
				assert.Positive(t, f.CPUA+f.CPUB, "%s: CPU time", what)
				assert.True(t, 0 <= f.OtherLoad && f.OtherLoad <= 1, "%s: other load %v, a share", what, f.OtherLoad)
				if c.Family != "gwipc" {
					assert.Nil(t, f.AllocsA, "%s: no allocation count for a C program", what)
					continue
				}
				require.NotNil(t, f.AllocsA, what)
				require.NotNil(t, f.AllocsB, what)
				if !strings.HasPrefix(c.Name, "gwipc dispatch") {
					continue
				}
				if s.Throughput {
					// A stream's allocations grow the engine's free lists
					// up to the backlog (at most a pool's slots deep), once:
					// they are bounded by the slots, not by the messages.
					maxAllocs := float64(4 * defaultSlots(scenarioStream, row.Size))
					assert.LessOrEqual(t, *f.AllocsA*float64(f.Messages), maxAllocs, "%s: allocations in A", what)
					assert.LessOrEqual(t, *f.AllocsB*float64(f.Messages), maxAllocs, "%s: allocations in B", what)
					continue
				}
				assert.Zero(t, *f.AllocsA, "%s: allocations per message in A", what)
				assert.Zero(t, *f.AllocsB, "%s: allocations per message in B", what)
			}
			checkRatios(t, what, s.Throughput, c, byName)
		}
	}
	want := sec.quickSizes
	if want == nil {
		want = sec.sizes
	}
	assert.Equal(t, want, sizes, "%s %s: sizes", place, s.Key)
}

// checkRatios checks that a gwipc contender's ratios pair its figures with
// the baseline's of the same pass, and that the median is over those.
func checkRatios(t *testing.T, what string, throughput bool, c ContenderReport, byName map[string]ContenderReport) {
	t.Helper()
	if c.Family != "gwipc" {
		assert.Empty(t, c.Ratios, "%s: ratios of a baseline", what)
		return
	}
	baselines := 0
	for _, b := range byName {
		if b.Family != "gwipc" {
			baselines++
		}
	}
	require.Len(t, c.Ratios, baselines, "%s: a ratio per baseline", what)
	for _, rt := range c.Ratios {
		b := byName[rt.Baseline]
		require.Len(t, rt.Passes, len(c.Passes), "%s / %s", what, rt.Baseline)
		for p := range c.Passes {
			want := c.Passes[p].P50 / b.Passes[p].P50
			if throughput {
				want = c.Passes[p].Rate / b.Passes[p].Rate
			} else {
				assert.InEpsilon(t, c.Passes[p].P99/b.Passes[p].P99, rt.P99Passes[p], 1e-12, "%s / %s: p99 ratio of pass %d", what, rt.Baseline, p+1)
			}
			assert.InEpsilon(t, want, rt.Passes[p], 1e-12, "%s / %s: ratio of pass %d", what, rt.Baseline, p+1)
		}
		m, _ := medianSpread(rt.Passes)
		assert.Equal(t, m, rt.Median, "%s / %s: median of the passes' ratios", what, rt.Baseline)
	}
}

// TestFiguresRejectsBadRuns: a run that lost, duplicated or did not read
// its messages is an error, not a figure.
func TestFiguresRejectsBadRuns(t *testing.T) {
	stream := trial{sec: sectionOf(t, "bandwidth"), size: 64 * kib}
	sum := sumPayload(payload(64 * kib))
	good := []result{{Ops: 10}, {Ops: 10, ElapsedNs: 1000, Bytes: 10 * 64 * kib, Checksum: 10 * sum}}
	_, err := stream.figures(good)
	require.NoError(t, err)

	lat := trial{sec: sectionOf(t, "fanout"), size: 64, n: 3}
	five := []result{{Ops: 3}, {Ops: 3, Samples: []int64{1, 2, 3}}, {Ops: 3, Samples: []int64{4, 1, 1}}, {Ops: 3, Samples: []int64{1, 1, 1}}, {Ops: 3, Samples: []int64{1, 5, 1}}}
	f, err := lat.figures(five)
	require.NoError(t, err)
	assert.Equal(t, 4.0/1e3, f.P50, "the last subscriber's latency per message: 4, 5, 3")
	assert.Equal(t, 5.0/1e3, f.P99)

	tests := []struct {
		name string
		tr   trial
		res  []result
	}{
		{"stream: a message lost", stream, []result{{Ops: 11}, good[1]}},
		{"stream: bytes not read", stream, []result{good[0], {Ops: 10, ElapsedNs: 1000, Bytes: 10 * 64 * kib, Checksum: 9 * sum}}},
		{"stream: nothing timed", stream, []result{{}, {}}},
		{"lat: a receiver short", lat, []result{five[0], five[1], five[2], five[3], {Ops: 2, Samples: []int64{1, 1}}}},
		{"lat: the publisher short", lat, append([]result{{Ops: 2}}, five[1:]...)},
		{"rtt: the provider short", trial{sec: sectionOf(t, "rtt"), size: 64, n: 3}, []result{{Ops: 3, Samples: []int64{1, 2, 3}}, {Ops: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.tr.figures(tt.res)
			assert.Error(t, err)
		})
	}
}

func sectionOf(t *testing.T, key string) *section {
	t.Helper()
	secs, err := sectionsByKey([]string{key})
	require.NoError(t, err)
	return secs[0]
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"bad placement", []string{"-place", "sideways"}, 2},
		{"bad section", []string{"-sections", "oneway,nothing"}, 2},
		{"no pass", []string{"-passes", "0"}, 2},
		{"tiny n", []string{"-n", "3"}, 2},
		{"unknown flag", []string{"-frobnicate"}, 2},
		{"extra argument", []string{"now"}, 2},
		{"no baselines", []string{"-baselines", "/nonexistent", "-sections", "rate"}, 1},
		{"help", []string{"-h"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := Main(tt.args, &stdout, &stderr)
			assert.Equal(t, tt.code, got, "exit code; stderr: %s", stderr.String())
			assert.Empty(t, stdout.String(), "nothing on stdout")
			assert.NotEmpty(t, stderr.String(), "usage or error on stderr")
		})
	}
}

func TestArgsRoundTrip(t *testing.T) {
	a := args{Role: rolePub, Scenario: scenarioLat, Path: "/tmp/x/s", Size: 64, N: 100, Warm: 10, Subs: 4, Slots: 1, CPU: 0, Variant: "run", Mode: modeLoan}
	got, err := parseArgs(a.argv())
	require.NoError(t, err)
	assert.Equal(t, a, got)
	_, err = parseArgs([]string{"-role=pub", "-size=63"})
	assert.Error(t, err, "a size that is not a multiple of 8")
}

func TestOtherLoad(t *testing.T) {
	a := loadSample{busy: 100, total: 1000}
	b := loadSample{busy: 300, total: 2000, self: 100 * time.Millisecond}
	// 200 busy ticks, of which 10 the harness's and 50 the run's.
	assert.InEpsilon(t, 0.14, otherLoad(a, b, 500*time.Millisecond), 1e-9)
	assert.Zero(t, otherLoad(a, b, 3*time.Second), "never below zero")
	assert.Zero(t, otherLoad(a, a, 0), "no time passed")
}

func TestMedianSpread(t *testing.T) {
	m, s := medianSpread([]float64{3, 1, 2})
	assert.Equal(t, 2.0, m)
	assert.Equal(t, 1.0, s)
	m, _ = medianSpread([]float64{4, 1, 2, 3})
	assert.Equal(t, 2.5, m)
}

func TestPercentile(t *testing.T) {
	var ns []int64
	for i := 1000; i >= 1; i-- {
		ns = append(ns, int64(i)*1000)
	}
	assert.Equal(t, 500.0, percentileUs(ns, 0.50))
	assert.Equal(t, 990.0, percentileUs(ns, 0.99))
	assert.Equal(t, int64(1000*1000), ns[0], "input left unsorted")
}

// Targets are read from the right rows and judged in the right direction;
// a target whose figures are missing is left out.
func TestTargets(t *testing.T) {
	lat := func(p50s ...float64) []Figures {
		var fs []Figures
		for _, v := range p50s {
			fs = append(fs, Figures{P50: v, P99: 2 * v})
		}
		return fs
	}
	rep := Report{Placements: []PlacementReport{{Name: placePin00, Sections: []SectionReport{
		{Key: "oneway", Rows: []RowReport{
			{Size: 64, Contenders: []ContenderReport{
				{Name: "gwipc dispatch copy", Ratios: []Ratio{{Family: familyUDS, Median: 0.8, Spread: 0.1}}},
				{Name: "gwipc dispatch loan", Passes: lat(10, 20, 10)},
			}},
			{Size: mib, Contenders: []ContenderReport{
				{Name: "gwipc dispatch loan", Passes: lat(15, 20, 30)}, // 1.5, 1, 3 times 64 B's
			}},
		}},
		{Key: "rate", Throughput: true, Rows: []RowReport{{Size: 64, Contenders: []ContenderReport{
			{Name: "gwipc dispatch", Ratios: []Ratio{{Family: familyZMQ, Median: 1.1}}},
		}}}},
		{Key: "rtt", Rows: []RowReport{{Size: 64, Contenders: []ContenderReport{
			{Name: "gwipc dispatch", Ratios: []Ratio{{Family: familyUDS, Median: 1.2}}},
		}}}},
	}}}}
	got := map[string]Target{}
	for _, tg := range rep.targets() {
		got[tg.Goal] = tg
	}
	require.Len(t, got, 4, "%+v", got)
	assert.True(t, got["event one-way 64 B p50, parked"].Met, "0.8 ≤ 0.9")
	self := got["event one-way 1 MiB by loan p50 over 64 B's"]
	assert.InDelta(t, 1.5, self.Ratio, 1e-9, "the median of the per-pass ratios")
	assert.False(t, self.Met, "1.5 > 1.2")
	assert.True(t, got["events/s 64 B"].Met, "1.1 ≥ 1.0 on one CPU")
	assert.False(t, got["method round trip 64 B p50, parked"].Met, "1.2 > 1.0")

	var b bytes.Buffer
	rep.Targets = rep.targets()
	rep.writeTargets(&b)
	assert.Contains(t, b.String(), "targets (docs/PERFORMANCE.md): 2 of 4 met")
	assert.Regexp(t, `method round trip 64 B p50, parked +pin00 +gwipc dispatch +uds +1\.20 ±0% +≤ 1\.0 +missed`, b.String())
}
