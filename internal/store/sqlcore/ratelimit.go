package sqlcore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
)

// RateLimitQueries are the named statements of the shared rate limits
// (store.RateLimiter); every database defines them.
var RateLimitQueries = []string{"RateLimitTake", "RateLimitCreate", "RateLimitBlock", "RateLimitStates"}

// rateClock is the clock argument of the rate-limit statements: NULL, the
// database's clock when the statement runs (PostgreSQL's
// statement_timestamp(), SQLite's julianday('now')). Not the caller's:
// a take waiting for a connection or SQLite's writer would count its
// tokens from before the wait.
func (s *Core) rateClock() any { return nil }

func fromUnix(v sql.NullFloat64) time.Time {
	if !v.Valid || math.IsInf(v.Float64, 0) {
		return time.Time{}
	}
	return time.UnixMicro(int64(math.Round(v.Float64 * 1e6))).UTC()
}

// RateLimitTake implements store.RateLimiter.
func (s *Core) RateLimitTake(ctx context.Context, p *store.RateLimitParams) (*store.RateLimitTake, error) {
	want := max(p.Want, 1)
	for range 2 {
		var out store.RateLimitTake
		var at, blocked sql.NullFloat64
		err := s.db.QueryRow(ctx, s.Q("RateLimitTake"), p.Name, p.Rate, p.Burst, want, s.rateClock()).
			Scan(&out.Granted, &out.Tokens, &at, &blocked)
		if err == nil {
			out.At, out.BlockedUntil = fromUnix(at), fromUnix(blocked)
			return &out, nil
		}
		if !IsNoRows(err) {
			return nil, fmt.Errorf("rate limit %s: take: %w", p.Name, err)
		}
		// First use of the limit: create its bucket full, then take.
		if _, err := s.db.Exec(ctx, s.Q("RateLimitCreate"), p.Name, p.Rate, p.Burst, s.rateClock()); err != nil {
			return nil, fmt.Errorf("rate limit %s: create: %w", p.Name, err)
		}
	}
	return nil, fmt.Errorf("rate limit %s: take: the bucket vanished", p.Name)
}

// RateLimitBlock implements store.RateLimiter.
func (s *Core) RateLimitBlock(ctx context.Context, p *store.RateLimitParams) (time.Time, error) {
	var until sql.NullFloat64
	if err := s.db.QueryRow(ctx, s.Q("RateLimitBlock"), p.Name, p.Rate, p.Burst, p.For.Seconds(), s.rateClock()).
		Scan(&until); err != nil {
		return time.Time{}, fmt.Errorf("rate limit %s: block: %w", p.Name, err)
	}
	return fromUnix(until), nil
}

// RateLimitStates implements store.RateLimiter.
func (s *Core) RateLimitStates(ctx context.Context, names []string) ([]*store.RateLimitState, error) {
	rows, err := s.db.Query(ctx, s.Q("RateLimitStates"), s.Strs(names), s.rateClock())
	if err != nil {
		return nil, fmt.Errorf("rate limit states: %w", err)
	}
	defer rows.Close()
	var out []*store.RateLimitState
	for rows.Next() {
		st := &store.RateLimitState{}
		var updated, blocked, now sql.NullFloat64
		if err := rows.Scan(&st.Name, &st.Rate, &st.Burst, &st.Tokens, &updated, &blocked, &now); err != nil {
			return nil, fmt.Errorf("rate limit states: %w", err)
		}
		st.UpdatedAt, st.BlockedUntil, st.Now = fromUnix(updated), fromUnix(blocked), fromUnix(now)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rate limit states: %w", err)
	}
	return out, nil
}
