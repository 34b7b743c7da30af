-- Fragments the statements of both databases share, as text/template
-- definitions (expanded once when a database's queries are loaded, see
-- LoadQueries): the same SQL on PostgreSQL and SQLite, so that readiness,
-- for one, is defined once for both.

-- The columns of a step, as internal/store/sqlcore.StepScanner reads them.
{{define "step_cols"}}s.step_id, s.task_id, s.name, s.handler_class, s.handler_config, s.state, s.retryable,
	s.attempts, s.max_attempts, s.timeout_seconds, s.skippable, s.inputs, s.results, s.error,
	s.backoff_request_seconds, s.last_attempted_at, s.next_retry_at, COALESCE(s.lease_owner, ''),
	s.lease_expires_at, s.created_at, s.updated_at, s.completed_at{{end}}

-- The columns of a task, as sqlcore.ScanTask reads them.
{{define "task_cols"}}t.task_id, t.namespace, t.name, t.version, t.state, t.context, t.initiator,
	t.source_system, t.reason, t.tags, t.priority, COALESCE(t.idempotency_key, ''), t.max_parallel_steps,
	t.created_at, t.updated_at, t.completed_at, t.run_at, t.retention_seconds, t.retention_failed_seconds,
	t.keep_until{{end}}

-- The columns of a task's enqueue record (migration 0021: the queue_*
-- columns of its row), as sqlcore's scanQueue reads them.
{{define "queue_cols"}}task_id, queue_operation, queue_run_at, queue_priority, queue_attempts, queue_reason,
	COALESCE(queue_lease_owner, ''), queue_lease_expires_at, queue_created_at{{end}}

-- Removes a task's enqueue record (an UPDATE's SET list).
{{define "queue_clear"}}queue_operation = NULL, queue_run_at = NULL, queue_priority = NULL, queue_attempts = NULL,
	queue_reason = NULL, queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_created_at = NULL,
	queue_updated_at = NULL{{end}}

-- Viable-step discovery: step s may be claimed at the time the argument
-- names when it is pending or waiting for retry, has attempts left (the
-- first attempt is always allowed, later ones only when the step is
-- retryable), its backoff has passed and every parent is complete or
-- resolved manually. This one test serves claiming, the finalizer's
-- summary and the operator's explain.
{{define "ready"}}(s.state IN ('pending', 'waiting_for_retry')
	AND s.attempts < s.max_attempts
	AND (s.attempts = 0 OR s.retryable)
	AND (s.next_retry_at IS NULL OR s.next_retry_at <= {{.}})
	AND NOT EXISTS (
		SELECT 1 FROM tasker_workflow_step_edges e
		JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id
		WHERE e.to_step_id = s.step_id AND p.state NOT IN ('complete', 'resolved_manually', 'skipped'))){{end}}

-- The store.TaskSummary columns over steps s at the time the argument names.
{{define "summary_cols"}}count(*),
	COALESCE(sum(CASE WHEN s.state = 'pending' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'in_progress' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'waiting_for_retry' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state IN ('complete', 'resolved_manually', 'skipped') THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'error' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN s.state = 'cancelled' THEN 1 ELSE 0 END), 0),
	COALESCE(sum(CASE WHEN {{template "ready" .}} THEN 1 ELSE 0 END), 0),
	min(CASE WHEN s.state = 'waiting_for_retry' THEN s.next_retry_at END){{end}}
