package engine

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"
)

// Logging: records are queued while the node's lock is held and emitted
// once it is released, so a slog.Handler may call back into the node and a
// slow one stalls nobody else. Records a peer can cause (protocol errors,
// refusals, quota hits) pass a per-peer token bucket, so a hostile peer
// cannot flood the log; the next record that passes says how many were
// suppressed.

// Rate limit of the records one peer (or the node itself, for accept
// errors) can cause: logBurst at once, then one per logEvery.
const (
	logBurst = 10
	logEvery = time.Second
)

// logRecord is a queued record.
type logRecord struct {
	level slog.Level
	msg   string
	args  []any
}

// logLimiter counts, around a token bucket, the records it refuses. Guarded
// by Node.mu.
type logLimiter struct {
	bucket     *rate.Limiter
	suppressed int
}

func newLogLimiter() logLimiter {
	return logLimiter{bucket: rate.NewLimiter(rate.Every(logEvery), logBurst)}
}

// allow takes a token; it reports whether the record may go and how many
// records were suppressed since the last one that went.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.bucket.AllowN(now, 1) {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// limitedLogf queues a record through limiter l. Called with n.mu held.
func (n *Node) limitedLogf(l *logLimiter, level slog.Level, msg string, args ...any) {
	if !n.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := l.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	n.logs = append(n.logs, logRecord{level, msg, args})
}

// peerLogf queues a record p's behaviour caused, naming p, rate-limited per
// peer. Called with n.mu held.
func (n *Node) peerLogf(p *peer, level slog.Level, msg string, args ...any) {
	c := p.pub.cred
	args = append(args, "peer", p.pub.id, "name", p.pub.name, "pid", c.PID, "uid", c.UID, "gid", c.GID)
	n.limitedLogf(&p.logLimit, level, msg, args...)
}

// takeLogs removes the queued records. Called with n.mu held.
func (n *Node) takeLogs() []logRecord {
	logs := n.logs
	n.logs = nil
	return logs
}

// emitLogs hands records to the logger. Called without n.mu.
func (n *Node) emitLogs(logs []logRecord) {
	for _, r := range logs {
		n.log.Log(context.Background(), r.level, r.msg, r.args...)
	}
}
