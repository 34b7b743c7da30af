package engine

import (
	"context"
	"slices"
	"sync"
	"time"
)

// stepLeases keeps the step leases of every coordinator of one engine
// alive: from the moment a claim returns a step until the recording of its
// result has committed (or the coordinator gives the step up), the step is
// held here, and one statement every StepLease/5 extends all held steps.
// A lease extended every fifth of it survives a database outage of up to
// four fifths of it (less the retry below) without the rescuer failing a
// live attempt; the statement covers every held step of the process, so
// extending often costs little.
//
// It runs on its own goroutine, apart from the coordinator loops, because
// a loop can be busy for a long time exactly when leases matter most: a
// recording retried through a database outage blocks its loop, and results
// recorded in the background are no longer the loop's in-flight steps.
// Before this keeper the loop's own ticker extended only in-flight and
// pending steps and only between the loop's other work, so a 1.5 s outage
// (shorter than the 2 s lease) let another runner rescue finished attempts
// of a live runner and their results were thrown away.
//
// After a failed extension it tries again every leaseRetry instead of
// waiting a whole period, so leases are renewed as soon as the database is
// back. The lease end is the database's clock plus StepLease (see
// store.Store.StepLeaseExtend), like the lease a claim grants.
type stepLeases struct {
	e *Engine

	mu      sync.Mutex
	held    map[int64]int // step id -> holds (a step is held once; the count guards a double release)
	running bool          // the extending goroutine is alive
	// soon asks the goroutine to extend now rather than at its next tick:
	// a claim that took long (a loaded server) has spent part of its lease
	// before the coordinator held it.
	soon chan struct{}
}

// leaseRetry is how soon a failed extension is tried again.
const leaseRetry = 100 * time.Millisecond

// leaseExtendsPerLease is how many extensions a lease gets per its length.
const leaseExtendsPerLease = 5

func newStepLeases(e *Engine) *stepLeases {
	return &stepLeases{e: e, held: map[int64]int{}, soon: make(chan struct{}, 1)}
}

// hold starts keeping the leases of steps alive. grantedAt is when the
// database granted them (the claim's time): when more than a tenth of the
// lease has passed since, they are extended at once instead of at the next
// tick, which could come too late.
func (l *stepLeases) hold(grantedAt time.Time, ids ...int64) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.held[id]++
	}
	if !l.running {
		l.running = true
		go l.run()
	}
	if l.e.since(grantedAt) > l.e.cfg.StepLease/10 {
		select {
		case l.soon <- struct{}{}:
		default:
		}
	}
}

// release stops extending the leases of steps: their results are recorded,
// or the coordinator leaves them to expire.
func (l *stepLeases) release(ids ...int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if n := l.held[id]; n > 1 {
			l.held[id] = n - 1
		} else {
			delete(l.held, id)
		}
	}
}

// holding reports whether step id is held (tests).
func (l *stepLeases) holding(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[id] > 0
}

// closed reports whether the engine was closed (Engine.Close).
func (l *stepLeases) closed() bool {
	select {
	case <-l.e.quit:
		return true
	default:
		return false
	}
}

// snapshot returns the held step ids, or stops the goroutine (running =
// false) when none are held.
func (l *stepLeases) snapshot() ([]int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) == 0 {
		l.running = false
		return nil, false
	}
	ids := make([]int64, 0, len(l.held))
	for id := range l.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, true
}

func (l *stepLeases) run() {
	period := max(l.e.cfg.StepLease/leaseExtendsPerLease, 10*time.Millisecond)
	wait := period
	failing := false
	for {
		t := l.e.cfg.Clock.NewTimer(wait)
		select {
		case <-t.C():
		case <-l.soon:
			t.Stop()
		}
		ids, ok := l.snapshot()
		if !ok {
			return
		}
		// Not cut off by any caller's context: a coordinator shutting down
		// still holds steps whose results it is recording.
		ctx, cancel := context.WithTimeout(context.Background(), l.e.cfg.StepLease)
		_, _, err := l.e.store.StepLeaseExtend(ctx, l.e.cfg.Owner, ids, l.e.cfg.StepLease)
		cancel()
		switch {
		case err != nil && l.closed():
			// The engine was closed (its store with it, usually): nothing
			// will record these steps any more; stop instead of retrying
			// for ever. Their leases expire and another runner rescues them.
			l.mu.Lock()
			clear(l.held)
			l.running = false
			l.mu.Unlock()
			return
		case err != nil:
			if !failing {
				l.e.log.Warn("extend step leases; retrying", "steps", len(ids), "err", err, "retry_in", leaseRetry)
			}
			failing = true
			wait = min(leaseRetry, period)
		default:
			if failing {
				l.e.log.Info("step leases extended again", "steps", len(ids))
			}
			failing = false
			wait = period
		}
	}
}
