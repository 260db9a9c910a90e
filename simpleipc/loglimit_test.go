package simpleipc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter()
	t0 := time.Unix(1000, 0)
	for i := range logBurst {
		ok, n := l.take(t0)
		require.True(t, ok, "record %d of the burst", i)
		require.Zero(t, n)
	}
	for range 5 {
		ok, _ := l.take(t0.Add(logInterval - time.Millisecond))
		require.False(t, ok)
	}
	ok, n := l.take(t0.Add(logInterval))
	require.True(t, ok, "one more after an interval")
	assert.Equal(t, uint64(5), n, "reports the suppressed ones")
	ok, _ = l.take(t0.Add(logInterval * 3 / 2))
	require.False(t, ok)
	ok, n = l.take(t0.Add(2 * logInterval))
	require.True(t, ok)
	assert.Equal(t, uint64(1), n)

	// A long pause refills the burst, and no more.
	later := t0.Add(time.Hour)
	for range logBurst {
		ok, n := l.take(later)
		require.True(t, ok)
		require.Zero(t, n)
	}
	ok, _ = l.take(later)
	assert.False(t, ok)
}

func TestLogLimiterAllocs(t *testing.T) {
	l := newLogLimiter()
	now := time.Unix(1000, 0)
	allowed := testing.AllocsPerRun(100, func() {
		now = now.Add(logInterval)
		l.take(now)
	})
	refused := testing.AllocsPerRun(100, func() { l.take(now) })
	assert.Zero(t, allowed)
	assert.Zero(t, refused)
}

// logCounts counts log records and sums their "suppressed" attributes.
type logCounts struct {
	mu         sync.Mutex
	records    uint64
	suppressed uint64
}

func (c *logCounts) get() (records, suppressed uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records, c.suppressed
}

// countingHandler is a slog.Handler enabled from level up that counts into
// c; the handlers derived from it share c.
type countingHandler struct {
	c     *logCounts
	level slog.Level
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.records++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.c.suppressed += a.Value.Uint64()
		}
		return true
	})
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func TestDiscardedRecordsUseNoToken(t *testing.T) {
	counts := &logCounts{}
	s := &Server{log: slog.New(countingHandler{counts, slog.LevelInfo}), logs: newLogLimiter()}
	for range 10 * logBurst {
		s.logClient(slog.LevelDebug, "discarded")
	}
	for range logBurst {
		s.logClient(slog.LevelWarn, "kept")
	}
	records, suppressed := counts.get()
	assert.Equal(t, uint64(logBurst), records)
	assert.Zero(t, suppressed)
}

func TestBadClientFloodLogsBounded(t *testing.T) {
	checkNoLeaks(t)
	counts := &logCounts{}
	start := time.Now()
	s, path := startServer(t, HandlerFunc(func(context.Context, []byte, io.Writer) error {
		return errors.New("handler failed")
	}), &Config{MaxRequestSize: 8, Logger: slog.New(countingHandler{counts, slog.LevelDebug})})

	bad := []string{
		"00g8ping0000",      // malformed
		"000dtoo large0000", // 9 bytes, over the limit
		"0007err0000",       // handler error
	}
	sent := uint64(0)
	send := func() {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Write([]byte(bad[sent%uint64(len(bad))]))
		require.NoError(t, err)
		io.Copy(io.Discard, c) // until the server closes (ECONNRESET possible)
		sent++
		waitFor(t, 5*time.Second, "error counted", func() bool { return s.Stats().Errors == sent })
	}

	for range 1000 {
		send()
	}
	elapsed := time.Since(start)
	records, _ := counts.get()
	assert.GreaterOrEqual(t, records, uint64(logBurst))
	assert.LessOrEqual(t, records, uint64(logBurst)+uint64(elapsed/logInterval),
		"%d records for %d bad connections in %v", records, sent, elapsed)

	// Once a token is back, the next record reports what was suppressed:
	// every bad connection is then either logged or counted.
	deadline := time.Now().Add(5 * logInterval)
	for {
		records, suppressed := counts.get()
		if records+suppressed == sent {
			assert.NotZero(t, suppressed)
			break
		}
		require.True(t, time.Now().Before(deadline), "suppressed count never reported: %d records, %d suppressed, %d sent", records, suppressed, sent)
		time.Sleep(50 * time.Millisecond)
		send()
	}
	require.NoError(t, s.Close())
}
