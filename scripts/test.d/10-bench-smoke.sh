#!/usr/bin/env bash
# Smoke run of `tasker bench` (a few seconds): every shape once on the SQLite
# default and, when TEST_DATABASE_URL is set, on PostgreSQL. Fails when the
# harness breaks (non-zero exit, unparseable JSON, tasks not all completed).
# The long benchmarks (bench/run.sh) stay out of the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d "${TASKER_TEST_TMP:-${TMPDIR:-/tmp}}/tasker-bench-smoke.XXXXXX")/tasker
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/tasker

check() { # check LABEL WANT_TASKS JSON
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
label, want, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = json.loads(raw)
ok = (r["tasks_completed"] == want and r["tasks_failed"] == 0 and r["steps_completed"] == want * r["steps_per_task"]
      and r["tasks_per_second"] > 0 and r["task_latency_ms"]["n"] == want and r["round_trips_per_step"] > 0
      and r["peak_rss_mb"] > 0 and r["cpu"]["tasker_seconds"] > 0)
if label.startswith("postgres"):
    # The test server runs on this machine: its CPU (whole 10 ms ticks, so
    # possibly 0 in a short run) and its WAL are measured.
    ok = ok and r["cpu"]["database_seconds"] >= 0 and r["wal"]["bytes_per_step"] > 0
if r["steps_per_task"] > 1:
    ok = ok and r["handoff_ms"]["n"] > 0
print(f"bench smoke {label}: {r['tasks_completed']} tasks, {r['steps_per_task']} steps/task, "
      f"{r['tasks_per_second']:.0f} tasks/s, {r['steps_per_second']:.0f} steps/s, "
      f"{r['round_trips_per_step']:.1f} round trips/step, {r['cpu']['tasker_us_per_step']:.0f} µs tasker CPU/step"
      f"{', %.0f WAL bytes/step' % r['wal']['bytes_per_step'] if 'wal' in r else ''} -> {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
PY
}

urls=("")
if [[ -n "${TEST_DATABASE_URL:-}" ]]; then urls+=("$TEST_DATABASE_URL"); fi
for url in "${urls[@]}"; do
  db=(); name=sqlite
  if [[ -n "$url" ]]; then db=(--database-url "$url"); name=postgres; fi
  check "$name single" 50 "$("$bin" bench --json --quiet "${db[@]}" --shape single --tasks 50 --workers 4 --timeout 60s)"
  check "$name chain" 20 "$("$bin" bench --json --quiet "${db[@]}" --shape chain --tasks 20 --timeout 60s)"
  check "$name diamond" 20 "$("$bin" bench --json --quiet "${db[@]}" --shape diamond --tasks 20 --timeout 60s)"
  check "$name fanout" 1 "$("$bin" bench --json --quiet "${db[@]}" --shape fanout --width 200 --timeout 60s)"
  check "$name random" 3 "$("$bin" bench --json --quiet "${db[@]}" --shape random --tasks 3 --width 30 --timeout 60s)"
  out=$("$bin" bench --json --quiet "${db[@]}" --mode continuous --shape chain --backlog 1 --duration 1s --timeout 60s)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["tasks_completed"] > 0 and r["handoff_ms"]["n"] > 0, r; print("bench smoke continuous: %d tasks, e2e p50 %.1f ms" % (r["tasks_completed"], r["task_latency_ms"]["p50"]))' "$out"
  # Creating while working (issue 18 item 2): single creates from 4 producers, then batches of 20.
  for extra in "" "--create-batch 20"; do
    # shellcheck disable=SC2086
    out=$("$bin" bench --json --quiet "${db[@]}" --mode continuous --shape single --producers 4 --backlog 200 --duration 1s --timeout 60s $extra)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["tasks_completed"] > 0 and r["tasks_failed"] == 0 and r["task_latency_ms"]["n"] == r["tasks_completed"], r; print("bench smoke continuous creating %s: %d tasks, %.0f tasks/s, e2e p50 %.1f ms" % (sys.argv[2] or "singly", r["tasks_completed"], r["tasks_per_second"], r["task_latency_ms"]["p50"]))' "$out" "$extra"
  done
done
