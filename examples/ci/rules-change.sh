#!/bin/sh
# A rules change in a pull request, checked the way any CI can run it:
#
#   examples/ci/rules-change.sh BASE_RULES NEW_RULES ARCHIVE.jsonl [MAX_SWING] [OUTCOMES.jsonl]
#
# 1. `leadscore rules check` on the new file (problems with file and line);
# 2. `leadscore rules compare`: points only (re-weighted exactly at the switch) or
#    forward (new events only), and why;
# 3. `leadscore backtest` of both over the archive; the job fails (exit 2) when the
#    new rules' threshold crossings per week move by more than MAX_SWING
#    (a fraction; default 0.25). The report is left in backtest/ for the reviewer.
set -eu
base=$1
new=$2
archive=$3
swing=${4:-0.25}
outcomes=${5:-}
leadscore=${LEADSCORE:-leadscore}

$leadscore rules check "$new"
$leadscore rules compare "$base" "$new"
if [ -n "$outcomes" ]; then
  $leadscore backtest --rules "$base" --rules "$new" --events "$archive" \
    --outcomes "$outcomes" --max-swing "$swing" --out backtest
else
  $leadscore backtest --rules "$base" --rules "$new" --events "$archive" \
    --max-swing "$swing" --out backtest
fi
