"""Losses: values against NumPy formulas, and gradients of the padded forward pass + per-row loss
against central finite differences in float64, for every hidden activation and every loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from core.config import ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
from core.losses import outputs, per_row_loss, positive_prob, predicted_class
from core.model import D, K, Arch, Norm, Params, forward

L = 2  # padded hidden slots in these tests
N = 12  # rows
FEATS = [0, 2, 5]  # features in use
UNITS = [5, 3]  # units in use per hidden layer

# (name, output activation, loss, outputs in use, classification)
SETUPS = [
    ("mse-linear", "linear", "mse", 1, False),
    ("mae-linear", "linear", "mae", 1, False),
    ("bce-sigmoid", "sigmoid", "binary_crossentropy", 1, True),
    ("cce-softmax", "softmax", "categorical_crossentropy", 3, True),
    ("mse-tanh", "tanh", "mse", 1, True),
]


def _arch(act, n_out, dtype) -> Arch:
    feat = np.zeros(D)
    feat[FEATS] = 1
    units = np.zeros((L, D))
    for j, u in enumerate(UNITS):
        units[j, :u] = 1
    out = (jnp.arange(K) < n_out).astype(dtype)  # n_out may be traced
    return Arch(feat_mask=jnp.asarray(feat, dtype), unit_mask=jnp.asarray(units, dtype),
                act=jnp.full((L,), act, jnp.int32), out_mask=out,
                batch_norm=jnp.asarray(False), layer_norm=jnp.asarray(False))


def _problem(seed: int, n_out: int, cls: bool, dtype):
    rng = np.random.default_rng(seed)
    params = Params(
        w=rng.normal(0, 0.8, (L, D, D)), b=rng.normal(0, 0.3, (L, D)),
        gamma=np.ones((L, D)), beta=np.zeros((L, D)),
        w_out=rng.normal(0, 0.8, (D, K)), b_out=rng.normal(0, 0.3, (K,)),
    )
    x = rng.uniform(-2, 2, (N, D))
    if cls:
        y = rng.integers(0, max(n_out, 2), N).astype(float)
    else:
        y = rng.uniform(-1, 1, N)
    to = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return jax.tree.map(to, params), to(x), to(y)


def _loss(params, x, y, act, out_act, loss, n_out, cls):
    arch = _arch(act, n_out, x.dtype)
    norm = Norm(jnp.zeros((L, D), x.dtype), jnp.ones((L, D), x.dtype))
    z, hidden, _ = forward(params, x, arch, L, norm=norm)
    return per_row_loss(z, y, out_act, loss, arch.out_mask, cls).mean(), (z, hidden)


@jax.jit
def _grad_and_fd(params, x, y, act, out_act, loss, n_out, cls, h):
    """jax.grad of the mean loss, and central differences of the same function along every
    parameter coordinate (padded ones included: they must have zero gradient)."""
    flat, unravel = ravel_pytree(params)

    def f(v):
        return _loss(unravel(v), x, y, act, out_act, loss, n_out, cls)[0]

    g = jax.grad(f)(flat)
    eye = jnp.eye(flat.size, dtype=flat.dtype) * h
    fd = (jax.vmap(f)(flat + eye) - jax.vmap(f)(flat - eye)) / (2 * h)
    value, (z, hidden) = _loss(params, x, y, act, out_act, loss, n_out, cls)
    return g, fd, z, jnp.stack([hh for hh in hidden])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name, out_act, loss, n_out, cls", SETUPS, ids=[s[0] for s in SETUPS])
def test_gradient_matches_finite_differences(activation, name, out_act, loss, n_out, cls, np_ref):
    with jax.enable_x64(True):
        act = ACTIVATIONS.index(activation)
        # Pick a draw whose pre-activations and MAE residuals stay away from kinks.
        for seed in range(50):
            params, x, y = _problem(seed, n_out, cls, jnp.float64)
            g, fd, z, _ = _grad_and_fd(params, x, y, act, OUTPUT_ACTIVATIONS.index(out_act), LOSSES.index(loss),
                                       n_out, cls, 1e-6)
            pre = _preactivations(params, x, np_ref.act[activation])
            resid = np.abs(np.asarray(z[:, 0]) - np.asarray(y))
            if np.abs(pre).min() > 1e-3 and resid.min() > 1e-3:
                break
        else:
            pytest.fail("no kink-free draw")
        g, fd = np.asarray(g), np.asarray(fd)
        assert g.dtype == np.float64
        assert np.abs(g).max() > 1e-3  # a real signal, not all zeros
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
        # Parameters of units, features and outputs not in use get no gradient at all.
        grads = ravel_pytree(params)[1](jnp.asarray(g))
        assert np.all(np.asarray(grads.w)[0][[i for i in range(D) if i not in FEATS]] == 0)
        assert np.all(np.asarray(grads.w)[0][:, UNITS[0]:] == 0)
        assert np.all(np.asarray(grads.w)[1][UNITS[0]:] == 0) and np.all(np.asarray(grads.w)[1][:, UNITS[1]:] == 0)
        assert np.all(np.asarray(grads.w_out)[UNITS[1]:] == 0) and np.all(np.asarray(grads.w_out)[:, n_out:] == 0)


def _preactivations(params, x, np_act):
    """Hidden pre-activations of the units in use (NumPy, float64)."""
    p = jax.tree.map(np.asarray, params)
    h = np.asarray(x)[:, FEATS]
    out = []
    for j, u in enumerate(UNITS):
        rows = FEATS if j == 0 else list(range(UNITS[j - 1]))
        z = h @ p.w[j][rows, :u] + p.b[j][:u]
        out.append(z.ravel())
        h = np_act(z)
    return np.concatenate(out)


# --- loss values against NumPy ------------------------------------------------------------------


def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_loss(z, y, out_act, loss, n_out, cls):
    """Keras' definitions: mse/mae averaged over the outputs in use, binary crossentropy of the
    sigmoid output, categorical crossentropy of the softmax over the classes in use; a tanh
    classifier's targets are -1/+1."""
    z = z[:, :n_out]
    if out_act == "softmax":
        e = np.exp(z - z.max(1, keepdims=True))
        out = e / e.sum(1, keepdims=True)
        t = np.eye(n_out)[y.astype(int)]
    else:
        out = {"sigmoid": _np_sigmoid, "tanh": np.tanh, "linear": lambda v: v}[out_act](z)
        t = (2 * y - 1 if (cls and out_act == "tanh") else y)[:, None]
    if loss == "mse":
        return ((out - t) ** 2).mean(1)
    if loss == "mae":
        return np.abs(out - t).mean(1)
    if loss == "binary_crossentropy":
        p = out[:, 0]
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return -np.log(out[np.arange(len(y)), y.astype(int)])


VALUE_CASES = SETUPS + [
    ("mse-sigmoid", "sigmoid", "mse", 1, True),
    ("mae-sigmoid", "sigmoid", "mae", 1, True),
    ("mse-softmax", "softmax", "mse", 4, True),
    ("mae-tanh-regression", "tanh", "mae", 1, False),
    ("cce-softmax-5", "softmax", "categorical_crossentropy", 5, True),
    ("cce-softmax-2", "softmax", "categorical_crossentropy", 2, True),
]


_per_row_loss = jax.jit(per_row_loss)


@pytest.mark.parametrize("name, out_act, loss, n_out, cls", VALUE_CASES, ids=[s[0] for s in VALUE_CASES])
def test_loss_values(name, out_act, loss, n_out, cls):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (20, K)).astype(np.float32)
    y = (rng.integers(0, max(n_out, 2), 20) if cls else rng.uniform(-1, 1, 20)).astype(np.float32)
    mask = np.zeros(K, np.float32)
    mask[:n_out] = 1
    got = _per_row_loss(jnp.asarray(z), jnp.asarray(y), jnp.int32(OUTPUT_ACTIVATIONS.index(out_act)),
                       jnp.int32(LOSSES.index(loss)), jnp.asarray(mask), jnp.asarray(cls))
    np.testing.assert_allclose(np.asarray(got), np_loss(z.astype(np.float64), y.astype(np.float64), out_act, loss,
                                                        n_out, cls), rtol=2e-5, atol=1e-6)


def test_outputs_predictions_and_scores():
    z = np.array([[2.0, -1.0, 0.5, 9.0, 9.0], [-0.5, 3.0, 0.0, 9.0, 9.0]], np.float32)
    mask = np.array([1, 1, 1, 0, 0], np.float32)
    idx = OUTPUT_ACTIVATIONS.index
    soft = np.asarray(outputs(jnp.asarray(z), jnp.int32(idx("softmax")), jnp.asarray(mask)))
    e = np.exp(z[:, :3])
    np.testing.assert_allclose(soft[:, :3], e / e.sum(1, keepdims=True), rtol=1e-6)
    assert np.all(soft[:, 3:] == 0)  # classes not in use get no probability
    assert predicted_class(jnp.asarray(soft), jnp.int32(idx("softmax"))).tolist() == [0, 1]
    np.testing.assert_allclose(positive_prob(jnp.asarray(soft), jnp.int32(idx("softmax"))), soft.max(1), rtol=1e-6)
    one = np.array([1, 0, 0, 0, 0], np.float32)
    sig = np.asarray(outputs(jnp.asarray(z), jnp.int32(idx("sigmoid")), jnp.asarray(one)))
    np.testing.assert_allclose(sig[:, 0], _np_sigmoid(z[:, 0]), rtol=1e-6)
    assert predicted_class(jnp.asarray(sig), jnp.int32(idx("sigmoid"))).tolist() == [1, 0]
    th = np.asarray(outputs(jnp.asarray(z), jnp.int32(idx("tanh")), jnp.asarray(one)))
    np.testing.assert_allclose(th[:, 0], np.tanh(z[:, 0]), rtol=1e-6)
    assert predicted_class(jnp.asarray(th), jnp.int32(idx("tanh"))).tolist() == [1, 0]
    np.testing.assert_allclose(positive_prob(jnp.asarray(th), jnp.int32(idx("tanh"))), (np.tanh(z[:, 0]) + 1) / 2,
                               rtol=1e-6)
