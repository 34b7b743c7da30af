// Package clock is the engine's source of time: the current time, one-shot
// timers and periodic tickers behind one interface, so that tests can drive
// time by hand (Fake) instead of sleeping.
package clock

import "time"

// Clock tells the time and makes timers and tickers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d (d > 0), dropping ticks
	// a slow receiver misses, as time.Ticker does.
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot timer (time.Timer behind an interface).
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Ticker is a periodic ticker (time.Ticker behind an interface).
type Ticker interface {
	// C delivers the ticks.
	C() <-chan time.Time
	// Stop turns the ticker off.
	Stop()
}

// Real is the system clock. Its zero value is ready to use; NowFunc, when
// set, replaces time.Now for Now (timers and tickers still use real time).
type Real struct {
	NowFunc func() time.Time
}

// Now returns NowFunc() or time.Now().
func (r Real) Now() time.Time {
	if r.NowFunc != nil {
		return r.NowFunc()
	}
	return time.Now()
}

// NewTimer wraps time.NewTimer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// NewTicker wraps time.NewTicker.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }
