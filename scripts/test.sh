#!/usr/bin/env bash
# The whole test suite: Go (race detector, PostgreSQL and SQLite), each
# fuzzer briefly, and a smoke run of the example. Starts its own throwaway
# PostgreSQL unless TEST_DATABASE_URL is already set.
#
#   ./scripts/test.sh            # everything
#   FUZZTIME=200000x ./scripts/test.sh   # longer fuzzing
#
# FUZZTIME is an execution count (Nx), not a duration: with a duration, Go's
# fuzzing coordinator can fail a clean run with "context deadline exceeded"
# when the time runs out mid-execution (golang/go#75804, fixed in Go 1.27).
# 10000 executions take a few seconds for the slowest fuzzer (template parsing).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10000x}

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

echo "== gofmt and go vet"
unformatted=$(gofmt -l . | grep -v '/testdata/' || true)
if [[ -n "$unformatted" ]]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzzers ($FUZZTIME each)"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for fz in $(grep -h '^func Fuzz' "$target"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do
    echo "-- $fz in $target"
    go test -run='^$' -fuzz="^${fz}\$" -fuzztime="$FUZZTIME" "$target" >/tmp/tasker-fuzz.log 2>&1 || { cat /tmp/tasker-fuzz.log; exit 1; }
  done
done
echo "== quick start (the README's first command)"
go run ./cmd/tasker run shop/order_fulfillment --templates examples/order_fulfillment \
  --context @examples/order_fulfillment/context.json --json >/tmp/tasker-quickstart.json
grep -q '"status": *"complete"' /tmp/tasker-quickstart.json || { cat /tmp/tasker-quickstart.json; exit 1; }
echo "== Go library example (examples/go_handlers)"
go run ./examples/go_handlers >/tmp/tasker-go-example.txt || { cat /tmp/tasker-go-example.txt; exit 1; }

# Further stages (Ruby gem, benchmark smoke, fault injection) live in
# scripts/test.d/*.sh; each gets TEST_DATABASE_URL and exits non-zero on
# failure.
for stage in scripts/test.d/*.sh; do
  [[ -e "$stage" ]] || continue
  echo "== $(basename "$stage" .sh)"
  bash "$stage"
done
echo "== all tests passed"
