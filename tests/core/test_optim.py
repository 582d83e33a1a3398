"""Optimizers and schedules against optax applied directly (optax.sgd, optax.sgd(momentum=),
optax.rmsprop, optax.adam, optax's schedules), including hyperparameters changed mid-run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core import optim
from core.config import OPTIMIZERS, SCHEDULES
from core.optim import OptHyper

PARAMS = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.array([0.5, -0.25], np.float32)}


def hyper(optimizer="sgd", learning_rate=0.01, momentum=0.9, beta_1=0.9, beta_2=0.999, rho=0.9, epsilon=1e-7,
          schedule="constant", decay_rate=0.5, decay_epochs=100, warmup_epochs=10, cosine_alpha=0.0) -> OptHyper:
    f, i = np.float32, np.int32
    return OptHyper(
        optimizer=i(OPTIMIZERS.index(optimizer)), learning_rate=f(learning_rate), momentum=f(momentum),
        beta_1=f(beta_1), beta_2=f(beta_2), rho=f(rho), epsilon=f(epsilon), schedule=i(SCHEDULES.index(schedule)),
        decay_rate=f(decay_rate), decay_epochs=i(decay_epochs), warmup_epochs=i(warmup_epochs),
        cosine_alpha=f(cosine_alpha),
    )


def grads_sequence(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda a: rng.normal(0, 1, a.shape).astype(np.float32), PARAMS) for _ in range(n)]


@jax.jit
def _step(grads, states, params, lr, h):
    upd, states = optim.update(grads, states, params, lr, h)
    return jax.tree.map(lambda p, u: p + u, params, upd), states


def run_ours(h: OptHyper, grads, lrs=None, states=None, params=PARAMS):
    states = optim.init(params) if states is None else states
    for k, g in enumerate(grads):
        lr = h.learning_rate if lrs is None else lrs[k]
        params, states = _step(g, states, params, np.float32(lr), h)
    return params, states


def run_optax(tx, grads, params=PARAMS, state=None):
    state = tx.init(params) if state is None else state
    for g in grads:
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
    return params, state


def reference(name, learning_rate, **kw):
    lr = learning_rate
    """The optimizer as optax spells it, hyperparameters mapped from Keras' names."""
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=kw["momentum"])
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=kw["rho"], eps=kw["epsilon"])
    return optax.adam(lr, b1=kw["beta_1"], b2=kw["beta_2"], eps=kw["epsilon"])


def assert_tree_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


SETTINGS = [
    dict(learning_rate=0.01, momentum=0.9, rho=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    dict(learning_rate=0.1, momentum=0.5, rho=0.7, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("kw", SETTINGS, ids=["keras-defaults", "other"])
def test_steps_equal_optax(name, kw):
    grads = grads_sequence(8)
    ours, states = run_ours(hyper(name, **kw), grads)
    want, _ = run_optax(reference(name, **kw), grads)
    assert_tree_close(ours, want)
    # the step really moved the parameters (a test of a no-op would pass the check above only
    # if optax also did nothing)
    assert not np.allclose(ours["w"], PARAMS["w"])
    # only the chosen optimizer's state changed
    fresh = optim.init(PARAMS)
    which = OPTIMIZERS.index(name)
    for i in range(len(OPTIMIZERS)):
        same = all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(jax.tree.leaves(states[i]), jax.tree.leaves(fresh[i])))
        if i != which:
            assert same, f"{OPTIMIZERS[i]}'s state changed while {name} stepped"


def test_rmsprop_ignores_momentum():
    grads = grads_sequence(5)
    a, _ = run_ours(hyper("rmsprop", momentum=0.0), grads)
    b, _ = run_ours(hyper("rmsprop", momentum=0.9), grads)
    assert_tree_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_learning_rate_changed_mid_run(name):
    """Five steps at 0.05, then five at 0.01: equals optax with lr 0.05, then optax with lr 0.01
    continuing from the same optimizer state."""
    kw = dict(momentum=0.9, rho=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    grads = grads_sequence(10, seed=1)
    ours, _ = run_ours(hyper(name, 0.05, **kw), grads, lrs=[0.05] * 5 + [0.01] * 5)
    mid, state = run_optax(reference(name, 0.05, **kw), grads[:5])
    want, _ = run_optax(reference(name, 0.01, **kw), grads[5:], params=mid, state=state)
    assert_tree_close(ours, want)
    # and it differs from keeping 0.05
    kept, _ = run_optax(reference(name, 0.05, **kw), grads[5:], params=mid, state=state)
    assert not np.allclose(ours["w"], kept["w"], rtol=1e-4)


def test_other_hyperparameters_change_mid_run():
    """Adam's betas and epsilon, momentum, rho: changed between steps, as optax with the new
    values from that step on."""
    grads = grads_sequence(6, seed=2)
    for name, first, second in [
        ("adam", dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7), dict(beta_1=0.5, beta_2=0.9, epsilon=1e-2)),
        ("momentum", dict(momentum=0.9), dict(momentum=0.2)),
        ("rmsprop", dict(rho=0.9, epsilon=1e-7), dict(rho=0.5, epsilon=1e-3)),
    ]:
        base = dict(momentum=0.9, rho=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
        p, s = run_ours(hyper(name, 0.02, **{**base, **first}), grads[:3])
        ours, _ = run_ours(hyper(name, 0.02, **{**base, **second}), grads[3:], states=s, params=p)
        mid, state = run_optax(reference(name, 0.02, **{**base, **first}), grads[:3])
        want, _ = run_optax(reference(name, 0.02, **{**base, **second}), grads[3:], params=mid, state=state)
        assert_tree_close(ours, want)


def test_switching_optimizer_keeps_each_state():
    """Steps with adam, then sgd, then adam again: adam resumes from its own moments."""
    grads = grads_sequence(6, seed=3)
    kw = dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    p, s = run_ours(hyper("adam", 0.01, **kw), grads[:2])
    p, s = run_ours(hyper("sgd", 0.01), grads[2:4], states=s, params=p)
    ours, _ = run_ours(hyper("adam", 0.01, **kw), grads[4:], states=s, params=p)
    adam = reference("adam", 0.01, **kw)
    q, st = run_optax(adam, grads[:2])
    q, _ = run_optax(optax.sgd(0.01), grads[2:4], params=q)
    want, _ = run_optax(adam, grads[4:], params=q, state=st)
    assert_tree_close(ours, want)


# --- schedules --------------------------------------------------------------------------------


def optax_schedule(name, lr, decay_rate, decay_epochs, warmup_epochs, alpha):
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "step":
        return optax.exponential_decay(lr, decay_epochs, decay_rate, staircase=True)
    if name == "exponential":
        return optax.exponential_decay(lr, decay_epochs, decay_rate, staircase=False)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, decay_epochs, alpha)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_epochs, warmup_epochs + decay_epochs, alpha * lr)


_schedule = jax.jit(jax.vmap(optim.schedule, in_axes=(0, None)))

SCHEDULE_PARAMS = [
    dict(lr=0.03, decay_rate=0.5, decay_epochs=100, warmup_epochs=10, alpha=0.0),
    dict(lr=0.1, decay_rate=0.9, decay_epochs=7, warmup_epochs=0, alpha=0.2),
    dict(lr=1.0, decay_rate=0.1, decay_epochs=1, warmup_epochs=25, alpha=1.0),
    dict(lr=0.005, decay_rate=0.01, decay_epochs=333, warmup_epochs=3, alpha=0.05),
]


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("p", SCHEDULE_PARAMS, ids=[f"set{i}" for i in range(len(SCHEDULE_PARAMS))])
def test_schedule_equals_optax(name, p):
    epochs = np.arange(0, 700, dtype=np.int32)
    h = hyper(learning_rate=p["lr"], schedule=name, decay_rate=p["decay_rate"], decay_epochs=p["decay_epochs"],
              warmup_epochs=p["warmup_epochs"], cosine_alpha=p["alpha"])
    ours = np.asarray(_schedule(epochs, h))
    ref = optax_schedule(name, p["lr"], p["decay_rate"], p["decay_epochs"], p["warmup_epochs"], p["alpha"])
    want = np.array([float(ref(int(e))) for e in epochs])
    np.testing.assert_allclose(ours, want, rtol=2e-5, atol=1e-9 * p["lr"])
    if name != "constant" and not (name == "cosine" and p["alpha"] == 1.0):
        assert want.min() < 0.99 * p["lr"]  # the schedule does change the rate


def test_schedule_shapes_by_hand():
    """A few values worked out by hand: step halves every 100 epochs, warm-up is linear."""
    e = np.array([0, 99, 100, 250], np.int32)
    np.testing.assert_allclose(_schedule(e, hyper(learning_rate=0.08, schedule="step")), [0.08, 0.08, 0.04, 0.02],
                               rtol=1e-6)
    e = np.array([0, 5, 10, 60, 110, 500], np.int32)
    np.testing.assert_allclose(_schedule(e, hyper(learning_rate=1.0, schedule="warmup_cosine")),
                               [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
