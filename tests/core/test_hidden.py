"""The hidden-space view's activations against a NumPy forward pass of the same weights."""

from __future__ import annotations

import numpy as np
from core.config import parse_config
from core.engine import HIDDEN_LINE_POINTS, HIDDEN_LINES, Run, compilations, hidden_lines


def np_hidden(weights: list[dict], x: np.ndarray, cfg, np_ref) -> list[np.ndarray]:
    """Each hidden layer's activations, Dense -> activation, from real-shaped weights."""
    h = np_ref.features(x, cfg.features)
    out = []
    for lw, layer in zip(weights[:-1], cfg.layers):
        h = np_ref.act[layer.activation](h @ np.array(lw["w"]) + np.array(lw["b"]))
        out.append(h)
    return out


def test_lines_cover_the_input_domain():
    lines = hidden_lines()
    assert lines.shape == (2 * HIDDEN_LINES, HIDDEN_LINE_POINTS, 2)
    assert np.all(lines[:HIDDEN_LINES, :, 1] == lines[:HIDDEN_LINES, :1, 1])  # horizontal: x2 fixed
    assert np.all(lines[HIDDEN_LINES:, :, 0] == lines[HIDDEN_LINES:, :1, 0])  # vertical: x1 fixed
    assert lines.min() == -6 and lines.max() == 6


def test_hidden_space_equals_numpy_forward(warm_engine, np_ref):
    cfg = parse_config({"dataset": "spiral", "features": ["x1", "x2", "x1_sq", "sin_x2"], "n_points": 300,
                        "layers": [{"units": 5, "activation": "tanh"}, {"units": 3, "activation": "relu"},
                                   {"units": 4, "activation": "elu"}], "optimizer": "adam", "learning_rate": 0.02})
    run = Run(warm_engine, cfg)
    run.train(20)
    weights = run.weights()
    before = compilations()
    for layer, i, j in [(0, 0, 4), (1, 2, 1), (2, 3, 3), (0, 1, 0)]:
        lines, points = run.hidden_space(layer, i, j)
        ref_lines = np_hidden(weights, hidden_lines().reshape(-1, 2), cfg, np_ref)[layer][:, [i, j]]
        ref_points = np_hidden(weights, run.split.x_train, cfg, np_ref)[layer][:, [i, j]]
        np.testing.assert_allclose(lines.reshape(-1, 2), ref_lines, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(points, ref_points, rtol=1e-4, atol=1e-5)
        assert points.shape == (len(run.split.x_train), 2)
    # another depth and activation: the same program, no new compilation
    run.set_config(cfg.model_copy(update={"layers": cfg.layers[:1]}))
    run.hidden_space(0, 0, 1)
    assert compilations() == before

