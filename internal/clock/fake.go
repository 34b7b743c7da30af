package clock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Fake is a clock that moves only when Advance is called: tests use it to
// pass hours of backoff in no time, and WaitForWaiters to know the code
// under test is waiting before moving it. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
	// changed is closed and replaced whenever the set of waiters changes.
	changed chan struct{}
}

// fakeWaiter is a pending timer or ticker.
type fakeWaiter struct {
	f      *Fake
	at     time.Time
	period time.Duration // > 0 for tickers
	c      chan time.Time
}

// NewFake returns a fake clock showing start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer firing when the clock reaches Now()+d (at once
// when d <= 0).
func (f *Fake) NewTimer(d time.Duration) Timer {
	w := &fakeWaiter{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.at = f.now.Add(d)
	if d <= 0 {
		w.c <- f.now
		return fakeTimer{w}
	}
	f.addLocked(w)
	return fakeTimer{w}
}

// NewTicker returns a ticker firing each time the clock passes a multiple
// of d from now. It panics when d <= 0, as time.NewTicker does.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic(fmt.Sprintf("clock: non-positive ticker interval %s", d))
	}
	w := &fakeWaiter{f: f, period: d, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.at = f.now.Add(d)
	f.addLocked(w)
	return fakeTicker{w}
}

// Advance moves the clock by d and fires every timer and ticker due by
// then (a ticker at most once per call, like a slow receiver of a real one).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		select {
		case w.c <- f.now:
		default: // the receiver has not taken the last tick
		}
		if w.period > 0 {
			for !w.at.After(f.now) {
				w.at = w.at.Add(w.period)
			}
			kept = append(kept, w)
		}
	}
	clear(f.waiters[len(kept):])
	f.waiters = kept
	f.notifyLocked()
}

// Waiters counts the pending timers and tickers.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// WaitForWaiters blocks until at least n timers or tickers are pending, or
// ctx ends (its error is returned then).
func (f *Fake) WaitForWaiters(ctx context.Context, n int) error {
	return f.waitFor(ctx, fmt.Sprintf("%d waiters", n), func() bool { return len(f.waiters) >= n })
}

// WaitForWaiterBeyond blocks until a pending timer or ticker fires at least
// d from now (a wait of d or longer has begun), or ctx ends.
func (f *Fake) WaitForWaiterBeyond(ctx context.Context, d time.Duration) error {
	return f.waitFor(ctx, fmt.Sprintf("a waiter %s ahead", d), func() bool {
		for _, w := range f.waiters {
			if !w.at.Before(f.now.Add(d)) {
				return true
			}
		}
		return false
	})
}

// waitFor blocks until cond, called with f.mu held, is true.
func (f *Fake) waitFor(ctx context.Context, what string, cond func() bool) error {
	for {
		f.mu.Lock()
		ok, changed := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clock: waiting for %s: %w", what, ctx.Err())
		case <-changed:
		}
	}
}

func (f *Fake) addLocked(w *fakeWaiter) {
	f.waiters = append(f.waiters, w)
	f.notifyLocked()
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// remove drops w; it reports whether w was pending.
func (f *Fake) remove(w *fakeWaiter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.notifyLocked()
			return true
		}
	}
	return false
}

type fakeTimer struct{ w *fakeWaiter }

func (t fakeTimer) C() <-chan time.Time { return t.w.c }
func (t fakeTimer) Stop() bool          { return t.w.f.remove(t.w) }

type fakeTicker struct{ w *fakeWaiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.c }
func (t fakeTicker) Stop()               { t.w.f.remove(t.w) }

// NextDue returns when the earliest pending timer or ticker fires (false
// when none is pending).
func (f *Fake) NextDue() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next time.Time
	for _, w := range f.waiters {
		if next.IsZero() || w.at.Before(next) {
			next = w.at
		}
	}
	return next, !next.IsZero()
}
