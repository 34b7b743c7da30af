DROP TRIGGER tasker_tasks_concurrency_wake ON tasker_tasks;
DROP FUNCTION tasker_tasks_concurrency_wake();
DROP INDEX tasker_tasks_concurrency;
ALTER TABLE tasker_tasks DROP COLUMN concurrency_key, DROP COLUMN concurrency_limit, DROP COLUMN concurrency_policy;
