"""Output activations, losses and predictions, selected by integer index (data, not code).

Labels ``y`` are class indices for classification and values for regression. With a
``tanh`` output, class 0/1 become targets -1/+1 (TensorFlow Playground's convention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from core.config import LOSSES, OUTPUT_ACTIVATIONS
from core.model import K, tanh

SIGMOID, SOFTMAX, LINEAR, TANH = (OUTPUT_ACTIVATIONS.index(a) for a in ("sigmoid", "softmax", "linear", "tanh"))
MSE, MAE, BCE, CCE = (LOSSES.index(name) for name in ("mse", "mae", "binary_crossentropy", "categorical_crossentropy"))


def _branch(n: int, select: bool) -> bool:
    """Whether to take a real branch on an output or loss index rather than compute every
    alternative and select: yes for large arrays (grids, the whole data set), for batched
    calls, whose sessions share the index, and inside the training loop, which XLA compiles
    as one function where a branch is cheap (see ``core/__init__``; selecting among all four
    losses made net (a) of the benchmark train 1.5x slower). Small arrays outside loops
    (``select``) compute every alternative: there a conditional is a separately dispatched
    operation that costs more than the few elements it would skip."""
    return n > 128 or not select


def _single(v: jax.Array, z: jax.Array) -> jax.Array:
    """A one-unit output (n, 1) padded with zeros to (n, K)."""
    return jnp.concatenate([v, jnp.zeros_like(z[:, 1:])], axis=1)


_OUTPUT_FNS = {
    "sigmoid": lambda z, m: _single(jax.nn.sigmoid(z[:, :1]), z),
    "softmax": lambda z, m: jax.nn.softmax(jnp.where(m > 0, z, -1e9), axis=-1),
    "linear": lambda z, m: _single(z[:, :1], z),
    "tanh": lambda z, m: _single(tanh(z[:, :1]), z),
}
assert tuple(_OUTPUT_FNS) == OUTPUT_ACTIVATIONS


def outputs(z: jax.Array, out_act: jax.Array, out_mask: jax.Array, select: bool = True) -> jax.Array:
    """The network's output (n, K): sigmoid / softmax / linear / tanh of the pre-activations."""
    if _branch(z.shape[0], select):
        return jax.lax.switch(out_act, list(_OUTPUT_FNS.values()), z, out_mask)
    z1 = z[:, :1]
    single = jnp.where(out_act == SIGMOID, jax.nn.sigmoid(z1), jnp.where(out_act == TANH, tanh(z1), z1))
    soft = jax.nn.softmax(jnp.where(out_mask > 0, z, -1e9), axis=-1)
    single = jnp.concatenate([single, jnp.zeros_like(z[:, 1:])], axis=1)
    return jnp.where(out_act == SOFTMAX, soft, single)


def targets(y: jax.Array, out_act: jax.Array, classification: jax.Array) -> jax.Array:
    """(n, K) targets in the output's units: one-hot for softmax, +-1 for a tanh classifier."""
    onehot = jax.nn.one_hot(y.astype(jnp.int32), K, dtype=jnp.float32)
    single = jnp.where(classification & (out_act == TANH), 2.0 * y - 1.0, y)
    single = jnp.concatenate([single[:, None], jnp.zeros((y.shape[0], K - 1))], axis=1)
    return jnp.where(out_act == SOFTMAX, onehot, single)


def per_row_loss(
    z: jax.Array,  # (n, K) pre-activations
    y: jax.Array,  # (n,)
    out_act: jax.Array,
    loss: jax.Array,
    out_mask: jax.Array,  # (K,)
    classification: jax.Array,
    select: bool = True,  # see ``_branch``
) -> jax.Array:
    """(n,) loss of each row. Cross-entropies are computed from logits for stability."""
    n_out = jnp.maximum(out_mask.sum(), 1.0)

    def err():
        return (outputs(z, out_act, out_mask, select) - targets(y, out_act, classification)) * out_mask

    fns = {
        "mse": lambda: (err() ** 2).sum(-1) / n_out,  # Keras: mean over the output units
        "mae": lambda: jnp.abs(err()).sum(-1) / n_out,
        "binary_crossentropy": lambda: optax.sigmoid_binary_cross_entropy(z[:, 0], y),
        # one-hot labels, not integer ones: the integer form's gather has a scatter as its
        # gradient, and a scatter keeps XLA from compiling the minibatch loop as one function
        "categorical_crossentropy": lambda: optax.softmax_cross_entropy(
            jnp.where(out_mask > 0, z, -1e9), jax.nn.one_hot(y.astype(jnp.int32), K, dtype=z.dtype)),
    }
    if _branch(z.shape[0], select):
        return jax.lax.switch(loss, [fns[name] for name in LOSSES])
    mse, mae, bce, cce = (fns[name]() for name in ("mse", "mae", "binary_crossentropy", "categorical_crossentropy"))
    return jnp.select([loss == MSE, loss == MAE, loss == BCE], [mse, mae, bce], cce)


def predicted_class(out: jax.Array, out_act: jax.Array) -> jax.Array:
    """(n,) int class from outputs (n, K)."""
    if _branch(out.shape[0], True):
        above = lambda t: lambda o: (o[:, 0] > t).astype(jnp.int32)  # noqa: E731
        fns = {"sigmoid": above(0.5), "softmax": lambda o: jnp.argmax(o, -1).astype(jnp.int32),
               "linear": above(0.5), "tanh": above(0.0)}
        return jax.lax.switch(out_act, [fns[a] for a in OUTPUT_ACTIVATIONS], out)
    binary = jnp.where(out_act == TANH, out[:, 0] > 0, out[:, 0] > 0.5).astype(jnp.int32)
    return jnp.where(out_act == SOFTMAX, jnp.argmax(out, -1), binary)


def grid_readout(pre, out_act: jax.Array, out_mask: jax.Array, classification: jax.Array):
    """The heatmap of a grid: (value in [0, 1], class) per point, each (P,), from its output
    pre-activations laid out (K, P): ``pre(k)`` makes the first k rows. The value is
    ``positive_prob`` of ``outputs`` for classification and (output + 1) / 2 for regression;
    the class is ``predicted_class``. The same numbers as those functions give on the (P, K)
    transpose, without making it or a (P, K) output padded with zeros: a one-unit output
    makes and reads the first row only (the transpose and the padded sigmoid were ~2 of a
    batched frame's 14 ms; the other K - 1 rows ~10 % of a crowd's drawing)."""

    def one_unit(act, threshold: float):
        def run():
            o = act(pre(1)[0])
            return jnp.where(classification, o, (o + 1) / 2), (o > threshold).astype(jnp.int32)

        return run

    def tanh_unit():
        o = tanh(pre(1)[0])
        return (o + 1) / 2, (o > 0.0).astype(jnp.int32)

    def softmax():
        p = jax.nn.softmax(jnp.where(out_mask[:, None] > 0, pre(K), -1e9), axis=0)
        return jnp.where(classification, p.max(0), (p[0] + 1) / 2), jnp.argmax(p, 0).astype(jnp.int32)

    fns = {"sigmoid": one_unit(jax.nn.sigmoid, 0.5), "softmax": softmax, "linear": one_unit(lambda z: z, 0.5),
           "tanh": tanh_unit}
    return jax.lax.switch(out_act, [fns[a] for a in OUTPUT_ACTIVATIONS])


def positive_prob(out: jax.Array, out_act: jax.Array) -> jax.Array:
    """(n,) score for class 1 in [0, 1] (binary), or the top class's probability (softmax)."""
    if _branch(out.shape[0], True):
        fns = {"sigmoid": lambda o: o[:, 0], "softmax": lambda o: o.max(-1), "linear": lambda o: o[:, 0],
               "tanh": lambda o: (o[:, 0] + 1) / 2}
        return jax.lax.switch(out_act, [fns[a] for a in OUTPUT_ACTIVATIONS], out)
    return jnp.select(
        [out_act == SIGMOID, out_act == TANH, out_act == SOFTMAX],
        [out[:, 0], (out[:, 0] + 1) / 2, out.max(-1)],
        out[:, 0],
    )
