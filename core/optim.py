"""Optimizers from optax and learning-rate schedules whose settings are data.

Each optimizer is ``optax.inject_hyperparams``-wrapped, so its learning rate and other
hyperparameters live in its state and change between steps without re-creating it (or
recompiling). All four states are kept side by side; ``OPTIMIZERS[index]`` picks the one
that steps.

Schedules are functions of the epoch with traced parameters; for concrete values they equal
optax's own schedules (tests check this against optax applied directly):
``step`` = ``optax.exponential_decay(lr, decay_epochs, decay_rate, staircase=True)``,
``exponential`` = the same without staircase, ``cosine`` = ``optax.cosine_decay_schedule(lr,
decay_epochs, cosine_alpha)``, ``warmup_cosine`` = ``optax.warmup_cosine_decay_schedule(0, lr,
warmup_epochs, warmup_epochs + decay_epochs, cosine_alpha * lr)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from core.config import OPTIMIZERS, SCHEDULES


class OptHyper(NamedTuple):
    """Optimizer settings as arrays (one session's; batched along a leading axis)."""

    optimizer: jax.Array  # () int32 index into OPTIMIZERS
    learning_rate: jax.Array
    momentum: jax.Array
    beta_1: jax.Array
    beta_2: jax.Array
    rho: jax.Array
    epsilon: jax.Array
    schedule: jax.Array  # () int32 index into SCHEDULES
    decay_rate: jax.Array
    decay_epochs: jax.Array
    warmup_epochs: jax.Array
    cosine_alpha: jax.Array


def _transforms():
    ih = optax.inject_hyperparams
    return (
        ih(optax.sgd)(learning_rate=0.01),
        ih(optax.sgd)(learning_rate=0.01, momentum=0.9),
        ih(optax.rmsprop)(learning_rate=0.01, decay=0.9, eps=1e-7),
        ih(optax.adam)(learning_rate=0.01, b1=0.9, b2=0.999, eps=1e-7),
    )


TRANSFORMS = _transforms()
assert len(TRANSFORMS) == len(OPTIMIZERS)


def init(params) -> tuple:
    return tuple(t.init(params) for t in TRANSFORMS)


def _with_hyper(state, lr: jax.Array, h: OptHyper, which: int):
    hp = dict(state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, hp["learning_rate"].dtype)
    if which == 1:
        hp["momentum"] = h.momentum
    elif which == 2:
        hp["decay"], hp["eps"] = h.rho, h.epsilon
    elif which == 3:
        hp["b1"], hp["b2"], hp["eps"] = h.beta_1, h.beta_2, h.epsilon
    return state._replace(hyperparams={k: jnp.asarray(v, hp[k].dtype) for k, v in hp.items()})


def update(grads, states: tuple, params, lr: jax.Array, h: OptHyper):
    """One step of the chosen optimizer: returns (updates, new states). Only the chosen
    optimizer's state changes; the others keep theirs."""

    def branch(which: int):
        def run(grads, states, params):
            t = TRANSFORMS[which]
            s = _with_hyper(states[which], lr, h, which)
            upd, s = t.update(grads, s, params)
            new = tuple(s if i == which else states[i] for i in range(len(states)))
            return upd, new

        return run

    return jax.lax.switch(h.optimizer, [branch(i) for i in range(len(TRANSFORMS))], grads, states, params)


def schedule(epoch: jax.Array, h: OptHyper) -> jax.Array:
    """Learning rate at ``epoch`` (0-based, float)."""
    lr, e = h.learning_rate, jnp.asarray(epoch, jnp.float32)
    T = jnp.maximum(h.decay_epochs, 1).astype(jnp.float32)
    W = h.warmup_epochs.astype(jnp.float32)
    a = h.cosine_alpha

    def cosine(t, length):
        frac = jnp.clip(t / jnp.maximum(length, 1.0), 0.0, 1.0)
        return (1 - a) * 0.5 * (1 + jnp.cos(jnp.pi * frac)) + a

    options = [
        lr,
        lr * h.decay_rate ** jnp.floor(e / T),
        lr * h.decay_rate ** (e / T),
        lr * cosine(e, T),
        jnp.where(e < W, lr * e / jnp.maximum(W, 1.0), lr * cosine(e - W, T)),
    ]
    assert len(options) == len(SCHEDULES)
    return jnp.select([h.schedule == i for i in range(len(options))], options)
