package main

/*
#include "capi.h"
*/
import "C"

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"unsafe"

	"github.com/gwipc/gwipc/engine"
)

// logFns is the callback of gwipc_config_set_log_callback.
type logFns struct {
	cb    C.gwipc_log_cb
	level slog.Level
}

// logLine is a formatted record waiting for the callback.
type logLine struct {
	level slog.Level
	text  string
}

// logQueue carries one node's log records to its C callback: the engine
// logs from any goroutine, the callback runs only inside a dispatch (the
// records are handed over with Node.Post) and records after the close are
// dropped.
type logQueue struct {
	sink *shared[logFns]

	mu    sync.Mutex
	buf   bytes.Buffer // the text handler's output, one record at a time
	lines []logLine
	n     *engine.Node // nil until the node exists
}

func newLogQueue(sink *shared[logFns]) *logQueue { return &logQueue{sink: sink} }

// handler is the slog.Handler feeding the queue: records as slog's text
// format, without the time (the application's logger adds its own).
func (q *logQueue) handler() slog.Handler {
	text := slog.NewTextHandler(&q.buf, &slog.HandlerOptions{
		Level: q.sink.fns.level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	return &logHandler{text: text, q: q}
}

// attach starts delivery once the node exists.
func (q *logQueue) attach(n *engine.Node) {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.n = n
	pending := len(q.lines) > 0
	q.mu.Unlock()
	if pending {
		q.post()
	}
}

func (q *logQueue) post() {
	if err := q.n.Post(q.deliver); err != nil {
		q.mu.Lock()
		q.lines = nil // closed: dropped
		q.mu.Unlock()
	}
}

// deliver runs inside a dispatch: it hands the queued lines to the callback.
func (q *logQueue) deliver() {
	q.mu.Lock()
	lines := q.lines
	q.lines = nil
	q.mu.Unlock()
	for _, l := range lines {
		if !q.sink.live() {
			return
		}
		s := C.CString(l.text)
		C.capi_log(q.sink.fns.cb, q.sink.ud, C.int(l.level), s)
		C.free(unsafe.Pointer(s))
	}
}

// logHandler formats a record into the queue's buffer and queues the line.
type logHandler struct {
	text slog.Handler
	q    *logQueue
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.text.Enabled(ctx, l) }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	q := h.q
	q.mu.Lock()
	q.buf.Reset()
	err := h.text.Handle(ctx, r)
	line := bytes.TrimSuffix(q.buf.Bytes(), []byte("\n"))
	q.lines = append(q.lines, logLine{level: r.Level, text: string(line)})
	first := len(q.lines) == 1 && q.n != nil
	q.mu.Unlock()
	if first {
		q.post()
	}
	return err
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{text: h.text.WithAttrs(as), q: h.q}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{text: h.text.WithGroup(name), q: h.q}
}
