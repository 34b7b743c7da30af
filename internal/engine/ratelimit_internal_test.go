package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
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
