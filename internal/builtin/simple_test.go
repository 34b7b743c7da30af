package builtin

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHandlersKeys(t *testing.T) {
	t.Parallel()
	h := Handlers(Options{})
	require.Len(t, h, 5)
	for _, k := range []string{"tasker:noop", "tasker:http", "tasker:command", "tasker:fail", "tasker:sleep"} {
		require.NotNil(t, h[k], k)
	}
}

func TestNoop(t *testing.T) {
	t.Parallel()
	got, err := run(t, Options{}, NoopName, newStep("n", nil))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"ok":true}`), normalize(t, got))

	got, err = run(t, Options{}, NoopName, newStep("n", map[string]any{"result": map[string]any{"a": []any{1, "b"}}}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"a":[1,"b"]}`), normalize(t, got))
}

func TestSleep(t *testing.T) {
	t.Parallel()
	for _, cfg := range []map[string]any{
		{"milliseconds": 20},
		{"milliseconds": json.Number("20")},
		{"seconds": 0.02},
		{"seconds": "0.02"},
	} {
		start := time.Now()
		got, err := run(t, Options{}, SleepName, newStep("z", cfg))
		require.NoError(t, err, "%v", cfg)
		require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
		require.Equal(t, decode(t, `{"slept_ms":20}`), normalize(t, got))
	}
}

func TestSleepCancellation(t *testing.T) {
	t.Parallel()
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := runCtx(ctx, t, Options{}, SleepName, newStep("z", map[string]any{"seconds": 30}))
		requireRetryable(t, err)
		require.Less(t, time.Since(start), 5*time.Second)
		require.Contains(t, err.Error(), `step "z" timed out`)
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := runCtx(ctx, t, Options{}, SleepName, newStep("z", map[string]any{"milliseconds": 30000}))
		requireRetryable(t, err)
		require.Less(t, time.Since(start), 5*time.Second)
		require.Contains(t, err.Error(), "was cancelled")
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestSleepBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg map[string]any
		msg string
	}{
		{nil, "handler_config.seconds: required"},
		{map[string]any{"seconds": "soon"}, `handler_config.seconds: must be a number, got "soon"`},
		{map[string]any{"milliseconds": -1}, "handler_config.milliseconds: must be a non-negative"},
		{map[string]any{"seconds": 1, "milliseconds": 1}, "handler_config.seconds: set seconds or milliseconds, not both"},
	} {
		_, err := run(t, Options{}, SleepName, newStep("zz", tc.cfg))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), `tasker:sleep: step "zz": `+tc.msg)
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	t.Run("default fails once", func(t *testing.T) {
		t.Parallel()
		step := newStep("x", nil)
		_, err := run(t, Options{}, FailName, step)
		re := requireRetryable(t, err)
		require.Zero(t, re.After)
		require.Contains(t, err.Error(), "tasker:fail: planned failure on attempt 1 of step x")
		step.Attempt = 2
		got, err := run(t, Options{}, FailName, step)
		require.NoError(t, err)
		require.Equal(t, decode(t, `{"ok":true,"attempt":2}`), normalize(t, got))
	})
	t.Run("times", func(t *testing.T) {
		t.Parallel()
		step := newStep("x", map[string]any{"times": json.Number("3")})
		for a := 1; a <= 3; a++ {
			step.Attempt = a
			_, err := run(t, Options{}, FailName, step)
			requireRetryable(t, err)
		}
		step.Attempt = 4
		got, err := run(t, Options{}, FailName, step)
		require.NoError(t, err)
		require.Equal(t, decode(t, `{"ok":true,"attempt":4}`), normalize(t, got))
	})
	t.Run("times zero never fails", func(t *testing.T) {
		t.Parallel()
		_, err := run(t, Options{}, FailName, newStep("x", map[string]any{"times": 0}))
		require.NoError(t, err)
	})
	t.Run("permanent", func(t *testing.T) {
		t.Parallel()
		_, err := run(t, Options{}, FailName, newStep("x", map[string]any{"permanent": true}))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), "planned failure on attempt 1 of step x")
	})
	t.Run("retry after", func(t *testing.T) {
		t.Parallel()
		_, err := run(t, Options{}, FailName, newStep("x", map[string]any{"retry_after_seconds": 2.5}))
		re := requireRetryable(t, err)
		require.Equal(t, 2500*time.Millisecond, re.After)
	})
	t.Run("always", func(t *testing.T) {
		t.Parallel()
		step := newStep("x", map[string]any{"always": true})
		step.Attempt = 99
		_, err := run(t, Options{}, FailName, step)
		requireRetryable(t, err)
		require.Contains(t, err.Error(), "attempt 99 of step x")
	})
	t.Run("bad config", func(t *testing.T) {
		t.Parallel()
		_, err := run(t, Options{}, FailName, newStep("x", map[string]any{"times": "many"}))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), `tasker:fail: step "x": handler_config.times`)
		_, err = run(t, Options{}, FailName, newStep("x", map[string]any{"permanent": 3}))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), "handler_config.permanent")
	})
}
