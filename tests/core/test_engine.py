"""The engine as the server and CLI use it: no recompilation for any setting change (single and
batched), determinism, batched = separate runs, network surgery, frames and divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import ACTIVATIONS, parse_config, patch_config
from core.engine import Run, compilations, frame_key, group_key, stack_hyper
from core.train import _grid_points

ALL_FEATURES = ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]
CUSTOM_POINTS = [{"x1": float(i % 7) - 3, "x2": float(i % 5) - 2, "label": i % 2} for i in range(30)]
CUSTOM_POINTS[0]["subset"], CUSTOM_POINTS[1]["subset"] = "train", "test"

# Cumulative patches that together touch every setting; each must leave a valid config.
PATCHES = [
    {"learning_rate": 0.1}, {"learning_rate": 0.003},
    {"optimizer": "momentum"}, {"momentum": 0.5},
    {"optimizer": "rmsprop"}, {"rho": 0.8}, {"epsilon": 1e-4},
    {"optimizer": "adam"}, {"beta_1": 0.8, "beta_2": 0.99}, {"epsilon": 1e-7},
    {"optimizer": "sgd"},
    {"lr_schedule": "step", "decay_rate": 0.3, "decay_epochs": 2}, {"lr_schedule": "exponential", "decay_rate": 0.9},
    {"lr_schedule": "cosine", "cosine_alpha": 0.1, "decay_epochs": 7}, {"lr_schedule": "warmup_cosine", "warmup_epochs": 1},
    {"lr_schedule": "constant"},
    {"batch_size": 1}, {"batch_size": 16}, {"batch_size": 17}, {"batch_size": 128}, {"batch_size": 129},
    {"batch_size": 250}, {"batch_size": 4000}, {"batch_size": 10},
    {"shuffle": False}, {"shuffle": True},
    {"l1": 0.01}, {"l2": 0.02}, {"l1": 0.0, "l2": 0.0},
    {"dropout": 0.3}, {"input_noise": 0.5}, {"dropout": 0.0, "input_noise": 0.0},
    {"batch_norm": True}, {"batch_norm": False, "layer_norm": True}, {"layer_norm": False},
    {"early_stopping_patience": 3}, {"early_stopping_patience": 0},
    {"augmentation": {"jitter": 0.2, "flip_x1": True}}, {"augmentation": {"flip_x2": True}}, {"augmentation": {}},
    {"class_weight": "balanced"}, {"class_weight": [1.0, 3.0]}, {"class_weight": None},
    {"features": ALL_FEATURES}, {"features": ["x1x2"]}, {"features": ["x1", "sin_x2"]}, {"features": ["x1", "x2"]},
    {"layers": [{"units": 5}, {"units": 2}]}, {"layers": [{"units": 5}, {"units": 2}, {"units": 3}]},
    {"layers": [{"units": 5}]}, {"layers": []},
    {"layers": [{"units": 8, "activation": a} for a in ACTIVATIONS[:6]]},
    {"layers": [{"units": u, "activation": a} for u, a in zip((1, 8, 3, 6, 2, 7), ACTIVATIONS[2:])]},
    {"layers": [{"units": 4, "activation": "sigmoid"}, {"units": 3, "activation": "linear"}]},
    {"layers": [{"units": 4, "activation": "relu"}, {"units": 2, "activation": "tanh"}]},
    {"output_activation": "tanh"}, {"output_activation": "sigmoid", "loss": "mse"}, {"loss": "mae"},
    {"output_activation": "softmax", "loss": None}, {"output_activation": None},
    {"dataset": "xor"}, {"dataset": "gauss"}, {"dataset": "spiral"}, {"dataset": "moons"}, {"dataset": "checkerboard"},
    {"dataset": "blobs", "classes": 3}, {"classes": 5}, {"classes": 4, "class_weight": [1.0, 2.0, 1.0, 0.5]},
    {"dataset": "spiral", "classes": 3, "class_weight": None},
    {"dataset": "circle", "classes": 2},
    {"problem": "regression", "dataset": "plane"}, {"dataset": "multigauss", "output_activation": "tanh"},
    {"loss": "mae", "output_activation": None},
    {"dataset": "custom", "points": [{**p, "label": (p["label"] - 0.5)} for p in CUSTOM_POINTS], "loss": None},
    {"problem": "classification", "points": CUSTOM_POINTS},
    {"classes": 3, "points": [{**p, "label": i % 3} for i, p in enumerate(CUSTOM_POINTS)]},
    {"dataset": "circle", "classes": 2, "points": None},
    {"n_points": 50}, {"n_points": 1000}, {"noise": 0.3}, {"seed": 5}, {"train_ratio": 0.8}, {"class_ratio": 0.2},
    {"init": "he_normal", "layers": [{"units": 3}]}, {"init": "uniform"}, {"init": "zeros"},
    {"weights": [{"w": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], "b": [0.0, 0.1, 0.2]}, {"w": [[1.0], [-1.0], [0.5]], "b": [0.0]}]},
    {"learning_rate": 10.0, "problem": "regression", "dataset": "plane", "class_ratio": None,
     "layers": [{"units": 8, "activation": "relu"}] * 3},  # diverges
]


@pytest.mark.slow
def test_no_recompilation_for_any_setting(warm_engine, backend_compiles):
    engine = warm_engine
    run = Run(engine, parse_config({}))
    run.train(2)
    run.frame()
    before, loads = compilations(), backend_compiles()
    cfg = run.cfg
    for patch in PATCHES:
        cfg = patch_config(cfg, patch)
        run.set_config(cfg)
        run.train(2)
        out, neurons, row = run.frame()
        assert out.shape == (2, 100, 100) and neurons.shape == (engine.n_layers, 8, 20, 20)
        assert (compilations(), backend_compiles()) == (before, loads), f"compiled after {patch}"
    run.reset()
    run.set_param(0, "w", 0, 0, 0.5)
    run.regenerate(11)
    run.train(40, every=7)  # more than one chunk, measuring now and then
    run.frame()
    assert (compilations(), backend_compiles()) == (before, loads)


def stack(trees):
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def unstack(tree, k):
    return jax.tree.map(lambda a: np.asarray(a)[k], tree)


# Sessions stepped together share depth, activations and (so that they stay real branches under
# vmap) output activation, loss, optimizer, norms and which optional work they do (shuffle,
# input noise, dropout); they differ in everything else.
SHARED = {"layers": [{"units": 4, "activation": "relu"}, {"units": 2, "activation": "tanh"}], "optimizer": "adam",
          "n_points": 120}
BATCH_CONFIGS = [
    {"dataset": "circle", "learning_rate": 0.03, "seed": 1, "batch_size": 10, "dropout": 0.2, "input_noise": 0.1},
    {"dataset": "xor", "learning_rate": 0.01, "beta_1": 0.8, "seed": 2, "batch_size": 5, "l2": 0.01,
     "features": ["x1", "x2", "x1x2"], "dropout": 0.1, "input_noise": 0.3, "n_points": 200},
    {"dataset": "gauss", "noise": 0.3, "seed": 3, "batch_size": 16, "input_noise": 0.2, "dropout": 0.3,
     "lr_schedule": "cosine", "decay_epochs": 4,
     "layers": [{"units": 6, "activation": "relu"}, {"units": 3, "activation": "tanh"}]},
]


def batch_configs():
    return [parse_config({**SHARED, **c}) for c in BATCH_CONFIGS]


@pytest.mark.slow
def test_batched_equals_separate_runs(warm_engine, batched_size):
    engine = warm_engine
    assert len(BATCH_CONFIGS) == batched_size
    cfgs = batch_configs()
    runs = [Run(engine, c) for c in cfgs]
    states, datas = stack([r.state for r in runs]), stack([r.data for r in runs])
    hypers = stack_hyper([r.hyper for r in runs])
    cap = engine.bucket(16)
    assert all(engine.bucket(c.batch_size) == cap for c in cfgs)
    states, hist, ok = engine.train_many(states, datas, hypers, 6, 2, cap, 1)
    hist, ok = np.asarray(hist), np.asarray(ok)
    for k, run in enumerate(runs):
        single = run.train(6)
        assert ok[k].sum() == 6
        np.testing.assert_allclose(hist[k][ok[k]], single, rtol=1e-5, atol=1e-6)
        for mine, theirs in zip(jax.tree.leaves(unstack(states, k).params), jax.tree.leaves(run.state.params)):
            np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-5, atol=1e-6)
    # the sessions really differ from one another
    assert not np.allclose(hist[0][ok[0]], hist[1][ok[1]])
    # frames too
    out, neurons, rows = engine.frame_many(states, datas, hypers, 2)
    for k, run in enumerate(runs):
        o, n, r = run.frame()
        assert_out_within_a_level(np.asarray(out)[k], o)
        assert np.abs(np.asarray(neurons)[k].astype(int) - n).max() <= 1
        np.testing.assert_allclose(np.asarray(rows)[k], r, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batched_equals_separate_runs_for_every_activation(warm_engine, batched_size, activation):
    # One session's minibatch selects among all activations; a batched call branches on the
    # shared index. Both must train alike, gradients included.
    engine = warm_engine
    layers = [{"units": 5, "activation": activation}, {"units": 3, "activation": activation}]
    cfgs = [parse_config({"dataset": "xor", "n_points": 100, "layers": layers, "optimizer": "adam", "seed": k,
                          "learning_rate": 0.01 * (k + 1), "batch_size": 8}) for k in range(batched_size)]
    runs = [Run(engine, c) for c in cfgs]
    states, hist, ok = engine.train_many(stack([r.state for r in runs]), stack([r.data for r in runs]),
                                         stack_hyper([r.hyper for r in runs]), 4, 2, engine.bucket(8), 1)
    hist, ok = np.asarray(hist), np.asarray(ok)
    for k, run in enumerate(runs):
        np.testing.assert_allclose(hist[k][ok[k]], run.train(4), rtol=2e-5, atol=2e-6)
        for mine, theirs in zip(jax.tree.leaves(unstack(states, k).params), jax.tree.leaves(run.state.params)):
            np.testing.assert_allclose(mine, np.asarray(theirs), rtol=2e-5, atol=2e-6)
    assert not np.allclose(hist[0][ok[0]], hist[1][ok[1]])


@pytest.mark.slow
@pytest.mark.parametrize("task", [
    {"dataset": "circle", "output_activation": "sigmoid", "loss": "binary_crossentropy"},
    {"dataset": "circle", "output_activation": "sigmoid", "loss": "mse"},
    {"dataset": "xor", "output_activation": "tanh", "loss": "mse"},
    {"dataset": "blobs", "classes": 3, "output_activation": "softmax", "loss": "categorical_crossentropy"},
    {"dataset": "spiral", "classes": 4, "output_activation": "softmax", "loss": "mse"},
    {"problem": "regression", "dataset": "plane", "loss": "mse"},
    {"problem": "regression", "dataset": "multigauss", "loss": "mae"},
])
def test_batched_equals_separate_runs_for_every_output_and_loss(warm_engine, batched_size, task):
    # A batched call branches on the shared output activation and loss; one session's
    # minibatch selects. Losses, weights and frames must agree.
    engine = warm_engine
    layers = [{"units": 6, "activation": "tanh"}, {"units": 3, "activation": "relu"}]
    cfgs = [parse_config({"n_points": 120, "layers": layers, "optimizer": "rmsprop", "seed": k, "batch_size": 10,
                          "learning_rate": 0.01 * (k + 1), **task}) for k in range(batched_size)]
    runs = [Run(engine, c) for c in cfgs]
    assert len({group_key(r.hyper, r.depth) for r in runs}) == 1
    states, datas, hypers = (stack([r.state for r in runs]), stack([r.data for r in runs]),
                             stack_hyper([r.hyper for r in runs]))
    states, hist, ok = engine.train_many(states, datas, hypers, 4, 2, engine.bucket(10), 1)
    hist, ok = np.asarray(hist), np.asarray(ok)
    out, neurons, rows = engine.frame_many(states, datas, hypers, 2)
    for k, run in enumerate(runs):
        np.testing.assert_allclose(hist[k][ok[k]], run.train(4), rtol=2e-5, atol=2e-6)
        o, n, r = run.frame()
        assert_out_within_a_level(np.asarray(out)[k], o)
        np.testing.assert_allclose(np.asarray(rows)[k], r, rtol=1e-5, atol=1e-6)
    assert not np.allclose(hist[0][ok[0]], hist[1][ok[1]])


@pytest.mark.slow
def test_batched_setting_changes_do_not_compile(warm_engine, batched_size, backend_compiles):
    engine = warm_engine
    runs = [Run(engine, c) for c in batch_configs()]

    def step(runs, cap, depth):
        states, datas = stack([r.state for r in runs]), stack([r.data for r in runs])
        hypers = stack_hyper([r.hyper for r in runs])
        states, hist, _ = engine.train_many(states, datas, hypers, 1, depth, cap, 1)
        out = engine.frame_many(states, datas, hypers, depth)
        jax.block_until_ready((hist, out))

    step(runs, engine.bucket(16), 2)
    before, loads = compilations(), backend_compiles()
    deep = [{"units": 8, "activation": "tanh"}] * 6
    changes = [  # (patch for every session, per-session patches)
        ({"optimizer": "rmsprop"}, [{"learning_rate": 0.5}, {"rho": 0.5}, {"lr_schedule": "step"}]),
        ({"optimizer": "sgd", "dropout": 0.0, "input_noise": 0.0, "shuffle": False},
         [{"dataset": "spiral", "classes": 4}, {"features": ALL_FEATURES}, {"l1": 0.1}]),
        ({"batch_norm": True, "augmentation": {"flip_x1": True}},
         [{"n_points": 60}, {"class_weight": "balanced"}, {"problem": "regression", "dataset": "plane", "classes": 2}]),
        ({"batch_norm": False, "layer_norm": True, "optimizer": "momentum",
          "layers": [{"units": 8, "activation": "elu"}, {"units": 1, "activation": "gelu"}, {"units": 5, "activation": "silu"}]},
         [{}, {"momentum": 0.1}, {}]),
        ({"layers": [], "layer_norm": False}, [{}, {}, {}]),
        ({"layers": deep}, [{}, {"layers": [{"units": 2, "activation": "tanh"}] * 6}, {}]),
    ]
    for shared, own in changes:
        for run, patch in zip(runs, own):
            run.set_config(patch_config(run.cfg, {**shared, **patch}))
        for batch in (12, 100, 1000):  # one per bucket
            for run in runs:
                run.set_config(patch_config(run.cfg, {"batch_size": batch}))
            step(runs, engine.bucket(batch), runs[0].depth)
    assert (compilations(), backend_compiles()) == (before, loads)


def test_same_config_and_seed_are_deterministic(engine):
    data = {"dataset": "spiral", "seed": 9, "dropout": 0.2, "input_noise": 0.3, "shuffle": True,
            "augmentation": {"jitter": 0.1, "flip_x1": True}, "optimizer": "adam", "learning_rate": 0.01,
            "layers": [{"units": 6, "activation": "relu"}, {"units": 3, "activation": "tanh"}]}
    a, b = Run(engine, parse_config(data)), Run(engine, parse_config(data))
    ha, hb = a.train(40), b.train(40)
    np.testing.assert_array_equal(ha, hb)
    assert a.weights() == b.weights()
    np.testing.assert_array_equal(a.frame()[0], b.frame()[0])
    c = Run(engine, parse_config({**data, "seed": 10}))
    c.train(40)
    assert c.weights() != a.weights()
    # reset goes back to the same start
    w0 = Run(engine, parse_config(data)).weights()
    a.reset()
    assert a.weights() == w0 and a.epoch == 0
    np.testing.assert_array_equal(a.train(40), ha)


# --- network surgery -------------------------------------------------------------------------------


def trained(engine, data, epochs=5):
    run = Run(engine, parse_config(data))
    run.train(epochs)
    return run


def test_surgery_add_unit_keeps_weights(engine):
    run = trained(engine, {"layers": [{"units": 4}, {"units": 2}]})
    old = run.weights()
    run.set_config(patch_config(run.cfg, {"layers": [{"units": 5}, {"units": 2}]}))
    new = run.weights()
    np.testing.assert_array_equal(np.array(new[0]["w"])[:, :4], old[0]["w"])
    np.testing.assert_array_equal(np.array(new[0]["b"])[:4], old[0]["b"])
    np.testing.assert_array_equal(np.array(new[1]["w"])[:4], old[1]["w"])
    np.testing.assert_array_equal(new[1]["b"], old[1]["b"])
    np.testing.assert_array_equal(new[2]["w"], old[2]["w"])
    np.testing.assert_array_equal(new[2]["b"], old[2]["b"])
    assert np.array(new[0]["w"]).shape == (2, 5) and np.array(new[1]["w"]).shape == (5, 2)
    assert run.epoch == 5
    assert len(run.train(2)) == 2


def test_surgery_remove_unit_keeps_the_rest(engine):
    run = trained(engine, {"layers": [{"units": 4}, {"units": 3}]})
    old = run.weights()
    run.set_config(patch_config(run.cfg, {"layers": [{"units": 4}, {"units": 2}]}))
    new = run.weights()
    np.testing.assert_array_equal(new[0]["w"], old[0]["w"])
    np.testing.assert_array_equal(new[1]["w"], np.array(old[1]["w"])[:, :2])
    np.testing.assert_array_equal(new[2]["w"], np.array(old[2]["w"])[:2])


def test_surgery_add_layer_keeps_weights(engine):
    run = trained(engine, {"layers": [{"units": 4}, {"units": 2}]})
    old = run.weights()
    run.set_config(patch_config(run.cfg, {"layers": [{"units": 4}, {"units": 2}, {"units": 3, "activation": "relu"}]}))
    new = run.weights()
    assert len(new) == 4
    for j in (0, 1):
        np.testing.assert_array_equal(new[j]["w"], old[j]["w"])
        np.testing.assert_array_equal(new[j]["b"], old[j]["b"])
    np.testing.assert_array_equal(new[3]["b"], old[2]["b"])  # the output bias survives
    assert np.array(new[2]["w"]).shape == (2, 3) and np.array(new[3]["w"]).shape == (3, 1)


def test_surgery_add_feature_keeps_weights(engine):
    run = trained(engine, {"features": ["x1", "x2"], "layers": [{"units": 3}, {"units": 2}]})
    old = run.weights()
    run.set_config(patch_config(run.cfg, {"features": ["x1", "x2", "x1_sq", "sin_x2"]}))
    new = run.weights()
    assert run.cfg.features == ["x1", "x2", "x1_sq", "sin_x2"]
    np.testing.assert_array_equal(np.array(new[0]["w"])[:2], old[0]["w"])  # x1, x2 rows by name
    for j in (1, 2):
        np.testing.assert_array_equal(new[j]["w"], old[j]["w"])
        np.testing.assert_array_equal(new[j]["b"], old[j]["b"])
    # remove x1 again: x2's row is still the one trained
    run.set_config(patch_config(run.cfg, {"features": ["x2", "x1_sq"]}))
    newer = run.weights()
    np.testing.assert_array_equal(np.array(newer[0]["w"])[0], np.array(old[0]["w"])[1])
    np.testing.assert_array_equal(np.array(newer[0]["w"])[1], np.array(new[0]["w"])[2])


def test_surgery_with_the_predictions_of_unchanged_units(engine, np_ref):
    """Adding a unit whose outgoing weights we zero leaves the network's function unchanged."""
    run = trained(engine, {"layers": [{"units": 3, "activation": "tanh"}]})
    pts = np.random.default_rng(0).uniform(-6, 6, (50, 2))
    before = run.predict(pts)
    run.set_config(patch_config(run.cfg, {"layers": [{"units": 4, "activation": "tanh"}]}))
    run.set_param(1, "w", 3, 0, 0.0)
    np.testing.assert_allclose(run.predict(pts), before, rtol=1e-5, atol=1e-6)
    cfg = {"features": run.cfg.features, "layers": [{"units": 4, "activation": "tanh"}], "output_activation": "sigmoid"}
    np.testing.assert_allclose(run.predict(pts), np_ref.mlp(run.weights(), pts, cfg), rtol=1e-4, atol=1e-6)


# --- frames ------------------------------------------------------------------------------------------


def grid(n):
    """Row r is x2 = 6 - 12 r / (n - 1) (top is +6), column c is x1 = -6 + 12 c / (n - 1)."""
    t = np.linspace(-6.0, 6.0, n)
    return np.meshgrid(t, t[::-1])


def quantised(v, lo, hi):
    return np.round((np.clip(v, lo, hi) - lo) / (hi - lo) * 255).astype(int)


def assert_out_within_a_level(got, want):
    """Output grids (2, 100, 100) of one network drawn two ways (float32 sums in another
    order): the heatmap within one of its 128 levels (2-3 bytes), the classes within one."""
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff[0].max() <= 3 and diff[1].max() <= 1


def output_levels(p):
    """The output heatmap's bytes for values in [0, 1]: 128 levels (``OUTPUT_LEVELS``), each
    rounded to a byte (0, 2, ..., 126, 129, ..., 253, 255)."""
    return np.round(np.round(np.clip(p, 0, 1) * 127) * 255 / 127).astype(int)


LEVEL_BYTES = output_levels(np.arange(128) / 127)


def assert_output_close(got, p):
    """An output heatmap against the values [0, 1] it draws: every byte is one of the 128
    levels, and its level is the value's, or one off (float32 against float64 where a value
    falls on a level's edge) for under 2 % of the pixels."""
    assert np.isin(got, LEVEL_BYTES).all()
    assert_image_close(np.searchsorted(LEVEL_BYTES, got), np.round(np.clip(p, 0, 1) * 127))


def test_output_heatmap_has_128_levels_spread_over_the_bytes(engine):
    """A perceptron whose output sweeps [0, 1] across the grid uses every one of the 128
    levels and no other byte: the endpoints 0 and 255, and levels symmetric about 127.5."""
    a, b = 1 / 6.07, 0.0101 / 6.07  # x2 fills in between the columns' steps: 10,000 values in (-1, 1)
    cfg = parse_config({"layers": [], "output_activation": "linear", "problem": "regression", "dataset": "plane",
                        "weights": [{"w": [[a], [b]], "b": [0.0]}]})
    out, _, _ = Run(engine, cfg).frame()
    want = LEVEL_BYTES.tolist()
    assert sorted(set(out[0].ravel().tolist())) == want
    assert len(want) == 128 and want[0] == 0 and want[-1] == 255 and want[63:65] == [126, 129]
    assert all(lo + hi == 255 for lo, hi in zip(want, want[::-1]))
    assert set(np.diff(want).tolist()) == {2, 3}
    x1, x2 = grid(100)
    assert_output_close(out[0], (a * x1 + b * x2 + 1) / 2)


def assert_image_close(got, want):
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.98


@pytest.mark.parametrize("w", [(1.0, 0.0), (0.0, 1.0), (0.7, -0.4)])
def test_output_heatmap_of_a_known_perceptron(engine, np_ref, w):
    cfg = parse_config({"layers": [], "output_activation": "sigmoid", "weights": [{"w": [[w[0]], [w[1]]], "b": [0.0]}]})
    out, neurons, row = Run(engine, cfg).frame()
    assert out.dtype == np.uint8 and out.shape == (2, 100, 100)
    assert neurons.dtype == np.uint8 and neurons.shape == (engine.n_layers, 8, 20, 20)
    x1, x2 = grid(100)
    z = w[0] * x1 + w[1] * x2
    assert_output_close(out[0], np_ref.sigmoid(z))
    np.testing.assert_array_equal(out[1], (z > 0).astype(np.uint8))
    np.testing.assert_allclose(_grid_points(100), np.stack([x1.ravel(), x2.ravel()], 1), atol=1e-6)


@pytest.mark.parametrize("norm", [None, "batch_norm", "layer_norm"])
def test_output_heatmap_of_a_trained_deep_net_matches_its_predictions(engine, np_ref, norm):
    """The output grid has its own pass (unrolled sums over (units, points) rows). It must
    agree with the network's predictions at the grid's points (the training's forward pass,
    itself tested against NumPy) and, without norms, with the NumPy MLP of the exported
    weights; batch norm's running statistics and layer norm's masks included."""
    data = {"dataset": "circle", "features": ["x1", "x2", "x1_sq"], "output_activation": "sigmoid",
            "layers": [{"units": 5, "activation": "tanh"}, {"units": 3, "activation": "relu"},
                       {"units": 2, "activation": "elu"}]}
    if norm:
        data[norm] = True
    run = Run(engine, parse_config(data))
    run.train(5)
    out, _, _ = run.frame()
    x1, x2 = grid(100)
    pts = np.stack([x1.ravel(), x2.ravel()], 1)
    p = np.asarray(run.predict(pts))[:, 0].reshape(100, 100)
    assert 0.05 < p.std()  # a grid with something on it
    assert_output_close(out[0], p)
    assert (out[1] == (p > 0.5)).mean() > 0.999
    if norm is None:
        want = np_ref.mlp(run.weights(), pts, {**data, "features": run.cfg.features})[:, 0].reshape(100, 100)
        assert_output_close(out[0], want)


def test_neuron_heatmaps(engine):
    cfg = parse_config({"layers": [{"units": 2, "activation": "tanh"}, {"units": 1, "activation": "relu"}],
                        "weights": [{"w": [[1.0, 0.0], [0.0, 0.5]], "b": [0.0, 0.2]}, {"w": [[1.0], [-1.0]], "b": [0.1]},
                                    {"w": [[1.0]], "b": [0.0]}]})
    _, neurons, _ = Run(engine, cfg).frame()
    x1, x2 = grid(20)
    h0, h1 = np.tanh(x1), np.tanh(0.5 * x2 + 0.2)
    assert_image_close(neurons[0, 0], quantised(h0, -1, 1))
    assert_image_close(neurons[0, 1], quantised(h1, -1, 1))
    assert_image_close(neurons[1, 0], quantised(np.maximum(h0 - h1 + 0.1, 0), -1, 1))


def test_regression_and_multiclass_heatmaps(engine, np_ref):
    cfg = parse_config({"problem": "regression", "dataset": "plane", "layers": [],
                        "weights": [{"w": [[0.1], [0.05]], "b": [0.2]}]})
    out, _, _ = Run(engine, cfg).frame()
    x1, x2 = grid(100)
    assert_output_close(out[0], (0.1 * x1 + 0.05 * x2 + 0.2 + 1) / 2)
    cfg = parse_config({"dataset": "blobs", "classes": 3, "layers": [],
                        "weights": [{"w": [[1.0, -1.0, 0.0], [0.0, 0.0, 0.5]], "b": [0.0, 0.0, 0.3]}]})
    out, _, _ = Run(engine, cfg).frame()
    z = np.stack([x1, -x1, 0.5 * x2 + 0.3], -1)  # no ties on the grid
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_array_equal(out[1], np.argmax(z, -1))
    assert_output_close(out[0], p.max(-1))


@pytest.mark.parametrize("problem", ["classification", "regression"])
def test_tanh_output_heatmaps(engine, problem):
    """TensorFlow Playground's tanh output: the heatmap shows (tanh + 1) / 2 for either
    problem, and the class is tanh > 0 (labels -1/+1)."""
    data = {"layers": [], "output_activation": "tanh", "weights": [{"w": [[0.4], [-0.3]], "b": [0.1]}]}
    if problem == "regression":
        data |= {"problem": "regression", "dataset": "plane"}
    out, _, _ = Run(engine, parse_config(data)).frame()
    x1, x2 = grid(100)
    z = 0.4 * x1 - 0.3 * x2 + 0.1
    assert_output_close(out[0], (np.tanh(z) + 1) / 2)
    if problem == "classification":
        np.testing.assert_array_equal(out[1], (z > 0).astype(np.uint8))


@pytest.mark.parametrize("how", ["learning_rate", "set_param"])
def test_diverged_run_is_reported_and_recovers(engine, how):
    data = {"problem": "regression", "dataset": "plane", "layers": [{"units": 8, "activation": "relu"}] * 3,
            "learning_rate": 10.0 if how == "learning_rate" else 0.01}
    run = Run(engine, parse_config(data))
    if how == "set_param":
        run.train(1)
        run.set_param(0, "w", 0, 0, 1e38)
        run.set_param(1, "w", 0, 0, 1e38)
    run.train(50)
    m = run.metrics()
    assert m["diverged"] is True
    out, neurons, row = run.frame()
    assert out.dtype == np.uint8 and neurons.dtype == np.uint8
    assert out.shape == (2, 100, 100) and neurons.shape == (engine.n_layers, 8, 20, 20)
    epoch = run.epoch
    assert len(run.train(5)) == 0 and run.epoch == epoch  # a diverged run does not go on
    run.reset()
    m = run.metrics()
    assert m["diverged"] is False and np.isfinite(m["test_loss"]) and run.epoch == 0
    run.set_config(patch_config(run.cfg, {"learning_rate": 0.01}))
    hist = run.train(5)
    assert len(hist) == 5 and np.all(np.isfinite(hist[:, run.engine.metric_names.index("train_loss")]))


@pytest.mark.slow
def test_one_frame_call_for_sessions_that_differ_in_optimizer_and_flags(warm_engine, batched_size):
    """The scheduler draws sessions with equal ``frame_key`` together even when their
    ``group_key`` (optimizer, shuffle, noise, dropout) differs: the frames must equal each
    session's own."""
    engine = warm_engine
    extra = [{"optimizer": "sgd", "shuffle": False}, {"optimizer": "rmsprop", "dropout": 0.0, "input_noise": 0.0},
             {"optimizer": "momentum", "lr_schedule": "step", "decay_epochs": 2}]
    runs = [Run(engine, parse_config({**SHARED, **c, **e})) for c, e in zip(BATCH_CONFIGS, extra)]
    for r in runs:
        r.train(3)
    assert len({group_key(r.hyper, r.depth) for r in runs}) == 3
    assert len({frame_key(r.hyper, r.depth) for r in runs}) == 1
    pad = runs + [runs[0]] * (batched_size - len(runs))
    out, neurons, rows = engine.frame_many(stack([r.state for r in pad]), stack([r.data for r in pad]),
                                           stack_hyper([r.hyper for r in pad]), 2)
    for k, run in enumerate(runs):
        o, n, r = run.frame()
        assert_out_within_a_level(np.asarray(out)[k], o)
        assert np.abs(np.asarray(neurons)[k].astype(int) - n).max() <= 1
        np.testing.assert_allclose(np.asarray(rows)[k], r, rtol=1e-5, atol=1e-6)
    # and a different activation, norm, output activation or loss is a different branch
    for change in ({"batch_norm": True}, {"output_activation": "tanh"}, {"loss": "mse"},
                   {"layers": [{"units": 4, "activation": "relu"}, {"units": 2, "activation": "elu"}]}):
        other = Run(engine, parse_config({**SHARED, **change}))
        assert frame_key(other.hyper, other.depth) != frame_key(runs[0].hyper, runs[0].depth), change
        assert group_key(other.hyper, other.depth) != group_key(runs[0].hyper, runs[0].depth), change


@pytest.mark.parametrize("extra", [
    {}, {"lr_schedule": "cosine", "decay_epochs": 5, "l2": 0.01, "l1": 0.001},
    {"batch_norm": True, "optimizer": "adam", "dropout": 0.2},
    {"dataset": "blobs", "classes": 3, "layers": [{"units": 5, "activation": "relu"}]},
    {"problem": "regression", "dataset": "plane", "layer_norm": True},
])
def test_the_last_training_row_is_the_frame_row_so_frames_may_skip_metrics(engine, extra):
    """The scheduler draws a session that has just trained with ``with_metrics=False`` and
    publishes the row measured after its last epoch instead: those rows must be equal, and the
    grids must not depend on the flag."""
    run = Run(engine, parse_config({"dataset": "spiral", "seed": 5, **extra}))
    rows = run.train(3, every=3)
    out, neurons, row = (np.asarray(a) for a in engine.frame(run.state, run.data, run.hyper, run.depth))
    out2, neurons2, row2 = (np.asarray(a) for a in engine.frame(run.state, run.data, run.hyper, run.depth, False))
    np.testing.assert_allclose(rows[-1], row, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(neurons, neurons2)
    assert np.isnan(row2).all()


def test_device_inputs_are_copied_once_and_follow_every_change(engine):
    run = Run(engine, parse_config({"dataset": "xor", "seed": 2}))
    first = run.device_inputs()
    assert run.device_inputs() is first  # no copy per call
    run.set_config(patch_config(run.cfg, {"learning_rate": 0.25}, engine.limits))
    data, hyper = run.device_inputs()
    assert float(hyper.opt.learning_rate) == 0.25 and isinstance(hyper.opt.learning_rate, jax.Array)
    run.set_config(patch_config(run.cfg, {"seed": 3}, engine.limits))  # new points
    np.testing.assert_array_equal(np.asarray(run.device_inputs()[0].x_train), run.data.x_train)
    assert not np.array_equal(np.asarray(data.x_train), run.data.x_train)


def test_engines_of_one_process_share_loaded_programs(warm_engine, backend_compiles):
    """A second engine (as a server's early-loading thread and its app each build one) finds
    every program the first loaded: no load, no compile, the very same callable."""
    from core.engine import Engine

    other = Engine(warm_engine.limits)
    run = Run(other, parse_config({"n_points": 200}))
    before = backend_compiles()
    jax.block_until_ready(other.train(run.state, *run.device_inputs(), 2, run.depth, 10, 1))
    jax.block_until_ready(other.frame(run.state, *run.device_inputs(), run.depth))
    assert backend_compiles() == before
    for mine, theirs in ((other._train[(16, False)], warm_engine._train[(16, False)]), (other._frame, warm_engine._frame)):
        (sig,) = mine._calls
        assert mine._calls[sig][0] is theirs._calls[sig][0]


def test_a_sessions_repeated_calls_reuse_its_inputs_and_answer_as_a_fresh_call(engine):
    """Calls with the same device ``data`` and ``hyper`` skip flattening them: the answers are
    bit for bit those of a call with host copies (which are put on the device anew and never
    kept), and a settings change (a new ``hyper``) is a new entry, not a stale one."""
    cfg = parse_config({"n_points": 200, "seed": 3})
    run = Run(engine, cfg)
    exp = engine._train[(engine.bucket(cfg.batch_size), False)]
    used = []
    repeat = exp._repeat
    exp._repeat = lambda args: (lambda r: (used.append(r is not None), r)[1])(repeat(args))
    try:
        state0 = jax.device_put(tuple(run.packed), jax.devices()[0])
        data, hyper = run.device_inputs()

        def train(d, h):
            f, u = engine.train(type(run.packed)(*state0), d, h, 3, run.depth, cfg.batch_size, 1)[0]
            return np.asarray(f), np.asarray(u)

        first, again = train(data, hyper), train(data, hyper)
        assert used[-2:] == [False, True]  # remembered by the first call, reused by the second
        host = train(run.data, run.hyper)  # NumPy trees: put on the device, not remembered
        assert used[-1] is False and (id(run.data), id(run.hyper)) not in exp._repeats
        for a, b, c in zip(first, again, host):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        # other settings with the very same device data
        other = Run(engine, patch_config(cfg, {"learning_rate": 0.3}))
        hyper2 = jax.device_put(other.hyper, jax.devices()[0])
        faster = train(data, hyper2)
        assert used[-1] is False and not np.array_equal(faster[0], first[0])
        np.testing.assert_array_equal(faster[0], train(run.data, other.hyper)[0])
        assert train(data, hyper2)[0].tobytes() == faster[0].tobytes() and used[-1] is True
        assert train(data, hyper)[0].tobytes() == first[0].tobytes() and used[-1] is True
    finally:
        del exp._repeat


@pytest.mark.parametrize("setting", [{"batch_norm": True}, {"layer_norm": True}, {"dropout": 0.2}, {}])
def test_a_session_trains_with_the_program_its_settings_need(engine, setting):
    """One session's training programs hold one minibatch loop each; the engine picks the one
    with the norm and dropout code exactly when a setting needs it. A batch-norm session
    trained by the lean program would keep its running statistics at their start values."""
    # five units: a network too wide for the narrow programs (tests/core/test_narrow.py)
    run = Run(engine, parse_config({"n_points": 200, "seed": 2, "layers": [{"units": 5}], **setting}))
    assert run.full_loop == bool(setting) and not run.narrow
    picked = []
    programs = dict(engine._train)
    try:
        for key, exp in programs.items():
            engine._train[key] = (lambda k, e: lambda *a: (picked.append(k[1]), e(*a))[1])(key, exp)
        hist = run.train(3)
    finally:
        engine._train.update(programs)
    assert picked == [bool(setting)] and len(hist) == 3
    if setting.get("batch_norm"):
        assert np.abs(np.asarray(run.state.norm.mean[0, :4])).max() > 1e-3


def test_warmup_first_says_whether_the_rest_only_has_to_load(warm_engine, monkeypatch):
    """The warm engine exported every program, so the rest only loads; one program that was
    never exported (it would compile, for minutes) makes the answer no."""
    from core.engine import _Exportable

    assert warm_engine.warmup_first() is True
    stored = _Exportable.stored
    monkeypatch.setattr(_Exportable, "stored", lambda self, *a: False if "B1024" in self.name else stored(self, *a))
    assert warm_engine.warmup_first() is False


def test_packed_programs_equal_the_function_called_directly(engine):
    """A packed program (the batched calls) takes one buffer per dtype and slices its
    arguments out: the answers equal the plain function's for mixed dtypes and shapes."""
    import jax.numpy as jnp

    from core.engine import _Exportable

    def fn(a, b):
        return {"s": a["x"] * b[0] + a["n"], "m": jnp.where(b[1], a["x"].sum(), -1.0),
                "k": a["k"] ^ jnp.uint32(5), "e": a["empty"].sum() + b[2][1]}

    args = ({"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int32(4),
             "k": np.arange(3, dtype=np.uint32), "empty": np.zeros((0, 8), np.float32)},
            (np.float32(2.5), np.bool_(False), np.array([7, -3], np.int32)))
    want = jax.jit(fn)(*args)
    for packed in (True, False):
        got = _Exportable(f"test-pack-{packed}", jax.jit(fn), lambda a: jax.tree.structure(want), packed=packed)(*args)
        for key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
            assert np.asarray(got[key]).dtype == np.asarray(want[key]).dtype


def test_scalar_arguments_are_put_on_the_device_once_per_value_and_dtype(engine):
    from core.engine import _device_scalar

    assert _device_scalar("<i4", 3) is _device_scalar("<i4", 3)
    one, true = _device_scalar("<i4", 1), _device_scalar("|b1", True)
    assert one is not true and one.dtype == np.int32 and true.dtype == np.bool_ and int(one) == 1 and bool(true)
    # and a run's calls with changing scalars (epochs, depth) still see each value
    run = Run(engine, parse_config({"n_points": 100}))
    for n in (1, 3, 2):
        before = run.epoch
        run.train(n)
        assert run.epoch == before + n


@pytest.mark.parametrize("data", [
    {"layers": []},
    {"features": ["x2", "sin_x1", "x1x2"], "layers": [{"units": 3}, {"units": 5}]},
    {"dataset": "blobs", "classes": 4, "features": ALL_FEATURES, "batch_norm": True,
     "layers": [{"units": 8}] * 6},
    {"problem": "regression", "dataset": "plane", "features": ["x1_sq", "x1"], "layers": [{"units": 1}]},
])
def test_flat_weights_are_the_exported_weights_flattened(engine, data):
    # the frame's weights section: every layer's w (row-major), then every b
    run = Run(engine, parse_config(data))
    run.train(2)
    layers = run.weights()
    expected = np.concatenate([np.ravel(np.array(lw["w"], np.float32)) for lw in layers]
                              + [np.array(lw["b"], np.float32) for lw in layers])
    got = run.weights_flat()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_metrics_dict_reads_every_field_and_the_confusion_matrix(engine):
    run = Run(engine, parse_config({"dataset": "blobs", "classes": 3}))
    run.train(3)
    row = np.asarray(run.frame()[2])
    names = engine.metric_names
    m = run.metrics(row)
    for n, v in zip(names, row):
        if not n.startswith("confusion_") and n not in ("diverged", "stopped"):
            assert m[n] == pytest.approx(float(v), nan_ok=True), n
    conf = np.array(m["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == run.split.x_test.shape[0]
    assert conf[1, 2] == row[names.index("confusion_12")]


@pytest.mark.parametrize("layers", [[], [{"units": 3, "activation": "tanh"}], [{"units": 4}, {"units": 2}]])
def test_weights_of_features_not_in_use_do_not_reach_any_output(engine, layers):
    # grids and metrics (large inputs) mask the first weights, minibatches mask the inputs:
    # either way a weight left on a feature that is off must change nothing
    run = Run(engine, parse_config({"dataset": "circle", "features": ["x1", "x2"], "layers": layers}))
    run.train(2)
    before = [np.asarray(a) for a in run.frame()]
    p = run.state.params
    off = [i for i, f in enumerate(ALL_FEATURES) if f not in ("x1", "x2")] + [7]  # 7: the padding column
    if layers:
        w = np.array(p.w)
        w[0][off, :] = 3.0
        params = p._replace(w=w)
    else:
        w_out = np.array(p.w_out)
        w_out[off, :] = 3.0
        params = p._replace(w_out=w_out)
    run.state = run.state._replace(params=params)
    after = [np.asarray(a) for a in run.frame()]
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)
    hist = run.train(1)  # and training (minibatches) ignores them too
    assert np.isfinite(hist).any()


def test_call_signature_reads_shape_and_dtype_of_every_kind_of_argument():
    """The program a call picks is keyed by each argument's shape and dtype: device arrays,
    NumPy arrays and scalars by attribute, Python scalars as NumPy would convert them."""
    from core.engine import _signature

    got = _signature([np.zeros((2, 3), np.float32), jnp.ones(4, jnp.int32), np.int32(3), np.bool_(True)])
    assert got == (((2, 3), np.dtype("float32")), ((4,), np.dtype("int32")), ((), np.dtype("int32")),
                   ((), np.dtype("bool")))
    mixed = _signature([np.zeros(2, np.float32), 1.5, 7])
    assert mixed == (((2,), np.dtype("float32")), ((), np.asarray(1.5).dtype), ((), np.asarray(7).dtype))
    assert _signature([np.zeros(2, np.float32)]) != _signature([np.zeros(3, np.float32)])
    assert _signature([np.zeros(2, np.float32)]) != _signature([np.zeros(2, np.float64)])


def test_a_serving_server_loads_its_remaining_programs_one_at_a_time(engine):
    """Before ready, programs load side by side (their native work overlaps); once a server
    serves, it loads the rest one at a time so that a training session keeps its frame rate."""
    import threading
    import time

    def calls():
        state = {"now": 0, "most": 0}
        lock = threading.Lock()

        def call():
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
            return np.zeros(1)

        return [(f"p{i}", call, ()) for i in range(4)], state

    jobs, seen = calls()
    engine._load_side_by_side(jobs, background=True)
    assert seen["most"] == 1
    jobs, seen = calls()
    engine._load_side_by_side(jobs)
    assert seen["most"] > 1


def test_row_stacker_gives_what_stacking_the_arrays_gives(engine):
    """A part stacked from the sessions' flat rows equals, argument by argument (values,
    dtypes, shapes), the stacked data and ``stack_hyper``; the settings one batched call
    shares come from its first session."""
    from core.engine import RowStacker

    cfgs = batch_configs()
    runs = [Run(engine, c) for c in cfgs]
    runs = [runs[0], *runs, runs[1]]  # padding repeats sessions
    stacker = RowStacker(runs[0].data, runs[0].hyper)
    datas, hypers = stacker.stack([stacker.row(r.data, r.hyper) for r in runs], runs[0].hyper)
    want = (stack([r.data for r in runs]), stack_hyper([r.hyper for r in runs]))
    got_leaves, want_leaves = jax.tree.leaves((datas, hypers)), jax.tree.leaves(want)
    assert jax.tree.structure((datas, hypers)) == jax.tree.structure(want)
    for a, b in zip(got_leaves, want_leaves):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # the sessions differ, so rows really went to their places
    assert len({float(x) for x in np.asarray(hypers.opt.learning_rate)}) > 1 or \
        len({float(x) for x in np.asarray(hypers.reg.l2)}) > 1
