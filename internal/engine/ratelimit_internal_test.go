package engine

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// wrapped is a store wrapper that passes on no optional capability, like
// the metrics wrapper of `tasker serve`.
type wrapped struct{ store.Store }

func (w wrapped) Unwrap() store.Store { return w.Store }

// The engine finds the store's rate limits through wrappers: behind
// `tasker serve`'s metrics wrapper, steps of a limit ran unlimited.
func TestRateLimiterOfSeesThroughWrappers(t *testing.T) {
	st := testdb.SQLite(t)
	require.NotNil(t, rateLimiterOf(st))
	require.NotNil(t, rateLimiterOf(wrapped{wrapped{st}}))
	require.Nil(t, rateLimiterOf(struct{ store.Store }{st}), "a wrapper without Unwrap hides it")
}

// At a high rate a take gets the tokens of the next 10 ms ahead, and the
// process's next takes use them without a statement; after spareTTL they
// are dropped, and the bucket never grants more than it holds.
func TestRateLimiterTakesAheadAtHighRates(t *testing.T) {
	st := testdb.SQLite(t)
	e := &Engine{store: st, log: slog.Default(), cfg: Config{Clock: clock.Real{}}}
	l := newRateLimiter(e)
	lim := &template.RateLimit{Name: "fast", PerSecond: 1000, Burst: 5}
	require.Equal(t, 10, spareFor(lim))
	require.Zero(t, spareFor(&template.RateLimit{Name: "slow", PerSecond: 99, Burst: 5}), "no tokens ahead under 100/s")

	ctx := context.Background()
	before := st.RoundTrips()
	start := time.Now()
	require.Equal(t, 1, l.take(ctx, lim, 1).granted)
	afterFirst := st.RoundTrips()
	require.Greater(t, afterFirst, before)
	// The burst of 5 held 5: one for the take, four ahead.
	for range 4 {
		require.Equal(t, 1, l.take(ctx, lim, 1).granted)
	}
	if time.Since(start) < spareTTL { // not stalled past the tokens' life (a loaded machine)
		require.Equal(t, afterFirst, st.RoundTrips(), "the four came from the tokens taken ahead")
	}
	states, err := st.RateLimitStates(ctx, []string{"fast"})
	require.NoError(t, err)
	require.Less(t, states[0].Tokens, 1.0, "the database granted the whole burst")
}
