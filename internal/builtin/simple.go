package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

// handleNoop implements tasker:noop: it succeeds at once with
// handler_config.result when set, else {"ok": true}.
func handleNoop(_ context.Context, step *taskertype.StepContext) (any, error) {
	if r, ok := step.HandlerConfig["result"]; ok {
		return r, nil
	}
	return json.RawMessage(`{"ok":true}`), nil // as encoded: no map to build and marshal per step
}

// handleSleep implements tasker:sleep: it waits handler_config.seconds or
// handler_config.milliseconds and returns {"slept_ms": n}.
func handleSleep(ctx context.Context, step *taskertype.StepContext) (any, error) {
	cfg := newConfig(SleepName, step)
	secs, hasSecs, err := cfg.number("seconds")
	if err != nil {
		return nil, err
	}
	ms, hasMS, err := cfg.number("milliseconds")
	if err != nil {
		return nil, err
	}
	var d time.Duration
	switch {
	case hasSecs && hasMS:
		return nil, cfg.errorf("seconds", "set seconds or milliseconds, not both")
	case hasSecs:
		if secs < 0 || secs > math.MaxInt64/float64(time.Second) {
			return nil, cfg.errorf("seconds", "must be a non-negative number, got %v", secs)
		}
		d = time.Duration(secs * float64(time.Second))
	case hasMS:
		if ms < 0 || ms > math.MaxInt64/float64(time.Millisecond) {
			return nil, cfg.errorf("milliseconds", "must be a non-negative number, got %v", ms)
		}
		d = time.Duration(ms * float64(time.Millisecond))
	default:
		return nil, cfg.errorf("seconds", "required (or handler_config.milliseconds)")
	}

	start := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return map[string]any{"slept_ms": d.Milliseconds()}, nil
	case <-ctx.Done():
		what := "was cancelled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			what = "timed out"
		}
		return nil, taskertype.Retryable(fmt.Errorf("%s: step %q %s after %d of %d ms: %w",
			SleepName, step.StepName, what, time.Since(start).Milliseconds(), d.Milliseconds(), ctx.Err()), 0)
	}
}

// handleFail implements tasker:fail, a test helper: it fails the first
// handler_config.times attempts (default 1), or every attempt when
// handler_config.always is true, then returns {"ok": true, "attempt": n}.
func handleFail(_ context.Context, step *taskertype.StepContext) (any, error) {
	cfg := newConfig(FailName, step)
	times, ok, err := cfg.integer("times")
	if err != nil {
		return nil, err
	}
	if !ok {
		times = 1
	}
	always, err := cfg.boolean("always", false)
	if err != nil {
		return nil, err
	}
	permanent, err := cfg.boolean("permanent", false)
	if err != nil {
		return nil, err
	}
	var after time.Duration
	if f, ok, err := cfg.number("retry_after_seconds"); err != nil {
		return nil, err
	} else if ok {
		if f < 0 || f > math.MaxInt64/float64(time.Second) {
			return nil, cfg.errorf("retry_after_seconds", "must be a non-negative number, got %v", f)
		}
		after = time.Duration(f * float64(time.Second))
	}

	if !always && step.Attempt > times {
		return map[string]any{"ok": true, "attempt": step.Attempt}, nil
	}
	msg := fmt.Errorf("%s: planned failure on attempt %d of step %s", FailName, step.Attempt, step.StepName)
	if permanent {
		return nil, taskertype.Permanent(msg)
	}
	return nil, taskertype.Retryable(msg, after)
}
