// Package tracectx is the trace context tasker keeps with a task, and the
// span ids it derives from it. It has no dependency on the tracing SDK, so
// that the engine can hand a step attempt's traceparent on.
//
// The trace context travels with the task as a tag, "traceparent:" followed
// by a W3C traceparent (version 00): the trace id and the span id of the
// caller that created the task (the creating HTTP request's traceparent
// header, or the span in the context given to InitializeTask). A span id of
// zeros means the task started its own trace (tracing on, no caller): the
// task span is then the trace's root.
//
// Span ids are derived from the task, not stored: the task span's id is a
// hash of the trace id and the task id, an attempt span's id a hash of
// those, the step id and the attempt number. Any process can therefore
// compute them, without coordination: the one that runs an attempt (to
// send its traceparent on tasker:http requests and to external workers)
// and the one that reports the span.
package tracectx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// TagPrefix starts the task tag that carries the trace context.
const TagPrefix = "traceparent:"

// Header is the W3C trace context header.
const Header = "traceparent"

// Parent is a task's stored trace context.
type Parent struct {
	TraceID trace.TraceID
	// SpanID is the caller's span (zero: the task span is a root).
	SpanID trace.SpanID
	Flags  trace.TraceFlags
}

// Parse reads a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"). A zero
// span id is accepted only when zeroSpanOK (tasker's own tag for a trace
// the task started).
func Parse(s string, zeroSpanOK bool) (Parent, bool) {
	var p Parent
	s = strings.TrimSpace(s)
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] != "00" {
		return p, false
	}
	if !isLowerHex(s[3:35]) || !isLowerHex(s[36:52]) || !isLowerHex(s[53:55]) {
		return p, false
	}
	_, _ = hex.Decode(p.TraceID[:], []byte(s[3:35]))
	_, _ = hex.Decode(p.SpanID[:], []byte(s[36:52]))
	var f [1]byte
	_, _ = hex.Decode(f[:], []byte(s[53:55]))
	p.Flags = trace.TraceFlags(f[0])
	if !p.TraceID.IsValid() || (!p.SpanID.IsValid() && !zeroSpanOK) {
		return Parent{}, false
	}
	return p, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// String formats p as a traceparent.
func (p Parent) String() string {
	return "00-" + p.TraceID.String() + "-" + p.SpanID.String() + "-" + p.Flags.String()
}

// Tag is the task tag storing p.
func (p Parent) Tag() string { return TagPrefix + p.String() }

// FromTags finds the trace context among a task's tags.
func FromTags(tags []string) (Parent, bool) {
	for _, t := range tags {
		if strings.HasPrefix(t, TagPrefix) {
			return Parse(t[len(TagPrefix):], true)
		}
	}
	return Parent{}, false
}

// HasTag reports whether tags already carry a trace context tag.
func HasTag(tags []string) bool {
	for _, t := range tags {
		if strings.HasPrefix(t, TagPrefix) {
			return true
		}
	}
	return false
}

func derive(traceID trace.TraceID, parts ...int64) trace.SpanID {
	h := sha256.New()
	h.Write(traceID[:])
	var b [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(b[:], uint64(p))
		h.Write(b[:])
	}
	var id trace.SpanID
	copy(id[:], h.Sum(nil))
	if !id.IsValid() {
		id[7] = 1
	}
	return id
}

// TaskSpanID is the id of the task's span.
func TaskSpanID(traceID trace.TraceID, taskID int64) trace.SpanID { return derive(traceID, 1, taskID) }

// AttemptSpanID is the id of a step attempt's span.
func AttemptSpanID(traceID trace.TraceID, taskID, stepID int64, attempt int) trace.SpanID {
	return derive(traceID, 2, taskID, stepID, int64(attempt))
}

// exporting counts the started span reporters of this process.
var exporting atomic.Int32

// Exporting records that a span reporter started (+1) or stopped (-1) in
// this process; StepTraceParent then names attempt spans.
func Exporting(delta int32) { exporting.Add(delta) }

// ContextWithTraceParent returns ctx carrying the remote span context of a
// W3C traceparent header; ctx itself when the header is empty or invalid
// (an invalid traceparent is ignored, as W3C asks).
func ContextWithTraceParent(ctx context.Context, header string) context.Context {
	p, ok := Parse(header, false)
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: p.TraceID, SpanID: p.SpanID, TraceFlags: p.Flags, Remote: true}))
}

// NewTraceID returns a random trace id.
func NewTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}

// StepTraceParent is the traceparent a step attempt hands on (tasker:http
// requests, external workers): the attempt's span when this process
// exports spans, else the task's caller; "" when the task has no trace
// context (or, without exporting, no caller).
func StepTraceParent(tags []string, taskID, stepID int64, attempt int) string {
	p, ok := FromTags(tags)
	if !ok {
		return ""
	}
	if exporting.Load() > 0 {
		return Parent{TraceID: p.TraceID, SpanID: AttemptSpanID(p.TraceID, taskID, stepID, attempt), Flags: p.Flags}.String()
	}
	if !p.SpanID.IsValid() {
		return ""
	}
	return p.String()
}
