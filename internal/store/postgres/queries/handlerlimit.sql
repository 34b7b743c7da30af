-- Handler-class limits (internal/store/sqlcore/handlerlimit.go; migration
-- 0018 explains the slot_attempt column).

-- name: HandlerAdmit
-- Gives steps $4 (in_progress, leased by $3, in this order) the free slots
-- of class $1 under limit $2; the others are marked waiting. One row per
-- step looked at: step id, granted, slots held by other steps before.
SELECT step_id, granted, running FROM tasker_handler_admit($1, $2::integer, $3, $4::bigint[]);

-- name: HandlerRunning
-- The slots held now by each class of $1 (classes holding none are absent).
SELECT handler_class, count(*)::integer FROM tasker_workflow_steps
WHERE handler_class = ANY($1::text[]) AND slot_attempt IS NOT NULL AND state IN ('in_progress', 'waiting_for_retry')
    AND state = 'in_progress' AND slot_attempt = attempts
GROUP BY handler_class ORDER BY handler_class;
