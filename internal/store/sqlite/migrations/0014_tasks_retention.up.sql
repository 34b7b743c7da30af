-- Retention (issue 19 item 8): as on PostgreSQL, a task carries how long
-- it is kept once finished (retention_seconds after complete, cancelled or
-- resolved_manually, retention_failed_seconds after error; NULL: for
-- ever), and keep_until, set when it finishes and cleared when it leaves a
-- terminal state, is what pruning reads through the partial index.
ALTER TABLE tasker_tasks ADD COLUMN retention_seconds INTEGER;
ALTER TABLE tasker_tasks ADD COLUMN retention_failed_seconds INTEGER;
ALTER TABLE tasker_tasks ADD COLUMN keep_until TEXT;
CREATE INDEX tasker_tasks_keep_until ON tasker_tasks (keep_until) WHERE keep_until IS NOT NULL;
