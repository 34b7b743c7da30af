DROP FUNCTION tasker_concurrency_start(bigint[], text, timestamptz, text);
