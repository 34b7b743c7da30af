-- Handler-class limits (internal/store/sqlcore/handlerlimit.go; migration
-- 0018 explains the slot_attempt column). The statements are PostgreSQL's;
-- SQLite's single writer makes the admission's count and update one atomic
-- statement without a lock (PostgreSQL needs its function for that).

-- name: HandlerAdmit
WITH held AS (
    SELECT count(*) AS n FROM tasker_workflow_steps
    WHERE handler_class = $1 AND slot_attempt IS NOT NULL AND state IN ('in_progress', 'waiting_for_retry')
        AND state = 'in_progress' AND slot_attempt = attempts
        AND step_id NOT IN (SELECT value FROM json_each($4))),
want AS (
    SELECT w.value AS id, row_number() OVER (ORDER BY CAST(w.key AS INTEGER)) AS rank
    FROM json_each($4) w JOIN tasker_workflow_steps s ON s.step_id = w.value
    WHERE s.state = 'in_progress' AND s.lease_owner = $3 AND s.handler_class = $1)
UPDATE tasker_workflow_steps SET slot_attempt = CASE
        WHEN (SELECT rank FROM want WHERE want.id = tasker_workflow_steps.step_id) <= $2 - (SELECT n FROM held)
        THEN attempts ELSE -1 END
WHERE step_id IN (SELECT id FROM want)
RETURNING step_id, slot_attempt >= 0, (SELECT n FROM held);

-- name: HandlerRunning
SELECT handler_class, count(*) FROM tasker_workflow_steps
WHERE handler_class IN (SELECT value FROM json_each($1)) AND slot_attempt IS NOT NULL
    AND state IN ('in_progress', 'waiting_for_retry') AND state = 'in_progress' AND slot_attempt = attempts
GROUP BY handler_class ORDER BY handler_class;
