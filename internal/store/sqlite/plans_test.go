package sqlite_test

import (
	"context"
	"database/sql"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// SQLite plans without statistics (a default database has no
// sqlite_stat1), so a statement's plan is fixed by its text and the
// indexes. These tests pin the plans of the statements whose cost must
// not grow with the table: a full scan, or the state index where a partial
// index was made for the statement, turned each finish of a task with a
// concurrency key into a read of every pending task (migration 0022).

var paramRE = regexp.MustCompile(`\$(\d+)`)

// planOf is SQLite's EXPLAIN QUERY PLAN of query, its parameters NULL.
func planOf(t *testing.T, st *sqlite.Store, query string) string {
	t.Helper()
	n := 0
	for _, m := range paramRE.FindAllStringSubmatch(query, -1) {
		k, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		n = max(n, k)
	}
	plan, err := st.PlanForTest(context.Background(), query, make([]any, n)...)
	require.NoError(t, err, query)
	return strings.Join(plan, "\n")
}

// Every named statement reads the big tables through an index, except the
// few that list or count a whole table on purpose.
func TestNamedQueriesScanNoBigTable(t *testing.T) {
	t.Parallel()
	q, _, err := sqlite.QueriesForTest()
	require.NoError(t, err)
	st := testdb.SQLite(t)
	whole := map[string]bool{
		"TaskListFrom":    true, // the listing's head: sqlcore.TaskList adds the filters and order
		"QueueStats":      true, // the dashboard's count of the whole queue
		"NamedTaskUpsert": true, // the foreign-key check of a template re-registered with changes
	}
	big := regexp.MustCompile(`(?m)^SCAN (tasker_tasks|tasker_workflow_steps|tasker_task_queue|tasker_workflow_step_edges|tasker_task_transitions|tasker_workflow_step_transitions)$`)
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if whole[n] {
			continue
		}
		plan := planOf(t, st, q[n])
		require.Falsef(t, big.MatchString(plan), "%s scans a whole table:\n%s", n, plan)
	}
}

// The admission and wake statements of concurrency keys and handler
// limits use the partial indexes made for them.
func TestAdmissionAndWakePlansUseTheirIndexes(t *testing.T) {
	t.Parallel()
	q, _, err := sqlite.QueriesForTest()
	require.NoError(t, err)
	path := testdb.SQLitePath(t)
	st, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.MigrateUp(context.Background(), 0)
	require.NoError(t, err)

	const keys, slots = "tasker_tasks_concurrency", "tasker_workflow_steps_handler_slots"
	for name, index := range map[string]string{
		"ConcurrencyRunning": keys, "ConcurrencyLockMany": keys, "HandlerAdmit": slots, "HandlerRunning": slots,
	} {
		plan := planOf(t, st, q[name])
		require.Containsf(t, plan, index, "%s:\n%s", name, plan)
		require.NotContainsf(t, plan, "tasker_tasks_state", "%s:\n%s", name, plan)
	}

	// The triggers' subqueries, as stored, with NEW's columns as parameters.
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	sub := regexp.MustCompile(`(?s)\(\s*(SELECT .*? LIMIT 1)\)`)
	newCol := regexp.MustCompile(`NEW\.\w+`)
	for trigger, index := range map[string]string{"tasker_tasks_concurrency_wake": keys, "tasker_handler_slot_wake": slots} {
		var body string
		require.NoError(t, db.QueryRow(`SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?`, trigger).Scan(&body))
		// The record is written in the task row, not through the view the
		// old table's name became (migration 0023).
		require.NotContainsf(t, body, "tasker_task_queue", "%s:\n%s", trigger, body)
		subs := sub.FindAllStringSubmatch(body, -1)
		require.NotEmpty(t, subs, trigger)
		for _, m := range subs {
			n := 0
			query := newCol.ReplaceAllStringFunc(m[1], func(string) string { n++; return "$" + strconv.Itoa(n) })
			plan := planOf(t, st, query)
			require.Containsf(t, plan, index, "%s: %s\n%s", trigger, query, plan)
			require.NotContainsf(t, plan, "tasker_tasks_state", "%s:\n%s", trigger, plan)
		}
	}
}
