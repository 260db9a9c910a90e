package benchmark

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary serve as the peer process that Main
// re-executes.
func TestMain(m *testing.M) {
	ServePeerIfRequested()
	os.Exit(m.Run())
}

// TestMainQuick runs the whole harness (-quick: two sizes, both placements,
// real peer processes) and checks that the report has every row and that
// its numbers make sense. It checks no timing: that is the report's job.
func TestMainQuick(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"-quick", "-json"}, &stdout, &stderr)
	require.Equal(t, 0, code, "exit code; stderr: %s", stderr.String())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "report: %s", stdout.String())

	sizes := []int{64, 65536}
	type key struct {
		size   int
		pinned bool
	}
	var want []key
	for _, pinned := range []bool{false, true} {
		for _, size := range sizes {
			want = append(want, key{size, pinned})
		}
	}

	var gotLat []key
	for _, row := range rep.Latency {
		k := key{row.Size, row.Pinned}
		gotLat = append(gotLat, k)
		for name, s := range map[string]LatencyStats{"gwipc": row.Gwipc, "baseline": row.Baseline} {
			assert.Equal(t, 300, s.N, "%v %s: round trips", k, name)
			assert.Greater(t, s.Min, 0.0, "%v %s: min", k, name)
			ordered := s.Min <= s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.P999 && s.P999 <= s.Max
			assert.True(t, ordered, "%v %s: percentiles out of order: %+v", k, name, s)
			assert.True(t, s.Min <= s.Mean && s.Mean <= s.Max, "%v %s: mean %v outside [min, max]", k, name, s.Mean)
		}
		assert.Greater(t, row.RatioP50, 0.0, "%v: ratio p50", k)
		assert.Greater(t, row.RatioMean, 0.0, "%v: ratio mean", k)
		assertAllocs(t, row.GwipcAllocs, "%v gwipc allocs/rt", k)
		assertAllocs(t, row.BaselineAllocs, "%v baseline allocs/rt", k)
	}
	assert.Equal(t, want, gotLat, "latency rows")

	var gotTput []key
	for _, row := range rep.Throughput {
		k := key{row.Size, row.Pinned}
		gotTput = append(gotTput, k)
		for name, s := range map[string]ThroughputStats{"gwipc": row.Gwipc, "baseline": row.Baseline} {
			assert.Greater(t, s.Messages, uint64(0), "%v %s: messages", k, name)
			assert.Equal(t, s.Messages*uint64(row.Size), s.Bytes, "%v %s: bytes", k, name)
			assert.Greater(t, s.Seconds, 0.0, "%v %s: seconds", k, name)
			assert.Greater(t, s.MsgsPerSec, 0.0, "%v %s: msg/s", k, name)
			assert.Greater(t, s.MiBPerSec, 0.0, "%v %s: MiB/s", k, name)
			assert.LessOrEqual(t, s.Messages, s.Sent, "%v %s: received more than sent", k, name)
		}
		assert.Equal(t, row.Baseline.Sent, row.Baseline.Messages, "%v: a stream socket loses nothing", k)
		assert.Equal(t, row.Gwipc.Sent, row.Gwipc.Messages+row.Gwipc.Dropped, "%v: gwipc published = received + dropped", k)
		assert.Greater(t, row.Ratio, 0.0, "%v: ratio", k)
		assertAllocs(t, row.GwipcAllocs, "%v gwipc allocs/msg", k)
		assertAllocs(t, row.BaselineAllocs, "%v baseline allocs/msg", k)
	}
	assert.Equal(t, want, gotTput, "throughput rows")

	// The text form of the same report has a line for every row.
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	out := text.String()
	assert.Contains(t, out, "Round-trip latency")
	assert.Contains(t, out, "One-way throughput")
	assert.Contains(t, out, "Higher is better")
	for _, sz := range []string{"64B", "64KiB"} {
		lines := 0
		for line := range strings.Lines(out) {
			if strings.HasPrefix(strings.TrimSpace(line), sz+" ") {
				lines++
			}
		}
		assert.Equal(t, 4, lines, "text lines for %s (latency and throughput, pinned and not):\n%s", sz, out)
	}
	t.Logf("\n%s", out)
}

func assertAllocs(t *testing.T, a Allocs, msg string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(msg, args...)
	assert.GreaterOrEqual(t, a.A, 0.0, what)
	assert.GreaterOrEqual(t, a.B, 0.0, what)
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"bad pin", []string{"-pin", "sideways"}, 2},
		{"bad size", []string{"-sizes", "64,zero"}, 2},
		{"size too large", []string{"-sizes", "1G"}, 2},
		{"zero n", []string{"-n", "0"}, 2},
		{"unknown flag", []string{"-frobnicate"}, 2},
		{"extra argument", []string{"now"}, 2},
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

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("64, 1K,64k,1M,64")
	require.NoError(t, err)
	assert.Equal(t, []int{64, 1024, 65536, 1 << 20}, got)
}

func TestLatencyStats(t *testing.T) {
	var rtts []time.Duration
	for i := 1000; i >= 1; i-- {
		rtts = append(rtts, time.Duration(i)*time.Microsecond)
	}
	s := latencyStats(rtts)
	assert.Equal(t, LatencyStats{N: 1000, Min: 1, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, Mean: 500.5}, s)
	assert.Equal(t, time.Duration(1000)*time.Microsecond, rtts[0], "input left unsorted")
}
