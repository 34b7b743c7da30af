DROP TABLE tasker_rate_limits;
