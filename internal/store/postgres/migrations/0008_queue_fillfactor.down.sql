ALTER TABLE tasker_task_queue RESET (fillfactor);
