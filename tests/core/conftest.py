"""Fixtures and independent NumPy references shared by the engine tests.

The references here are written from the definitions (Keras' Dense layer, the activation
formulas, TensorFlow Playground's rules), not from core/: tests compare the engine with them.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

BATCHED = 3  # the one stack size compiled for the batched functions in this session


@pytest.fixture(scope="session")
def warm_engine(engine):
    """The shared engine with every bucket compiled, also batched for BATCHED sessions."""
    engine.warmup(batched_sizes=(BATCHED,))
    return engine


@pytest.fixture(scope="session")
def backend_compiles():
    """A counter of XLA backend compiles *including* executables loaded from the persistent
    cache: a retrace that lowers anew shows here even when the disk cache already has it
    (core.engine.compilations() leaves cache loads out)."""
    import jax

    count = [0]

    def listen(event: str, *args, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield lambda: count[0]
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture(scope="session")
def batched_size() -> int:
    return BATCHED


@pytest.fixture(scope="session")
def tfp():
    """tests/tfp_reference.py, loaded by path (works whether or not tests/ is a package)."""
    path = Path(__file__).resolve().parents[1] / "tfp_reference.py"
    spec = importlib.util.spec_from_file_location("nnplay_tfp_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- NumPy references ------------------------------------------------------------------------


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


NP_ACT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "gelu": lambda z: 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))),
    "silu": lambda z: z * np_sigmoid(z),
    "tanh": np.tanh,
    "sigmoid": np_sigmoid,
}


def np_features(x: np.ndarray, names) -> np.ndarray:
    """TensorFlow Playground's inputs for raw points (n, 2), in the order of ``names``."""
    x1, x2 = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
    table = {"x1": x1, "x2": x2, "x1_sq": x1 * x1, "x2_sq": x2 * x2, "x1x2": x1 * x2,
             "sin_x1": np.sin(x1), "sin_x2": np.sin(x2)}
    return np.stack([table[n] for n in names], 1)


def np_mlp(weights: list[dict], x: np.ndarray, cfg: dict) -> np.ndarray:
    """A Keras-style MLP from real-shaped weights: Dense -> activation per hidden layer, then
    the output activation. ``cfg``: features (in FEATURES order), layers, output activation."""
    h = np_features(np.asarray(x, np.float64), cfg["features"])
    for lw, layer in zip(weights[:-1], cfg["layers"]):
        h = NP_ACT[layer["activation"]](h @ np.array(lw["w"]) + np.array(lw["b"]))
    z = h @ np.array(weights[-1]["w"]) + np.array(weights[-1]["b"])
    out = cfg["output_activation"]
    if out == "sigmoid":
        return np_sigmoid(z)
    if out == "tanh":
        return np.tanh(z)
    if out == "softmax":
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return z


@pytest.fixture(scope="session")
def np_ref():
    """The NumPy reference functions, as a namespace."""

    class NS:
        sigmoid = staticmethod(np_sigmoid)
        act = NP_ACT
        features = staticmethod(np_features)
        mlp = staticmethod(np_mlp)

    return NS
