"""A padded MLP: one traced shape for every architecture.

Hidden layers are (D, D) matrices with D = 8; the network has ``L`` (max depth) of them and
an output layer (D, K) with K = 5 (max classes). Which features, units and classes are in
use is data (0/1 masks); which activation a layer uses is an integer index. The number of
hidden layers in use, ``depth``, is the only thing that selects code, and it selects one of
``L + 1`` branches compiled into the same executable, so changing it never recompiles.

The code takes its widths from the arrays it is given: a second set of programs, padded to
(3, 4, 4), trains the small networks that fit it (``core.engine.NARROW``), faster.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from core.config import ACTIVATIONS, INITS, MAX_CLASSES

D = 8  # padded width: inputs (7 features) and hidden units
K = MAX_CLASSES  # padded outputs
BN_EPS = 1e-3  # Keras' BatchNormalization epsilon
LN_EPS = 1e-3


class Params(NamedTuple):
    w: jax.Array  # (L, D, D) hidden weights, inputs x units
    b: jax.Array  # (L, D)
    gamma: jax.Array  # (L, D) batch/layer norm scale
    beta: jax.Array  # (L, D) batch/layer norm shift
    w_out: jax.Array  # (D, K)
    b_out: jax.Array  # (K,)


class Arch(NamedTuple):
    """The architecture as data. Every field is an array so that it can change freely."""

    feat_mask: jax.Array  # (D,) 1 for features in use
    unit_mask: jax.Array  # (L, D) 1 for units in use
    act: jax.Array  # (L,) int32 index into ACTIVATIONS
    out_mask: jax.Array  # (K,) 1 for outputs in use (1 unit, or one per class)
    batch_norm: jax.Array  # () bool
    layer_norm: jax.Array  # () bool


def _elu(z):
    return jnp.where(z > 0, z, jnp.expm1(jnp.minimum(z, 0.0)))


# XLA's CPU tanh for float32 (``EmitFastTanh`` with FMA, after Eigen's): a [13/6] rational
# on inputs clamped to +-C (where it reaches +-1 exactly), x itself below 4e-4.
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
_TANH_C = 7.99881172180175781


@jax.custom_jvp
def tanh(x: jax.Array) -> jax.Array:
    """``jnp.tanh``, written out: the same rational approximation XLA's CPU backend emits, so
    the same float32 values bit for bit there (and the same derivative, ``tanh_jvp``), but
    as plain multiply-adds that XLA vectorises with the rest of a fusion. Drawing a crowd's
    output heatmaps (10,000 points, a tanh per hidden unit) took ~20 % less time
    (docs/benchmarks.md, fourteenth session). Elsewhere (a GPU) it is accurate to 3e-7.
    Other dtypes than float32 (float64 in the gradient tests) use ``jnp.tanh``."""
    if jnp.result_type(x) != jnp.float32:
        return jnp.tanh(x)
    xc = jnp.clip(x, -_TANH_C, _TANH_C)
    x2 = xc * xc
    p = jnp.asarray(_TANH_P[0], x.dtype)
    for c in _TANH_P[1:]:
        p = p * x2 + jnp.asarray(c, x.dtype)
    q = jnp.asarray(_TANH_Q[0], x.dtype)
    for c in _TANH_Q[1:]:
        q = q * x2 + jnp.asarray(c, x.dtype)
    return jnp.where(jnp.abs(x) < 0.0004, x, xc * p / q)


@tanh.defjvp
def tanh_jvp(primals, tangents):
    """JAX's own rule for tanh, in its order of operations: g (1 + y) (1 - y)."""
    (x,), (g,) = primals, tangents
    y = tanh(x)
    return y, (g + g * y) * (1 - y)


ACTIVATION_FNS = {
    "linear": lambda z: z,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),  # slope 0.01 (Keras' ReLU(negative_slope) style)
    "elu": _elu,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "silu": jax.nn.silu,
    "tanh": tanh,
    "sigmoid": jax.nn.sigmoid,
}
assert tuple(ACTIVATION_FNS) == ACTIVATIONS


def activate(z: jax.Array, index: jax.Array) -> jax.Array:
    """Apply ACTIVATIONS[index] elementwise: a real branch, so only the chosen function and its
    derivative are computed. Computing all eight and selecting (tried for one session's
    minibatch) costs more: their derivatives are all formed in the backward pass, and XLA
    fuses the select into every consumer; 6x8 tanh nets trained 1.4-2x slower that way."""
    return jax.lax.switch(index, list(ACTIVATION_FNS.values()), z)


def matmul(h: jax.Array, w: jax.Array, fused: bool = False) -> jax.Array:
    """``h @ w`` for (n, D) x (D, m). ``fused`` (one session's minibatch, n <= 128): multiply
    and sum in one elementwise kernel, as XLA's CPU dot of such tiny matrices costs several
    times more (25 gradient steps of a 6x8 net on 16 rows: 0.21 ms instead of 0.83). Batched
    (vmap) training uses it too: with the dot, XLA handed the batched loop's products to
    XNNPACK and could not compile the loop as one function (docs/benchmarks.md, seventh
    session: 16 sessions of net (a) 2,468 -> 4,866 session-epochs/s). Not for large arrays.

    Inference (not ``fused``: the metrics' pass over the data, the neuron grids, predictions)
    sums D unrolled column products, as ``grid_affine`` does for the output heatmap: a crowd's
    call of 4 epochs and a frame took ~15 us a session less than with the dot (~6 %; its
    metrics and neuron grids, docs/benchmarks.md, eighteenth session). Training on batches
    over 128 rows keeps the dot."""
    if fused and h.shape[0] <= 128:
        return (h[:, :, None] * w[None]).sum(1)
    if not fused:
        return sum(h[:, k:k + 1] * w[k][None, :] for k in range(w.shape[0]))
    return h @ w


def layers_run(depth, n_layers: int) -> int:
    """How many layer slots the traced code visits: ``depth`` itself when it is a Python int
    (a specialised branch), else all ``n_layers`` with the unused ones masked out."""
    return depth if isinstance(depth, int) else n_layers


def layer_masks(arch: Arch, depth, n_layers: int) -> tuple[list[jax.Array], jax.Array]:
    """0/1 masks of the weights in use: hidden (D, D) per visited layer and the output (D, K).
    ``depth`` is a Python int or a traced int32."""
    masks = []
    prev = arch.feat_mask
    for layer in range(layers_run(depth, n_layers)):
        on = (layer < depth) if not isinstance(depth, int) else True
        masks.append(prev[:, None] * arch.unit_mask[layer][None, :] * on)
        prev = jnp.where(on, arch.unit_mask[layer], prev)
    return masks, prev[:, None] * arch.out_mask[None, :]


def param_mask(arch: Arch, depth, n_layers: int) -> Params:
    """Which parameters may change: the ones of units in use, in layers in use."""
    hidden, out = layer_masks(arch, depth, n_layers)
    W = arch.feat_mask.shape[-1]  # D, or a narrow program's width
    zero = jnp.zeros((W, W), jnp.float32)
    w = jnp.stack(hidden + [zero] * (n_layers - len(hidden))) if n_layers else jnp.zeros((0, W, W))
    live = (jnp.arange(n_layers) < depth)[:, None] * arch.unit_mask
    norm = (arch.batch_norm | arch.layer_norm).astype(jnp.float32)
    return Params(w=w, b=live, gamma=live * norm, beta=live * norm, w_out=out, b_out=arch.out_mask)


class Norm(NamedTuple):
    """Batch-norm running statistics (inference mode)."""

    mean: jax.Array  # (L, D)
    var: jax.Array  # (L, D)


def forward(
    params: Params,
    x: jax.Array,  # (n, D) features, unmasked
    arch: Arch,
    depth,
    *,
    norm: Norm,
    rows: jax.Array | None = None,  # (n,) 1 for real rows; batch statistics in training
    keep: jax.Array | None = None,  # (n, L, D) dropout keep mask already scaled by 1/(1-p)
    fused: bool = False,  # see ``matmul``: one session's minibatch
    norms: bool = True,  # False: no batch/layer norm code at all (the caller knows both are off)
) -> tuple[jax.Array, list[jax.Array], list[tuple[jax.Array, jax.Array]]]:
    """Returns output pre-activations (n, K), each hidden layer's activations (n, D), and the
    batch statistics used per layer (training mode) for the running averages. ``depth`` is a
    Python int (only those layers are built) or a traced int32 (all slots, later ones skipped).
    ``norms`` False leaves out the normalisation conditionals and statistics: the training
    loop takes that path when neither norm is on (see ``train._epoch``)."""
    # Large inputs (grids, the whole data set) mask the first weights instead of the inputs:
    # the same products, but the inputs stay shared (a grid is one constant for every session
    # of a batched call, so its first product is one matrix product, and no masked copy of
    # it is made per session).
    in_mask = arch.feat_mask[:, None] if x.shape[0] > 128 else None
    h = x if in_mask is not None else x * arch.feat_mask
    hidden, stats = [], []
    n_layers = params.w.shape[0]
    for layer in range(layers_run(depth, n_layers)):
        dense = partial(_dense, params, arch, layer, norm, rows, None if keep is None else keep[:, layer], fused,
                        in_mask if layer == 0 else None, norms)
        if isinstance(depth, int):
            h, a, mu, var = dense(h)
        else:  # a real conditional when depth is not batched: unused layers cost nothing
            skip = lambda h: (h, jnp.zeros_like(h), jnp.zeros(h.shape[-1], h.dtype), jnp.ones(h.shape[-1], h.dtype))  # noqa: E731
            h, a, mu, var = jax.lax.cond(layer < depth, dense, skip, h)
        hidden.append(a)
        stats.append((mu, var))
    w_out = params.w_out
    if in_mask is not None:  # no hidden layer in use: the output layer takes the features
        w_out = jnp.where(depth == 0, w_out * in_mask, w_out)
    return matmul(h, w_out, fused) + params.b_out, hidden, stats


def grid_affine(w: jax.Array, b: jax.Array, h: jax.Array) -> jax.Array:
    """``h.T @ w + b``, transposed, for (D_in, D_out) weights and points along the minor axis
    (h: (D_in, P), result (D_out, P)): D_in unrolled multiply-adds of whole rows, one
    elementwise kernel with what follows, instead of a (P, D) x (D, D) product. The grids'
    products have only D = 8 terms, which XLA's dot (an XNNPACK call) handles poorly
    (docs/benchmarks.md, seventh session)."""
    return b[:, None] + sum(w[k][:, None] * h[k][None, :] for k in range(w.shape[0]))


def grid_hidden(params: Params, xt: jax.Array, arch: Arch, depth, *, norm: Norm) -> tuple[jax.Array, jax.Array]:
    """``forward`` in inference mode for many points given as (D, P) features, points along
    the minor axis (the transpose of ``forward``'s), up to the output layer: (the last hidden
    layer's activations (D, P), the output weights (D, K) that take them). The output
    pre-activations are ``grid_affine(w_out, params.b_out, h)``: the readout makes only the
    rows it reads (``core.losses.grid_readout``)."""
    n_layers = params.w.shape[0]
    col = lambda v: v[:, None]  # noqa: E731  a per-unit vector against (D, P)

    def dense(layer: int, h):
        w = params.w[layer] * col(arch.feat_mask) if layer == 0 else params.w[layer]
        z = grid_affine(w, params.b[layer], h)
        g, be, um = params.gamma[layer], params.beta[layer], arch.unit_mask[layer]

        def batch_norm(z):
            return (z - col(norm.mean[layer])) * col(jax.lax.rsqrt(norm.var[layer] + BN_EPS) * g) + col(be)

        def layer_norm(z):
            nu = jnp.maximum(um.sum(), 1.0)
            lmu = (z * col(um)).sum(0, keepdims=True) / nu
            lvar = (((z - lmu) ** 2) * col(um)).sum(0, keepdims=True) / nu
            return (z - lmu) * jax.lax.rsqrt(lvar + LN_EPS) * col(g) + col(be)

        z = jax.lax.cond(arch.batch_norm, batch_norm, lambda z: z, z)
        z = jax.lax.cond(arch.layer_norm, layer_norm, lambda z: z, z)
        return activate(z, arch.act[layer]) * col(um)

    h = xt
    for layer in range(layers_run(depth, n_layers)):
        if isinstance(depth, int):
            h = dense(layer, h)
        else:
            h = jax.lax.cond(layer < depth, partial(dense, layer), lambda h: h, h)
    return h, jnp.where(depth == 0, params.w_out * col(arch.feat_mask), params.w_out)


def _dense(params: Params, arch: Arch, layer: int, norm: Norm, rows, keep, fused: bool, in_mask, norms: bool, h):
    """One hidden layer: Dense, optional batch/layer norm, activation, unit mask, dropout.
    ``in_mask`` (D, 1): the features in use, applied to the weights (first layer, large
    inputs). Returns (next input, activations, batch mean, batch variance)."""
    w = params.w[layer] if in_mask is None else params.w[layer] * in_mask
    z = matmul(h, w, fused) + params.b[layer]
    um = arch.unit_mask[layer]
    if not norms:  # both norms off: no statistics, no conditionals
        a = activate(z, arch.act[layer]) * um
        return (a if keep is None else a * keep), a, norm.mean[layer], norm.var[layer]
    if rows is not None:  # training: this batch's statistics
        cnt = jnp.maximum(rows.sum(), 1.0)
        mu = (z * rows[:, None]).sum(0) / cnt
        var = (((z - mu) ** 2) * rows[:, None]).sum(0) / cnt
    else:
        mu, var = norm.mean[layer], norm.var[layer]
    g, be = params.gamma[layer], params.beta[layer]

    def batch_norm(z):
        return (z - mu) * jax.lax.rsqrt(var + BN_EPS) * g + be

    def layer_norm(z):
        nu = jnp.maximum(um.sum(), 1.0)
        lmu = (z * um).sum(-1, keepdims=True) / nu
        lvar = (((z - lmu) ** 2) * um).sum(-1, keepdims=True) / nu
        return (z - lmu) * jax.lax.rsqrt(lvar + LN_EPS) * g + be

    # Real branches: the flags are shared by a batched group, so unused norms cost nothing.
    z = jax.lax.cond(arch.batch_norm, batch_norm, lambda z: z, z)
    z = jax.lax.cond(arch.layer_norm, layer_norm, lambda z: z, z)
    a = activate(z, arch.act[layer]) * um
    nxt = a if keep is None else a * keep
    return nxt, a, mu, var


def init_params(rng: np.random.Generator, n_layers: int, init: str, fan_in, fan_out) -> Params:
    """Fresh parameters for every padded slot, drawn on the host (no device compilation).

    ``fan_in``/``fan_out``: (n_layers + 1,) the real layer sizes, used by glorot and he so that
    a 2-4-1 net gets the scale Keras would give it. ``uniform`` is TensorFlow Playground's:
    weights U(-0.5, 0.5), biases 0.1."""
    assert init in INITS
    shapes = [(D, D)] * n_layers + [(D, K)]
    ws = []
    for i, shape in enumerate(shapes):
        fi, fo = max(float(fan_in[i]), 1.0), max(float(fan_out[i]), 1.0)
        if init == "glorot_uniform":
            lim = np.sqrt(6.0 / (fi + fo))
            ws.append(rng.uniform(-lim, lim, shape))
        elif init == "he_normal":  # Keras: normal truncated at 2 std, std sqrt(2 / fan_in)
            z = rng.standard_normal(shape)
            while np.any(bad := np.abs(z) > 2):
                z[bad] = rng.standard_normal(int(bad.sum()))
            ws.append(z * np.sqrt(2.0 / fi) / 0.87962566)
        elif init == "uniform":
            ws.append(rng.uniform(-0.5, 0.5, shape))
        else:
            ws.append(np.zeros(shape))
    bias = 0.1 if init == "uniform" else 0.0
    f = np.float32
    return Params(
        w=np.stack(ws[:-1]).astype(f) if n_layers else np.zeros((0, D, D), f),
        b=np.full((n_layers, D), bias, f),
        gamma=np.ones((n_layers, D), f),
        beta=np.zeros((n_layers, D), f),
        w_out=ws[-1].astype(f),
        b_out=np.full((K,), bias, f),
    )
