package engine

import (
	"context"
	"errors"
	"time"
)

// retryDB runs op until it succeeds, for at most limit, backing off from
// 50 ms to 1 s between tries. The coordinator uses it for statements whose
// failure would otherwise throw away finished work (recording results) while
// the database restarts or drops connections. op must be safe to repeat:
// the store's guarded transitions are (a repeated StepRecord whose first
// commit did land finds the step no longer in progress and skips it).
func (e *Engine) retryDB(ctx context.Context, what string, limit time.Duration, op func() error) error {
	deadline := e.cfg.Clock.Now().Add(limit)
	wait := 50 * time.Millisecond
	for {
		err := op()
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
			e.cfg.Clock.Now().Add(wait).After(deadline) {
			return err
		}
		e.log.Warn(what+"; retrying", "err", err, "retry_in", wait)
		if !e.sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, time.Second)
	}
}
