#!/usr/bin/env bash
# GPU figures in one prepared run (docs/benchmarks.md, "On a GPU"): `nnplay bench` and the
# websocket load benchmark for 1, 50 and 200 clients, on a machine whose Python already has
# jax with CUDA, optax, numpy and jinja2 (the other packages come as wheels in .whl/).
#
#   bash bench/gpu.sh [OUTDIR]
#
# Every stage has its own time limit and writes its figures as JSON lines to OUTDIR, so a
# stage that fails or runs out of time still leaves the others' results.
#
# The wheels (for a machine that cannot reach a package index), made where pip can:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
#     pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection \
#     fastapi starlette annotated-doc opentelemetry-api uvicorn websockets httptools sqlalchemy greenlet \
#     redis segno orjson isal uvloop
# (the versions of this project's .venv; `pip list` there). Environment knobs: PY (an
# environment that has everything: skips the wheels), NNPLAY_GPU_BENCH=0 (skip nnplay bench),
# NNPLAY_GPU_FLAGS (also run nnplay bench with these XLA_FLAGS), NNPLAY_GPU_SIZES (batched
# sizes, default 256), NNPLAY_GPU_LOADS (clients,seconds,limit ...).
set -u
OUTDIR=${1:-${OUT:-/tmp/nnplay-gpu}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NNPLAY_JAX_CACHE=/tmp/nnplay-jax
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }

stamp "setup"
if [ -z "${PY:-}" ]; then  # PY: an environment that has everything already (a dry run on the CPU)
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  fi
  export PYTHONPATH=/tmp/site:$PWD
  PY=python3
fi
P=$PY
nvidia-smi -L 2>/dev/null
$P - <<'EOF' | tee "$OUTDIR/env.json"
import json, os, jax, optax, numpy
print(json.dumps({"jax": jax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
                  "devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count()}))
EOF

if [ "${NNPLAY_GPU_BENCH:-1}" != 0 ]; then
  stamp "nnplay bench (128 sessions batched)"
  timeout 200 $P -m app.cli bench --seconds ${NNPLAY_GPU_SECONDS:-2} --sessions 128 2>"$OUTDIR/bench.err" | tee "$OUTDIR/bench.jsonl"
  tail -3 "$OUTDIR/bench.err"
fi
if [ -n "${NNPLAY_GPU_FLAGS:-}" ]; then  # the same with other XLA flags (an A/B on one machine)
  stamp "nnplay bench with XLA_FLAGS=$NNPLAY_GPU_FLAGS"
  XLA_FLAGS="$NNPLAY_GPU_FLAGS" timeout 200 $P -m app.cli bench --seconds ${NNPLAY_GPU_SECONDS:-2} --sessions 128 \
    2>"$OUTDIR/bench-flags.err" | tee "$OUTDIR/bench-flags.jsonl"
  tail -3 "$OUTDIR/bench-flags.err"
fi

$P -c "import app.entry, app.main, app.cli, uvicorn, websockets, sqlalchemy, redis, segno; print('server imports ok')"

# One batched size that holds every session (the GPU pads for free): 4 batched programs.
SIZES=${NNPLAY_GPU_SIZES:-256}
# Each run: clients,seconds,time limit (the first compiles the server's programs).
for spec in ${NNPLAY_GPU_LOADS:-1,10,240 50,15,90 200,20,120}; do
  IFS=, read -r -a a <<<"$spec"; set -- "${a[@]}"
  stamp "load: $1 clients for $2 s (batched sizes $SIZES)"
  timeout "$3" $P bench/load.py --clients "$1" --seconds "$2" --warmup-sessions "$SIZES" \
    --server-log "$OUTDIR/server.log" \
    2>>"$OUTDIR/load.err" | tee -a "$OUTDIR/load.jsonl"
done
tail -5 "$OUTDIR/load.err"
stamp "done"
