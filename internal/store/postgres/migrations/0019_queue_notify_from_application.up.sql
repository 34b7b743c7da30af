-- Runners are notified by the application after commit, debounced
-- (internal/store/postgres/announce.go), no longer by a trigger inside the
-- writing transaction. A transaction that sent a notification takes
-- PostgreSQL's global notification lock at commit, so with the trigger
-- every creating commit serialized with every other one; creating while
-- working (tasker bench --mode continuous, 16 producers of single creates)
-- ran 10-34 % faster and spent ~20 % less PostgreSQL CPU per task with the
-- triggers dropped. A process now sends at most one NOTIFY tasker_queue
-- (payload: the schema, as before) per 5 ms, after the commits it
-- announces; a task created in a caller's own transaction (TaskCreateTx)
-- still notifies inside that transaction, delivered at its commit.
DROP TRIGGER IF EXISTS tasker_task_queue_notify_insert ON tasker_task_queue;
DROP TRIGGER IF EXISTS tasker_task_queue_notify_update ON tasker_task_queue;
DROP FUNCTION IF EXISTS tasker_task_queue_notify_rows();
