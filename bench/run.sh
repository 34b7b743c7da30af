#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds tasker and the comparison harness,
# starts ONE throwaway PostgreSQL cluster with durable commits (fsync,
# synchronous_commit and full_page_writes on), and runs River, pgbench and
# tasker against it. Results and SVG plots go to docs/bench/.
#
#   bench/run.sh                  # full run (about 10 minutes on 2 cores)
#   bench/run.sh --reps 1 --tasks 2000 --jobs 5000   # quicker
#   bench/run.sh --creation-only  # creation alone (River InsertMany, tasker batches and 16-goroutine creates)
#   bench/run.sh --continuous-only --reps 2   # creating while working, River and tasker (~4 min a repetition)
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

# Width sweep (issue 18): a fan-out of 200, 1,000, 3,000 and 10,000 leaves
# at max_parallel_steps 1,000 on both databases (SQLite: a file in a
# temporary directory), one JSON report each in docs/bench/width/, and a
# table of steps/s and tasker CPU per step in docs/bench/width.md. Per-step
# CPU should not grow with width. WIDTH_SWEEP=0 skips it.
[[ " $* " == *" --creation-only "* || " $* " == *" --continuous-only "* ]] && WIDTH_SWEEP=0
if [[ "${WIDTH_SWEEP:-1}" == 1 ]]; then
  mkdir -p docs/bench/width
  {
    echo "| database | width | steps/s | tasker CPU µs/step |"
    echo "|---|---|---|---|"
    for db in sqlite postgres; do
      url=""
      [[ $db == postgres ]] && url="$DATABASE_URL"
      for w in 200 1000 3000 10000; do
        out="docs/bench/width/$db-$w.json"
        "$root/bench/.bin/tasker" bench --shape fanout --width "$w" --tasks 1 --max-parallel-steps 1000 --quiet --json \
          ${url:+--database-url "$url"} >"$out"
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("| %s | %s | %.0f | %.0f |" % (sys.argv[2], sys.argv[3], d["steps_per_second"], d["cpu"]["tasker_us_per_step"]))' \
          "$out" "$db" "$w"
      done
    done
  } | tee docs/bench/width.md
fi
