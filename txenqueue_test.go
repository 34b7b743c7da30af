package tasker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// InitializeTaskTx writes the task in the caller's transaction: a rollback
// leaves nothing (no task, no steps, no queue record), a commit leaves a
// task that runners then run, and the caller's own rows commit with it.
func TestInitializeTaskTxCommitsWithTheCallersWrites(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir(),
		PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.AddTemplate("order.yml", []byte("name: order\nnamespace_name: shop\nstep_templates:\n"+
		"  - {name: charge, handler_class: Charge}\n  - {name: ship, handler_class: Ship, depends_on_step: charge}\n"))
	require.NoError(t, err)
	ran := make(chan string, 4)
	for _, h := range []string{"Charge", "Ship"} {
		c.RegisterHandler(h, tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			ran <- sc.StepName
			return nil, nil
		}))
	}
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, "CREATE TABLE orders (id bigint PRIMARY KEY, task_id bigint)")
	require.NoError(t, err)
	count := func(q string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, q).Scan(&n))
		return n
	}

	// Rolled back: nothing of the task is left.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	task, created, err := c.InitializeTaskTx(ctx, tx, &tasker.TaskRequest{Namespace: "shop", Name: "order",
		IdempotencyKey: "order-1"})
	require.NoError(t, err)
	require.True(t, created)
	_, err = tx.Exec(ctx, "INSERT INTO orders VALUES (1, $1)", task.ID)
	require.NoError(t, err)
	again, created, err := c.InitializeTaskTx(ctx, tx, &tasker.TaskRequest{Namespace: "shop", Name: "order",
		IdempotencyKey: "order-1"})
	require.NoError(t, err)
	require.False(t, created, "the same key in the same transaction returns its task")
	require.Equal(t, task.ID, again.ID)
	_, err = c.Task(ctx, task.ID)
	require.True(t, errors.Is(err, tasker.ErrNotFound), "not visible before the commit: %v", err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = c.Task(ctx, task.ID)
	require.True(t, errors.Is(err, tasker.ErrNotFound), "rolled back: %v", err)
	require.Zero(t, count("SELECT count(*) FROM tasker_tasks"))
	require.Zero(t, count("SELECT count(*) FROM tasker_workflow_steps"))
	require.Zero(t, count("SELECT count(*) FROM tasker_task_queue"))
	require.Zero(t, count("SELECT count(*) FROM orders"))

	// Committed: the task and the order are there, and a runner runs it.
	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	task, created, err = c.InitializeTaskTx(ctx, tx, &tasker.TaskRequest{Namespace: "shop", Name: "order",
		IdempotencyKey: "order-1"})
	require.NoError(t, err)
	require.True(t, created)
	_, err = tx.Exec(ctx, "INSERT INTO orders VALUES (1, $1)", task.ID)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, count("SELECT count(*) FROM orders"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, 2) }()
	deadline := time.Now().Add(time.Minute)
	for {
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		if d.State == "complete" {
			break
		}
		require.True(t, time.Now().Before(deadline), "task still %s", d.State)
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	require.NoError(t, <-done)
	require.Len(t, ran, 2)
}

// Without PostgreSQL there is no caller's transaction to join.
func TestInitializeTaskTxNeedsPostgres(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	_, err := c.AddTemplate("one.yml", []byte("name: one\nnamespace_name: t\nstep_templates:\n  - {name: a, handler_class: A}\n"))
	require.NoError(t, err)
	_, _, err = c.InitializeTaskTx(context.Background(), nil, &tasker.TaskRequest{Namespace: "t", Name: "one"})
	require.ErrorContains(t, err, "PostgreSQL only")
}
