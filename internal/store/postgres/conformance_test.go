package postgres_test

import (
	"testing"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/storetest"
	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store { return testdb.Postgres(t) })
}
