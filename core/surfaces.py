"""Optimizer paths on 2-D loss surfaces: the lecture's x^2 + y^2 and a few harder ones.

Each optimizer is optax's own, stepped on f(x, y) from the same start, so the page can show
how sgd, momentum, rmsprop and adam move (and why the lecture's RMSProp/Adam help).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

SURFACES = {
    "bowl": ("x^2 + y^2", lambda p: p[0] ** 2 + p[1] ** 2),
    "elongated": ("0.1 x^2 + 5 y^2", lambda p: 0.1 * p[0] ** 2 + 5.0 * p[1] ** 2),
    "rosenbrock": ("(1 - x)^2 + 100 (y - x^2)^2", lambda p: (1 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2),
    "saddle": ("x^2 - y^2 (+ 0.05 y^4)", lambda p: p[0] ** 2 - p[1] ** 2 + 0.05 * p[1] ** 4),
}
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


def _optimizer(name: str, lr: float, momentum: float) -> optax.GradientTransformation:
    return {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=momentum),
        "rmsprop": lambda: optax.rmsprop(lr),
        "adam": lambda: optax.adam(lr),
    }[name]()


def paths(surface: str, start: tuple[float, float], lr: float, momentum: float, steps: int) -> dict:
    """Trajectories (steps + 1 points) of every optimizer, with f and the gradient at each.
    Runs eagerly on the host in float64 NumPy-sized work (a few hundred tiny steps)."""
    label, f = SURFACES[surface]
    grad = jax.grad(lambda p: f(p))
    out = {}
    for name in OPTIMIZERS:
        opt = _optimizer(name, lr, momentum)
        p = np.array(start, np.float64)
        state = opt.init(jnp.asarray(p))
        pts = [p.tolist()]
        diverged = False
        for _ in range(steps):
            g = np.asarray(grad(jnp.asarray(p)), np.float64)
            upd, state = opt.update(jnp.asarray(g), state)
            p = p + np.asarray(upd, np.float64)
            if not np.all(np.isfinite(p)) or np.abs(p).max() > 1e6:
                diverged = True
                break
            pts.append(p.tolist())
        out[name] = {"points": pts, "diverged": diverged, "final_value": float(f(jnp.asarray(pts[-1])))}
    return {"surface": surface, "formula": label, "paths": out}


def contour_grid(surface: str, lo: float = -2.0, hi: float = 2.0, n: int = 80) -> list[list[float]]:
    """f on an n x n grid over [lo, hi]^2 (rows: y from hi to lo), for contour drawing."""
    _, f = SURFACES[surface]
    t = np.linspace(lo, hi, n)
    x, y = np.meshgrid(t, t[::-1])
    return np.asarray(f(np.stack([x, y]))).round(4).tolist()
