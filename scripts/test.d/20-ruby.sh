#!/usr/bin/env bash
# The tasker_core gem's suite (bindings/ruby/test/core) on both transports:
# embedded (libtasker through ffi) and socket (tasker serve --event-enqueue),
# each against PostgreSQL (TEST_DATABASE_URL) and SQLite. Builds libtasker
# and tasker first (set TASKER_LIBRARY_PATH / TASKER_BIN to reuse builds).
#
# Without ruby or ruby-ffi it skips, except under CI=true, where it fails;
# likewise without TEST_DATABASE_URL (the PostgreSQL runs).
#
#   TASKER_LEAK_CALLS=N         calls of the leak test (default 1000000, the
#                               issue's million: 20-55 s depending on load)
set -euo pipefail
cd "$(dirname "$0")/../.."

fail_or_skip() {
  if [[ "${CI:-}" == true ]]; then
    echo "20-ruby: $1" >&2
    exit 1
  fi
  echo "20-ruby: $1; skipping" >&2
  exit 0
}

command -v ruby >/dev/null || fail_or_skip "ruby is missing (apt-get install ruby ruby-ffi ruby-minitest)"
ruby -e 'require "ffi"; require "minitest"' 2>/dev/null || fail_or_skip "ruby-ffi or ruby-minitest is missing (apt-get install ruby-ffi ruby-minitest)"
command -v psql >/dev/null || fail_or_skip "psql is missing (apt-get install postgresql-client)"
dbs=(sqlite postgres)
if [[ -z "${TEST_DATABASE_URL:-}" ]]; then
  [[ "${CI:-}" == true ]] && { echo "20-ruby: TEST_DATABASE_URL is not set" >&2; exit 1; }
  echo "20-ruby: TEST_DATABASE_URL is not set; PostgreSQL runs skipped" >&2
  dbs=(sqlite)
fi

build=bindings/ruby/build
mkdir -p "$build"
start=$SECONDS
if [[ -z "${TASKER_LIBRARY_PATH:-}" ]]; then
  go build -buildmode=c-shared -o "$build/libtasker.so" ./libtasker
  export TASKER_LIBRARY_PATH="$PWD/$build/libtasker.so"
fi
if [[ -z "${TASKER_BIN:-}" ]]; then
  go build -o "$build/tasker" ./cmd/tasker
  export TASKER_BIN="$PWD/$build/tasker"
fi
echo "20-ruby: built libtasker and tasker in $((SECONDS - start)) s"

leak=${TASKER_LEAK_CALLS:-1000000}
for transport in embedded socket; do
  for db in "${dbs[@]}"; do
    t0=$SECONDS
    echo "-- tasker_core suite: transport=$transport db=$db"
    # The long leak run once; a shorter one in the other embedded run.
    calls=$leak
    [[ $db == postgres ]] && calls=$(( leak < 100000 ? leak : 100000 ))
    (cd bindings/ruby && TASKER_TEST_TRANSPORT=$transport TASKER_TEST_DB=$db TASKER_LEAK_CALLS=$calls \
      timeout 300 ruby -Itest test/core/all.rb)
    echo "-- transport=$transport db=$db passed in $((SECONDS - t0)) s"
  done
done
# Smoke form of the backfill benchmark (TaskerCore.create_tasks in batches,
# both transports): it fails when a request fails, when fewer tasks than
# asked were created, or when a repeated idempotency key creates a task.
# The full form: ruby bench/backfill_bench.rb 1000000 (docs/benchmarks.md).
(cd bindings/ruby && TASKER_BENCH_DB=${dbs[-1]} timeout 300 ruby bench/backfill_bench.rb 3000 1000)
echo "20-ruby: all runs passed in $((SECONDS - start)) s"
