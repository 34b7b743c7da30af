package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The "buffer" log sink: the core's slog records are kept in memory, the
// last LogBufferSize of them, until the host drains them with the
// logs_poll method (the Ruby gem writes them to its logger). Go never calls
// into the host, so the host pulls its logs as it pulls work and events.

// LogBufferSize is how many records the buffer holds; when it is full the
// oldest record is dropped (and counted).
const LogBufferSize = 10000

// logTextMax bounds one message or attribute value, in bytes.
const logTextMax = 16 << 10

// LogSinkStderr and LogSinkBuffer are the values of the log_sink option.
const (
	LogSinkStderr = "stderr"
	LogSinkBuffer = "buffer"
)

// logRecord is one record as logs_poll returns it.
type logRecord struct {
	Time  string         `json:"time"`
	Level string         `json:"level"`
	Msg   string         `json:"msg"`
	Attrs map[string]any `json:"attrs"`
}

// logBuffer is a bounded ring of records.
type logBuffer struct {
	mu      sync.Mutex
	recs    []logRecord
	start   int
	n       int
	dropped int64
}

func newLogBuffer(size int) *logBuffer { return &logBuffer{recs: make([]logRecord, size)} }

func (b *logBuffer) add(r logRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == len(b.recs) {
		b.recs[b.start] = logRecord{}
		b.start = (b.start + 1) % len(b.recs)
		b.n--
		b.dropped++
	}
	b.recs[(b.start+b.n)%len(b.recs)] = r
	b.n++
}

// take removes and returns up to max records, oldest first (all when max
// <= 0), and the number of records dropped since the previous take.
func (b *logBuffer) take(max int) ([]logRecord, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if max <= 0 || max > b.n {
		max = b.n
	}
	out := make([]logRecord, max)
	for i := range out {
		j := (b.start + i) % len(b.recs)
		out[i] = b.recs[j]
		b.recs[j] = logRecord{}
	}
	b.start = (b.start + max) % len(b.recs)
	b.n -= max
	dropped := b.dropped
	b.dropped = 0
	return out, dropped
}

// bufferHandler is a slog.Handler that appends to a logBuffer. Attributes
// of groups are flattened as "group.key", as slog's TextHandler writes them.
type bufferHandler struct {
	buf    *logBuffer
	level  slog.Leveler
	attrs  map[string]any
	prefix string
}

func newBufferHandler(buf *logBuffer, level slog.Leveler) *bufferHandler {
	return &bufferHandler{buf: buf, level: level}
}

func (h *bufferHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *bufferHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for k, v := range h.attrs {
		attrs[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(attrs, h.prefix, a)
		return true
	})
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	h.buf.add(logRecord{Time: t.UTC().Format(time.RFC3339Nano), Level: r.Level.String(), Msg: clip(r.Message), Attrs: attrs})
	return nil
}

func (h *bufferHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.attrs = make(map[string]any, len(h.attrs)+len(as))
	for k, v := range h.attrs {
		c.attrs[k] = v
	}
	for _, a := range as {
		addAttr(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *bufferHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

func addAttr(m map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range v.Group() {
			addAttr(m, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	m[prefix+a.Key] = attrValue(v)
}

// attrValue is v as a JSON value: numbers, booleans and strings as such,
// durations and times as text, anything else as fmt prints it (an error
// as its message).
func attrValue(v slog.Value) any {
	switch v.Kind() {
	case slog.KindString:
		return clip(v.String())
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Sprint(f) // JSON has no NaN or Inf
		}
		return f
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	}
	switch x := v.Any().(type) {
	case nil:
		return nil
	case error, fmt.Stringer:
		return clip(fmt.Sprint(x))
	case []byte:
		return clip(string(x))
	default:
		return clip(fmt.Sprintf("%+v", x))
	}
}

// clip bounds s to logTextMax bytes (at a rune boundary) and makes it valid
// UTF-8.
func clip(s string) string {
	if len(s) > logTextMax {
		cut := logTextMax
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…(truncated)"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
