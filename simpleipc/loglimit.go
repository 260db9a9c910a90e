package simpleipc

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The records clients can cause are limited to a burst of logBurst, then
// one per logInterval.
const (
	logBurst    = 10
	logInterval = time.Second
)

// logLimiter is a token bucket for the log records clients can cause. It
// counts the records it refuses so that the next one let through can say
// how many were suppressed. The zero value is a full bucket; take
// allocates nothing.
type logLimiter struct {
	mu         sync.Mutex
	started    bool
	tokens     int
	last       time.Time // when tokens was last refilled
	suppressed uint64
}

// take reports whether a record may be logged at now and, if so, how many
// were refused since the last one that was.
func (l *logLimiter) take(now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started, l.tokens, l.last = true, logBurst, now
	}
	if n := now.Sub(l.last) / logInterval; n > 0 {
		l.tokens = min(logBurst, l.tokens+int(n))
		l.last = l.last.Add(n * logInterval)
	}
	if l.tokens == 0 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
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
