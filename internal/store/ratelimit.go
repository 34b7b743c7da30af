package store

import (
	"context"
	"time"
)

// RateLimiter is the optional capability of a store that keeps shared rate
// limits: one token bucket per limit name, shared by every process on the
// database, whose times are the database's clock (PostgreSQL's
// statement_timestamp(); the process's clock on SQLite). Both SQL stores
// implement it.
type RateLimiter interface {
	// RateLimitTake takes up to p.Want tokens of limit p.Name, atomically
	// across processes, creating its bucket full when it does not exist.
	RateLimitTake(ctx context.Context, p *RateLimitParams) (*RateLimitTake, error)
	// RateLimitBlock blocks limit p.Name for p.For from the database's
	// clock (keeping a later block) and returns the end of the block.
	RateLimitBlock(ctx context.Context, p *RateLimitParams) (time.Time, error)
	// RateLimitStates returns the buckets of the named limits that exist.
	RateLimitStates(ctx context.Context, names []string) ([]*RateLimitState, error)
}

// RateLimitParams names a limit and its definition (Rate tokens a second
// up to Burst; the caller's definition replaces the stored one).
type RateLimitParams struct {
	Name  string
	Rate  float64
	Burst int
	// Want is how many tokens RateLimitTake asks for (at least 1).
	Want int
	// For is how long RateLimitBlock blocks.
	For time.Duration
}

// RateLimitTake is what RateLimitTake granted and the bucket after it.
type RateLimitTake struct {
	// Granted tokens, at most Want (0 while blocked).
	Granted int
	// Tokens left in the bucket at At (fractional: the bucket refills
	// continuously).
	Tokens float64
	// At is the database's time the bucket is counted at: the take's, or
	// the end of a block when that is later.
	At time.Time
	// BlockedUntil is the end of the limit's last block (zero: never
	// blocked); no token is granted before it.
	BlockedUntil time.Time
}

// NextToken returns when the n-th token not granted (n from 0) will be in
// the bucket at rate tokens a second, counting from the take.
func (t *RateLimitTake) NextToken(n int, rate float64) time.Time {
	wait := (float64(n) + 1 - t.Tokens) / rate
	at := t.At.Add(time.Duration(max(wait, 0) * float64(time.Second)))
	if at.Before(t.BlockedUntil) {
		return t.BlockedUntil
	}
	return at
}

// RateLimitState is one limit's bucket as stored, read at Now (the
// database's clock).
type RateLimitState struct {
	Name         string
	Rate         float64
	Burst        int
	Tokens       float64
	UpdatedAt    time.Time
	BlockedUntil time.Time // zero: never blocked
	Now          time.Time
}

// TokensAt returns the tokens the bucket holds at t (it refills from
// UpdatedAt, never beyond Burst).
func (s *RateLimitState) TokensAt(t time.Time) float64 {
	if !t.After(s.UpdatedAt) {
		return s.Tokens
	}
	return min(float64(s.Burst), s.Tokens+s.Rate*t.Sub(s.UpdatedAt).Seconds())
}

// Wait returns how long after t the bucket will hold a whole token (0: it
// does at t; a block's end included).
func (s *RateLimitState) Wait(t time.Time) time.Duration {
	at := t
	if s.UpdatedAt.After(at) {
		at = s.UpdatedAt
	}
	tokens := s.TokensAt(at)
	if tokens < 1 {
		at = at.Add(time.Duration((1 - tokens) / s.Rate * float64(time.Second)))
	}
	if s.BlockedUntil.After(at) {
		at = s.BlockedUntil
	}
	return at.Sub(t)
}
