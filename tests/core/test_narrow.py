"""The narrow programs (``core.engine.NARROW``): networks of at most 3 layers of at most 4 units
on the first four features train alone on programs padded to that size. They must be an
invisible speed-up: the same numbers as the wide programs, whatever the run does, up to float32
rounding (bit for bit on some hosts: XLA's CPU code for the two paddings may sum in another
order or fuse a multiply-add differently, depending on the processor it compiles for)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from core.config import parse_config, patch_config
from core.engine import NARROW, NARROW_LAYERS, Run, fits_narrow
from core.train import GRID


def _wide(monkeypatch):
    """Make every Run use the wide programs (the reference) until undone."""
    monkeypatch.setattr(Run, "narrow", property(lambda self: False))


CONFIGS = {
    "tfp-default": {},
    "three-layers-adam-l2": {
        "features": ["x1", "x2", "x2_sq"], "optimizer": "adam", "l2": 0.001, "n_points": 300,
        "layers": [{"units": 3, "activation": "relu"}, {"units": 4, "activation": "tanh"},
                   {"units": 2, "activation": "sigmoid"}]},
    "regression-rmsprop-cosine": {
        "problem": "regression", "dataset": "plane", "class_ratio": None, "optimizer": "rmsprop",
        "features": ["x1", "x1_sq"], "lr_schedule": "cosine", "decay_epochs": 5, "batch_size": 7,
        "layers": [{"units": 4, "activation": "elu"}]},
    "three-classes-momentum": {
        "dataset": "blobs", "classes": 3, "optimizer": "momentum", "batch_size": 25, "class_weight": "balanced",
        "layers": [{"units": 4, "activation": "gelu"}, {"units": 4, "activation": "silu"}]},
    "noise-flips-l1": {
        "input_noise": 0.2, "augmentation": {"jitter": 0.1, "flip_x1": True}, "l1": 0.003, "shuffle": False,
        "layers": [{"units": 2, "activation": "leaky_relu"}]},
    "perceptron-full-batch": {"layers": [], "batch_size": 250, "learning_rate": 0.3},
    "early-stopping": {"early_stopping_patience": 2, "learning_rate": 1.0, "dataset": "xor"},
}


# How close the narrow and the wide programs' numbers must be:
ULPS = {"rtol": 2e-6, "atol": 2e-7}  # a few float32 units in the last place, the same run
ROUNDING = {"rtol": 2e-5, "atol": 1e-6}  # a few epochs: the metrics' library dots sum 4 or 8
# padded terms in another order (a multi-class net's losses moved by 1e-6 relative)
DRIFT = {"rtol": 1e-2, "atol": 1e-3}  # 45 epochs: rounding differences grow (adam divides by
# the root of tiny second moments), yet the run stays the same run


def _close(a, b, tol: dict):
    """Floats within ``tol``; uint8 grids within one step (a value on a quantisation step's
    edge may round either way: 2-3 bytes of the output heatmap's 128 levels); other integers
    and flags equal."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        if x.dtype == np.float32:
            np.testing.assert_allclose(x, y, **tol)
        elif x.dtype == np.uint8 and x.shape[-3:] == (2, GRID, GRID):  # output heatmaps: 128 levels
            diff = np.abs(x.astype(int) - y)
            assert diff[..., 0, :, :].max() <= 3 and diff[..., 1, :, :].max() <= 1
        elif x.dtype == np.uint8:
            assert x.size == 0 or np.abs(x.astype(int) - y).max() <= 1
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_narrow_run_trains_and_draws_like_the_wide_programs(engine, monkeypatch, name):
    """Bit for bit for TensorFlow Playground's default network; within float32 rounding for
    every other kind of network that fits."""
    cfg = parse_config({"seed": 3, **CONFIGS[name]})
    assert fits_narrow(cfg)
    narrow, wide = Run(engine, cfg), Run(engine, cfg)
    assert narrow.narrow
    rows_n = [narrow.train(5, every=2), narrow.train(40, every=3)]  # NaN rows between measurements; two calls
    frames_n = [narrow.frame(), narrow.frame(with_metrics=False)]
    with monkeypatch.context() as m:
        _wide(m)
        rows_w = [wide.train(5, every=2), wide.train(40, every=3)]
        frames_w = [wide.frame(), wide.frame(with_metrics=False)]
    # TensorFlow Playground's default network stays within a few units in the last place; a
    # learning rate of 1 (early stopping's case, to make it fire) amplifies rounding at once
    first, later = {"tfp-default": (ULPS, ULPS), "early-stopping": (DRIFT, DRIFT)}.get(name, (ROUNDING, DRIFT))
    for a, b, tol in zip(rows_n, rows_w, (first, later)):
        assert a.shape == b.shape and np.isnan(a).any()
        assert (np.isnan(a) == np.isnan(b)).all()  # measured after the same epochs
        _close(a, b, tol)
    for (o1, n1, r1), (o2, n2, r2) in zip(frames_n, frames_w):
        assert n1.shape == n2.shape == (engine.n_layers, 8, 20, 20)
        _close((o1, n1, r1), (o2, n2, r2), later)
    _close(narrow.weights_flat(), wide.weights_flat(), later)  # read from the narrow buffer
    assert narrow.epoch == wide.epoch == (45 if name != "early-stopping" else narrow.epoch)
    _close(narrow.state, wide.state, later)  # widened: the padded slots as the wide programs left them
    if name == "early-stopping":
        assert narrow.state.stopped and narrow.epoch < 45
    else:
        assert np.isfinite(rows_n[-1][-1][engine.metric_names.index("train_loss")])


@pytest.mark.parametrize("patch, fits", [
    ({}, True),
    ({"layers": [{"units": 4}, {"units": 4}, {"units": 4}]}, True),
    ({"features": ["x1", "x2", "x1_sq", "x2_sq"]}, True),
    ({"layers": [{"units": 5}, {"units": 2}]}, False),
    ({"layers": [{"units": 1}] * 4}, False),
    ({"features": ["x1", "x1x2"]}, False),
    ({"features": ["sin_x2"]}, False),
    ({"dropout": 0.1}, False),
    ({"batch_norm": True}, False),
    ({"layer_norm": True}, False),
])
def test_which_networks_train_on_the_narrow_programs(engine, patch, fits):
    cfg = patch_config(parse_config({"n_points": 100}), patch)
    run = Run(engine, cfg)
    assert run.narrow is fits and fits_narrow(cfg) is fits
    picked = []
    saved = dict(engine._train), dict(engine._train_narrow)
    try:
        for table, tag in ((engine._train, "wide"), (engine._train_narrow, "narrow")):
            for key, exp in list(table.items()):
                table[key] = (lambda e, t: lambda *a: (picked.append(t), e(*a))[1])(exp, tag)
        run.train(2)
    finally:
        engine._train.update(saved[0])
        engine._train_narrow.update(saved[1])
    assert picked == ["narrow" if fits else "wide"]
    assert (NARROW, NARROW_LAYERS) == (4, 3)


def test_a_narrow_session_joins_batched_calls_and_returns(warm_engine, batched_size, monkeypatch):
    """A session trains alone (narrow), then in a batched call (wide, stacked with others),
    then alone again: the same numbers as a session that never left the wide form."""
    engine = warm_engine
    cfgs = [parse_config({"seed": s, "n_points": 120}) for s in range(batched_size)]

    def course(narrow_ok: bool):
        with monkeypatch.context() as m:
            if not narrow_ok:
                _wide(m)
            runs = [Run(engine, c) for c in cfgs]
            first = [r.train(3) for r in runs]
            from core.engine import stack_hyper

            def stack(trees):
                return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)

            states, hist, ok = engine.train_many(stack([r.packed for r in runs]), stack([r.data for r in runs]),
                                                 stack_hyper([r.hyper for r in runs]), 4, runs[0].depth,
                                                 engine.bucket(cfgs[0].batch_size), 4)
            for k, r in enumerate(runs):
                r.state = jax.tree.map(lambda a: np.asarray(a)[k], states)
            last = [r.train(5) for r in runs]
            return first, np.asarray(hist), last, [r.frame() for r in runs], [r.state for r in runs]

    narrow, wide = course(True), course(False)
    _close(narrow, wide, ULPS)  # TensorFlow Playground's default network


def test_surgery_after_narrow_training_keeps_the_trained_weights(engine):
    """Growing a narrow network past the narrow size reads its trained weights back into the
    wide form: every surviving weight is kept, and training goes on with the wide programs."""
    run = Run(engine, parse_config({"seed": 5}))
    run.train(10)
    before = run.weights()
    layers = [{"units": 6, "activation": "tanh"}, {"units": 2, "activation": "tanh"}]
    run.set_config(patch_config(run.cfg, {"layers": layers}))
    assert not run.narrow
    after = run.weights()
    np.testing.assert_array_equal(np.asarray(after[0]["w"])[:, :4], before[0]["w"])
    np.testing.assert_array_equal(np.asarray(after[0]["b"])[:4], before[0]["b"])
    np.testing.assert_array_equal(np.asarray(after[1]["w"])[:4], before[1]["w"])
    np.testing.assert_array_equal(after[2]["w"], before[2]["w"])
    assert run.epoch == 10
    rows = run.train(3)
    assert np.isfinite(rows[:, engine.metric_names.index("train_loss")]).all()
    # and back: shrinking it again trains narrow from the weights the wide programs left
    wide = run.weights()
    run.set_config(patch_config(run.cfg, {"layers": [{"units": 3, "activation": "tanh"}, layers[1]]}))
    assert run.narrow
    shrunk = run.weights()
    np.testing.assert_array_equal(shrunk[0]["w"], np.asarray(wide[0]["w"])[:, :3])
    np.testing.assert_array_equal(shrunk[2]["w"], wide[2]["w"])
    run.train(2)
    assert run.epoch == 15 and not np.array_equal(run.weights()[2]["w"], shrunk[2]["w"])


@pytest.mark.parametrize("max_layers", [0, 1])
def test_engines_with_fewer_layers_than_the_narrow_programs(monkeypatch, max_layers):
    """An operator's NNPLAY_MAX_LAYERS at or below NARROW_LAYERS: the narrow programs have as
    many layer slots as the wide ones (no gradient-norm column to fill in) and still train
    and draw like them."""
    from core.config import Limits
    from core.engine import Engine

    engine = Engine(limits=Limits(max_layers=max_layers, max_points=100))
    assert engine.narrow_layers == max_layers
    layers = [{"units": 3, "activation": "tanh"}] * max_layers
    cfg = parse_config({"dataset": "xor", "n_points": 80, "layers": layers, "batch_size": 5}, limits=engine.limits)
    narrow, wide = Run(engine, cfg), Run(engine, cfg)
    assert narrow.narrow
    rows_n, frame_n = narrow.train(6, every=2), narrow.frame()
    with monkeypatch.context() as m:
        _wide(m)
        rows_w, frame_w = wide.train(6, every=2), wide.frame()
    _close(rows_n, rows_w, ULPS)
    _close(frame_n, frame_w, ULPS)
    assert frame_n[1].shape == (max_layers, 8, 20, 20)
