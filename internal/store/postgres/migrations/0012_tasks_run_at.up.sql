-- A delayed task (TaskRequest.RunAt / DelaySeconds) keeps when it was due:
-- its deadline (timeout_seconds) counts from then, and explain and the API
-- show it. NULL: due at its creation.
ALTER TABLE tasker_tasks ADD COLUMN run_at timestamptz;
