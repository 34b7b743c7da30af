package tasker_test

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"

	"github.com/jackc/pgx/v5"
)

func dumpDB(t *testing.T, url string) {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Log(err)
		return
	}
	defer conn.Close(context.Background())
	for _, q := range []string{`SELECT t.task_id, t.state, t.concurrency_key, q.run_at, q.lease_owner, q.reason, now() FROM tasker_tasks t LEFT JOIN tasker_task_queue q USING (task_id) WHERE t.state <> 'complete' ORDER BY t.task_id`,
		`SELECT tt.task_id, t.concurrency_key, tt.to_state, tt.created_at, tt.actor FROM tasker_task_transitions tt JOIN tasker_tasks t USING (task_id) ORDER BY t.concurrency_key, tt.created_at`,
		`SELECT pid, state, wait_event_type, wait_event, left(query, 120), now()-xact_start FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid()`} {
		rows, err := conn.Query(context.Background(), q)
		if err != nil {
			t.Log(err)
			continue
		}
		for rows.Next() {
			vals, _ := rows.Values()
			t.Log(vals...)
		}
		rows.Close()
	}
	_ = pprof.Lookup("goroutine").WriteTo(os.Stdout, 1)
}
