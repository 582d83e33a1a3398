"""Start-up benchmark: where a warm start's seconds go (issue 3's "cold start to ready").

    .venv/bin/python bench/startup.py --runs 5

Each run is a fresh process, so nothing is loaded already; the compilation cache must be
warm (run the server, or ``Engine().warmup()``, once first). Prints one JSON line per run
and a line of medians:

- ``jax_s``: ``import jax``;
- ``web_s``: importing the app and its web stack (FastAPI, SQLAlchemy, uvicorn) after that;
- ``programs_s``: ``Engine.warmup_first()``: loading the exported training and frame
  programs of a default session from the caches, side by side, as the server does first;
- ``ready_s``: a real ``nnplay serve`` on a free loopback port, from spawn to ``/healthz``
  answering 200 (it overlaps the program loads with the web-stack import).

Bounded: ``--runs`` processes of each kind, each stopped after it reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import process  # noqa: E402

PHASES = r"""
import json, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import app.main, app.entry, uvicorn
t2 = time.perf_counter()
from core.engine import Engine, enable_compilation_cache
enable_compilation_cache()
Engine().warmup_first()
t3 = time.perf_counter()
print(json.dumps({"jax_s": t1 - t0, "web_s": t2 - t1, "programs_s": t3 - t2}))
"""


def phases() -> dict:
    out = subprocess.run([sys.executable, "-c", PHASES], cwd=process.ROOT, capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ready() -> float:
    port = process.free_port()
    t0 = time.monotonic()
    proc = process.start(port)
    try:
        while time.monotonic() - t0 < 600:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {process.stop(proc)[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{process.HOST}:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready in 600 s")
    finally:
        process.stop(proc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    rows = []
    for i in range(max(args.runs, 1)):
        row = {k: round(v, 2) for k, v in phases().items()}
        row["ready_s"] = round(ready(), 2)
        print(json.dumps({"run": i + 1, **row}), flush=True)
        rows.append(row)
    print(json.dumps({"median": {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]},
                      "runs": len(rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
