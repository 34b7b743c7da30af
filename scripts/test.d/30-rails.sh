#!/usr/bin/env bash
# Rails end-to-end test: the Rails app in bindings/ruby/test/rails_app with
# ActiveJob on Sidekiq, a throwaway redis-server, and PostgreSQL
# (TEST_DATABASE_URL) as the core's database. Builds `tasker` (for migrations
# and to read task state, and as the server of the socket-transport test) and
# libtasker (the embedded transport).
#
# Without ruby, redis-server or the Debian Ruby packages it skips, except
# under CI=true, where it fails. Set TASKER_LIBRARY_PATH / TASKER_BIN to reuse
# builds.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail_or_skip() {
  if [[ "${CI:-}" == true ]]; then
    echo "30-rails: $1" >&2
    exit 1
  fi
  echo "30-rails: $1; skipping" >&2
  exit 0
}

missing=()
for cmd in ruby redis-server sidekiq; do
  command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if command -v ruby >/dev/null; then
  ruby -e 'require "rails"; require "active_job"; require "active_record"; require "sidekiq"; require "pg"; require "redis"; require "ffi"; require "puma"; require "delayed_job_active_record"' 2>/dev/null ||
    missing+=("ruby libraries")
fi
if (( ${#missing[@]} )); then
  fail_or_skip "missing ${missing[*]} (apt-get install ruby ruby-ffi ruby-rails ruby-sidekiq ruby-pg puma ruby-delayed-job ruby-delayed-job-active-record redis-server)"
fi
[[ -n "${TEST_DATABASE_URL:-}" ]] || fail_or_skip "TEST_DATABASE_URL is not set (scripts/test.sh starts a PostgreSQL)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
if [[ -z "${TASKER_BIN:-}" ]]; then
  go build -o "$tmp/tasker" ./cmd/tasker
  export TASKER_BIN="$tmp/tasker"
fi
if [[ -z "${TASKER_LIBRARY_PATH:-}" ]]; then
  go build -buildmode=c-shared -o "$tmp/libtasker.so" ./libtasker
  export TASKER_LIBRARY_PATH="$tmp/libtasker.so"
fi
echo "30-rails: built in $((SECONDS - start)) s"

ruby bindings/ruby/test/rails/integration_unit_test.rb
ruby bindings/ruby/test/rails/trace_context_app_test.rb
# The test starts and stops its own redis-server and Sidekiq (process groups)
# and drops its database; timeout is the backstop.
timeout --kill-after=10 360 ruby bindings/ruby/test/rails/rails_e2e_test.rb "$@"
# DelayedJob instead of Sidekiq: a `bin/rails jobs:work` worker, the
# delayed_jobs table in the app's PostgreSQL database.
timeout --kill-after=10 120 ruby bindings/ruby/test/rails/rails_delayed_job_e2e_test.rb
# The socket transport: `tasker serve --event-enqueue` and two Sidekiq
# processes in one event subscription group (one job per task.enqueue).
timeout --kill-after=10 120 ruby bindings/ruby/test/rails/rails_socket_e2e_test.rb
echo "30-rails: passed in $((SECONDS - start)) s"
