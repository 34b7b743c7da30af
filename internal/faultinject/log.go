package faultinject

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tasker-systems/tasker"
)

// Record kinds in the handler log.
const (
	RecStart   = "start"   // a handler attempt began
	RecEnd     = "end"     // a handler attempt returned (Out says how)
	RecEnqueue = "enqueue" // a task.enqueue / task.reenqueue event was delivered
	// RecDropped is written by a runner on exit when its event bus dropped
	// events (a subscriber's buffer was full); Out is how many.
	RecDropped = "dropped"
)

// Record is one line of the handler-side log. Every runner process appends
// to the same file with O_APPEND, one write per line.
type Record struct {
	Ev      string `json:"ev"`
	Task    int64  `json:"task"`
	Step    string `json:"step,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Owner   string `json:"owner"`
	// T is the wall clock in Unix nanoseconds (all processes share a clock).
	T int64 `json:"t"`
	// Out is the outcome of an end record: ok, retryable, permanent,
	// retry_after or cancelled. For enqueue records it is the operation.
	Out string `json:"out,omitempty"`
}

// Time returns T as a time.Time.
func (r Record) Time() time.Time { return time.Unix(0, r.T) }

// Log appends records to the shared handler log.
type Log struct {
	mu sync.Mutex
	f  *os.File
}

// OpenLog opens path for appending (O_APPEND, created when missing).
func OpenLog(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open handler log: %w", err)
	}
	return &Log{f: f}, nil
}

// Append writes one record as one line in one write.
func (l *Log) Append(r Record) error {
	if r.T == 0 {
		r.T = time.Now().UnixNano()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode log record: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("append handler log: %w", err)
	}
	return nil
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// ReadLog reads every record; a torn last line (a process killed mid-write)
// is skipped and counted.
func ReadLog(path string) (recs []Record, torn int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read handler log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			torn++
			continue
		}
		recs = append(recs, r)
	}
	return recs, torn, sc.Err()
}

// Handler is the harness's step handler. It logs a start record, follows
// the step's plan from the task context (sleeping, honouring cancellation,
// failing on purpose), logs an end record and returns.
type Handler struct {
	Log   *Log
	Owner string
}

// Handle implements tasker.StepHandler.
func (h *Handler) Handle(ctx context.Context, sc *tasker.StepContext) (any, error) {
	rec := Record{Task: sc.TaskID, Step: sc.StepName, Attempt: sc.Attempt, Owner: h.Owner}
	start := rec
	start.Ev = RecStart
	if err := h.Log.Append(start); err != nil {
		return nil, err // retryable: the attempt did not run
	}
	var tc struct {
		FI TaskPlan `json:"fi"`
	}
	if err := json.Unmarshal(sc.Context, &tc); err != nil {
		return nil, tasker.Permanent(fmt.Errorf("decode plan: %w", err))
	}
	sp := tc.FI.Steps[sc.StepName]
	end := rec
	end.Ev = RecEnd
	t := time.NewTimer(time.Duration(sp.SleepMS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		end.Out = "cancelled"
		_ = h.Log.Append(end)
		return nil, ctx.Err()
	case <-t.C:
	}
	var err error
	end.Out = "ok"
	if sc.Attempt <= sp.Fail {
		end.Out = sp.Mode
		base := fmt.Errorf("planned %s failure of %s attempt %d", sp.Mode, sc.StepName, sc.Attempt)
		switch sp.Mode {
		case ModePermanent:
			err = tasker.Permanent(base)
		case ModeRetryAfter:
			err = tasker.Retryable(base, time.Second)
		default:
			err = base
		}
	}
	if lerr := h.Log.Append(end); lerr != nil && err == nil {
		return nil, lerr
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"step": sc.StepName, "attempt": sc.Attempt, "owner": h.Owner}, nil
}
