-- Retention (issue 19 item 8): a task carries how long it is kept once
-- finished, decided at its creation from its template or the engine's
-- default: retention_seconds after it finished complete, cancelled or
-- resolved manually, retention_failed_seconds after it failed (error).
-- NULL keeps it for ever (and so are the tasks created before this
-- migration: `tasker prune --older-than` removes those). keep_until is set
-- by the statement that finishes the task (completed_at + the retention of
-- the state it reached) and cleared when it leaves a terminal state (a
-- retry), so that pruning is one range scan of the partial index below,
-- whatever the templates say. The finish already writes a new entry into
-- the index of finished tasks (0011), so it was not a heap-only update
-- before; a start leaves keep_until NULL and stays one.
ALTER TABLE tasker_tasks ADD COLUMN retention_seconds bigint;
ALTER TABLE tasker_tasks ADD COLUMN retention_failed_seconds bigint;
ALTER TABLE tasker_tasks ADD COLUMN keep_until timestamptz;
CREATE INDEX tasker_tasks_keep_until ON tasker_tasks (keep_until) WHERE keep_until IS NOT NULL;
