package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
)

// exerciseRateLimits checks store.RateLimiter: a new bucket starts full,
// takes never grant more than the bucket holds (also when many take at
// once), and a block stops every take until it ends and is never shortened.
func exerciseRateLimits(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	limiter := func(t *testing.T) store.RateLimiter {
		rl, ok := newStore(t).(store.RateLimiter)
		require.True(t, ok, "the store keeps rate limits")
		return rl
	}

	t.Run("RateLimitTakeGrantsWhatTheBucketHolds", func(t *testing.T) {
		t.Parallel()
		rl := limiter(t)
		// One token per 100 s: nothing refills during the test.
		p := &store.RateLimitParams{Name: "slow", Rate: 0.01, Burst: 3, Want: 5}
		first, err := rl.RateLimitTake(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 3, first.Granted, "a new bucket is full")
		require.InDelta(t, 0, first.Tokens, 0.01)
		require.True(t, first.BlockedUntil.IsZero())
		require.WithinDuration(t, time.Now(), first.At, time.Minute)
		again, err := rl.RateLimitTake(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 0, again.Granted)
		// The next tokens come one per 100 s.
		require.WithinDuration(t, again.At.Add(100*time.Second), again.NextToken(0, p.Rate), 2*time.Second)
		require.WithinDuration(t, again.At.Add(200*time.Second), again.NextToken(1, p.Rate), 2*time.Second)

		// A fast limit refills: 1,000 a second grants again at once.
		fast := &store.RateLimitParams{Name: "fast", Rate: 1000, Burst: 1, Want: 1}
		for range 3 {
			require.Eventually(t, func() bool {
				tk, err := rl.RateLimitTake(ctx, fast)
				require.NoError(t, err)
				return tk.Granted == 1
			}, 5*time.Second, time.Millisecond)
		}

		states, err := rl.RateLimitStates(ctx, []string{"slow", "fast", "missing"})
		require.NoError(t, err)
		require.Len(t, states, 2)
		require.Equal(t, "fast", states[0].Name)
		require.Equal(t, "slow", states[1].Name)
		require.Equal(t, 3, states[1].Burst)
		require.InDelta(t, 0.01, states[1].Rate, 1e-9)
		require.Less(t, states[1].Tokens, 1.0)
		require.False(t, states[1].Now.IsZero())
	})

	t.Run("RateLimitConcurrentTakesNeverExceedTheBurst", func(t *testing.T) {
		t.Parallel()
		rl := limiter(t)
		p := &store.RateLimitParams{Name: "shared", Rate: 0.001, Burst: 5, Want: 1}
		var mu sync.Mutex
		granted := 0
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				tk, err := rl.RateLimitTake(ctx, p)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				granted += tk.Granted
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Equal(t, 5, granted)
	})

	t.Run("RateLimitBlockStopsTakesUntilItEnds", func(t *testing.T) {
		t.Parallel()
		rl := limiter(t)
		p := &store.RateLimitParams{Name: "blocked", Rate: 100, Burst: 10, Want: 2, For: time.Minute}
		until, err := rl.RateLimitBlock(ctx, p)
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().Add(time.Minute), until, 30*time.Second)
		tk, err := rl.RateLimitTake(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 0, tk.Granted, "blocked: nothing is granted, however full the bucket")
		require.True(t, tk.BlockedUntil.Equal(until), "%s != %s", tk.BlockedUntil, until)
		require.True(t, tk.NextToken(0, p.Rate).Equal(until), "the first token comes when the block ends")
		require.WithinDuration(t, until.Add(10*time.Millisecond), tk.NextToken(1, p.Rate), time.Millisecond)
		// A shorter block keeps the longer one; a longer one extends it.
		short := *p
		short.For = time.Second
		kept, err := rl.RateLimitBlock(ctx, &short)
		require.NoError(t, err)
		require.True(t, kept.Equal(until))
		long := *p
		long.For = 2 * time.Minute
		later, err := rl.RateLimitBlock(ctx, &long)
		require.NoError(t, err)
		require.True(t, later.After(until))

		// A block that has ended: the bucket resumes with one token.
		ended := &store.RateLimitParams{Name: "ended", Rate: 0.001, Burst: 10, Want: 5, For: time.Millisecond}
		_, err = rl.RateLimitBlock(ctx, ended)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			tk, err := rl.RateLimitTake(ctx, ended)
			require.NoError(t, err)
			return tk.Granted == 1
		}, 5*time.Second, 5*time.Millisecond)
		tk, err = rl.RateLimitTake(ctx, ended)
		require.NoError(t, err)
		require.Equal(t, 0, tk.Granted, "one token after the block, not the burst")

		// A block never adds a token: an empty bucket stays empty.
		empty := &store.RateLimitParams{Name: "empty", Rate: 0.001, Burst: 3, Want: 3, For: time.Millisecond}
		tk, err = rl.RateLimitTake(ctx, empty)
		require.NoError(t, err)
		require.Equal(t, 3, tk.Granted)
		_, err = rl.RateLimitBlock(ctx, empty)
		require.NoError(t, err)
		states, err := rl.RateLimitStates(ctx, []string{"empty"})
		require.NoError(t, err)
		require.Less(t, states[0].TokensAt(states[0].Now), 1.0, "the block gave the empty bucket a token")
	})
}

// assertNoError reports err from a goroutine other than the test's.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
