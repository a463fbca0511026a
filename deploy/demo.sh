#!/usr/bin/env bash
# make demo: local broker, topics, a worker and simulated traffic; prints actions
# as they fire until Ctrl-C, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
demo=.demo
mkdir -p "$demo"
export LEADSCORE_DATA_DIR="${LEADSCORE_DATA_DIR:-$demo/state}"

started_broker=0
worker_pid=""
traffic_pid=""
cleanup() {
  trap - EXIT INT TERM
  echo >&2
  echo "demo: stopping" >&2
  [[ -n "$traffic_pid" ]] && kill "$traffic_pid" 2>/dev/null || true
  if [[ -n "$worker_pid" ]]; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [[ $started_broker -eq 1 ]]; then deploy/kafka-local/kafka-local stop; fi
}
trap cleanup EXIT INT TERM

if [[ -z "${LEADSCORE_BOOTSTRAP_SERVERS:-}" ]] && ! deploy/kafka-local/kafka-local status >/dev/null 2>&1; then
  deploy/kafka-local/kafka-local start
  started_broker=1
fi
"$bin/leadscore" topics create

"$bin/leadscore" worker >"$demo/worker.log" 2>&1 &
worker_pid=$!
echo "demo: worker starting (log: $demo/worker.log)" >&2
for _ in $(seq 1 240); do
  grep -q '\[^Worker\]: Ready' "$demo/worker.log" 2>/dev/null && break
  kill -0 "$worker_pid" 2>/dev/null || { echo "demo: worker exited:" >&2; tail -20 "$demo/worker.log" >&2; exit 1; }
  sleep 0.5
done

# A fresh contact prefix per run: every demo shows new leads warming up.
"$bin/leadscore" simulate --contacts 300 --rate 40 --duration 0 --quiet --prefix "demo-$(date +%H%M%S)-" >"$demo/simulate.log" 2>&1 &
traffic_pid=$!
echo "demo: simulated traffic at 40 events/s for 300 contacts; actions as they fire (Ctrl-C stops):" >&2
"$bin/leadscore" tail actions || true
