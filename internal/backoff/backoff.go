// Package backoff computes how long a step waits before its next attempt.
// It is pure: no clock, no I/O; the only source of randomness is the
// function given to New.
//
// # Formula
//
// attempt is the number of the attempt that just failed, counting from 1
// (values below 1 count as 1). With a server-requested delay s > 0 (an HTTP
// Retry-After carried by taskertype.RetryableError):
//
//	delay = clamp(s, Min, MaxServerDelay)
//
// The server's delay wins: no exponential growth, no priority scaling, no
// jitter. Otherwise:
//
//	d = min(Base * Multiplier^(attempt-1), Max)     exponent capped at MaxExponent
//	d = d / (1 + PriorityStep*priority)              priority > 0 (more urgent)
//	d = d * (1 + PriorityStep*|priority|)            priority < 0 (less urgent)
//	d = min(d, Max)
//	d = d * (1 - Jitter*r)                           r = rnd() in [0, 1)
//	delay = clamp(d, Min, Max)
//
// Jitter only ever removes time, so Max holds; capping at Max before the
// jitter keeps the jitter effective for delays that reached the cap, so
// steps failing together do not retry in lockstep. The result is rounded to
// the nearest nanosecond.
//
// # One configuration source for Go and SQL
//
// When an attempt fails with retries left, the engine computes
// next_retry_at = now + Delay(...) with this calculator and stores it on the
// step. Step readiness in SQL only compares next_retry_at with now; it never
// recomputes a backoff. The backoff configuration therefore lives in Go
// alone, and the SQL can never disagree with it.
package backoff

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Defaults applied by Config.WithDefaults to zero fields.
const (
	// BaseDefault is the default delay after the first failed attempt.
	BaseDefault = time.Second
	// MultiplierDefault is the default growth factor per attempt.
	MultiplierDefault = 2.0
	// MaxDefault is the default cap for computed delays.
	MaxDefault = 5 * time.Minute
	// MinDefault is the default floor for every delay.
	MinDefault = time.Second
	// JitterDefault is the default fraction of a delay removed at random.
	JitterDefault = 0.2
	// MaxServerDelayDefault is the default cap for server-requested delays.
	MaxServerDelayDefault = time.Hour
	// PriorityStepDefault is the default priority scaling per priority unit.
	PriorityStepDefault = 0.25
)

// MaxExponent caps attempt-1 in Multiplier^(attempt-1), so that very large
// attempt numbers cost a bounded amount of work and never overflow. With any
// Multiplier of at least 1.01 and the default Base and Max, the cap is
// reached long after the delay hit Max.
const MaxExponent = 1024

// Config configures a Calculator. Use WithDefaults to fill zero fields and
// Validate before New.
type Config struct {
	// Base is the delay after the first failed attempt (default 1s).
	Base time.Duration
	// Multiplier is the growth factor per further attempt, at least 1
	// (default 2).
	Multiplier float64
	// Max caps computed delays (default 5m).
	Max time.Duration
	// Min is the floor for every delay, server-requested ones included
	// (default 1s).
	Min time.Duration
	// Jitter, in [0, 1], is the largest fraction of a computed delay removed
	// at random (default 0.2). Jitter only shortens a delay.
	Jitter float64
	// MaxServerDelay caps server-requested delays (default 1h).
	MaxServerDelay time.Duration
	// PriorityStep scales delays by task priority: a priority p > 0 divides
	// the delay by 1+PriorityStep*p, a priority p < 0 multiplies it by
	// 1+PriorityStep*|p| (default 0.25).
	PriorityStep float64
}

// WithDefaults returns c with every zero field replaced by its default. A
// zero Jitter, Min or PriorityStep therefore cannot be expressed through
// WithDefaults; set such fields after calling it.
func (c Config) WithDefaults() Config {
	c.Base = cmp.Or(c.Base, BaseDefault)
	c.Multiplier = cmp.Or(c.Multiplier, MultiplierDefault)
	c.Max = cmp.Or(c.Max, MaxDefault)
	c.Min = cmp.Or(c.Min, MinDefault)
	c.Jitter = cmp.Or(c.Jitter, JitterDefault)
	c.MaxServerDelay = cmp.Or(c.MaxServerDelay, MaxServerDelayDefault)
	c.PriorityStep = cmp.Or(c.PriorityStep, PriorityStepDefault)
	return c
}

// Validate reports the first problem with c, naming the field and the limit
// it breaks. A zero Config is invalid (Multiplier 0): call WithDefaults.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Base", c.Base}, {"Max", c.Max}, {"Min", c.Min}, {"MaxServerDelay", c.MaxServerDelay},
	} {
		if d.v < 0 {
			return fmt.Errorf("backoff: %s must not be negative (got %s)", d.name, d.v)
		}
	}
	switch {
	case math.IsNaN(c.Multiplier) || math.IsInf(c.Multiplier, 0) || c.Multiplier < 1:
		return fmt.Errorf("backoff: Multiplier must be a finite number >= 1 (got %v)", c.Multiplier)
	case math.IsNaN(c.Jitter) || c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("backoff: Jitter must be within [0, 1] (got %v)", c.Jitter)
	case math.IsNaN(c.PriorityStep) || math.IsInf(c.PriorityStep, 0) || c.PriorityStep < 0:
		return fmt.Errorf("backoff: PriorityStep must be a finite number >= 0 (got %v)", c.PriorityStep)
	case c.Min > c.Max:
		return fmt.Errorf("backoff: Min (%s) must not exceed Max (%s)", c.Min, c.Max)
	case c.Min > c.MaxServerDelay:
		return fmt.Errorf("backoff: Min (%s) must not exceed MaxServerDelay (%s)", c.Min, c.MaxServerDelay)
	}
	return nil
}

// Calculator computes retry delays from one Config. It is safe for
// concurrent use when its random source is (the default one is).
type Calculator struct {
	cfg Config
	rnd func() float64
}

// New returns a Calculator for cfg, used exactly as given (apply
// WithDefaults first). rnd returns values in [0, 1) and drives the jitter;
// nil means math/rand/v2's Float64. New panics when cfg.Validate fails: the
// configuration is validated where it is loaded, so an invalid one here is a
// programming error (typically a forgotten WithDefaults).
func New(cfg Config, rnd func() float64) *Calculator {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return &Calculator{cfg: cfg, rnd: rnd}
}

// Config returns the configuration the calculator uses.
func (c *Calculator) Config() Config { return c.cfg }

// Delay returns how long to wait after attempt number attempt (1-based)
// failed, for a task of the given priority, honouring serverRequested when
// it is positive. The formula is in the package documentation. The result
// always lies within [Min, Max], or within [Min, MaxServerDelay] for a
// server-requested delay.
func (c *Calculator) Delay(attempt, priority int, serverRequested time.Duration) time.Duration {
	cfg := c.cfg
	if serverRequested > 0 {
		return clamp(serverRequested, cfg.Min, cfg.MaxServerDelay)
	}

	maxF := float64(cfg.Max)
	exp := min(max(attempt, 1)-1, MaxExponent)
	// Repeated multiplication (rather than math.Pow) is monotone by
	// construction: each factor is >= 1 and IEEE multiplication rounds
	// monotonically, so a later attempt never gets a shorter delay.
	d := float64(cfg.Base)
	for i := 0; i < exp && d < maxF; i++ {
		d *= cfg.Multiplier
	}
	d = min(d, maxF)

	switch {
	case priority > 0:
		d /= 1 + cfg.PriorityStep*float64(priority)
	case priority < 0:
		d *= 1 + cfg.PriorityStep*math.Abs(float64(priority))
	}
	d = min(d, maxF)

	if cfg.Jitter > 0 {
		r := c.rnd()
		if !(r >= 0) { // negative or NaN from a misbehaving source
			r = 0
		}
		d *= 1 - cfg.Jitter*min(r, 1)
	}

	d = math.Round(d)
	var out time.Duration
	if d >= maxF {
		out = cfg.Max // also avoids converting a float that would overflow int64
	} else {
		out = time.Duration(d)
	}
	return clamp(out, cfg.Min, cfg.Max)
}

// clamp bounds d to [lo, hi]; lo wins should the bounds cross.
func clamp(d, lo, hi time.Duration) time.Duration {
	return max(min(d, hi), lo)
}
