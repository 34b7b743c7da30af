-- Concurrency keys (docs/flow-control.md#concurrency-keys). A task whose
-- template declares `concurrency:` keeps the key computed from its context
-- at creation, with the template's limit and policy, so that admission
-- needs nothing but the database whatever templates a process loaded.
-- NULL key: no limit, and nothing below ever looks at the task.
ALTER TABLE tasker_tasks ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer,
    ADD COLUMN concurrency_policy text;
-- Admission counts the unfinished tasks of one key. The key never changes
-- after the insert and completed_at is already indexed (0010), so the index
-- costs a task without a key nothing at its start (still heap-only) and
-- only the predicate's evaluation at its insert and finish.
CREATE INDEX tasker_tasks_concurrency ON tasker_tasks (concurrency_key, task_id)
    WHERE concurrency_key IS NOT NULL AND completed_at IS NULL;
-- When a task with a key stops running (finishes, blocks or yields), the
-- oldest task of the key parked by admission (pending, its queue record
-- unleased and due later) is made due now, in the same transaction: the
-- freed slot is offered at once, whatever path finished the task. Only rows
-- with a key reach the function (the WHEN is evaluated without calling it).
-- Admission reads the running tasks of a key FOR SHARE, so a finish in
-- flight is waited for and counted as finished, and a park committed before
-- a finish is seen by the finish's wake: no wake is lost.
CREATE FUNCTION tasker_tasks_concurrency_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_task_queue q SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE q.task_id = (
            SELECT t.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND q.lease_owner IS NULL AND q.run_at > NEW.updated_at;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasker_tasks_concurrency_wake AFTER UPDATE OF state ON tasker_tasks
    FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL AND OLD.state IN ('in_progress', 'waiting_for_retry')
        AND NEW.state NOT IN ('in_progress', 'waiting_for_retry'))
    EXECUTE FUNCTION tasker_tasks_concurrency_wake();
