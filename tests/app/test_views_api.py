"""The teaching views' server side: A/B regularizer runs, the hidden-space message and the
learning-rate range test, each against separate engine runs or a NumPy forward pass."""

from __future__ import annotations

import base64
import json
import math
import time

import numpy as np
import pytest

from app.settings import Settings
from core.config import parse_config
from core.engine import Run
from tests.app.wsutil import ack, recv

BATCHED = 3  # compiled here so that /api/ab takes its batched path


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(warmup_sessions=[BATCHED], max_sessions=3, rate_limit=40, idle_pause_s=300)


@pytest.fixture(scope="module")
def batched_client(client):
    t_end = time.monotonic() + 900
    while BATCHED not in client.app.state.nn.scheduler.batched_sizes:
        assert time.monotonic() < t_end, "batched size did not compile"
        time.sleep(0.5)
    return client


AB_CFG = {"dataset": "spiral", "noise": 0.3, "n_points": 200, "train_ratio": 0.3,
          "layers": [{"units": 8, "activation": "relu"}] * 2, "optimizer": "adam", "learning_rate": 0.02}


def _separate(engine, cfg: dict, epochs: int) -> np.ndarray:
    """(epoch, train loss, test loss) of every epoch of a run of its own."""
    rows = Run(engine, parse_config(cfg)).train(epochs)
    names = engine.metric_names
    return rows[:, [names.index("epoch"), names.index("train_loss"), names.index("test_loss")]]


@pytest.mark.parametrize("reg, strength, on, batched", [
    ("dropout", 0.3, {"dropout": 0.3}, True),
    ("l1", 0.01, {"l1": 0.01}, True),
    ("augmentation", 0.4, {"augmentation": {"jitter": 0.4}}, True),
    ("batch_norm", None, {"batch_norm": True}, False),  # a different network: one after the other
])
def test_ab_equals_two_separate_runs(batched_client, reg, strength, on, batched):
    epochs = 40
    body = {"config": AB_CFG, "regularizer": reg, "epochs": epochs}
    if strength is not None:
        body["strength"] = strength
    r = batched_client.post("/api/ab", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["batched"] is batched
    engine = batched_client.app.state.nn.engine
    for side, cfg in (("a", AB_CFG), ("b", {**AB_CFG, **on})):
        res = got[side]
        ref = _separate(engine, cfg, epochs)
        hist = np.array(res["history"], np.float64)
        assert hist[-1][0] == epochs
        want = ref[np.isin(ref[:, 0], hist[:, 0])]
        np.testing.assert_allclose(hist[:, 1:], want[:, 1:], rtol=2e-4, atol=1e-6)
        assert res["gap"] == pytest.approx(res["final_test_loss"] - res["final_train_loss"])
        grid = np.frombuffer(base64.b64decode(res["grid"]), np.uint8)
        assert grid.size == res["grid_size"] ** 2 == 100 * 100 and grid.min() < grid.max()
        w = res["weights"]
        assert sum(w["counts"]) == w["n"] == 2 * 8 + 8 * 8 + 8 * 1 and 0 <= w["zeroed"] <= w["n"]
    assert got["a"]["weights"]["edges"] == got["b"]["weights"]["edges"]  # shared bins
    assert got["a"]["history"] != got["b"]["history"]


def test_ab_l1_zeroes_weights(batched_client):
    cfg = {**AB_CFG, "features": ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"], "learning_rate": 0.01}
    body = {"config": cfg, "regularizer": "l1", "strength": 0.01, "epochs": 300}
    got = batched_client.post("/api/ab", json=body).json()
    assert got["b"]["weights"]["zeroed"] > got["a"]["weights"]["zeroed"] + 10


@pytest.mark.parametrize("body, expect", [
    ({"regularizer": "weight_decay"}, "regularizer must be one of l1, l2, dropout, input_noise, batch_norm, augmentation"),
    ({"regularizer": "dropout", "strength": 0.95}, "strength must be a finite number 0.05..0.9, got 0.95"),
    ({"regularizer": "l2", "strength": "big"}, "strength must be a finite number 1e-05..1"),
    ({"regularizer": "batch_norm", "strength": 0.1}, "strength does not apply to batch_norm"),
    ({"regularizer": "l2", "epochs": 5000}, "epochs must be an integer 1..2000, got 5000"),
    ({"regularizer": "augmentation", "flips": "yes"}, "flips must be true or false"),
    ({"regularizer": "l2", "config": {"layers": [{"units": 12}]}}, "layers[0].units must be 1..8, got 12"),
])
def test_ab_rejects_bad_input(client, body, expect):
    r = client.post("/api/ab", json={"config": {}, **body})
    assert r.status_code == 422
    assert expect in r.json()["error"]


def _np_hidden(weights, cfg, x, layer):
    feats = {"x1": x[:, 0], "x2": x[:, 1], "x1_sq": x[:, 0] ** 2, "x2_sq": x[:, 1] ** 2, "x1x2": x[:, 0] * x[:, 1],
             "sin_x1": np.sin(x[:, 0]), "sin_x2": np.sin(x[:, 1])}
    h = np.stack([feats[f] for f in cfg["features"]], 1)
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z))}
    for lw, spec in list(zip(weights, cfg["layers"]))[: layer + 1]:
        h = act[spec["activation"]](h @ np.array(lw["w"]) + np.array(lw["b"]))
    return h


def test_hidden_message_equals_numpy_forward(client):
    cfg = {"dataset": "xor", "features": ["x1", "x2", "x1x2"], "n_points": 200,
           "layers": [{"units": 3, "activation": "tanh"}, {"units": 4, "activation": "relu"}], "learning_rate": 0.1}
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "config", "config": cfg})
        state = recv(ws, "state")
        ws.send_json({"type": "step", "epochs": 15})
        ack(ws, "step")
        ws.send_json({"type": "hidden", "layer": 1, "i": 3, "j": 0, "id": 9})
        got = recv(ws, "hidden")
        ws.send_json({"type": "export", "format": "json"})
        weights = json.loads(recv(ws, "export")["content"])["weights"]
    assert got["id"] == 9 and got["epoch"] == 15 and (got["layer"], got["i"], got["j"]) == (1, 3, 0)
    lines = np.array(got["lines"])
    assert lines.shape == (42, 50, 2)
    t = np.linspace(-6, 6, 21)
    s = np.linspace(-6, 6, 50)
    grid = np.concatenate([np.stack(np.meshgrid(s, t), -1), np.stack(np.meshgrid(s, t), -1)[..., ::-1]])
    want = _np_hidden(weights, cfg, grid.reshape(-1, 2), 1)[:, [3, 0]]
    np.testing.assert_allclose(lines.reshape(-1, 2), want, atol=2e-4)
    train = np.array(state["points"]["train"])
    pts = np.array(got["points"])
    np.testing.assert_allclose(pts[:, :2], _np_hidden(weights, cfg, train[:, :2], 1)[:, [3, 0]], atol=2e-3)
    np.testing.assert_array_equal(pts[:, 2], train[:, 2])


@pytest.mark.parametrize("patch, msg, expect", [
    ({}, {"layer": 2, "i": 0, "j": 1}, "layer must be an integer 0..1, got 2"),
    ({}, {"layer": 1, "i": 2, "j": 0}, "i must be an integer 0..1, got 2"),
    ({}, {"layer": 0, "i": 0, "j": 5}, "j must be an integer 0..3, got 5"),
    ({}, {"layer": 0, "i": 0, "j": -1}, "j must be an integer 0..7, got -1"),
    ({}, {"layer": 0, "i": 0}, "j must be an integer 0..7, got null"),  # the server's limit, before the network
    ({}, {"layer": 0, "i": 8, "j": 0}, "i must be an integer 0..7, got 8"),
    ({"layers": []}, {"layer": 0, "i": 0, "j": 0}, "needs at least one hidden layer"),
])
def test_hidden_rejects_bad_indices(client, patch, msg, expect):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        if patch:
            ws.send_json({"type": "patch", "patch": patch})
            recv(ws, "state")
        ws.send_json({"type": "hidden", **msg})
        err = recv(ws, "error")
        assert expect in err["message"]
        ws.send_json({"type": "ping"})  # the session goes on
        assert recv(ws, "pong")["type"] == "pong"


def test_lr_range_suggestion_trains_well(client):
    cfg = {"dataset": "circle"}
    r = client.post("/api/lr_range", json={"config": cfg, "epochs": 100})
    assert r.status_code == 200, r.text
    body = r.json()
    lr = body["suggested_learning_rate"]
    assert 1e-3 <= lr <= 1
    # it lies before the loss blows up: not past the lowest loss of the test
    finite = [p for p in body["points"] if p[1] is not None]
    assert lr <= min(finite, key=lambda p: p[1])[0]
    engine = client.app.state.nn.engine
    loss = _separate(engine, {**cfg, "learning_rate": lr}, 300)[-1][2]
    slow = _separate(engine, {**cfg, "learning_rate": 1e-3}, 300)[-1][2]
    assert loss < 0.2 and loss < slow / 3 and math.isfinite(loss)


def test_lr_range_rejects_empty_range(client):
    r = client.post("/api/lr_range", json={"config": {}, "lr_min": 0.1, "lr_max": 0.01})
    assert r.status_code == 422 and "lr_max must be greater than lr_min" in r.json()["error"]
