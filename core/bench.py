"""Engine benchmark (``nnplay bench``): training-only epochs/s, milliseconds per full
visualisation frame, and the batched form's session-epochs/s. Prints figures; asserts nothing."""

from __future__ import annotations

import json
import platform
import time

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
    return {"net": name, "narrow": run.narrow, "train_epochs_per_s": round(eps, 1), "frame_ms": round(frame_ms, 3),
            "batched_sessions": sessions, "batched_session_epochs_per_s": round(sess_eps, 1)}


def main(seconds: float = 2.0, sessions: int = 128) -> int:
    enable_compilation_cache()
    engine = Engine()
    info = {"device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.machine(),
            "cpus": __import__("os").cpu_count()}
    print(json.dumps(info))
    for name in NETS:
        print(json.dumps(measure(engine, name, seconds, sessions)), flush=True)
    return 0
