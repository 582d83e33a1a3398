"""Training: the lecture's worked examples, regularizers against hand-computed values, early
stopping, schedules as the engine applies them, and seeded learning-quality targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core.config import FEATURES, parse_config, patch_config
from core.engine import Run, class_weights
from core.model import Norm
from core.train import BN_MOMENTUM, Reg, _objective, padded_features, penalty


def col(run, name, hist):
    return hist[:, run.engine.metric_names.index(name)]


# --- the lecture ------------------------------------------------------------------------------


def lecture_config(**kw):
    """The lecture's 2-2-1 network: all weights 0.5 (biases 0, which the lecture leaves out),
    sigmoid hidden units, linear output; one example x = (1, 1) with target 0.5."""
    return parse_config({
        "problem": "regression", "dataset": "custom",
        "points": [{"x1": 1, "x2": 1, "label": 0.5, "subset": "train"}, {"x1": 0, "x2": 0, "label": 0, "subset": "test"}],
        "layers": [{"units": 2, "activation": "sigmoid"}], "output_activation": "linear", "loss": "mse",
        "weights": [{"w": [[0.5, 0.5], [0.5, 0.5]], "b": [0.0, 0.0]}, {"w": [[0.5], [0.5]], "b": [0.0]}],
        "optimizer": "sgd", "batch_size": 1, "shuffle": False, **kw,
    })


def test_lecture_backpropagation_gradients(engine):
    run = Run(engine, lecture_config())
    x = padded_features(jnp.array([[1.0, 1.0]]))
    y, rows = jnp.array([0.5]), jnp.array([1.0])
    norm = Norm(*(jnp.asarray(a) for a in run.state.norm))

    def objective(params):
        return _objective(params, x, y, rows, None, norm, run.hyper, run.depth)[0]

    grads = jax.grad(objective)(jax.tree.map(jnp.asarray, run.state.params))
    # Keras' mse has no 1/2: the lecture's E = 1/2 (y - y_hat)^2 has half its gradient.
    g_hidden = np.asarray(grads.w)[0][:2, :2] / 2
    g_out = np.asarray(grads.w_out)[:2, 0] / 2
    np.testing.assert_allclose(g_hidden, 0.0227, atol=5e-5)  # the lecture's 0.0227, 4 decimals
    # The lecture's 0.168861 multiplies rounded factors (0.231 * 0.731); exact: 0.1689174.
    np.testing.assert_allclose(g_out, 0.168861, atol=1e-4)
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(g_out, (2 * 0.5 * s - 0.5) * s, rtol=1e-5)
    np.testing.assert_allclose(g_hidden, (2 * 0.5 * s - 0.5) * 0.5 * s * (1 - s), rtol=1e-5)
    # the lecture's updated weights, w - 0.01 * grad
    np.testing.assert_allclose(0.5 - 0.01 * g_hidden, 0.499773, atol=1e-6)
    np.testing.assert_allclose(0.5 - 0.01 * g_out, 0.49831139, atol=1e-6)


def test_lecture_backpropagation_update_through_the_engine(engine):
    """One SGD step by the engine. Keras mse (no 1/2) with learning rate 0.005 is the lecture's
    step of 0.01 on E = 1/2 (y - y_hat)^2."""
    run = Run(engine, lecture_config(learning_rate=0.005))
    run.train(1)
    w = run.weights()
    np.testing.assert_allclose(w[0]["w"], [[0.499773] * 2] * 2, atol=1e-6)
    np.testing.assert_allclose(w[1]["w"], [[0.49831139]] * 2, atol=1e-6)


def test_lecture_perceptron(engine):
    """sigma(w0 + w . x) with w0 = -1, w = (1, -1): the lecture's sigma(-3) ~ 0.05, sigma(0) = 1/2,
    sigma(1) ~ 0.73 (the slide rounds it to 0.75)."""
    cfg = parse_config({"layers": [], "output_activation": "sigmoid", "weights": [{"w": [[1.0], [-1.0]], "b": [-1.0]}]})
    out = Run(engine, cfg).predict(np.array([[-1.0, 1.0], [-1.0, -2.0], [1.0, -1.0]]))
    assert out.shape == (3, 1)
    np.testing.assert_allclose(out[:, 0], 1 / (1 + np.exp(-np.array([-3.0, 0.0, 1.0]))), rtol=1e-6)
    np.testing.assert_allclose(out[:, 0], [0.047, 0.5, 0.731], atol=5e-4)


# --- regularizers -------------------------------------------------------------------------------


def active_weights(params, cfg):
    """The weight matrices in use, sliced out of the padded parameters by hand (no biases)."""
    rows = [FEATURES.index(f) for f in cfg.features]
    out = []
    for j, layer in enumerate(cfg.layers):
        out.append(np.asarray(params.w[j], np.float64)[np.ix_(rows, range(layer.units))])
        rows = list(range(layer.units))
    out.append(np.asarray(params.w_out, np.float64)[np.ix_(rows, range(cfg.n_outputs))])
    return out


@pytest.mark.parametrize("data", [
    {"features": ["x1", "x1x2", "sin_x2"], "layers": [{"units": 5}, {"units": 3}]},
    {"layers": []},
    {"dataset": "blobs", "classes": 4, "layers": [{"units": 8}] * 6,
     "features": ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]},
])
def test_penalty_counts_active_weights_only(engine, data):
    cfg = parse_config({**data, "l1": 0.3, "l2": 0.2, "init": "uniform"})
    run = Run(engine, cfg)
    ws = active_weights(run.state.params, cfg)
    want = 0.3 * sum(np.abs(w).sum() for w in ws) + 0.2 * sum((w * w).sum() for w in ws)
    reg = Reg(*(jnp.asarray(v) for v in run.hyper.reg))
    got = penalty(jax.tree.map(jnp.asarray, run.state.params), run.hyper.arch, run.depth, reg)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # the padded slots are not zero here, so counting them would be caught
    everything = sum(np.abs(np.asarray(a)).sum() for a in (run.state.params.w, run.state.params.w_out))
    assert everything > sum(np.abs(w).sum() for w in ws) + 1
    # the engine reports the same as reg_loss, from the exported weights
    exported = run.weights()
    want2 = sum(0.3 * np.abs(np.array(lw["w"])).sum() + 0.2 * (np.array(lw["w"]) ** 2).sum() for lw in exported)
    np.testing.assert_allclose(run.metrics()["reg_loss"], want2, rtol=1e-5)


@pytest.mark.parametrize("l1, l2", [(0.0, 0.1), (0.05, 0.0), (0.02, 0.3)])
def test_l1_l2_step(engine, l1, l2):
    """One full-batch SGD step with the penalty moves each active weight by an extra
    -lr * (l1 * sign(w) + 2 * l2 * w) (Keras: l1 * sum|w| + l2 * sum w^2); biases get none."""
    base = {"dataset": "xor", "n_points": 100, "layers": [{"units": 3}, {"units": 2}], "batch_size": 1000,
            "learning_rate": 0.1, "shuffle": False}
    plain, reg = Run(engine, parse_config(base)), Run(engine, parse_config({**base, "l1": l1, "l2": l2}))
    w0 = [(np.array(lw["w"]), np.array(lw["b"])) for lw in plain.weights()]
    assert all(np.array_equal(a["w"], b["w"]) for a, b in zip(plain.weights(), reg.weights()))
    plain.train(1)
    reg.train(1)
    for (w, b), p, r in zip(w0, plain.weights(), reg.weights()):
        np.testing.assert_allclose(np.array(r["w"]) - np.array(p["w"]), -0.1 * (l1 * np.sign(w) + 2 * l2 * w), atol=2e-6)
        np.testing.assert_allclose(np.array(r["b"]), np.array(p["b"]), atol=1e-7)


def gradient_probe(engine, **reg):
    """Scale of the training signal. A linear hidden unit h = x1 + x2 feeds an output weight of
    0, so one full-batch step changes only the output weight, by -lr * mean(2 (0 - t) h) with
    t = -1: the step is proportional to the mean of h as the training sees it."""
    rng = np.random.default_rng(0)
    pts = [{"x1": float(a), "x2": float(b), "label": -1, "subset": "train"} for a, b in rng.uniform(0.5, 5.5, (900, 2))]
    pts += [{"x1": float(a), "x2": float(b), "label": -1, "subset": "test"} for a, b in rng.uniform(0.5, 5.5, (20, 2))]
    cfg = parse_config({
        "problem": "regression", "dataset": "custom", "points": pts, "layers": [{"units": 1, "activation": "linear"}],
        "output_activation": "linear", "loss": "mse", "optimizer": "sgd", "learning_rate": 1e-4,
        "batch_size": 1000, "weights": [{"w": [[1.0], [1.0]], "b": [0.0]}, {"w": [[0.0]], "b": [0.0]}], **reg})
    run = Run(engine, cfg)
    before = run.metrics()
    run.train(1)
    x = run.split.x_train.astype(np.float64)
    return run, before, run.weights()[1]["w"][0][0], x


def test_dropout_is_inverted(engine):
    run, _, step, x = gradient_probe(engine)
    np.testing.assert_allclose(step, -1e-4 * 2 * (x[:, 0] + x[:, 1]).mean(), rtol=1e-4)  # by hand
    for p in (0.3, 0.5, 0.8):
        _, _, dropped, _ = gradient_probe(engine, dropout=p)
        assert dropped != step  # dropout changes training...
        # ...but keeps the expected scale (kept units x 1/(1-p)); without the 1/(1-p) the ratio
        # would be 1-p. Bound: 4 standard errors of a mean of 900 inverted-dropout masks.
        tol = 4 * np.sqrt(p / (1 - p)) / np.sqrt(len(x))
        assert 1 - tol < dropped / step < 1 + tol
        assert 1 - tol > 1 - p + 0.05


@pytest.mark.parametrize("reg, ratio", [
    ({"input_noise": 1.0}, (0.95, 1.05)),  # zero-mean noise: same expected h
    ({"augmentation": {"jitter": 1.0}}, (0.95, 1.05)),
    ({"augmentation": {"flip_x1": True}}, (0.4, 0.6)),  # E[h] = E[x2]: about half
    ({"augmentation": {"flip_x1": True, "flip_x2": True}}, (-0.1, 0.1)),  # E[h] = 0
])
def test_input_noise_and_augmentation_change_training(engine, reg, ratio):
    _, _, step, _ = gradient_probe(engine)
    _, _, noisy, _ = gradient_probe(engine, **reg)
    assert noisy != step
    assert ratio[0] < noisy / step < ratio[1]


@pytest.mark.parametrize("patch", [{"dropout": 0.5}, {"input_noise": 2.0}, {"augmentation": {"jitter": 1.0, "flip_x1": True}},
                                   {"l2": 0.0}])
def test_training_only_settings_leave_evaluation_alone(engine, patch):
    cfg = parse_config({"dataset": "moons", "layers": [{"units": 6, "activation": "relu"}, {"units": 4}], "l2": 0.01})
    run = Run(engine, cfg)
    run.train(3)
    before = run.metrics()
    out_before = run.frame()[0]
    run.set_config(patch_config(cfg, patch))
    after = run.metrics()
    for k in ("train_loss", "test_loss", "test_accuracy", "train_accuracy"):
        assert after[k] == before[k]
    np.testing.assert_array_equal(run.frame()[0], out_before)


def test_batch_norm_running_statistics(engine, np_ref):
    """Full batch, one update: the running mean/variance move 1 - momentum of the way from
    0/1 to the batch's mean and biased variance of z = x W + b at the starting weights;
    predictions then use them (inference mode)."""
    w0 = {"w": [[0.4, -0.3, 0.8], [0.2, 0.6, -0.5]], "b": [0.1, -0.2, 0.3]}
    cfg = parse_config({"dataset": "gauss", "n_points": 200, "layers": [{"units": 3, "activation": "tanh"}],
                        "batch_norm": True, "batch_size": 1000, "shuffle": False, "learning_rate": 0.05,
                        "weights": [w0, {"w": [[0.5], [-0.5], [1.0]], "b": [0.0]}]})
    run = Run(engine, cfg)
    run.train(1)
    x = run.split.x_train.astype(np.float64)
    z = x @ np.array(w0["w"]) + np.array(w0["b"])
    mean, var = np.asarray(run.state.norm.mean)[0, :3], np.asarray(run.state.norm.var)[0, :3]
    np.testing.assert_allclose(mean, (1 - BN_MOMENTUM) * z.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, BN_MOMENTUM + (1 - BN_MOMENTUM) * z.var(0), rtol=1e-4)
    run.train(4)
    mean, var = np.asarray(run.state.norm.mean)[0, :3], np.asarray(run.state.norm.var)[0, :3]
    w = run.weights()
    assert "gamma" in w[0] and "beta" in w[0]
    pts = np.random.default_rng(1).uniform(-6, 6, (64, 2))
    zz = pts @ np.array(w[0]["w"]) + np.array(w[0]["b"])
    h = np.tanh((zz - mean) / np.sqrt(var + 1e-3) * np.array(w[0]["gamma"]) + np.array(w[0]["beta"]))
    want = np_ref.sigmoid(h @ np.array(w[1]["w"]) + np.array(w[1]["b"]))
    np.testing.assert_allclose(run.predict(pts), want, rtol=1e-4, atol=1e-5)


def test_class_weights(engine):
    cfg = parse_config({"dataset": "gauss", "class_ratio": 0.2, "n_points": 300, "class_weight": "balanced"})
    run = Run(engine, cfg)
    y = run.split.y_train.astype(int)
    counts = np.bincount(y, minlength=2)
    np.testing.assert_allclose(class_weights(cfg, run.split)[:2], len(y) / (2 * counts), rtol=1e-6)  # sklearn/Keras
    cfg2 = parse_config({"dataset": "blobs", "classes": 3, "class_weight": [1.0, 2.0, 0.5]})
    np.testing.assert_allclose(class_weights(cfg2, Run(engine, cfg2).split)[:3], [1.0, 2.0, 0.5])
    # the training objective weights each row's loss, averaged over rows (Keras sample weights)
    x = padded_features(jnp.asarray(run.split.x_train[:16]))
    yy = jnp.asarray(run.split.y_train[:16])
    params = jax.tree.map(jnp.asarray, run.state.params)
    norm = Norm(*(jnp.asarray(a) for a in run.state.norm))
    got = _objective(params, x, yy, jnp.ones(16), None, norm, run.hyper, run.depth)[0]
    z = run.predict(run.split.x_train[:16])[:, 0].astype(np.float64)
    bce = -(np.asarray(yy) * np.log(z) + (1 - np.asarray(yy)) * np.log(1 - z))
    cw = len(y) / (2 * counts)
    np.testing.assert_allclose(float(got), (cw[np.asarray(yy).astype(int)] * bce).mean(), rtol=1e-4)


def test_early_stopping_restores_best_weights(engine):
    """Ten training points and a big net: the test loss falls, then rises. Early stopping fires
    ``patience`` epochs after the best one and puts that epoch's weights back."""
    patience = 10
    cfg = parse_config({"dataset": "gauss", "noise": 0.5, "n_points": 200, "train_ratio": 0.1,
                        "layers": [{"units": 8, "activation": "relu"}] * 4, "optimizer": "adam", "learning_rate": 0.03,
                        "batch_size": 20, "early_stopping_patience": patience})
    run = Run(engine, cfg)
    losses, weights = [], []
    for _ in range(300):
        hist = run.train(1)
        if len(hist) == 0:
            break
        losses.append(float(col(run, "test_loss", hist)[0]))
        weights.append(run.weights())
        if col(run, "stopped", hist)[0]:
            break
    else:
        pytest.fail("early stopping never fired")
    best = int(np.argmin(losses))  # 0-based; epoch best + 1
    assert len(losses) == best + 1 + patience
    assert min(losses) < losses[-1]  # it did overfit
    final = run.metrics()
    assert final["stopped"] and final["best_epoch"] == best + 1
    np.testing.assert_allclose(final["test_loss"], losses[best], rtol=1e-6)
    for now, then in zip(run.weights(), weights[best]):
        np.testing.assert_array_equal(now["w"], then["w"])
        np.testing.assert_array_equal(now["b"], then["b"])
    epoch = run.epoch
    assert len(run.train(5)) == 0 and run.epoch == epoch  # a stopped run stays stopped
    # raising the patience lets it train again
    run.set_config(patch_config(cfg, {"early_stopping_patience": 1000}))
    assert len(run.train(3)) == 3


@pytest.mark.parametrize("schedule", ["step", "exponential", "cosine", "warmup_cosine"])
def test_engine_applies_the_schedule_per_epoch(engine, schedule):
    cfg = parse_config({"lr_schedule": schedule, "learning_rate": 0.1, "decay_epochs": 4, "decay_rate": 0.5,
                        "warmup_epochs": 3, "cosine_alpha": 0.1, "n_points": 100})
    run = Run(engine, cfg)
    hist = run.train(12)
    ref = {"step": optax.exponential_decay(0.1, 4, 0.5, staircase=True),
           "exponential": optax.exponential_decay(0.1, 4, 0.5),
           "cosine": optax.cosine_decay_schedule(0.1, 4, 0.1),
           "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, 0.1, 3, 7, 0.01)}[schedule]
    epochs = col(run, "epoch", hist).astype(int)
    assert epochs.tolist() == list(range(1, 13))
    np.testing.assert_allclose(col(run, "learning_rate", hist), [float(ref(e - 1)) for e in epochs], rtol=1e-5, atol=1e-9)


def test_warmup_at_zero_learning_rate_does_not_move_weights(engine):
    run = Run(engine, parse_config({"lr_schedule": "warmup_cosine", "warmup_epochs": 5, "n_points": 100}))
    w = run.weights()
    run.train(1)
    assert run.weights() == w
    run.train(1)
    assert run.weights() != w


# --- learning quality ----------------------------------------------------------------------------


def final_metrics(engine, data, epochs):
    run = Run(engine, parse_config(data))
    run.train(epochs, every=epochs)
    return run.metrics()


@pytest.mark.slow
def test_circle_with_playground_defaults(engine):
    assert final_metrics(engine, {}, 100)["test_accuracy"] >= 0.99


@pytest.mark.slow
def test_spiral_from_x1_x2_only(engine):
    """6 x 8 tanh on x1, x2 with Adam. At batch 10 a rate of 0.01 or more oscillates (so does
    the same net in plain optax); 0.003 settles."""
    data = {"dataset": "spiral", "features": ["x1", "x2"], "layers": [{"units": 8, "activation": "tanh"}] * 6,
            "optimizer": "adam", "learning_rate": 0.003, "batch_size": 10, "noise": 0.0}
    assert final_metrics(engine, data, 400)["test_accuracy"] >= 0.95


def test_three_blobs(engine):
    m = final_metrics(engine, {"dataset": "blobs", "classes": 3}, 100)
    assert m["test_accuracy"] >= 0.95
    assert len(m["confusion"]) == 3 and sum(map(sum, m["confusion"])) == 250


def test_plane_regression(engine):
    m = final_metrics(engine, {"problem": "regression", "dataset": "plane"}, 100)
    assert m["mse"] <= 0.01 and m["r2"] > 0.9


# --- shuffling ------------------------------------------------------------------------------


@pytest.mark.parametrize("n, N", [(1, 16), (10, 16), (16, 16), (250, 1024), (1000, 1024), (700, 2048)])
def test_shuffled_is_a_permutation_of_the_real_rows_then_the_padding(n, N):
    from core.train import shuffled

    orders = [np.asarray(shuffled(jax.random.PRNGKey(k), jnp.int32(n), N)) for k in range(3)]
    for order in orders:
        assert sorted(order[:n]) == list(range(n))  # every real row exactly once
        assert list(order[n:]) == list(range(n, N))  # padding stays behind, in order
    if n >= 10:
        assert not np.array_equal(orders[0], orders[1])  # a new order per key


def test_shuffled_orders_are_uniform():
    """5 rows, 3,000 keys: every row lands in every position ~600 times (chi-square, 16 dof,
    p = 0.001 bound 39.3), and all 120 orders occur."""
    from core.train import shuffled

    keys = jax.random.split(jax.random.PRNGKey(1), 3000)
    orders = np.asarray(jax.vmap(lambda k: shuffled(k, jnp.int32(5), 16))(keys))[:, :5]
    counts = np.zeros((5, 5))
    for pos in range(5):
        counts[:, pos] = np.bincount(orders[:, pos], minlength=5)
    chi2 = ((counts - 600) ** 2 / 600).sum()
    assert chi2 < 39.3, counts
    assert len({tuple(o) for o in orders}) == 120


def test_a_shuffled_epoch_is_sgd_over_the_points_in_the_shuffled_order(engine):
    """Linear regression, batch 1: the engine's epoch equals NumPy SGD (Keras mse, no 1/2)
    visiting the training points in ``shuffled``'s order for this epoch's key, and differs from
    the stored order."""
    from core.train import shuffled

    pts = [(0.5, -1.0, 0.3), (-2.0, 1.5, -0.4), (1.0, 2.0, 0.9), (-0.5, -0.5, 0.1), (2.5, 0.0, -0.7), (0.0, 1.0, 0.5)]
    cfg = parse_config({
        "problem": "regression", "dataset": "custom", "features": ["x1", "x2"], "layers": [],
        "output_activation": "linear", "loss": "mse", "optimizer": "sgd", "learning_rate": 0.05,
        "batch_size": 1, "shuffle": True, "seed": 4,
        "points": [{"x1": a, "x2": b, "label": y, "subset": "train"} for a, b, y in pts]
        + [{"x1": 0, "x2": 0, "label": 0, "subset": "test"}],
        "weights": [{"w": [[0.2], [-0.1]], "b": [0.05]}],
    })
    run = Run(engine, cfg)
    n = int(run.hyper.task.n_train)
    assert n == len(pts)
    x, y = np.asarray(run.data.x_train, np.float64)[:n], np.asarray(run.data.y_train, np.float64)[:n]
    k_perm = jax.random.split(jnp.asarray(run.state.key), 4)[1]
    order = np.asarray(shuffled(k_perm, jnp.int32(n), run.data.x_train.shape[0]))[:n]
    assert list(order) != list(range(n))

    def sgd(order):
        w, b = np.array([0.2, -0.1]), 0.05
        for i in order:
            err = x[i] @ w + b - y[i]
            w, b = w - 0.05 * 2 * err * x[i], b - 0.05 * 2 * err
        return w, b

    run.train(1)
    got = run.weights()[0]
    w, b = sgd(order)
    np.testing.assert_allclose(np.ravel(got["w"]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["b"], [b], rtol=1e-5, atol=1e-6)
    w_stored, _ = sgd(range(n))
    assert np.abs(w_stored - w).max() > 1e-4  # the order matters: the test can tell


@pytest.mark.parametrize("rows", [1, 16, 128, 129])
def test_fused_minibatch_product_equals_numpy(rows):
    """``matmul(fused=True)`` (a minibatch's multiply-and-sum) equals NumPy's product; above
    128 rows it is the dot either way."""
    from core.model import matmul

    rng = np.random.default_rng(rows)
    h, w = rng.normal(size=(rows, 8)).astype(np.float32), rng.normal(size=(8, 5)).astype(np.float32)
    want = h.astype(np.float64) @ w.astype(np.float64)
    for fused in (True, False):
        np.testing.assert_allclose(np.asarray(matmul(jnp.asarray(h), jnp.asarray(w), fused)), want, rtol=1e-5, atol=1e-5)


def test_fused_objective_gradients_equal_the_dot_ones(engine):
    """One session's training uses the fused products, a batched call the dot: both give the
    same loss and gradients for a deep net with every layer in use."""
    cfg = parse_config({"dataset": "spiral", "n_points": 100, "features": ["x1", "x2", "x1_sq", "sin_x1"],
                        "layers": [{"units": 8, "activation": "tanh"}, {"units": 5, "activation": "relu"},
                                   {"units": 3, "activation": "gelu"}], "l2": 0.001})
    run = Run(engine, cfg)
    x = padded_features(jnp.asarray(run.data.x_train[:16]))
    y, rows = jnp.asarray(run.data.y_train[:16]), jnp.ones(16)
    norm = Norm(*(jnp.asarray(a) for a in run.state.norm))
    params = jax.tree.map(jnp.asarray, run.state.params)
    out = {}
    for fused in (True, False):
        out[fused] = jax.value_and_grad(
            lambda p: _objective(p, x, y, rows, None, norm, run.hyper, run.depth, fused)[0])(params)
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(out[True][1]), jax.tree.leaves(out[False][1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(out[True][1].w).sum()) > 0


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_lean_loop_equals_the_loop_with_dropout_and_norm_code(engine, optimizer):
    """Without dropout and norms an epoch runs a minibatch loop that leaves their code out.
    Forcing the other loop (dropout on at rate 0: every keep mask is 1, the norm
    conditionals take their identity branches) must train to the same weights, optimizer
    state and losses, single and batched."""
    from core.engine import stack_hyper

    cfg = parse_config({"dataset": "spiral", "n_points": 200, "features": ["x1", "x2", "x1x2"],
                        "layers": [{"units": 6, "activation": "tanh"}, {"units": 5, "activation": "relu"},
                                   {"units": 3, "activation": "elu"}], "l2": 0.003, "l1": 0.001,
                        "optimizer": optimizer, "learning_rate": 0.02, "batch_size": 8})
    run = Run(engine, cfg)
    data, hyper = run.device_inputs()
    assert not bool(hyper.flags.dropout) and not bool(hyper.arch.batch_norm) and not bool(hyper.arch.layer_norm)
    full = hyper._replace(flags=hyper.flags._replace(dropout=np.bool_(True)))
    out = {}
    for name, h in (("lean", hyper), ("full", full)):
        state, hist, _ = engine.train(run.state, data, h, 3, run.depth, cfg.batch_size, 1)
        out[name] = (jax.tree.map(np.asarray, (state.params, state.opt_state)), np.asarray(hist))
    for a, b in zip(jax.tree.leaves(out["lean"][0]), jax.tree.leaves(out["full"][0])):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(out["lean"][1][:, 1:3], out["full"][1][:, 1:3], rtol=1e-5)
    moved = np.abs(out["lean"][0][0].w - np.asarray(run.state.params.w)).max()
    assert moved > 1e-3  # it trained

    stack = lambda t: jax.tree.map(lambda a: np.stack([np.asarray(a)] * 3), t)  # noqa: E731
    cap = engine.bucket(cfg.batch_size)
    got = {}
    for name, h in (("lean", hyper), ("full", full)):
        states, hist, _ = engine.train_many(stack(run.state), stack(run.data), stack_hyper(h, 3), 3, run.depth, cap, 1)
        got[name] = np.asarray(states.params.w)
    np.testing.assert_allclose(got["lean"], got["full"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got["lean"][0], out["lean"][0][0].w, rtol=1e-4, atol=1e-5)


# --- every optimizer through the engine's epoch, against optax applied directly ---------------

_PTS = [(0.5, -1.0, 0.3), (-2.0, 1.5, -0.4), (1.0, 2.0, 0.9), (-0.5, -0.5, 0.1), (2.5, 0.0, -0.7),
        (0.0, 1.0, 0.5), (1.5, -1.5, -0.2)]
_W1 = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.25]])
_B1 = np.array([0.05, -0.1, 0.0])
_W2 = np.array([[0.6], [-0.35], [0.2]])
_B2 = np.array([0.1])
_OPT_KW = dict(learning_rate=0.05, momentum=0.7, rho=0.8, beta_1=0.85, beta_2=0.95, epsilon=1e-4)


def _optax_for(name):
    kw = _OPT_KW
    lr = kw["learning_rate"]
    return {"sgd": optax.sgd(lr), "momentum": optax.sgd(lr, momentum=kw["momentum"]),
            "rmsprop": optax.rmsprop(lr, decay=kw["rho"], eps=kw["epsilon"]),
            "adam": optax.adam(lr, b1=kw["beta_1"], b2=kw["beta_2"], eps=kw["epsilon"])}[name]


def _small_regression(optimizer):
    return parse_config({
        "problem": "regression", "dataset": "custom", "features": ["x1", "x2"],
        "layers": [{"units": 3, "activation": "tanh"}], "output_activation": "linear", "loss": "mse",
        "optimizer": optimizer, **_OPT_KW, "batch_size": 3, "shuffle": False,
        "points": [{"x1": a, "x2": b, "label": y, "subset": "train"} for a, b, y in _PTS]
        + [{"x1": 0, "x2": 0, "label": 0, "subset": "test"}],
        "weights": [{"w": _W1.tolist(), "b": _B1.tolist()}, {"w": _W2.tolist(), "b": _B2.tolist()}],
    })


def _reference_epochs(schedule, resume=False):
    """The 2-3-1 tanh net in plain JAX at its real shapes, minibatches of 3 in stored order
    (the last one holds 1 point), Keras' mse; ``schedule``: [(optimizer, epochs), ...]. A new
    optimizer starts from a fresh optax state (``resume``: from the one it left off with)."""
    x = jnp.asarray([p[:2] for p in _PTS], jnp.float32)
    y = jnp.asarray([p[2] for p in _PTS], jnp.float32)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in (("w1", _W1), ("b1", _B1), ("w2", _W2), ("b2", _B2))}
    states = {}

    def loss(p, xb, yb):
        out = (jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])[:, 0]
        return jnp.mean((out - yb) ** 2)

    for name, epochs in schedule:
        tx = _optax_for(name)
        state = states.get(name) if resume and name in states else tx.init(params)
        for _ in range(epochs):
            for s in range(0, len(_PTS), 3):
                g = jax.grad(loss)(params, x[s:s + 3], y[s:s + 3])
                upd, state = tx.update(g, state, params)
                params = optax.apply_updates(params, upd)
        states[name] = state
    return params


def _engine_weights(run):
    (h, o) = run.weights()
    return {"w1": np.asarray(h["w"]), "b1": np.asarray(h["b"]), "w2": np.asarray(o["w"]), "b2": np.asarray(o["b"])}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_each_optimizer_trains_like_optax_applied_directly(engine, optimizer):
    """The padded engine's epoch, one session (a real branch per optimizer) and batched (every
    optimizer steps, the chosen one's result is kept), equals optax on the unpadded net."""
    from core.engine import stack_hyper

    cfg = _small_regression(optimizer)
    want = _reference_epochs([(optimizer, 4)])
    run = Run(engine, cfg)
    run.train(4)
    got = _engine_weights(run)
    for k in want:
        np.testing.assert_allclose(np.ravel(got[k]), np.ravel(want[k]), rtol=2e-5, atol=2e-6, err_msg=k)
    assert np.abs(np.ravel(want["w1"]) - _W1.ravel()).max() > 1e-3  # it trained

    run = Run(engine, cfg)
    data, hyper = run.device_inputs()
    stack = lambda t: jax.tree.map(lambda a: np.stack([np.asarray(a)] * 2), t)  # noqa: E731
    states, _, _ = engine.train_many(stack(run.state), stack(run.data), stack_hyper(hyper, 2), 4, run.depth,
                                     engine.bucket(cfg.batch_size), 4)
    w = np.asarray(states.params.w)[:, 0, :2, :3]
    np.testing.assert_allclose(w[0], want["w1"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(w[1], want["w1"], rtol=2e-5, atol=2e-6)


def test_switching_optimizer_mid_run_continues_from_the_weights_with_a_fresh_state(engine):
    """adam for 2 epochs, rmsprop for 1, adam again for 2, switched live between calls: each
    switch keeps the weights and starts the new optimizer from a fresh optax state."""
    run = Run(engine, _small_regression("adam"))
    run.train(2)
    for name, epochs in (("rmsprop", 1), ("adam", 2)):
        run.set_config(patch_config(run.cfg, {"optimizer": name}))
        run.train(epochs)
    schedule = [("adam", 2), ("rmsprop", 1), ("adam", 2)]
    want = _reference_epochs(schedule)
    got = _engine_weights(run)
    for k in want:
        np.testing.assert_allclose(np.ravel(got[k]), np.ravel(want[k]), rtol=2e-5, atol=2e-6, err_msg=k)
    resumed = _reference_epochs(schedule, resume=True)  # the test can tell the two apart
    assert np.abs(np.ravel(resumed["w1"]) - np.ravel(want["w1"])).max() > 1e-4


def test_small_data_sets_measure_and_shuffle_only_their_rows(engine):
    """``Flags.small`` (train and test rows each within SMALL_ROWS): the metrics measured over
    the first SMALL_ROWS rows equal those over all N padded rows; a batched shuffle of a small
    set sorts SMALL_ROWS keys, the same order a session alone gets for 250 rows; the flag is
    part of the group and frame keys."""
    from core.engine import frame_key, group_key
    from core.train import SMALL_ROWS, _metrics, shuffled, with_features

    small = Run(engine, parse_config({"dataset": "spiral", "n_points": 500, "seed": 4}))
    large = Run(engine, parse_config({"dataset": "spiral", "n_points": 1000, "seed": 4}))
    assert bool(small.hyper.flags.small) and not bool(large.hyper.flags.small)
    assert len(small.split.y_train) <= SMALL_ROWS < len(large.split.y_train)
    assert group_key(small.hyper, 2) != group_key(large.hyper, 2)
    assert frame_key(small.hyper, 2) != frame_key(large.hyper, 2)

    small.train(5)
    data = with_features(jax.tree.map(jnp.asarray, small.data))
    state = jax.tree.map(jnp.asarray, small.state)
    both = [_metrics(state, data, small.hyper._replace(flags=small.hyper.flags._replace(small=np.bool_(f))),
                     small.depth) for f in (True, False)]
    assert data.x_train.shape[0] > SMALL_ROWS
    for k in both[0]:
        np.testing.assert_allclose(both[0][k], both[1][k], rtol=1e-5, atol=1e-6, err_msg=k)

    key, n, N = jax.random.PRNGKey(7), 250, data.x_train.shape[0]
    alone = np.asarray(shuffled(key, n, N))
    crowd = np.asarray(shuffled(key, n, N, (SMALL_ROWS,)))
    np.testing.assert_array_equal(alone, crowd)
    assert sorted(alone[:n]) == list(range(n)) and list(alone[n:]) == list(range(n, N))
