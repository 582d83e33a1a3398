"""Teaching endpoints: the backprop walkthrough, learning-rate sweep and range test.

Handlers that train are plain ``def``: FastAPI runs them in its thread pool, so the event
loop never computes. Bad requests get 422 with messages that name the field.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from core.backprop import parse_request, walkthrough
from core.config import ConfigError, parse_config
from core.engine import Run, stack_hyper
from core.surfaces import SURFACES, contour_grid, paths

router = APIRouter(prefix="/api")
SWEEP_SIZE = 8  # a sweep is one batched call of this many runs (compiled at start)


def _error(messages: list[str]) -> JSONResponse:
    return JSONResponse({"error": messages[0], "messages": messages}, status_code=422)


@router.post("/backprop")
def backprop(body: dict = Body(default_factory=dict)):
    """One backpropagation step with every number: forward, loss, chain rule, update.
    An empty body gives the lecture's worked example."""
    try:
        return walkthrough(parse_request(body))
    except ConfigError as err:
        return _error(err.messages)
    except ValueError as err:
        return _error([str(err)])


def _number(body: dict, key: str, lo: float, hi: float, default: float) -> float:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError([f"{key} must be a finite number {lo:g}..{hi:g}, got {v!r}"])
    return float(v)


def _epochs(body: dict, hi: int) -> int:
    v = body.get("epochs", 100)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise ConfigError([f"epochs must be an integer 1..{hi}, got {v!r}"])
    return v


def _single(engine, run: Run, lr: float, epochs: int, every: int) -> dict:
    names = engine.metric_names
    rows = run.train(epochs, every=every)
    i_ep, i_tr, i_te, i_div = (names.index(k) for k in ("epoch", "train_loss", "test_loss", "diverged"))
    curve = [[int(r[i_ep]), _f(r[i_tr]), _f(r[i_te])] for r in rows if np.isfinite(r[i_tr]) or r[i_div] > 0]
    return {"learning_rate": lr, "history": curve, "diverged": bool(run.state.diverged),
            "final_test_loss": curve[-1][2] if curve else None}


def sweep_runs(engine, cfg, lrs: list[float], epochs: int, every: int, batched: tuple[int, ...] = ()) -> list[dict]:
    """Train one copy of ``cfg`` per learning rate, all in batched calls of SWEEP_SIZE."""
    runs = [Run(engine, cfg.model_copy(update={"learning_rate": lr})) for lr in lrs]
    if SWEEP_SIZE not in batched:  # not compiled (yet): train one after another
        return [_single(engine, r, lr, epochs, every) for r, lr in zip(runs, lrs)]
    pad = runs + [runs[0]] * (SWEEP_SIZE - len(runs))
    tree = lambda xs: jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *xs)  # noqa: E731
    states, datas, hypers = tree([r.state for r in pad]), tree([r.data for r in pad]), stack_hyper([r.hyper for r in pad])
    names = engine.metric_names
    i_ep, i_tr, i_te, i_div = (names.index(k) for k in ("epoch", "train_loss", "test_loss", "diverged"))
    curves: list[list[list[float | None]]] = [[] for _ in lrs]
    cap = engine.bucket(cfg.batch_size)
    left = epochs
    while left > 0:
        k = min(left, engine.chunk)
        states, hist, ok = engine.train_many(states, datas, hypers, k, runs[0].depth, cap, min(every, k))
        hist, ok = np.asarray(hist), np.asarray(ok)
        for j in range(len(lrs)):
            for row in hist[j][ok[j]]:
                if np.isfinite(row[i_tr]) or row[i_div] > 0:
                    curves[j].append([int(row[i_ep]), _f(row[i_tr]), _f(row[i_te])])
        left -= k
    div = np.asarray(states.diverged)
    return [{"learning_rate": lr, "history": curves[j], "diverged": bool(div[j]),
             "final_test_loss": curves[j][-1][2] if curves[j] else None} for j, lr in enumerate(lrs)]


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@router.post("/sweep")
def sweep(request: Request, body: dict = Body(...)):
    """Train the config with 2..8 learning rates at once (log-spaced between ``lr_min`` and
    ``lr_max`` unless ``learning_rates`` is given) and return every loss curve, marking
    diverged runs and the verdict: too low / right / too high."""
    st = request.app.state.nn
    try:
        cfg = parse_config(body.get("config", {}), st.settings.limits)
        lrs = body.get("learning_rates")
        if lrs is None:
            lo = _number(body, "lr_min", 1e-6, 10, 1e-3)
            hi = _number(body, "lr_max", 1e-6, 10, 3.0)
            n = int(_number(body, "count", 2, SWEEP_SIZE, 6))
            lrs = np.geomspace(lo, hi, n).tolist()
        if (not isinstance(lrs, list) or not 1 <= len(lrs) <= SWEEP_SIZE
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not (1e-6 <= v <= 10) for v in lrs)):
            raise ConfigError([f"learning_rates must be a list of 1..{SWEEP_SIZE} numbers 1e-06..10, got {lrs!r}"[:200]])
        epochs = _epochs(body, 2000)
    except ConfigError as err:
        return _error(err.messages)
    results = sweep_runs(st.engine, cfg, [float(v) for v in lrs], epochs, max(1, epochs // 100),
                         st.scheduler.batched_sizes)
    finals = [r["final_test_loss"] if not r["diverged"] and r["final_test_loss"] is not None else math.inf
              for r in results]
    best = int(np.argmin(finals))
    for j, r in enumerate(results):
        r["verdict"] = "too high" if r["diverged"] or j > best and finals[j] > 2 * finals[best] else (
            "right" if j == best else ("too low" if j < best else "high"))
    return {"epochs": epochs, "runs": results, "best": best}


@router.post("/lr_range")
def lr_range(request: Request, body: dict = Body(...)):
    """Learning-rate range test: one run whose learning rate grows exponentially from
    ``lr_min`` to ``lr_max`` over ``epochs`` epochs; loss against learning rate, and a
    suggestion (the learning rate of steepest loss descent, a common heuristic)."""
    st = request.app.state.nn
    try:
        cfg = parse_config(body.get("config", {}), st.settings.limits)
        lo = _number(body, "lr_min", 1e-6, 10, 1e-6)
        hi = _number(body, "lr_max", 1e-6, 10, 10.0)
        epochs = _epochs(body, 500)
    except ConfigError as err:
        return _error(err.messages)
    run = Run(st.engine, cfg)
    points = []
    for lr in np.geomspace(lo, hi, epochs):
        run.hyper = run.hyper._replace(opt=run.hyper.opt._replace(learning_rate=np.float32(lr)))
        rows = run.train(1)
        if not len(rows):
            break
        loss = _f(rows[-1][st.engine.metric_names.index("train_loss")])
        points.append([float(lr), loss])
        if loss is None:
            break
    finite = [(lr, v) for lr, v in points if v is not None]
    suggestion = None
    if len(finite) > 4:
        lrs, losses = np.log10([p[0] for p in finite]), np.array([p[1] for p in finite])
        smooth = np.convolve(losses, np.ones(3) / 3, mode="same")
        slope = np.gradient(smooth, lrs)
        suggestion = float(10 ** lrs[int(np.argmin(slope[1:-1])) + 1])
    return {"points": points, "suggested_learning_rate": suggestion}


@router.post("/paths")
def optimizer_paths(body: dict = Body(default_factory=dict)):
    """Trajectories of sgd, momentum, rmsprop and adam (optax) on a 2-D surface from the same
    start, plus the surface on an 80x80 grid over [-2, 2]^2 for contours."""
    try:
        surface = body.get("surface", "bowl")
        if not isinstance(surface, str) or surface not in SURFACES:
            raise ConfigError([f"surface must be one of {', '.join(SURFACES)}, got {surface!r}"[:120]])
        lr = _number(body, "learning_rate", 1e-4, 2.0, 0.05)
        momentum = _number(body, "momentum", 0.0, 0.999, 0.9)
        x0, y0 = _number(body, "x0", -2, 2, -1.5), _number(body, "y0", -2, 2, 1.5)
        steps = _epochs({"epochs": body.get("steps", 100)}, 500)
    except ConfigError as err:
        return _error([m.replace("epochs", "steps") for m in err.messages])
    return {**paths(surface, (x0, y0), lr, momentum, steps), "grid": contour_grid(surface), "range": [-2, 2]}
