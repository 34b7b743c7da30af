// Package faultinject is Tasker's fault-injection harness. It starts runner
// processes (internal/faultinject/runner, which use only the public Go API)
// against one PostgreSQL cluster that it owns, creates tasks of mixed shapes
// whose handlers fail on purpose (retryable, permanent, Retry-After),
// SIGKILLs a random runner every few seconds and restarts it, restarts
// PostgreSQL once with `pg_ctl restart -m immediate`, and at the end checks
// the engine's invariants from the database and from the log the handlers
// append to (see Check). Two workloads of their own check one promise each
// with runner processes killed on a PostgreSQL database: cron schedules
// (CheckTicks, cron.go) and shared rate limits (CheckRateLimit,
// ratelimit.go).
//
// Run it in full with
//
//	go run ./internal/faultinject/harness -tasks 1000 -seeds 1,2,3
//
// and in its short CI form with scripts/test.d/40-faultinject.sh, or as a
// test with TASKER_FAULTINJECT=short go test -run TestFaultInjection
// ./internal/faultinject.
package faultinject
