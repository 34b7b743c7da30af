package sqlstore

import (
	"fmt"
	"regexp"
	"strings"
)

// readyExpr is viable-step discovery in SQL: a step may be claimed when it
// is pending or waiting for retry, has attempts left (the first attempt is
// always allowed, later ones only when the step is retryable), its backoff
// has passed and every parent is complete or resolved manually. $NOW is
// replaced by the parameter holding the current time. This one expression
// serves claiming, the finalizer's summary and the operator's explain.
const readyExpr = `(s.state IN ('pending', 'waiting_for_retry')
	AND s.attempts < s.max_attempts
	AND (s.attempts = 0 OR s.retryable)
	AND (s.next_retry_at IS NULL OR s.next_retry_at <= $NOW)
	AND NOT EXISTS (
		SELECT 1 FROM tasker_workflow_step_edges e
		JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id
		WHERE e.to_step_id = s.step_id AND p.state NOT IN ('complete', 'resolved_manually')))`

// summaryCols are the TaskSummary columns over steps s (see
// Store.summary's Scan), with now the SQL expression of the current time.
func summaryCols(now string) string {
	return `count(*),
	COALESCE(sum(CASE WHEN s.state = 'pending' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'in_progress' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'waiting_for_retry' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state IN ('complete', 'resolved_manually') THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'error' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'cancelled' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN ` + strings.ReplaceAll(readyExpr, "$NOW", now) + ` THEN 1 ELSE 0 END), 0),
	min(CASE WHEN s.state = 'waiting_for_retry' THEN s.next_retry_at END)`
}

const stepCols = `s.step_id, s.task_id, s.name, s.handler_class, s.handler_config, s.state, s.retryable,
	s.attempts, s.max_attempts, s.timeout_seconds, s.skippable, s.inputs, s.results, s.error,
	s.backoff_request_seconds, s.last_attempted_at, s.next_retry_at, COALESCE(s.lease_owner, ''),
	s.lease_expires_at, s.created_at, s.updated_at, s.completed_at`

const taskCols = `t.task_id, t.namespace, t.name, t.version, t.state, t.context, t.initiator,
	t.source_system, t.reason, t.tags, t.priority, COALESCE(t.idempotency_key, ''), t.max_parallel_steps,
	t.created_at, t.updated_at, t.completed_at`

type queries struct {
	stepClaim     string
	stepReadiness string
	taskSummary   string
	depResults    string
	queueClaim    string
	stepsMove     string
	taskMove      string
	// PostgreSQL only (empty for SQLite): the transition writes folded into
	// one statement each, see stepTransitionsPG and taskMovePG.
	stepTransitions string
	taskMoveRecord  string
	leaseExtend     string
	queueExtend     string
	stepParents     string
}

// inList renders "column IN <the id list in parameter n>" for the dialect.
func inList(dialect, column string, n int) string {
	if dialect == dialectSQLite {
		return fmt.Sprintf("%s IN (SELECT value FROM json_each($%d))", column, n)
	}
	return fmt.Sprintf("%s = ANY($%d)", column, n)
}

var castRe = regexp.MustCompile(`::[a-z]+(\[\])?`)

// buildQueries renders the statements for a dialect. Statements are written
// for PostgreSQL; SQLite gets them without the ::type casts it lacks.
func buildQueries(dialect string) queries {
	q := pgQueries(dialect)
	if dialect == dialectSQLite {
		for _, f := range []*string{&q.stepClaim, &q.stepReadiness, &q.taskSummary, &q.depResults, &q.queueClaim,
			&q.stepsMove, &q.taskMove, &q.leaseExtend, &q.queueExtend, &q.stepParents} {
			*f = castRe.ReplaceAllString(*f, "")
		}
	}
	if dialect == dialectPostgres {
		q.stepTransitions = stepTransitionsPG
		q.taskMoveRecord = taskMovePG
	}
	return q
}

// stepTransitionsPG inserts the steps' new transitions in one statement.
// $1 task id, $2..$9 one array per column (in row order), $10 created_at.
const stepTransitionsPG = `INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
	metadata, sort_key, created_at)
SELECT v.step_id, $1, v.from_state, v.to_state, v.event, v.reason, v.actor, v.metadata::jsonb, v.sort_key, $10::timestamptz
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[])
	WITH ORDINALITY AS v(step_id, from_state, to_state, event, reason, actor, metadata, sort_key, n)
ORDER BY v.n`

// taskMovePG is the guarded task state change together with its transition
// row, in one statement. It returns the previous state, the new
// transition_seq (the transition's sort_key) and how many transitions it
// wrote (1). The UPDATE re-reads the task row after any lock wait, so
// transition_seq is always the latest. $1 task, $2 to, $3 from list, $4 now,
// $5 terminal, $6 event, $7 reason, $8 actor, $9 metadata.
const taskMovePG = `WITH moved AS (
	UPDATE tasker_tasks SET state = $2, previous_state = state, transition_seq = transition_seq + 1,
		updated_at = $4::timestamptz, completed_at = CASE WHEN $5::boolean THEN $4::timestamptz ELSE NULL END
	WHERE task_id = $1 AND state = ANY($3::text[])
	RETURNING previous_state, transition_seq),
inserted AS (
	INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at)
	SELECT $1, m.previous_state, $2, $6, $7, $8, $9::jsonb, m.transition_seq, $4::timestamptz FROM moved m
	RETURNING id)
SELECT m.previous_state, m.transition_seq, (SELECT count(*) FROM inserted) FROM moved m`

func pgQueries(dialect string) queries {
	lock := ""
	// The claimed records are found by primary key from an array: as
	// "task_id IN (subquery)" the planner hash-joined the subquery with a
	// sequential scan of the whole queue.
	claimIn, claimEnd := "task_id IN ", ""
	if dialect == dialectPostgres {
		lock = "FOR UPDATE SKIP LOCKED"
		claimIn, claimEnd = "task_id = ANY(ARRAY", ")"
	}
	ready := func(now string) string { return strings.ReplaceAll(readyExpr, "$NOW", now) }
	// The returning list mirrors stepCols without the alias.
	returning := strings.ReplaceAll(stepCols, "s.", "")
	return queries{
		stepClaim: `UPDATE tasker_workflow_steps SET state = 'in_progress', previous_state = state,
	transition_seq = transition_seq + 1, attempts = attempts + 1, last_attempted_at = $2,
	lease_owner = $3, lease_expires_at = $4, next_retry_at = NULL, updated_at = $2
WHERE step_id IN (
	SELECT s.step_id FROM tasker_workflow_steps s
	WHERE s.task_id = $1 AND ($6::text[] IS NULL OR ` + inListStr(dialect, "s.name", 6) + `) AND ` + ready("$2") + `
	ORDER BY s.step_id LIMIT $5 ` + lock + `)
RETURNING ` + returning + `, previous_state, transition_seq,
	EXISTS (SELECT 1 FROM tasker_workflow_step_edges e WHERE e.to_step_id = tasker_workflow_steps.step_id)`,

		stepReadiness: `SELECT s.step_id, s.name, s.state, s.attempts, s.max_attempts, s.retryable,
	s.next_retry_at, COALESCE(s.lease_owner, ''), s.lease_expires_at,
	(SELECT count(*) FROM tasker_workflow_step_edges e WHERE e.to_step_id = s.step_id),
	(SELECT count(*) FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id
		WHERE e.to_step_id = s.step_id AND p.state IN ('complete', 'resolved_manually')),
	CASE WHEN s.attempts < s.max_attempts AND (s.attempts = 0 OR s.retryable) THEN 1 ELSE 0 END,
	CASE WHEN s.next_retry_at IS NULL OR s.next_retry_at <= $2 THEN 1 ELSE 0 END,
	CASE WHEN ` + ready("$2") + ` THEN 1 ELSE 0 END
FROM tasker_workflow_steps s WHERE s.task_id = $1 ORDER BY s.step_id`,

		taskSummary: `SELECT ` + summaryCols("$2") + `
FROM tasker_workflow_steps s WHERE s.task_id = $1`,

		// The claimed steps' edges (rows with a child id), then each distinct
		// parent's name and results once (rows with child 0): a fan-out's
		// 2,000 leaves read their root's results once, not 2,000 times. The
		// parents are found by primary key from an array; as a join the
		// planner hashed a sequential scan of every step (25 % of the
		// server's time in a 100,000-step fan-out).
		depResults: `WITH e AS MATERIALIZED (
	SELECT e.to_step_id, e.from_step_id FROM tasker_workflow_step_edges e WHERE ` + inList(dialect, "e.to_step_id", 1) + `)
SELECT e.to_step_id, e.from_step_id, '', NULL FROM e
UNION ALL
SELECT 0, p.step_id, p.name, p.results FROM tasker_workflow_steps p
WHERE p.` + strings.Replace(claimIn, "task_id", "step_id", 1) + `(SELECT DISTINCT from_step_id FROM e)` + claimEnd,

		queueClaim: `UPDATE tasker_task_queue SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3
WHERE ` + claimIn + `(
	SELECT task_id FROM tasker_task_queue
	WHERE run_at <= $5 AND (lease_expires_at IS NULL OR lease_expires_at < $3)
	ORDER BY priority DESC, run_at LIMIT $4 ` + lock + `)` + claimEnd + `
RETURNING task_id, operation, run_at, priority, attempts, reason, COALESCE(lease_owner, ''), lease_expires_at, created_at`,

		stepsMove: `UPDATE tasker_workflow_steps SET state = $3, previous_state = state, transition_seq = transition_seq + 1,
	attempts = CASE WHEN $5::boolean THEN 0 ELSE attempts END, lease_owner = NULL, lease_expires_at = NULL,
	error = COALESCE($6::jsonb, error), next_retry_at = $7::timestamptz, updated_at = $8::timestamptz,
	completed_at = CASE WHEN $3::text IN ('complete', 'resolved_manually', 'cancelled', 'error') THEN $8::timestamptz ELSE NULL END
WHERE task_id = $1 AND ` + inList(dialect, "step_id", 2) + ` AND ` + inListStr(dialect, "state", 4) + `
	AND ($9::timestamptz IS NULL OR lease_expires_at < ` + leaseClock(dialect, "$9") + `)
RETURNING step_id, name, previous_state, transition_seq`,

		taskMove: `UPDATE tasker_tasks SET state = $2, previous_state = state, transition_seq = transition_seq + 1,
	updated_at = $4::timestamptz, completed_at = CASE WHEN $5::boolean THEN $4::timestamptz ELSE NULL END
WHERE task_id = $1 AND ` + inListStr(dialect, "state", 3) + `
RETURNING previous_state, transition_seq`,

		leaseExtend: `UPDATE tasker_workflow_steps SET lease_expires_at = $2
WHERE state = 'in_progress' AND lease_owner = $1 AND ` + inList(dialect, "step_id", 3),
		queueExtend: `UPDATE tasker_task_queue SET lease_expires_at = $2 WHERE lease_owner = $1 AND ` + inList(dialect, "task_id", 3),

		stepParents: `SELECT e.to_step_id, p.name, p.state FROM tasker_workflow_step_edges e
JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id WHERE e.task_id = $1 ORDER BY e.to_step_id, p.step_id`,
	}
}

// leaseClock is the time a lease is compared with: parameter n, or, on
// PostgreSQL, the server's clock when n holds the zero time (the rescuer's
// guard: leases are granted and extended by that clock). SQLite's callers
// pass this machine's clock for the zero time.
func leaseClock(dialect, n string) string {
	if dialect == dialectSQLite {
		return n
	}
	return "COALESCE(NULLIF(" + n + "::timestamptz, '0001-01-01 00:00:00+00'), statement_timestamp())"
}

// inListStr renders "column IN <the string list in parameter n>".
func inListStr(dialect, column string, n int) string {
	if dialect == dialectSQLite {
		return fmt.Sprintf("%s IN (SELECT value FROM json_each($%d))", column, n)
	}
	return fmt.Sprintf("%s = ANY($%d::text[])", column, n)
}
