"""Output activations, losses and predictions, selected by integer index (data, not code).

Labels ``y`` are class indices for classification and values for regression. With a
``tanh`` output, class 0/1 become targets -1/+1 (TensorFlow Playground's convention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from core.config import LOSSES, OUTPUT_ACTIVATIONS
from core.model import K

SIGMOID, SOFTMAX, LINEAR, TANH = (OUTPUT_ACTIVATIONS.index(a) for a in ("sigmoid", "softmax", "linear", "tanh"))
MSE, MAE, BCE, CCE = (LOSSES.index(name) for name in ("mse", "mae", "binary_crossentropy", "categorical_crossentropy"))


def outputs(z: jax.Array, out_act: jax.Array, out_mask: jax.Array) -> jax.Array:
    """The network's output (n, K): sigmoid / softmax / linear / tanh of the pre-activations."""
    z1 = z[:, :1]
    single = jnp.where(out_act == SIGMOID, jax.nn.sigmoid(z1), jnp.where(out_act == TANH, jnp.tanh(z1), z1))
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
) -> jax.Array:
    """(n,) loss of each row. Cross-entropies are computed from logits for stability."""
    out = outputs(z, out_act, out_mask)
    t = targets(y, out_act, classification)
    n_out = jnp.maximum(out_mask.sum(), 1.0)
    err = (out - t) * out_mask
    mse = (err**2).sum(-1) / n_out  # Keras: mean over the output units
    mae = jnp.abs(err).sum(-1) / n_out
    bce = optax.sigmoid_binary_cross_entropy(z[:, 0], y)
    logits = jnp.where(out_mask > 0, z, -1e9)
    cce = optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32))
    return jnp.select([loss == MSE, loss == MAE, loss == BCE], [mse, mae, bce], cce)


def predicted_class(out: jax.Array, out_act: jax.Array) -> jax.Array:
    """(n,) int class from outputs (n, K)."""
    binary = jnp.where(out_act == TANH, out[:, 0] > 0, out[:, 0] > 0.5).astype(jnp.int32)
    return jnp.where(out_act == SOFTMAX, jnp.argmax(out, -1), binary)


def positive_prob(out: jax.Array, out_act: jax.Array) -> jax.Array:
    """(n,) score for class 1 in [0, 1] (binary), or the top class's probability (softmax)."""
    return jnp.select(
        [out_act == SIGMOID, out_act == TANH, out_act == SOFTMAX],
        [out[:, 0], (out[:, 0] + 1) / 2, out.max(-1)],
        out[:, 0],
    )
