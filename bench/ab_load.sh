#!/usr/bin/env bash
# One load run against a fresh `nnplay serve` with extra settings: the A/B runs of
# docs/benchmarks.md (twelfth session). Run it alternately for the variants being compared.
#
#   bash bench/ab_load.sh [VAR=value ...]      e.g. bash bench/ab_load.sh NNPLAY_SCHEDULER_THREADS=2
#
# CLIENTS (default 200), RUN_SECONDS (20), SIZES (batched sizes, default 8,32,64), PORT (8766) and
# LOAD_ARGS (more bench/load.py options, e.g. "--decode-every 1") are read from the environment.
# The clients start only once /healthz lists every batched size as ready (a run that starts
# while they still compile measures sessions stepped one by one).
# Prints the settings, then the load figures, the XLA compilations during the run and the
# frames the server sent and dropped (replaced before their sender took them) since it started.
set -u
cd "$(dirname "$0")/.."
PORT=${PORT:-8766}
SIZES=${SIZES:-8,32,64}
PY=${PY:-.venv/bin/python}
CLIENTS=${CLIENTS:-200}
env "$@" NNPLAY_MAX_SESSIONS=$((CLIENTS + 10)) NNPLAY_WARMUP_SESSIONS="$SIZES" \
  NNPLAY_MAX_CONNECTIONS_PER_IP=$((CLIENTS + 10)) NNPLAY_RATE_LIMIT=100 \
  "$PY" -m app.cli serve --host 127.0.0.1 --port "$PORT" > "${SERVER_LOG:-/dev/null}" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null' EXIT
ready() {
  curl -s "127.0.0.1:$PORT/healthz" | "$PY" -c "
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
want = {int(x) for x in '$SIZES'.split(',') if x}
sys.exit(0 if d.get('ready') and want <= set(d.get('batched_sizes', [])) else 1)"
}
for _ in $(seq 1 900); do ready && break; kill -0 $SP 2>/dev/null || { echo "server exited"; exit 1; }; sleep 1; done
ready || { echo "server not ready with batched sizes $SIZES"; exit 1; }
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v m="^$1" '$0 ~ m {print $2}'; }
compilations() { metric nnplay_xla_compilations; }
c0=$(compilations)
out=$("$PY" bench/load.py --clients "$CLIENTS" --seconds "${RUN_SECONDS:-20}" ${LOAD_ARGS:-} --server-pid "$SP" \
  --url "ws://127.0.0.1:$PORT/ws?payload=deflate-raw" 2>/dev/null | tail -1)
c1=$(compilations)
sleep 1  # the sessions' dropped frames are counted as they close
echo "$* $out compilations: ${c0:-?} -> ${c1:-?} frames sent: $(metric nnplay_frames_sent_total) dropped: $(metric nnplay_frames_dropped_total)"
