#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds tasker and the comparison harness,
# starts ONE throwaway PostgreSQL cluster with durable commits (fsync,
# synchronous_commit and full_page_writes on), and runs River, pgbench and
# tasker against it. Results and SVG plots go to docs/bench/.
#
#   bench/run.sh                  # full run (about 10 minutes on 2 cores)
#   bench/run.sh --reps 1 --tasks 2000 --jobs 5000   # quicker
#   DATABASE_URL=postgres://... bench/run.sh          # use an existing durable cluster
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
go build -o "$root/bench/.bin/tasker" ./cmd/tasker
(cd bench && go build -o "$root/bench/.bin/compare" .)
if [[ -z "${DATABASE_URL:-}" ]]; then
  # shellcheck source=scripts/pg-throwaway.sh
  source scripts/pg-throwaway.sh
  PG_DURABLE=1 pg_up
fi
"$root/bench/.bin/compare" --database-url "$DATABASE_URL" --tasker "$root/bench/.bin/tasker" --out docs/bench "$@"
