package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/taskertype"
)

// newStep returns a first attempt of step name with the given config and a
// small task context.
func newStep(name string, cfg map[string]any) *taskertype.StepContext {
	return &taskertype.StepContext{
		TaskID:        42,
		StepID:        7,
		StepName:      name,
		Namespace:     "ns",
		TaskName:      "orders",
		Version:       "1.2.3",
		Context:       json.RawMessage(`{"order":{"id":1001,"sku":"A-17","tags":["x","y"]},"customer":"ann","big":12345678901234567890,"nothing":null}`),
		Inputs:        json.RawMessage(`{"limit":5}`),
		HandlerConfig: cfg,
		DependencyResults: map[string]json.RawMessage{
			"auth":  json.RawMessage(`{"token":"tok-123"}`),
			"price": json.RawMessage(`{"total":19.5,"lines":[{"sku":"A-17","qty":2},{"sku":"B-2","qty":1}]}`),
		},
		Attempt:     1,
		MaxAttempts: 3,
	}
}

// run calls handler name of the default handler set.
func run(t *testing.T, opts Options, name string, step *taskertype.StepContext) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runCtx(ctx, t, opts, name, step)
}

func runCtx(ctx context.Context, t *testing.T, opts Options, name string, step *taskertype.StepContext) (any, error) {
	t.Helper()
	h, ok := Handlers(opts)[name]
	require.True(t, ok, "no handler %s", name)
	return h.Handle(ctx, step)
}

// normalize round-trips v through JSON so results of any Go type compare
// against plain decoded JSON.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// decode parses a JSON literal for comparisons.
func decode(t *testing.T, s string) any {
	t.Helper()
	var out any
	require.NoError(t, json.Unmarshal([]byte(s), &out))
	return out
}

func requireRetryable(t *testing.T, err error) *taskertype.RetryableError {
	t.Helper()
	require.Error(t, err)
	var re *taskertype.RetryableError
	require.True(t, errors.As(err, &re), "want a RetryableError, got %T: %v", err, err)
	return re
}

func requirePermanent(t *testing.T, err error) *taskertype.PermanentError {
	t.Helper()
	require.Error(t, err)
	var pe *taskertype.PermanentError
	require.True(t, errors.As(err, &pe), "want a PermanentError, got %T: %v", err, err)
	return pe
}
