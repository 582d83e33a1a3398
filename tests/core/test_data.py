"""Datasets: seeded, inside [-6, 6]^2, the right class counts, TensorFlow Playground's labelling
rules (checked against formulas re-written here from its dataset.ts), custom points' subsets."""

from __future__ import annotations

import numpy as np
import pytest

from core import data as datasets
from core.config import FEATURES, parse_config

BINARY = ["circle", "xor", "gauss", "spiral", "moons", "checkerboard", "blobs"]
ALL = ([{"dataset": d} for d in BINARY]
       + [{"dataset": d, "classes": k} for d in ("blobs", "spiral") for k in (3, 4, 5)]
       + [{"problem": "regression", "dataset": d} for d in ("plane", "multigauss")])


def ident(d):
    return "-".join(str(v) for v in d.values())


def both(cfg):
    s = datasets.split(cfg)
    return np.concatenate([s.x_train, s.x_test]), np.concatenate([s.y_train, s.y_test])


@pytest.mark.parametrize("base", ALL, ids=ident)
def test_seeded_and_inside_the_domain(base):
    for noise in (0.0, 0.5):
        cfg = parse_config({**base, "noise": noise, "seed": 7})
        a, b = datasets.split(cfg), datasets.split(cfg)
        for f in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        other = datasets.split(parse_config({**base, "noise": noise, "seed": 8}))
        assert not np.array_equal(a.x_train, other.x_train)
        x, y = both(cfg)
        assert x.shape == (500, 2) and y.shape == (500,)
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert np.all(np.abs(x) <= 6.0) and np.all(np.isfinite(x))
        assert len(a.x_train) == 250  # the first train_ratio of the shuffled points
        if cfg.dataset == "multigauss":
            assert np.all(np.abs(y) <= 1.0)
        elif cfg.dataset == "plane":  # TFP's scale: x1 + x2 in [-10, 10] -> [-1, 1], unclamped
            assert np.all(np.abs(y) <= (12 + 12 * noise) / 10 + 1e-6)
        else:
            assert set(np.unique(y)) == set(range(cfg.classes))


@pytest.mark.parametrize("ratio, n, n_train", [(0.1, 500, 50), (0.5, 97, 48), (0.9, 1000, 900), (0.3, 10, 3)])
def test_train_ratio(ratio, n, n_train):
    s = datasets.split(parse_config({"dataset": "gauss", "train_ratio": ratio, "n_points": n}))
    assert (len(s.y_train), len(s.y_test)) == (n_train, n - n_train)


def expected_counts(n, k, ratio=None):
    """Largest-remainder split of n points into k classes; class 1 gets ``ratio`` of them."""
    shares = [1 / k] * k if ratio is None else [(1 - ratio) / (k - 1)] * k
    if ratio is not None:
        shares[1] = ratio
    exact = [s * n for s in shares]
    counts = [int(np.floor(e)) for e in exact]
    for i in sorted(range(k), key=lambda i: -(exact[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    return counts


@pytest.mark.parametrize("dataset", BINARY)
@pytest.mark.parametrize("ratio", [None, 0.05, 0.8])
def test_binary_class_counts(dataset, ratio):
    data = {"dataset": dataset, "n_points": 500, "seed": 3}
    if ratio is not None:
        data["class_ratio"] = ratio
    _, y = both(parse_config(data))
    counts = np.bincount(y.astype(int), minlength=2).tolist()
    assert counts == {None: [250, 250], 0.05: [475, 25], 0.8: [100, 400]}[ratio]


@pytest.mark.parametrize("dataset", ["blobs", "spiral"])
@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("n, ratio", [(500, None), (301, None), (400, 0.4)])
def test_multiclass_counts(dataset, k, n, ratio):
    data = {"dataset": dataset, "classes": k, "n_points": n}
    if ratio is not None:
        data["class_ratio"] = ratio
    _, y = both(parse_config(data))
    counts = np.bincount(y.astype(int), minlength=k)
    assert counts.sum() == n and len(counts) == k
    assert counts.tolist() == expected_counts(n, k, ratio)
    if ratio is None:
        assert counts.max() - counts.min() <= 1
    else:
        assert counts[1] == round(n * ratio)


def test_circle_rule():
    """TFP: class 1 (its +1) inside radius 2.5, class 0 in the ring 3.5..5; with noise 0 the
    label is exactly ``radius < 2.5``; with noise, labels are taken at a shifted position."""
    x, y = both(parse_config({"dataset": "circle", "n_points": 1000, "train_ratio": 0.5}))
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_array_equal(y, (r < 2.5).astype(np.float32))
    assert np.all(r[y == 0] >= 3.5 - 1e-5) and np.all(r[y == 0] <= 5 + 1e-5)
    assert np.all(r[y == 1] <= 2.5)
    x, y = both(parse_config({"dataset": "circle", "n_points": 1000, "noise": 0.5}))
    r = np.hypot(x[:, 0], x[:, 1])
    wrong = y != (r < 2.5)
    assert 0 < wrong.mean() < 0.5


def test_xor_rule():
    x, y = both(parse_config({"dataset": "xor", "n_points": 1000}))
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] >= 0).astype(np.float32))
    assert np.all(np.abs(x) >= 0.3 - 1e-6) and np.all(np.abs(x) <= 5.3 + 1e-5)
    # every quadrant is used
    quadrants = {(bool(a > 0), bool(b > 0)) for a, b in x}
    assert len(quadrants) == 4


def test_plane_rule():
    x, y = both(parse_config({"problem": "regression", "dataset": "plane", "n_points": 1000}))
    np.testing.assert_allclose(y, (x[:, 0].astype(np.float64) + x[:, 1]) / 10, atol=1e-6)
    assert y.min() < -0.8 and y.max() > 0.8  # covers the domain
    x, y = both(parse_config({"problem": "regression", "dataset": "plane", "n_points": 1000, "noise": 0.3}))
    assert np.abs(y - (x[:, 0] + x[:, 1]) / 10).max() > 0.05  # noise moves the labels


def tfp_multigauss(x, y):
    """regressGaussian of TensorFlow Playground's dataset.ts: the bump largest in |value| wins,
    each bump a linear scale of the distance, 1 at the centre and 0 from distance 2."""
    gaussians = [(-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1)]
    label = 0.0
    for cx, cy, sign in gaussians:
        d = np.hypot(x - cx, y - cy)
        new = sign * min(max(1 - d / 2, 0.0), 1.0)
        if abs(new) > abs(label):
            label = new
    return label


def test_multigauss_rule():
    x, y = both(parse_config({"problem": "regression", "dataset": "multigauss", "n_points": 600}))
    want = np.array([tfp_multigauss(float(a), float(b)) for a, b in x])
    np.testing.assert_allclose(y, want, atol=1e-6)
    assert np.all((y >= -1) & (y <= 1)) and y.min() < -0.5 and y.max() > 0.5


def test_gauss_clusters():
    x, y = both(parse_config({"dataset": "gauss", "n_points": 1000}))
    for label, centre in ((1, 2.0), (0, -2.0)):
        pts = x[y == label]
        np.testing.assert_allclose(pts.mean(0), [centre, centre], atol=0.15)
        np.testing.assert_allclose(pts.std(0), [np.sqrt(0.5)] * 2, rtol=0.15)  # TFP: variance 0.5 at noise 0


def test_spiral_rule():
    """TFP genSpiral: point i of an arm at r = 5 i / n, angle t = 1.75 * 2 pi * i / n + deltaT,
    x = r sin t, y = r cos t; class 1 (TFP's +1) at deltaT = 0, class 0 at pi."""
    x, y = both(parse_config({"dataset": "spiral", "n_points": 500}))
    for label, delta in ((1, 0.0), (0, np.pi)):
        pts = x[y == label].astype(np.float64)
        r = np.hypot(pts[:, 0], pts[:, 1])
        t = 1.75 * 2 * np.pi * r / 5 + delta
        np.testing.assert_allclose(pts, np.stack([r * np.sin(t), r * np.cos(t)], 1), atol=1e-4)
        np.testing.assert_allclose(np.sort(r), np.arange(250) / 250 * 5, atol=1e-5)


def test_checkerboard_rule():
    x, y = both(parse_config({"dataset": "checkerboard", "n_points": 800}))
    cells = np.floor(x / 3.0).astype(int)
    np.testing.assert_array_equal(y, ((cells[:, 0] + cells[:, 1]) % 2 == 0).astype(np.float32))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_blobs_centres(k):
    x, y = both(parse_config({"dataset": "blobs", "classes": k, "n_points": 1000}))
    for label in range(k):
        a = 2 * np.pi * label / k + np.pi / 4
        np.testing.assert_allclose(x[y == label].mean(0), 3.5 * np.array([np.cos(a), np.sin(a)]), atol=0.2)


def test_moons_are_two_interleaved_half_circles():
    x, y = both(parse_config({"dataset": "moons", "n_points": 1000}))
    assert np.bincount(y.astype(int)).tolist() == [500, 500]
    assert x[y == 0, 1].mean() > x[y == 1, 1].mean()  # class 0 is the upper moon


def test_custom_points_honour_subset():
    pts = ([{"x1": 1.0, "x2": float(i) / 10, "label": 1, "subset": "train"} for i in range(5)]
           + [{"x1": -1.0, "x2": float(i) / 10, "label": -1, "subset": "test"} for i in range(4)]
           + [{"x1": 2.0, "x2": -float(i) / 10, "label": i % 2} for i in range(10)])
    cfg = parse_config({"dataset": "custom", "points": pts, "train_ratio": 0.3, "seed": 5})
    s = datasets.split(cfg)
    train = {tuple(p) for p in s.x_train.tolist()}
    test = {tuple(p) for p in s.x_test.tolist()}
    assert all((1.0, np.float32(i / 10)) in train for i in range(5))
    assert all((-1.0, np.float32(i / 10)) in test for i in range(4))
    assert len(s.x_train) == 5 + 3 and len(s.x_test) == 4 + 7  # free points: round(10 * 0.3) train
    assert set(s.y_test[s.x_test[:, 0] == -1].tolist()) == {0.0}  # label -1 is class 0
    assert set(s.y_train[s.x_train[:, 0] == 1].tolist()) == {1.0}
    # every free point lands in exactly one subset, with its own label
    free = [(2.0, np.float32(-i / 10), i % 2) for i in range(10)]
    got = {(a, b): c for (a, b), c in zip(s.x_train.tolist() + s.x_test.tolist(), s.y_train.tolist() + s.y_test.tolist())}
    assert all(got[(a, float(b))] == c for a, b, c in free)


def test_custom_regression_labels_are_kept():
    pts = [{"x1": 0.0, "x2": 0.0, "label": -0.5, "subset": "train"}, {"x1": 1.0, "x2": 1.0, "label": 0.75, "subset": "test"}]
    s = datasets.split(parse_config({"problem": "regression", "dataset": "custom", "points": pts}))
    assert s.y_train.tolist() == [-0.5] and s.y_test.tolist() == [0.75]


def test_features_match_their_definitions(np_ref):
    x = np.random.default_rng(0).uniform(-6, 6, (50, 2)).astype(np.float32)
    np.testing.assert_allclose(datasets.features(x), np_ref.features(x, FEATURES), rtol=1e-6, atol=1e-6)
    cfg = parse_config({"features": ["x2", "sin_x1"]})
    assert datasets.feature_mask(cfg).tolist() == [0, 1, 0, 0, 0, 1, 0]
