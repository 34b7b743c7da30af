package metrics_test

import (
	"testing"

	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// The timing wrapper keeps the optional capabilities of the store it
// wraps, and claims none the store lacks: without TxTaskCreator,
// Client.InitializeTaskTx fails on PostgreSQL when metrics are on.
func TestWrapStoreKeepsCapabilities(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	pg := m.WrapStore(testdb.Postgres(t))
	if _, ok := pg.(store.Notifier); !ok {
		t.Error("wrapped PostgreSQL store lost store.Notifier")
	}
	if _, ok := pg.(store.TxTaskCreator); !ok {
		t.Error("wrapped PostgreSQL store lost store.TxTaskCreator")
	}
	lite := m.WrapStore(testdb.SQLite(t))
	if _, ok := lite.(store.Notifier); ok {
		t.Error("wrapped SQLite store claims store.Notifier")
	}
	if _, ok := lite.(store.TxTaskCreator); ok {
		t.Error("wrapped SQLite store claims store.TxTaskCreator")
	}
}
