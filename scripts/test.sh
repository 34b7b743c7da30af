#!/usr/bin/env bash
# The whole test suite: Go (race detector, PostgreSQL and SQLite), each
# fuzzer briefly, and a smoke run of the example. Starts its own throwaway
# PostgreSQL unless TEST_DATABASE_URL is already set.
#
#   ./scripts/test.sh            # everything
#   FUZZTIME=200000x ./scripts/test.sh   # longer fuzzing
#   TASKER_TEST_LOAD=2 ./scripts/test.sh # under load: 2 busy loops run beside
#                                        # the suite from start to end
#
# Temporary files go to one directory made by mktemp for this run and
# removed at exit, so several checkouts can run the suite at once.
#
# FUZZTIME is an execution count (Nx), not a duration: with a duration, Go's
# fuzzing coordinator can fail a clean run with "context deadline exceeded"
# when the time runs out mid-execution (golang/go#75804, fixed in Go 1.27).
# 10000 executions take a few seconds for the slowest fuzzer (template parsing).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10000x}
LOAD=${TASKER_TEST_LOAD:-0}
if ! [[ "$LOAD" =~ ^[0-9]+$ ]]; then
  echo "test.sh: TASKER_TEST_LOAD must be a number of busy loops, got '$LOAD'" >&2
  exit 2
fi
repo=$PWD

if [[ -z "${TEST_DATABASE_URL:-}" ]]; then
  # shellcheck source=scripts/pg-throwaway.sh
  source scripts/pg-throwaway.sh
  if ! pg_up; then
    echo "test.sh: could not start PostgreSQL (is postgresql-15 installed?)" >&2
    if [[ "${CI:-}" == true ]]; then exit 1; fi
    echo "test.sh: PostgreSQL tests will be skipped" >&2
  else
    export TEST_DATABASE_URL="$DATABASE_URL"
  fi
fi

# One temporary directory per run; the exit trap removes it, stops the busy
# loops and stops the throwaway PostgreSQL (pg_up's own trap is replaced).
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tasker-test.XXXXXX")
load_pids=()
cleanup() {
  if ((${#load_pids[@]})); then kill "${load_pids[@]}" 2>/dev/null || true; fi
  rm -rf "$run_tmp"
  if declare -F pg_down >/dev/null; then pg_down; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# Each busy loop also stops by itself once this script is gone (even after
# a SIGKILL, which runs no trap).
go_timeout=20m
if ((LOAD > 0)); then
  for ((i = 0; i < LOAD; i++)); do
    ( trap - EXIT INT TERM
      while kill -0 $$ 2>/dev/null; do for ((j = 0; j < 200000; j++)); do :; done; done ) &
    load_pids+=($!)
  done
  go_timeout=60m # a package's tests take several times longer
  echo "== under load: $LOAD busy loops (pids ${load_pids[*]})"
fi

echo "== gofmt and go vet"
unformatted=$(gofmt -l . | grep -v '/testdata/' || true)
if [[ -n "$unformatted" ]]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout "$go_timeout" ./...

echo "== fuzzers ($FUZZTIME each)"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for fz in $(grep -h '^func Fuzz' "$target"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do
    echo "-- $fz in $target"
    go test -run='^$' -fuzz="^${fz}\$" -fuzztime="$FUZZTIME" "$target" >"$run_tmp/fuzz.log" 2>&1 || { cat "$run_tmp/fuzz.log"; exit 1; }
  done
done
echo "== quick start (the README's first command)"
# Run from the temporary directory, so that its default database
# (tasker.db in the current directory) is a fresh file there.
go build -o "$run_tmp/tasker" ./cmd/tasker
(cd "$run_tmp" && ./tasker run shop/order_fulfillment --templates "$repo/examples/order_fulfillment" \
  --context @"$repo/examples/order_fulfillment/context.json" --json >"$run_tmp/quickstart.json")
grep -q '"status": *"complete"' "$run_tmp/quickstart.json" || { cat "$run_tmp/quickstart.json"; exit 1; }
echo "== Go library example (examples/go_handlers)"
go run ./examples/go_handlers >"$run_tmp/go-example.txt" || { cat "$run_tmp/go-example.txt"; exit 1; }

# Further stages (Ruby gem, benchmark smoke, fault injection) live in
# scripts/test.d/*.sh; each gets TEST_DATABASE_URL and exits non-zero on
# failure.
for stage in scripts/test.d/*.sh; do
  [[ -e "$stage" ]] || continue
  echo "== $(basename "$stage" .sh)"
  TASKER_TEST_TMP=$run_tmp bash "$stage"
done
echo "== all tests passed"
