"""Teaching endpoints: the backprop walkthrough, learning-rate sweep and range test, and the
A/B comparison of a config trained with and without a regularizer.

Handlers that train are plain ``def``: FastAPI runs them in its thread pool, so the event
loop never computes. Bad requests get 422 with messages that name the field.
"""

from __future__ import annotations

import base64
import math

import jax
import numpy as np
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from core.backprop import parse_request, walkthrough
from core.config import Config, ConfigError, parse_config
from core.engine import Run, group_key, stack_hyper
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
    curve = _curve(run.train(epochs, every=every), engine.metric_names)
    return {"learning_rate": lr, "history": curve, "diverged": bool(run.state.diverged),
            "final_test_loss": curve[-1][2] if curve else None}


def _curve(rows: np.ndarray, names: tuple[str, ...]) -> list[list[float | None]]:
    """[epoch, train loss, test loss] of the measured rows (and the diverged one)."""
    i_ep, i_tr, i_te, i_div = (names.index(k) for k in ("epoch", "train_loss", "test_loss", "diverged"))
    return [[int(r[i_ep]), _f(r[i_tr]), _f(r[i_te])] for r in rows if np.isfinite(r[i_tr]) or r[i_div] > 0]


def train_stacked(engine, runs: list[Run], hypers: list, size: int, epochs: int, every: int) -> list[list]:
    """Train ``runs`` together in batched calls of ``size`` (padded with copies of the first);
    each run gets its final state back. ``hypers`` must share one ``group_key``."""
    pad = runs + [runs[0]] * (size - len(runs))
    hyps = hypers + [hypers[0]] * (size - len(runs))
    tree = lambda xs: jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *xs)  # noqa: E731
    states, datas, stacked = tree([r.state for r in pad]), tree([r.data for r in pad]), stack_hyper(hyps)
    curves: list[list] = [[] for _ in runs]
    cap = engine.bucket(runs[0].cfg.batch_size)
    left = epochs
    while left > 0:
        k = min(left, engine.chunk)
        states, hist, ok = engine.train_many(states, datas, stacked, k, runs[0].depth, cap, min(every, k))
        hist, ok = np.asarray(hist), np.asarray(ok)
        for j in range(len(runs)):
            curves[j] += _curve(hist[j][ok[j]], engine.metric_names)
        left -= k
    leaves, treedef = jax.tree.flatten(states)
    for j, run in enumerate(runs):
        run.state = jax.tree.unflatten(treedef, [np.asarray(a)[j] for a in leaves])
    return curves


def sweep_runs(engine, cfg, lrs: list[float], epochs: int, every: int, batched: tuple[int, ...] = ()) -> list[dict]:
    """Train one copy of ``cfg`` per learning rate, all in batched calls of SWEEP_SIZE."""
    runs = [Run(engine, cfg.model_copy(update={"learning_rate": lr})) for lr in lrs]
    if SWEEP_SIZE not in batched:  # not compiled (yet): train one after another
        return [_single(engine, r, lr, epochs, every) for r, lr in zip(runs, lrs)]
    curves = train_stacked(engine, runs, [r.hyper for r in runs], SWEEP_SIZE, epochs, every)
    return [{"learning_rate": lr, "history": curves[j], "diverged": bool(r.state.diverged),
             "final_test_loss": curves[j][-1][2] if curves[j] else None} for j, (r, lr) in enumerate(zip(runs, lrs))]


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


REGULARIZERS = ("l1", "l2", "dropout", "input_noise", "batch_norm", "augmentation")
# strength: (lowest, highest, default); batch norm has none, augmentation's is the jitter std
STRENGTHS = {"l1": (1e-5, 1.0, 0.003), "l2": (1e-5, 1.0, 0.003), "dropout": (0.05, 0.9, 0.2),
             "input_noise": (0.01, 3.0, 0.5), "augmentation": (0.01, 2.0, 0.3)}
ZERO_BELOW = 1e-3  # |w| under this counts as zeroed (L1 drives weights to about zero, not exactly)
HIST_BINS = 31


def ab_configs(cfg: Config, regularizer: str, strength: float | None, flips: bool, limits) -> tuple[Config, Config]:
    """A: ``cfg`` with the regularizer off; B: with it on at ``strength``."""
    data = cfg.model_dump(exclude_none=True)
    if regularizer == "batch_norm":
        off, on = {"batch_norm": False}, {"batch_norm": True}
    elif regularizer == "augmentation":
        off = {"augmentation": {}}
        on = {"augmentation": {"jitter": strength, "flip_x1": flips, "flip_x2": flips}}
    else:
        off, on = {regularizer: 0.0}, {regularizer: strength}
    return parse_config({**data, **off}, limits), parse_config({**data, **on}, limits)


def _ab_result(run: Run, curve: list, lim: float) -> dict:
    out, _, row = run.frame()
    m = run.metrics(row)
    ws = np.concatenate([np.ravel(lw["w"]) for lw in run.weights()])
    counts, edges = np.histogram(np.clip(np.nan_to_num(ws), -lim, lim), bins=HIST_BINS, range=(-lim, lim))
    last = curve[-1] if curve else [0, None, None]
    grid = {"grid": base64.b64encode(np.ascontiguousarray(out[0]).tobytes()).decode(), "grid_size": int(out.shape[-1])}
    if run.cfg.n_outputs > 1:
        grid["grid_class"] = base64.b64encode(np.ascontiguousarray(out[1]).tobytes()).decode()
    return {
        "history": curve, "diverged": bool(run.state.diverged), "stopped": bool(run.state.stopped),
        "best_epoch": int(run.state.best_epoch), "final_train_loss": last[1], "final_test_loss": last[2],
        "gap": last[2] - last[1] if last[1] is not None and last[2] is not None else None,
        "train_accuracy": _f(m["train_accuracy"]), "test_accuracy": _f(m["test_accuracy"]),
        "weights": {"edges": edges.tolist(), "counts": counts.tolist(), "n": int(ws.size),
                    "zeroed": int((np.abs(ws) < ZERO_BELOW).sum())},
        **grid,
    }


def ab_runs(engine, cfg_a: Config, cfg_b: Config, epochs: int, every: int,
            batched: tuple[int, ...] = ()) -> tuple[list[dict], bool]:
    """Train A and B from the same seed (so the same initial weights, shuffles and noise draws)
    in one batched call when a batched size is compiled and they can share it; otherwise one
    after the other. Returns both results and whether they were batched.

    A runs with B's work flags (dropout, augmentation on) at rates 0, which computes exactly
    what A alone computes (keep mask all ones, noise times 0), so the two share a call."""
    runs = [Run(engine, cfg_a), Run(engine, cfg_b)]
    hyper_a = runs[0].hyper._replace(flags=runs[1].hyper.flags)
    size = next((b for b in sorted(batched) if b >= 2), None)
    together = size is not None and group_key(hyper_a, runs[0].depth) == group_key(runs[1].hyper, runs[1].depth)
    if together:
        curves = train_stacked(engine, runs, [hyper_a, runs[1].hyper], size, epochs, every)
    else:
        curves = [_curve(r.train(epochs, every=every), engine.metric_names) for r in runs]
    ws = np.concatenate([np.ravel(lw["w"]) for r in runs for lw in r.weights()])
    lim = float(max(ZERO_BELOW, np.abs(np.nan_to_num(ws, posinf=0, neginf=0)).max()))
    return [_ab_result(r, c, lim) for r, c in zip(runs, curves)], together


@router.post("/ab")
def ab(request: Request, body: dict = Body(...)):
    """Train the config without (A) and with (B) one regularizer, same seed and initial
    weights, and return both: loss curves, train/test gap, final decision boundary (uint8
    grid, base64), weight histogram on shared bins and the count of zeroed weights."""
    st = request.app.state.nn
    try:
        cfg = parse_config(body.get("config", {}), st.settings.limits)
        reg = body.get("regularizer")
        if reg not in REGULARIZERS:
            raise ConfigError([f"regularizer must be one of {', '.join(REGULARIZERS)}, got {reg!r}"[:160]])
        strength = None
        if reg in STRENGTHS:
            lo, hi, default = STRENGTHS[reg]
            strength = _number(body, "strength", lo, hi, default)
        elif body.get("strength") is not None:
            raise ConfigError([f"strength does not apply to {reg}; leave it out"])
        flips = body.get("flips", False)
        if not isinstance(flips, bool):
            raise ConfigError([f"flips must be true or false, got {flips!r}"[:120]])
        epochs = _epochs({"epochs": body.get("epochs", 300)}, 2000)
        cfg_a, cfg_b = ab_configs(cfg, reg, strength, flips, st.settings.limits)
    except ConfigError as err:
        return _error(err.messages)
    (a, b), batched = ab_runs(st.engine, cfg_a, cfg_b, epochs, max(1, epochs // 100), st.scheduler.batched_sizes)
    return {"regularizer": reg, "strength": strength, "epochs": epochs, "batched": batched,
            "a": {"label": f"without {reg.replace('_', ' ')}", **a},
            "b": {"label": f"with {reg.replace('_', ' ')}" + (f" {strength:g}" if strength is not None else ""), **b}}


LR_EMA = 0.9  # smoothing of the range test's loss (fastai's lr_find uses 0.98 over minibatches)
LR_DIVERGED = 4.0  # the smoothed loss above this many times its minimum: diverged


def suggest_lr(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """The range test's suggestion: the learning rate where the EMA-smoothed loss falls
    fastest (per decade), looked for only up to the minimum of the smoothed loss, so the
    divergent tail and the noise of single epochs cannot pick it; when the loss never falls
    clearly, a tenth of the learning rate at the minimum. ``losses`` end at the first
    non-finite one (excluded)."""
    if len(losses) < 5:
        return None
    ema, smooth = 0.0, np.empty(len(losses))
    for k, v in enumerate(losses):  # bias-corrected EMA
        ema = LR_EMA * ema + (1 - LR_EMA) * v
        smooth[k] = ema / (1 - LR_EMA ** (k + 1))
    best = int(np.argmin(smooth))
    blown = np.nonzero(smooth[best:] > LR_DIVERGED * smooth[best])[0]
    end = best + (int(blown[0]) if len(blown) else len(smooth) - best)
    best = int(np.argmin(smooth[:end]))
    if best < 2:
        return float(lrs[best] / 10)
    log_lr = np.log10(lrs[: best + 1])
    slope = np.gradient(smooth[: best + 1], log_lr) / max(smooth[0] - smooth[best], 1e-12)
    k = int(np.argmin(slope))
    if slope[k] >= -0.05:  # flat: no clear descent to point at
        return float(lrs[best] / 10)
    return float(lrs[k])


@router.post("/lr_range")
def lr_range(request: Request, body: dict = Body(...)):
    """Learning-rate range test: one run whose learning rate grows exponentially from
    ``lr_min`` to ``lr_max`` over ``epochs`` epochs; loss against learning rate, the smoothed
    loss, and a suggestion (``suggest_lr``)."""
    st = request.app.state.nn
    try:
        cfg = parse_config(body.get("config", {}), st.settings.limits)
        lo = _number(body, "lr_min", 1e-6, 10, 1e-6)
        hi = _number(body, "lr_max", 1e-6, 10, 10.0)
        if hi <= lo:
            raise ConfigError([f"lr_max must be greater than lr_min ({lo:g}), got {hi:g}"])
        epochs = _epochs(body, 500)
    except ConfigError as err:
        return _error(err.messages)
    return range_test(st.engine, cfg, lo, hi, epochs)


def range_test(engine, cfg: Config, lo: float, hi: float, epochs: int) -> dict:
    run = Run(engine, cfg)
    i_tr = engine.metric_names.index("train_loss")
    points = []
    for lr in np.geomspace(lo, hi, epochs):
        run.hyper = run.hyper._replace(opt=run.hyper.opt._replace(learning_rate=np.float32(lr)))
        rows = run.train(1)
        if not len(rows):
            break
        loss = _f(rows[-1][i_tr])
        points.append([float(lr), loss])
        if loss is None:
            break
    finite = [(lr, v) for lr, v in points if v is not None]
    lrs, losses = np.array([p[0] for p in finite]), np.array([p[1] for p in finite])
    return {"points": points, "suggested_learning_rate": suggest_lr(lrs, losses)}


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
