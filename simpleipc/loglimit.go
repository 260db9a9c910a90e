package simpleipc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The records clients can cause are limited to a burst of logBurst, then
// one per logInterval.
const (
	logBurst    = 10
	logInterval = time.Second
)

// logLimiter counts, around a token bucket, the records it refuses so that
// the next one let through can say how many were suppressed. take
// allocates nothing.
type logLimiter struct {
	mu         sync.Mutex
	bucket     *rate.Limiter
	suppressed uint64
}

func newLogLimiter() *logLimiter {
	return &logLimiter{bucket: rate.NewLimiter(rate.Every(logInterval), logBurst)}
}

// take reports whether a record may be logged at now and, if so, how many
// were refused since the last one that was.
func (l *logLimiter) take(now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.bucket.AllowN(now, 1) {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// logClient logs a record that a client can cause, one per connection at
// most (a bad request, a handler error, a full queue...), through the
// server's limiter: a flood of bad clients must not flood the log. A
// record let through after some were refused carries their number as the
// attribute "suppressed". Records the logger would discard use no token.
func (s *Server) logClient(level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := s.logs.take(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	}
	s.log.LogAttrs(ctx, level, msg, attrs...)
}
