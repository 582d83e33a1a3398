"""Teaching endpoints against independent computations."""

from __future__ import annotations

import ast
import base64
import io

import numpy as np
import pytest

from core.config import parse_config
from core.engine import Run
from tests.app.wsutil import frame_where, recv


def test_backprop_lecture_example(client):
    r = client.post("/api/backprop", json={})
    assert r.status_code == 200
    body = r.json()
    hidden, out = body["layers"]
    assert hidden["dE_dW"][0][0] == pytest.approx(0.0227, abs=1e-4)
    assert out["dE_dW"][0][0] == pytest.approx(0.168861, abs=1e-4)
    assert hidden["w_new"][0][0] == pytest.approx(0.499773, abs=1e-6)
    assert out["w_new"][0][0] == pytest.approx(0.49831139, abs=1e-6)
    assert [s["phase"] for s in body["steps"]][:1] == ["forward"] and body["steps"][-1]["phase"] == "update"


def test_backprop_rejects_bad_request(client):
    r = client.post("/api/backprop", json={"learning_rate": -1})
    assert r.status_code == 422 and "learning_rate" in r.json()["error"]
    r = client.post("/api/backprop", json={"inputs": [1, 2], "weights": [{"w": [[1.0]]}]})
    assert r.status_code == 422 and "weights" in r.json()["error"]


def test_sweep_equals_separate_runs(client):
    cfg = {"dataset": "xor", "layers": [{"units": 4, "activation": "tanh"}], "n_points": 200}
    lrs = [0.001, 0.03, 0.3]
    r = client.post("/api/sweep", json={"config": cfg, "learning_rates": lrs, "epochs": 20})
    assert r.status_code == 200, r.text
    runs = r.json()["runs"]
    engine = client.app.state.nn.engine
    names = engine.metric_names
    for lr, got in zip(lrs, runs):
        ref = Run(engine, parse_config({**cfg, "learning_rate": lr}))
        rows = ref.train(20)
        want = rows[-1][names.index("test_loss")]
        assert got["learning_rate"] == lr
        assert got["history"][-1][0] == 20
        assert got["history"][-1][2] == pytest.approx(float(want), rel=1e-4, abs=1e-6)
    assert {r["verdict"] for r in runs} <= {"too low", "right", "high", "too high"}


def test_sweep_marks_divergence_and_rejects_bad_input(client):
    cfg = {"problem": "regression", "dataset": "plane", "layers": [{"units": 8, "activation": "relu"}] * 2,
           "init": "he_normal"}
    r = client.post("/api/sweep", json={"config": cfg, "learning_rates": [0.01, 10.0], "epochs": 30})
    runs = r.json()["runs"]
    assert runs[1]["diverged"] and runs[1]["verdict"] == "too high" and not runs[0]["diverged"]
    r = client.post("/api/sweep", json={"config": cfg, "learning_rates": [0.1] * 9})
    assert r.status_code == 422 and "learning_rates" in r.json()["error"]
    r = client.post("/api/sweep", json={"config": {"layers": [{"units": 99}]}})
    assert r.status_code == 422 and "layers[0].units" in r.json()["error"]


def test_lr_range(client):
    r = client.post("/api/lr_range", json={"config": {"dataset": "circle"}, "epochs": 60})
    body = r.json()
    lrs = [p[0] for p in body["points"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-6)
    assert body["suggested_learning_rate"] is None or 1e-6 <= body["suggested_learning_rate"] <= 10


@pytest.mark.parametrize("fmt", ["keras", "pytorch", "jax", "json", "npz"])
def test_export_over_websocket(client, fmt):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "step", "epochs": 3})
        frame_where(ws, lambda f: f["epoch"] == 3)
        ws.send_json({"type": "export", "format": fmt})
        msg = recv(ws, "export")
        assert msg["format"] == fmt and msg["epoch"] == 3
        if fmt in ("keras", "pytorch", "jax"):
            ast.parse(msg["content"])
        elif fmt == "npz":
            z = np.load(io.BytesIO(base64.b64decode(msg["content"])))
            assert z["w0"].shape == (2, 4) and z["w2"].shape == (2, 1)
        ws.send_json({"type": "export", "format": "onnx"})
        assert "format must be one of" in recv(ws, "error")["message"]


def test_optimizer_paths_against_optax(client):
    import optax
    import jax.numpy as jnp

    r = client.post("/api/paths", json={"surface": "bowl", "learning_rate": 0.1, "steps": 20, "x0": -1.5, "y0": 1.0})
    body = r.json()
    assert set(body["paths"]) == {"sgd", "momentum", "rmsprop", "adam"}
    # sgd on x^2 + y^2: p <- p - lr * 2p  =>  p_k = (1 - 2 lr)^k p_0 (the lecture's gradient [2x, 2y])
    pts = np.array(body["paths"]["sgd"]["points"])
    assert np.allclose(pts[-1], np.array([-1.5, 1.0]) * 0.8**20, atol=1e-9)
    # adam: optax applied directly
    opt = optax.adam(0.1)
    p = jnp.array([-1.5, 1.0])
    s = opt.init(p)
    for _ in range(20):
        u, s = opt.update(2 * p, s)
        p = p + u
    assert np.allclose(body["paths"]["adam"]["points"][-1], np.asarray(p), atol=1e-5)
    assert len(body["grid"]) == 80
    r = client.post("/api/paths", json={"surface": "mexican-hat"})
    assert r.status_code == 422 and "surface must be one of" in r.json()["error"]
    r = client.post("/api/paths", json={"steps": 0})
    assert r.status_code == 422 and "steps must be" in r.json()["error"]


def test_paths_rejects_non_string_surface(client):
    r = client.post("/api/paths", json={"surface": {"a": 1}})
    assert r.status_code == 422 and "surface must be one of" in r.json()["error"]
