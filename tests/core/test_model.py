"""The padded MLP against a NumPy Keras-style MLP: activations, masks (padding never leaks into
the result), batch norm in inference mode, layer norm, initialisers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import ACTIVATIONS
from core.model import BN_EPS, LN_EPS, D, K, Arch, Norm, Params, forward, init_params

L = 3
FEATS = [0, 1, 4, 6]


def make(seed, units, acts, n_out, batch_norm=False, layer_norm=False):
    """Random padded parameters (padding filled with large garbage) and the architecture."""
    rng = np.random.default_rng(seed)
    params = Params(
        w=rng.normal(0, 0.7, (L, D, D)).astype(np.float32), b=rng.normal(0, 0.3, (L, D)).astype(np.float32),
        gamma=rng.uniform(0.5, 1.5, (L, D)).astype(np.float32), beta=rng.normal(0, 0.3, (L, D)).astype(np.float32),
        w_out=rng.normal(0, 0.7, (D, K)).astype(np.float32), b_out=rng.normal(0, 0.3, K).astype(np.float32),
    )
    # garbage in every slot that is not in use
    w, w_out, b = params.w.copy(), params.w_out.copy(), params.b.copy()
    prev = FEATS
    for j in range(L):
        u = units[j] if j < len(units) else 0
        mask = np.zeros((D, D), bool)
        mask[np.ix_(prev, range(u))] = True
        w[j][~mask] = 1e3
        b[j][u:] = -1e3
        prev = list(range(u)) if u else prev
    omask = np.zeros((D, K), bool)
    omask[np.ix_(prev, range(n_out))] = True
    w_out[~omask] = 1e3
    params = params._replace(w=w, b=b, w_out=w_out)
    feat = np.zeros(D, np.float32)
    feat[FEATS] = 1
    um = np.zeros((L, D), np.float32)
    for j, u in enumerate(units):
        um[j, :u] = 1
    act = np.array([ACTIVATIONS.index(a) for a in acts] + [0] * (L - len(acts)), np.int32)
    om = np.zeros(K, np.float32)
    om[:n_out] = 1
    arch = Arch(feat, um, act, om, np.bool_(batch_norm), np.bool_(layer_norm))
    return params, arch


def np_forward(params, arch, x, units, acts, n_out, np_act, norm=None, layer_norm=False):
    """Dense -> (batch norm with running stats | layer norm) -> activation, then the output Dense."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = x[:, FEATS].astype(np.float64)
    prev = FEATS
    for j, (u, a) in enumerate(zip(units, acts)):
        z = h @ p.w[j][np.ix_(prev, range(u))] + p.b[j][:u]
        if norm is not None:
            z = (z - norm.mean[j][:u]) / np.sqrt(norm.var[j][:u] + BN_EPS) * p.gamma[j][:u] + p.beta[j][:u]
        if layer_norm:
            mu, var = z.mean(1, keepdims=True), z.var(1, keepdims=True)
            z = (z - mu) / np.sqrt(var + LN_EPS) * p.gamma[j][:u] + p.beta[j][:u]
        h = np_act[a](z)
        prev = list(range(u))
    return h @ p.w_out[np.ix_(prev, range(n_out))] + p.b_out[:n_out]


def unit_norm(n_layers=L):
    return Norm(np.zeros((n_layers, D), np.float32), np.ones((n_layers, D), np.float32))


fwd = jax.jit(forward, static_argnames="depth")  # the Python-int depth, compiled (faster than op by op)
_forward_traced = jax.jit(lambda p, x, arch, depth, norm: forward(p, x, arch, depth, norm=norm)[0])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("rows", [50, 300], ids=["select", "switch"])  # <=128 rows select, more branch
def test_forward_matches_numpy(activation, rows, np_ref):
    units, acts, n_out = [5, 3], [activation, "tanh"], 1
    params, arch = make(1, units, acts, n_out)
    x = np.random.default_rng(2).uniform(-2, 2, (rows, D)).astype(np.float32)
    want = np_forward(params, arch, x, units, acts, n_out, np_ref.act)
    z, hidden, _ = fwd(params, jnp.asarray(x), arch, len(units), norm=unit_norm())
    np.testing.assert_allclose(np.asarray(z)[:, :n_out], want, rtol=1e-4, atol=1e-4)
    assert len(hidden) == 2
    # the same with depth traced: unused layer slots are skipped, not applied
    zt = _forward_traced(params, jnp.asarray(x), arch, jnp.int32(len(units)), unit_norm())
    np.testing.assert_allclose(np.asarray(zt)[:, :n_out], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("units, acts, n_out", [
    ([], [], 1), ([8], ["relu"], 3), ([2, 7, 1], ["elu", "sigmoid", "gelu"], 5), ([4, 4], ["silu", "leaky_relu"], 2),
])
def test_architectures_and_outputs(units, acts, n_out, np_ref):
    params, arch = make(3, units, acts, n_out)
    x = np.random.default_rng(4).uniform(-3, 3, (40, D)).astype(np.float32)
    want = np_forward(params, arch, x, units, acts, n_out, np_ref.act)
    z = _forward_traced(params, jnp.asarray(x), arch, jnp.int32(len(units)), unit_norm())
    np.testing.assert_allclose(np.asarray(z)[:, :n_out], want, rtol=1e-4, atol=1e-4)


def test_batch_norm_inference_uses_running_statistics(np_ref):
    units, acts = [6, 3], ["relu", "tanh"]
    params, arch = make(5, units, acts, 1, batch_norm=True)
    rng = np.random.default_rng(6)
    norm = Norm(rng.normal(0, 1, (L, D)).astype(np.float32), rng.uniform(0.2, 3, (L, D)).astype(np.float32))
    x = rng.uniform(-2, 2, (30, D)).astype(np.float32)
    z, _, _ = fwd(params, jnp.asarray(x), arch, 2, norm=norm)
    want = np_forward(params, arch, x, units, acts, 1, np_ref.act, norm=norm)
    np.testing.assert_allclose(np.asarray(z)[:, :1], want, rtol=1e-4, atol=1e-4)
    # and the running statistics matter: other ones give another output
    z2, _, _ = fwd(params, jnp.asarray(x), arch, 2, norm=unit_norm())
    assert np.abs(np.asarray(z2) - np.asarray(z))[:, 0].max() > 1e-2


def test_batch_norm_training_uses_batch_statistics():
    """With ``rows`` given (training), each unit is normalised by the mean and biased variance of
    the real rows of the batch; padding rows do not count."""
    units, acts = [5], ["linear"]
    params, arch = make(7, units, acts, 1, batch_norm=True)
    params = params._replace(gamma=np.ones((L, D), np.float32), beta=np.zeros((L, D), np.float32))
    x = np.random.default_rng(8).uniform(-2, 2, (16, D)).astype(np.float32)
    x[10:] = 1e3  # padding rows
    rows = np.r_[np.ones(10), np.zeros(6)].astype(np.float32)
    _, hidden, stats = fwd(params, jnp.asarray(x), arch, 1, norm=unit_norm(), rows=jnp.asarray(rows))
    zr = x[:10, FEATS].astype(np.float64) @ np.asarray(params.w[0], np.float64)[np.ix_(FEATS, range(5))] + params.b[0][:5]
    np.testing.assert_allclose(np.asarray(stats[0][0])[:5], zr.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stats[0][1])[:5], zr.var(0), rtol=1e-4, atol=1e-4)
    a = np.asarray(hidden[0])[:10, :5]
    np.testing.assert_allclose(a, (zr - zr.mean(0)) / np.sqrt(zr.var(0) + BN_EPS), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("units", [8, 5, 2])
def test_layer_norm_normalises_over_units_in_use(units, np_ref):
    params, arch = make(9, [units], ["linear"], 1, layer_norm=True)
    params = params._replace(w=params.w * 10, gamma=np.ones((L, D), np.float32), beta=np.zeros((L, D), np.float32))
    x = np.random.default_rng(10).uniform(-2, 2, (25, D)).astype(np.float32)
    _, hidden, _ = fwd(params, jnp.asarray(x), arch, 1, norm=unit_norm())
    a = np.asarray(hidden[0], np.float64)
    assert np.all(a[:, units:] == 0)
    live = a[:, :units]
    np.testing.assert_allclose(live.mean(1), 0, atol=1e-5)
    z = x[:, FEATS].astype(np.float64) @ np.asarray(params.w[0], np.float64)[np.ix_(FEATS, range(units))] + params.b[0][:units]
    var = z.var(1)
    np.testing.assert_allclose(live.var(1), var / (var + LN_EPS), rtol=1e-4)  # unit variance up to epsilon
    if units > 2:
        assert var.min() > 0.5  # so the check above is close to 1
    # gamma and beta scale and shift afterwards
    g, be = np.full((L, D), 2.0, np.float32), np.full((L, D), 0.5, np.float32)
    _, hidden2, _ = fwd(params._replace(gamma=g, beta=be), jnp.asarray(x), arch, 1, norm=unit_norm())
    np.testing.assert_allclose(np.asarray(hidden2[0])[:, :units], 2 * live + 0.5, rtol=1e-5, atol=1e-5)
    want = np_forward(params._replace(gamma=g, beta=be), arch, x, [units], ["linear"], 1, np_ref.act, layer_norm=True)
    z_out, _, _ = fwd(params._replace(gamma=g, beta=be), jnp.asarray(x), arch, 1, norm=unit_norm())
    np.testing.assert_allclose(np.asarray(z_out)[:, :1], want, rtol=1e-4, atol=1e-4)


def test_dropout_keep_mask_is_applied_to_hidden_outputs_only():
    """``keep`` multiplies what the next layer sees; the recorded activations are unmasked; the
    expectation over inverted-dropout masks of a linear net is the net without dropout."""
    units, acts = [8, 8], ["linear", "linear"]
    params, arch = make(11, units, acts, 1)
    x = np.random.default_rng(12).uniform(-1, 1, (4, D)).astype(np.float32)
    z0, h0, _ = fwd(params, jnp.asarray(x), arch, 2, norm=unit_norm())
    p = 0.5
    keep = (np.random.default_rng(13).uniform(size=(4000, 4, L, D)) >= p) / (1 - p)
    run = jax.jit(jax.vmap(lambda k: forward(params, jnp.asarray(x), arch, 2, norm=unit_norm(), keep=k)[0]))
    zs = np.asarray(run(jnp.asarray(keep, jnp.float32)))
    assert np.abs(zs[0] - np.asarray(z0)).max() > 1e-2  # one mask changes the output
    se = zs[:, :, 0].std(0) / np.sqrt(len(zs))
    assert np.all(np.abs(zs[:, :, 0].mean(0) - np.asarray(z0)[:, 0]) < 5 * se + 1e-3)
    _, h1, _ = fwd(params, jnp.asarray(x), arch, 2, norm=unit_norm(), keep=jnp.asarray(keep[0], jnp.float32))
    np.testing.assert_allclose(np.asarray(h1[0]), np.asarray(h0[0]), rtol=1e-6)


def test_initialisers():
    rng = np.random.default_rng(0)
    fan_in, fan_out = np.array([2, 8, 8, 8]), np.array([8, 8, 8, 1])
    p = init_params(rng, 3, "glorot_uniform", fan_in, fan_out)
    assert p.w.shape == (3, D, D) and p.w_out.shape == (D, K) and p.w.dtype == np.float32
    lim0, lim1 = np.sqrt(6 / (2 + 8)), np.sqrt(6 / 16)
    assert np.abs(p.w[0]).max() <= lim0 and np.abs(p.w[0]).max() > 0.9 * lim0
    assert np.abs(p.w[1]).max() <= lim1
    np.testing.assert_allclose(p.w[1].std(), lim1 / np.sqrt(3), rtol=0.2)  # uniform(-a, a) has std a/sqrt(3)
    assert np.all(p.b == 0) and np.all(p.b_out == 0) and np.all(p.gamma == 1) and np.all(p.beta == 0)
    p = init_params(np.random.default_rng(1), 6, "he_normal", np.full(7, 8), np.full(7, 8))
    w = p.w.ravel()
    np.testing.assert_allclose(w.std(), np.sqrt(2 / 8), rtol=0.1)  # Keras: truncated normal, std sqrt(2/fan_in)
    assert np.abs(w).max() <= 2 * np.sqrt(2 / 8) / 0.87962566 + 1e-6
    p = init_params(np.random.default_rng(2), 2, "uniform", np.full(3, 8), np.full(3, 8))
    assert np.abs(p.w).max() <= 0.5 and np.all(p.b == np.float32(0.1)) and np.all(p.b_out == np.float32(0.1))
    p = init_params(np.random.default_rng(3), 0, "zeros", np.array([2]), np.array([1]))
    assert p.w.shape == (0, D, D) and np.all(p.w_out == 0)


def _float32_range(lo: float, hi: float) -> np.ndarray:
    """Every float32 in [lo, hi) (lo, hi > 0)."""
    bits = np.arange(np.float32(lo).view(np.int32), np.float32(hi).view(np.int32), dtype=np.int32)
    return bits.view(np.float32)


def test_written_out_tanh_is_bit_identical_to_xla_tanh_with_the_same_derivatives():
    """``core.model.tanh`` (XLA's CPU rational approximation as plain multiply-adds, which
    draws a heatmap faster) against ``jnp.tanh`` itself: the same float32 bits on the CPU for
    every float32 around the clamp (7.8..8.2) and the identity cut-off (3e-4..5e-4), a dense
    sweep of -20..20, random values, zeros, infinities and NaN; inside a fused expression; and
    the same first and second derivatives. Against float64 NumPy it is within 3e-7."""
    from core.model import tanh

    rng = np.random.default_rng(7)
    x = np.concatenate([
        _float32_range(7.8, 8.2), -_float32_range(7.8, 8.2), _float32_range(3e-4, 5e-4), -_float32_range(3e-4, 5e-4),
        np.linspace(-20, 20, 400_001, dtype=np.float32), (rng.standard_normal(400_000) * 3).astype(np.float32),
        np.array([0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38, np.inf, -np.inf, np.nan], np.float32)])

    def same(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return bool(np.all((a.view(np.int32) == b.view(np.int32)) | (np.isnan(a) & np.isnan(b))))

    if jax.default_backend() == "cpu":
        assert same(jax.jit(tanh)(x), jax.jit(jnp.tanh)(x))
        assert same(jax.jit(lambda v: tanh(v * 1.3 + 0.1) * 2.0 - v)(x), jax.jit(lambda v: jnp.tanh(v * 1.3 + 0.1) * 2.0 - v)(x))
        d1 = lambda f: jax.jit(jax.vmap(jax.grad(lambda v: f(0.7 * v) * 3.0)))  # noqa: E731
        assert same(d1(tanh)(x), d1(jnp.tanh)(x))
        d2 = lambda f: jax.jit(jax.vmap(jax.grad(jax.grad(f))))  # noqa: E731
        assert same(d2(tanh)(x[:200_000]), d2(jnp.tanh)(x[:200_000]))
    finite = np.isfinite(x)
    np.testing.assert_allclose(np.asarray(jax.jit(tanh)(x[finite]), np.float64), np.tanh(x[finite].astype(np.float64)),
                               rtol=0, atol=3e-7)
    ends = np.asarray(jax.jit(tanh)(np.array([np.nan, np.inf, -np.inf, 9.0], np.float32)))
    assert np.isnan(ends[0]) and ends[1:].tolist() == [1.0, -1.0, 1.0]
