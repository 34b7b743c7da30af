DROP INDEX tasker_task_queue_claim;
