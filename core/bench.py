"""Engine benchmark (``nnplay bench``): training-only epochs/s, milliseconds per full
visualisation frame, and the batched form's session-epochs/s. Prints figures; asserts nothing.

``--reference`` also runs ``bench/tfp_reference.mjs`` (TensorFlow Playground's training loop,
Node) first, on the same machine in the same minutes, and prints nnplay's figures as
multiples of it: issue 2's targets are such multiples, and machines differ."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from core.config import parse_config
from core.engine import Engine, Run, enable_compilation_cache, stack_hyper

NETS = {
    "a": {"dataset": "spiral", "n_points": 500, "train_ratio": 0.5, "features": ["x1", "x2"],
          "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "tanh"}],
          "optimizer": "sgd", "learning_rate": 0.03, "batch_size": 10},
    "b": {"dataset": "spiral", "n_points": 500, "train_ratio": 0.5,
          "features": ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"],
          "layers": [{"units": 8, "activation": "tanh"}] * 6,
          "optimizer": "sgd", "learning_rate": 0.03, "batch_size": 10},
}


def _median_rate(fn, seconds: float, work: float) -> float:
    """Median of (work / duration) over repeated calls for about ``seconds``."""
    rates, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < 5:
        t = time.perf_counter()
        fn()
        rates.append(work / (time.perf_counter() - t))
    return float(np.median(rates))


def measure(engine: Engine, name: str, seconds: float, sessions: int) -> dict:
    cfg = parse_config(NETS[name])
    run = Run(engine, cfg)
    chunk = engine.chunk

    # One session's calls as the server makes them (``Run``: the narrow programs where the
    # network fits them, the state kept on the device between calls), results on the host.
    def train_only():
        run.train(chunk, every=chunk)
        run.history.clear()

    def one_frame():  # what a page needs per animation frame: 1 epoch, losses, every grid
        # as the server draws it: the epoch measures the losses, the frame only adds the grids
        _, drawn = run.train_and_frame(1)
        if drawn is None:  # a network too wide for the narrow programs: a second call draws it
            run.frame(with_metrics=False)
        run.history.clear()

    train_only()
    one_frame()
    eps = _median_rate(train_only, seconds, chunk)
    frame_ms = 1000.0 / _median_rate(one_frame, seconds, 1)

    hyper = stack_hyper(run.hyper, sessions)
    stack = lambda t: jax.tree.map(lambda a: np.stack([np.asarray(a)] * sessions), t)  # noqa: E731
    states, datas = stack(run.packed), stack(run.data)  # packed, as the server keeps them
    cap = engine.bucket(cfg.batch_size)
    box = {"s": states}

    def batched():
        box["s"], hist, _ = engine.train_many(box["s"], datas, hyper, chunk, run.depth, cap, chunk)
        jax.block_until_ready(hist)

    batched()
    sess_eps = _median_rate(batched, seconds, chunk * sessions)
    row = {"net": name, "narrow": run.narrow, "train_epochs_per_s": round(eps, 1), "frame_ms": round(frame_ms, 3),
           "batched_sessions": sessions, "batched_session_epochs_per_s": round(sess_eps, 1)}
    if run.narrow:  # a crowd of such networks trains and draws in batched narrow calls
        narrow = engine.narrowing.narrow(states)
        nhyper = stack_hyper(run.narrow_hyper, sessions)
        box["n"] = narrow

        def batched_narrow():
            box["n"], hist, _, drawn = engine.train_draw_many(box["n"], datas, nhyper, chunk, run.depth, cap, chunk)
            jax.block_until_ready((hist, drawn))

        # a part of a crowd as the server steps it (32 sessions at most), 1 epoch and a frame each
        part = min(32, sessions)
        take = lambda t: jax.tree.map(lambda a: a[:part], t)  # noqa: E731
        crowd = {"s": take(narrow)}
        pdatas, phyper = take(datas), stack_hyper(run.narrow_hyper, part)

        def crowd_frames():
            crowd["s"], hist, _, drawn = engine.train_draw_many(crowd["s"], pdatas, phyper, 1, run.depth, cap, 1)
            jax.block_until_ready((hist, drawn))

        batched_narrow()
        crowd_frames()
        row["batched_narrow_session_epochs_per_s"] = round(_median_rate(batched_narrow, seconds, chunk * sessions), 1)
        row["crowd_frame_ms"] = round(1000.0 / _median_rate(crowd_frames, seconds, part), 3)
    return row


REFERENCE_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "tfp_reference.mjs"


def reference(seconds: float) -> dict[str, dict]:
    """TensorFlow Playground's loop on this machine: {net: {train_epochs_per_s, frame_ms}}.
    Needs Node and the repository's ``bench/`` (not part of an installed package)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not REFERENCE_SCRIPT.exists():
        raise RuntimeError(f"--reference needs node and {REFERENCE_SCRIPT}")
    out = subprocess.run([node, str(REFERENCE_SCRIPT), "--seconds", str(seconds)], capture_output=True, text=True,
                         timeout=600, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    print(json.dumps({"reference": "TF Playground's loop (bench/tfp_reference.mjs)", **lines[0]}), flush=True)
    return {r["net"]: r for r in lines[1:]}


def main(seconds: float = 2.0, sessions: int = 128, with_reference: bool = False) -> int:
    enable_compilation_cache()
    engine = Engine()
    info = {"device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.machine(),
            "cpus": __import__("os").cpu_count()}
    print(json.dumps(info))
    ref = reference(seconds) if with_reference else {}
    for name in NETS:
        row = measure(engine, name, seconds, sessions)
        if name in ref:  # issue 2's targets: training 2x, frames 20x TF Playground's
            r = ref[name]
            row |= {"tfp_train_epochs_per_s": r["train_epochs_per_s"], "tfp_frame_ms": r["frame_ms"],
                    "train_ratio": round(row["train_epochs_per_s"] / r["train_epochs_per_s"], 2),
                    "frame_ratio": round(r["frame_ms"] / row["frame_ms"], 2)}
        print(json.dumps(row), flush=True)
    return 0
