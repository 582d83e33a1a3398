"""``nnplay train``: bad configs exit 2 with the field-naming message on stderr and no traceback;
a good config prints one JSON object whose weights, fed back, reproduce the same predictions
(checked with a NumPy forward pass of those weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import data as datasets
from core.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def nnplay(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("nnplay")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]
    return subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300)


BAD = [
    ('{"layers": [{"units": 4}, {"units": 2}, {"units": 12}]}', "layers[2].units must be 1..8, got 12"),
    ('{"learning_rate": NaN}', "learning_rate must be a finite number, got nan"),
    ('{"learning_rate": "fast"}', "learning_rate must be a valid number"),
    ('{"optimiser": "adam"}', "optimiser is not a known setting"),
    ('{"dataset": "plane"}', "dataset 'plane' is a regression dataset"),
    ('{"dataset": "blobs", "classes": 3, "loss": "binary_crossentropy"}',
     "loss binary_crossentropy needs output_activation sigmoid, got 'softmax'"),
    ('[1, 2]', "config must be a JSON object, got list"),
    ('{"layers": [', "config is not valid JSON"),
    ('', "config is not valid JSON"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_bad_config_exits_2_with_the_message(text, message):
    p = nnplay("train", "-", "--epochs", "5", stdin=text)
    assert p.returncode == 2
    assert p.stdout == ""
    assert f"nnplay train: {message}" in p.stderr
    assert "Traceback" not in p.stderr


def test_several_messages_one_line_each():
    p = nnplay("train", "-", stdin='{"noise": 2, "batch_size": 0}')
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert "nnplay train: noise must be 0..0.5, got 2" in lines
    assert "nnplay train: batch_size must be 1..4000, got 0" in lines


def test_unreadable_file_and_bad_epochs(tmp_path):
    p = nnplay("train", str(tmp_path / "missing.json"))
    assert p.returncode == 2 and "nnplay train: cannot read" in p.stderr and "Traceback" not in p.stderr
    p = nnplay("train", "-", "--epochs", "-1", stdin="{}")
    assert p.returncode == 2 and "--epochs must be >= 0, got -1" in p.stderr and "Traceback" not in p.stderr


CONFIG = {"dataset": "xor", "n_points": 200, "seed": 4, "features": ["x1", "x2", "x1x2"],
          "layers": [{"units": 3, "activation": "relu"}, {"units": 2, "activation": "tanh"}], "learning_rate": 0.05}


def np_outputs(weights, cfg, x, np_ref):
    return np_ref.mlp(weights, x, {"features": cfg.features, "layers": [layer.model_dump() for layer in cfg.layers],
                                   "output_activation": cfg.resolved_output_activation})


@pytest.mark.slow
def test_good_config_and_weights_round_trip(tmp_path, np_ref):
    p = nnplay("train", "-", "--epochs", "5", stdin=json.dumps(CONFIG))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert isinstance(out, dict)
    assert out["epochs"] == 5 and out["epoch"] == 5
    assert isinstance(out["wall_seconds"], float) and out["wall_seconds"] > 0
    assert out["epochs_per_second"] == pytest.approx(5 / out["wall_seconds"], rel=1e-2, abs=1e-3)
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "precision", "recall", "f1"):
        assert np.isfinite(out[key])
    assert 0 <= out["test_accuracy"] <= 1 and out["diverged"] is False
    cfg = parse_config(CONFIG)
    assert out["n_params"] == cfg.n_params == 3 * 3 + 3 + 3 * 2 + 2 + 2 * 1 + 1
    shapes = [(np.array(lw["w"]).shape, np.array(lw["b"]).shape) for lw in out["weights"]]
    assert shapes == [((3, 3), (3,)), ((3, 2), (2,)), ((2, 1), (1,))]
    conf = np.array(out["confusion"])
    assert conf.shape == (2, 2) and conf.sum() == 100

    # The printed weights and metrics agree with a NumPy forward pass on the same test points.
    split = datasets.split(cfg)
    prob = np_outputs(out["weights"], cfg, split.x_test, np_ref)[:, 0]
    y = split.y_test.astype(np.float64)
    np.testing.assert_allclose(out["test_accuracy"], ((prob > 0.5) == (y > 0.5)).mean(), atol=1e-6)
    bce = -(y * np.log(prob) + (1 - y) * np.log(1 - prob)).mean()
    np.testing.assert_allclose(out["test_loss"], bce, rtol=1e-4)

    # Fed back as starting weights (from a file this time), with no training: same everything.
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**CONFIG, "weights": out["weights"]}))
    p2 = nnplay("train", str(path), "--epochs", "0")
    assert p2.returncode == 0, p2.stderr
    again = json.loads(p2.stdout)
    assert again["epochs"] == 0
    assert again["weights"] == out["weights"]
    assert again["confusion"] == out["confusion"]
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert again[key] == pytest.approx(out[key], rel=1e-6, abs=1e-7)


def test_bench_with_the_reference_prints_both_and_their_ratios():
    """``nnplay bench --reference`` times TF Playground's loop on this machine first (after
    its replay check) and prints nnplay's figures for nets (a) and (b) with the ratios issue
    2's targets are stated in, computed from the printed figures."""
    out = nnplay("bench", "--seconds", "0.05", "--sessions", "3", "--reference")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[1]["replay_a"] == {"epochs": 1000, "max_abs_loss_difference": 0}
    nets = {row["net"]: row for row in lines[2:]}
    assert set(nets) == {"a", "b"} and nets["a"]["narrow"] and not nets["b"]["narrow"]
    for row in nets.values():
        assert row["train_epochs_per_s"] > 0 and row["tfp_train_epochs_per_s"] > 0 and row["batched_sessions"] == 3
        assert row["train_ratio"] == round(row["train_epochs_per_s"] / row["tfp_train_epochs_per_s"], 2)
        assert row["frame_ratio"] == round(row["tfp_frame_ms"] / row["frame_ms"], 2)
    # a crowd of narrow networks: batched narrow calls, and a frame's cost per session in one
    assert nets["a"]["batched_narrow_session_epochs_per_s"] > 0 and nets["a"]["crowd_frame_ms"] > 0
    assert "crowd_frame_ms" not in nets["b"]
