"""Seeded 2-D datasets, TensorFlow Playground's and a few more, and the input features.

Every generator returns points in [-6, 6]^2 (x1, x2) and labels: a class index 0..K-1 for
classification (TensorFlow Playground's -1 is class 0, +1 is class 1) or a value for
regression: in [-1, 1] for multigauss; (x1 + x2) / 10 for plane, which like TensorFlow
Playground's reaches +-1.2 (+-1.8 with noise at the shifted position). Same config and seed
give the same points.

Noise semantics (``noise`` in 0..0.5, TensorFlow Playground's 0..50 %):

- ``circle``, ``xor``, ``plane``, ``multigauss``, ``checkerboard``: points are drawn clean and
  the *label* is computed at a position shifted by uniform(-r, r) * noise per axis (r = 5 for
  circle and xor, 6 for the others), so noise shows as mislabelled points near the boundary,
  as in TensorFlow Playground.
- ``gauss``: the variance of both clusters is 0.5 + 7 * noise (TensorFlow Playground's scale).
- ``spiral``: each coordinate gets uniform(-1, 1) * noise added (TensorFlow Playground's rule:
  almost invisible; it is what the reference engine does).
- ``moons``: gaussian jitter with std 2.5 * noise around two interleaved half circles.
- ``blobs``: K gaussian clusters on a circle of radius 3.5, std 0.6 + 3 * noise.

``class_ratio`` (binary: share of class 1; multi-class: share of class 1, the others equal)
is met by drawing a larger pool and keeping the required number of points of each class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import FEATURES, Config

RADIUS = 6.0  # the input domain is [-6, 6]^2, as TensorFlow Playground's


@dataclass(frozen=True)
class Split:
    """Points of one run. ``x``: (n, 2) float32; ``y``: (n,) float32; train rows first."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n)


def circle(rng, counts, noise):
    """TensorFlow Playground's circle: class 1 inside radius 2.5, class 0 in the ring 3.5..5."""
    r0 = 5.0
    xs, ys = [], []
    for label, n in ((1, counts[1]), (0, counts[0])):
        r = _u(rng, 0, r0 * 0.5, n) if label == 1 else _u(rng, r0 * 0.7, r0, n)
        a = _u(rng, 0, 2 * np.pi, n)
        x = np.stack([r * np.sin(a), r * np.cos(a)], 1)
        shifted = x + _u(rng, -r0, r0, 2 * n).reshape(n, 2) * noise
        xs.append(x)
        ys.append((np.hypot(shifted[:, 0], shifted[:, 1]) < r0 * 0.5).astype(np.float64))
    return np.concatenate(xs), np.concatenate(ys)


def xor(rng, n, noise):
    x = _u(rng, -5, 5, 2 * n).reshape(n, 2)
    x += np.where(x > 0, 0.3, -0.3)
    shifted = x + _u(rng, -5, 5, 2 * n).reshape(n, 2) * noise
    return x, (shifted[:, 0] * shifted[:, 1] >= 0).astype(np.float64)


def gauss(rng, counts, noise):
    var = 0.5 + 7.0 * noise
    xs, ys = [], []
    for label, n, c in ((1, counts[1], 2.0), (0, counts[0], -2.0)):
        xs.append(rng.normal(c, np.sqrt(var), (n, 2)))
        ys.append(np.full(n, float(label)))
    return np.concatenate(xs), np.concatenate(ys)


def spiral(rng, counts, noise):
    """K arms; with K = 2 this is TensorFlow Playground's spiral (class 1 at angle 0)."""
    k = len(counts)
    xs, ys = [], []
    order = [1, 0] + list(range(2, k)) if k == 2 else list(range(k))
    for arm, label in enumerate(order):
        n = counts[label]
        i = np.arange(n)
        r = i / n * 5
        t = 1.75 * i / n * 2 * np.pi + arm * 2 * np.pi / k
        x = np.stack([r * np.sin(t), r * np.cos(t)], 1) + _u(rng, -1, 1, 2 * n).reshape(n, 2) * noise
        xs.append(x)
        ys.append(np.full(n, float(label)))
    return np.concatenate(xs), np.concatenate(ys)


def moons(rng, counts, noise):
    xs, ys = [], []
    for label, n in ((0, counts[0]), (1, counts[1])):
        t = _u(rng, 0, np.pi, n)
        if label == 0:
            x = np.stack([np.cos(t), np.sin(t)], 1)
        else:
            x = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
        x = (x - [0.5, 0.25]) * 3.5 + rng.normal(0, 2.5 * noise + 1e-9, (n, 2))
        xs.append(x)
        ys.append(np.full(n, float(label)))
    return np.concatenate(xs), np.concatenate(ys)


def checkerboard(rng, n, noise):
    x = _u(rng, -6, 6, 2 * n).reshape(n, 2)
    shifted = x + _u(rng, -6, 6, 2 * n).reshape(n, 2) * noise
    cells = np.floor(shifted / 3.0).astype(int)
    return x, ((cells[:, 0] + cells[:, 1]) % 2 == 0).astype(np.float64)


def blobs(rng, counts, noise):
    k = len(counts)
    std = 0.6 + 3.0 * noise
    xs, ys = [], []
    for label, n in enumerate(counts):
        a = 2 * np.pi * label / k + np.pi / 4
        xs.append(rng.normal(0, std, (n, 2)) + 3.5 * np.array([np.cos(a), np.sin(a)]))
        ys.append(np.full(n, float(label)))
    return np.concatenate(xs), np.concatenate(ys)


def plane(rng, n, noise):
    x = _u(rng, -RADIUS, RADIUS, 2 * n).reshape(n, 2)
    shifted = x + _u(rng, -RADIUS, RADIUS, 2 * n).reshape(n, 2) * noise
    return x, (shifted[:, 0] + shifted[:, 1]) / 10.0


MULTIGAUSS = ((-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1))


def multigauss_label(x: np.ndarray) -> np.ndarray:
    """TensorFlow Playground's six bumps: the signed bump largest in absolute value wins."""
    label = np.zeros(len(x))
    for cx, cy, sign in MULTIGAUSS:
        v = sign * np.clip(1 - np.hypot(x[:, 0] - cx, x[:, 1] - cy) / 2, 0, 1)
        label = np.where(np.abs(v) > np.abs(label), v, label)
    return label


def multigauss(rng, n, noise):
    x = _u(rng, -RADIUS, RADIUS, 2 * n).reshape(n, 2)
    shifted = x + _u(rng, -RADIUS, RADIUS, 2 * n).reshape(n, 2) * noise
    return x, multigauss_label(shifted)


_BY_COUNTS = {"circle": circle, "gauss": gauss, "spiral": spiral, "moons": moons, "blobs": blobs}
_BY_N = {"xor": xor, "checkerboard": checkerboard, "plane": plane, "multigauss": multigauss}


def class_counts(n: int, classes: int, class_ratio: float | None) -> list[int]:
    """How many points of each class: balanced, or class 1 holding ``class_ratio`` of them."""
    if class_ratio is None:
        shares = np.full(classes, 1.0 / classes)
    else:
        rest = (1.0 - class_ratio) / (classes - 1)
        shares = np.full(classes, rest)
        shares[1] = class_ratio
    counts = np.floor(shares * n).astype(int)
    counts[np.argsort(-(shares * n - counts))[: n - counts.sum()]] += 1
    return [int(c) for c in counts]


def generate(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """All points of a generated dataset, in a seeded random order: (n, 2) and (n,)."""
    rng = np.random.default_rng(cfg.seed)
    n, noise = cfg.n_points, cfg.noise
    if cfg.problem == "classification":
        counts = class_counts(n, cfg.classes, cfg.class_ratio)
        if cfg.dataset in _BY_COUNTS:
            x, y = _BY_COUNTS[cfg.dataset](rng, counts, noise)
        else:
            x, y = _by_rejection(_BY_N[cfg.dataset], rng, counts, noise)
    else:
        x, y = _BY_N[cfg.dataset](rng, n, noise)
    order = rng.permutation(len(x))
    return np.clip(x[order], -RADIUS, RADIUS), y[order]


def _by_rejection(gen, rng, counts, noise):
    """Draw from a label-by-position generator until each class has its count."""
    need = list(counts)
    xs, ys = [], []
    for _ in range(64):
        x, y = gen(rng, 4 * sum(counts) + 16, noise)
        for label in range(len(counts)):
            take = np.flatnonzero(y == label)[: need[label]]
            need[label] -= len(take)
            xs.append(x[take])
            ys.append(y[take])
        if not any(need):
            break
    return np.concatenate(xs), np.concatenate(ys)


def split(cfg: Config) -> Split:
    """Train/test split: the first ``train_ratio`` of the shuffled points train (TF Playground)."""
    if cfg.dataset == "custom":
        return _custom(cfg)
    x, y = generate(cfg)
    k = int(np.floor(len(x) * cfg.train_ratio))
    return _as_split(x[:k], y[:k], x[k:], y[k:])


def _custom(cfg: Config) -> Split:
    pts = cfg.points or []
    rng = np.random.default_rng(cfg.seed)
    x = np.array([[p.x1, p.x2] for p in pts], dtype=np.float64).reshape(-1, 2)
    y = np.array([p.label for p in pts], dtype=np.float64)
    if cfg.problem == "classification":
        y = np.where(y < 0, 0.0, y)
    subset = np.array([p.subset or "" for p in pts])
    free = np.flatnonzero(subset == "")
    free = free[rng.permutation(len(free))]
    k = int(round(len(free) * cfg.train_ratio))
    train = np.zeros(len(pts), bool)
    train[subset == "train"] = True
    train[free[:k]] = True
    return _as_split(x[train], y[train], x[~train], y[~train])


def _as_split(xtr, ytr, xte, yte) -> Split:
    f = np.float32
    return Split(xtr.astype(f).reshape(-1, 2), ytr.astype(f), xte.astype(f).reshape(-1, 2), yte.astype(f))


def features(x: np.ndarray) -> np.ndarray:
    """The seven input features of TensorFlow Playground, in FEATURES order: (n, 2) -> (n, 7)."""
    x1, x2 = x[..., 0], x[..., 1]
    mod = np if isinstance(x, np.ndarray) else _jnp()
    return mod.stack([x1, x2, x1 * x1, x2 * x2, x1 * x2, mod.sin(x1), mod.sin(x2)], -1)


def _jnp():
    import jax.numpy as jnp

    return jnp


def feature_mask(cfg: Config) -> np.ndarray:
    return np.array([f in cfg.features for f in FEATURES], dtype=np.float32)
