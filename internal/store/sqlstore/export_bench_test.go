package sqlstore

import "strings"

// DiscoverySQLForBench is the claim's candidate query on PostgreSQL
// (without the row locks): the steps of task $1 ready at $2, at most $3.
func DiscoverySQLForBench() string {
	return `SELECT s.step_id FROM tasker_workflow_steps s WHERE s.task_id = $1 AND ` +
		strings.ReplaceAll(readyExpr, "$NOW", "$2") + ` ORDER BY s.step_id LIMIT $3`
}
