#!/usr/bin/env bash
# Fault-injection harness, short form for CI (about a minute): three seeds of
# 250 tasks (one with the event-based enqueue handler), three runner
# processes SIGKILLed at random every ~1.5 s and restarted, and one
# `pg_ctl restart -m immediate`; then every invariant is checked from the
# database and the handler log (internal/faultinject/check.go).
#
# The harness starts its own throwaway PostgreSQL cluster (free port,
# private directory, server run as the postgres OS user when we are root:
# the same approach as scripts/pg-throwaway.sh), because it restarts it;
# the TEST_DATABASE_URL cluster is left alone.
#
# Then the cron form (about 40 s, TestCronUnderKills): three runners on a
# fresh schema of TEST_DATABASE_URL while two @every 2s schedules (catch_up,
# skip) tick, killed one at a time and all at once; no tick twice, none
# lost while a runner was up (faultinject.CheckTicks).
#
# Then the rate-limit form (about 40 s, TestRateLimitUnderKills): three
# runners through 72 tasks of a rate-limited step (some failing with a
# Retry-After) while a random runner is killed every 1-2 s; no window with
# more starts than the bucket allows, no start inside a Retry-After's block
# (faultinject.CheckRateLimit).
#
# Then the concurrency-key form (about 25 s, TestConcurrencyUnderKills):
# three runners through 60 tasks of 3 keys (limit 2) while runners are
# killed; no moment with more than 2 tasks of a key running, from the
# transitions audit (faultinject.CheckConcurrency), and a control without a
# declared limit is caught over it.
#
# Then the handler-class form (about 20 s, TestHandlerLimitUnderKills):
# three runners through 40 tasks of three parallel steps of a handler class
# limited to 3 while runners are killed; no moment with more than 3
# attempts of the class running, from the handler log
# (faultinject.CheckHandlerLimit), and a control without the declaration is
# caught over it.
#
# The full run (1,000 tasks per seed):
#   go run ./internal/faultinject/harness -tasks 1000 -seeds 1,2,3
#   TASKER_FAULTINJECT=full go test -run TestFaultInjection -timeout 60m ./internal/faultinject
set -euo pipefail
cd "$(dirname "$0")/../.."

# In the run's temporary directory when scripts/test.sh gives one.
log=$(mktemp "${TASKER_TEST_TMP:-${TMPDIR:-/tmp}}/tasker-faultinject.XXXXXX")
trap 'rm -f "$log"' EXIT
if TASKER_FAULTINJECT=${TASKER_FAULTINJECT:-short} go test -count=1 -timeout 15m -run '^(TestFaultInjection|TestCronUnderKills|TestRateLimitUnderKills|TestConcurrencyUnderKills|TestHandlerLimitUnderKills)$' -v \
     ./internal/faultinject >"$log" 2>&1; then
  grep -E 'seed [0-9]+: [0-9]+ tasks|(catch|skip): [0-9]+ tasks|rate limit: [0-9]+ tasks|keyed tasks|control \(no limit|handler limit: [0-9]+ tasks' "$log" | sed -E 's/^ *(faultinject|cron|ratelimit|concurrency|handlerlimit)_test.go:[0-9]+: //'
  grep -E '^(ok|PASS|--- SKIP)' "$log" || true
else
  cat "$log"
  exit 1
fi
