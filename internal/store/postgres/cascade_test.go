package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// Transitions, steps and edges carry no foreign key to their task or step
// on PostgreSQL (migrations 0006 and 0009); deleting a task by hand must
// still delete its transitions, steps, their transitions, and its edges, and
// only those. The migrations' down scripts must restore
// the old schema, after which the cascade still holds.
func TestDeletingATaskDeletesItsTransitions(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.MigrateUp(ctx, 0)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })

	create := func() int64 {
		id, _ := startTask(t, st, "o", time.Now().UTC(), store.StepSpec{Name: "a", HandlerClass: "h", MaxAttempts: 1},
			store.StepSpec{Name: "b", HandlerClass: "h", MaxAttempts: 1, Parents: []string{"a"}})
		return id
	}
	type rows struct{ taskTrs, stepTrs, steps, edges int }
	count := func(taskID int64) (r rows) {
		t.Helper()
		require.NoError(t, conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM tasker_task_transitions WHERE task_id = $1),
			(SELECT count(*) FROM tasker_workflow_step_transitions WHERE task_id = $1),
			(SELECT count(*) FROM tasker_workflow_steps WHERE task_id = $1),
			(SELECT count(*) FROM tasker_workflow_step_edges WHERE task_id = $1)`, taskID).
			Scan(&r.taskTrs, &r.stepTrs, &r.steps, &r.edges))
		return r
	}
	check := func() {
		t.Helper()
		gone, kept := create(), create()
		// Created and started; two initial step transitions and a claim.
		full := rows{taskTrs: 2, stepTrs: 3, steps: 2, edges: 1}
		require.Equal(t, full, count(gone))
		_, err := conn.Exec(ctx, `DELETE FROM tasker_tasks WHERE task_id = $1`, gone)
		require.NoError(t, err)
		require.Equal(t, rows{}, count(gone))
		require.Equal(t, full, count(kept))
	}
	check()

	// Revert migrations down to and including 0006.
	status, err := st.MigrationStatus(ctx)
	require.NoError(t, err)
	steps := 0
	for _, m := range status {
		if m.Applied && m.Version >= 6 {
			steps++
		}
	}
	down, err := st.MigrateDown(ctx, steps)
	require.NoError(t, err)
	require.Equal(t, "transitions_without_checks", down[len(down)-1].Name)
	// Today's code writes and reads the columns of 0012 (run_at), 0014
	// (retention), 0015 (concurrency keys) and 0021 (the queue in the task row): lend them to the old
	// schema for the check, and take them back before migrating up.
	lent := []string{"run_at timestamptz", "retention_seconds bigint", "retention_failed_seconds bigint",
		"keep_until timestamptz", "concurrency_key text", "concurrency_limit integer", "concurrency_policy text",
		"queue_operation text", "queue_run_at timestamptz", "queue_priority integer", "queue_attempts integer",
		"queue_reason text", "queue_lease_owner text", "queue_lease_expires_at timestamptz",
		"queue_created_at timestamptz", "queue_updated_at timestamptz"}
	for _, c := range lent {
		_, err = conn.Exec(ctx, `ALTER TABLE tasker_tasks ADD COLUMN `+c)
		require.NoError(t, err)
	}
	check()
	for _, c := range lent {
		_, err = conn.Exec(ctx, `ALTER TABLE tasker_tasks DROP COLUMN `+strings.Fields(c)[0])
		require.NoError(t, err)
	}
	_, err = st.MigrateUp(ctx, 0)
	require.NoError(t, err)
	check()
}
