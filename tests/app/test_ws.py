"""Every message type and every class of bad input, through a real app (TestClient)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from tests.app.wsutil import ack, frame_where, recv


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_play_trains_and_loss_falls(client):
    with client.websocket_connect("/ws") as ws:
        state = recv(ws, "state")
        assert state["config"]["dataset"] == "circle" and state["server"]["max_units"] == 8
        ws.send_json({"type": "play"})
        first = frame_where(ws, lambda f: f["epoch"] > 0)
        later = frame_where(ws, lambda f: f["epoch"] > first["epoch"] + 40)
        assert later["metrics"]["train_loss"] < first["metrics"]["train_loss"]
        out = later["arrays"]["output"]
        assert out.dtype == np.uint8 and out.shape == (100, 100)
        assert later["arrays"]["layer0"].shape == (4, 20, 20)
        assert later["arrays"]["weights"].shape == (2 * 4 + 4 * 2 + 2 * 1 + 4 + 2 + 1,)
        # history is incremental: epochs strictly increase across frames, never re-sent
        seen = []
        for _ in range(5):
            seen += [row[0] for row in recv(ws, "frame")["history"]]
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        ws.send_json({"type": "pause"})
        assert recv(ws, "ack")["of"] == "pause"


def test_every_message_type(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "step", "epochs": 3, "id": 1})
        ack = recv(ws, "ack")
        assert ack["id"] == 1
        f = frame_where(ws, lambda f: f["epoch"] == 3)
        ws.send_json({"type": "patch", "patch": {"layers": [{"units": 3, "activation": "relu"}]}, "id": 2})
        ack = recv(ws, "ack")
        st = recv(ws, "state")
        assert st["config"]["layers"] == [{"units": 3, "activation": "relu"}] and "points" not in st  # same data
        f = frame_where(ws, lambda f: f["version"] == ack["version"])
        assert f["units"] == [3] and f["arrays"]["layer0"].shape == (3, 20, 20)
        # set a weight and see it in the frame: layer 0, input 1 -> unit 2
        ws.send_json({"type": "set_weight", "layer": 0, "kind": "w", "i": 1, "j": 2, "value": -1.25})
        ack = recv(ws, "ack")
        f = frame_where(ws, lambda f: f["version"] == ack["version"])
        assert f["arrays"]["weights"][1 * 3 + 2] == pytest.approx(-1.25)
        ws.send_json({"type": "set_weight", "layer": 1, "kind": "b", "j": 0, "value": 0.5})
        ack = recv(ws, "ack")
        f = frame_where(ws, lambda f: f["version"] == ack["version"])
        assert f["arrays"]["weights"][-1] == pytest.approx(0.5)
        ws.send_json({"type": "config", "config": {"dataset": "xor", "optimizer": "adam"}})
        recv(ws, "ack")
        st_xor = recv(ws, "state")
        assert st_xor["config"]["dataset"] == "xor"
        ws.send_json({"type": "regenerate", "seed": 5})
        recv(ws, "ack")
        st5 = recv(ws, "state")
        assert st5["config"]["seed"] == 5 and st5["points"] != st_xor["points"]  # new data, new points
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.01}})
        recv(ws, "ack")
        # same data: the page keeps the points it has, so they are not sent again
        st_lr = recv(ws, "state")
        assert st_lr["config"]["learning_rate"] == 0.01 and "points" not in st_lr
        ws.send_json({"type": "speed", "epochs_per_frame": 4})
        assert recv(ws, "ack")["of"] == "speed"
        ws.send_json({"type": "speed", "epochs_per_frame": "auto"})
        recv(ws, "ack")
        ws.send_json({"type": "reset"})
        recv(ws, "ack")
        assert recv(ws, "state")["epoch"] == 0
        n = len(st5["points"]["train"]) + len(st5["points"]["test"])  # the points the page has
        ws.send_json({"type": "add_points", "points": [{"x1": 1, "x2": 2, "label": 1}, {"x1": -1, "x2": 0, "label": 0}]})
        recv(ws, "ack")
        st = recv(ws, "state")
        assert st["config"]["dataset"] == "custom"
        assert len(st["points"]["train"]) + len(st["points"]["test"]) == n + 2
        ws.send_json({"type": "remove_point", "x1": 1, "x2": 2})
        recv(ws, "ack")
        st = recv(ws, "state")
        pts = st["points"]["train"] + st["points"]["test"]
        assert len(pts) == n + 1 and [1.0, 2.0, 1.0] not in pts
        ws.send_json({"type": "ping", "id": "x"})
        assert recv(ws, "pong")["id"] == "x"


BAD = [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    ('{"type": "dance"}', "unknown message type"),
    ('{"no_type": 1}', "unknown message type"),
    ('{"type": "patch", "patch": {"learning_rate": NaN}}', "NaN is not allowed"),
    ('{"type": "patch", "patch": {"learning_rate": 1e999}}', "learning_rate must be a finite number"),
    ('{"type": "patch", "patch": {"layers": [{"units": 12}]}}', "layers[0].units must be 1..8, got 12"),
    ('{"type": "patch", "patch": {"optimizer": "adamw"}}', "optimizer must be one of"),
    ('{"type": "patch", "patch": {"warp": 9}}', "warp is not a known setting"),
    ('{"type": "patch", "patch": {"problem": "regression", "dataset": "plane", "loss": "categorical_crossentropy"}}',
     "loss must be mse or mae"),
    ('{"type": "patch", "patch": "lr=1"}', "patch must be a JSON object"),
    ('{"type": "config", "config": {"batch_size": "ten"}}', "batch_size"),
    ('{"type": "step", "epochs": 0}', "epochs must be an integer 1..1000"),
    ('{"type": "step", "epochs": true}', "epochs must be an integer"),
    ('{"type": "set_weight", "layer": 7, "i": 0, "j": 0, "value": 1}', "layer must be an integer 0..2"),
    ('{"type": "set_weight", "layer": 0, "i": 0, "j": 9, "value": 1}', "j must be an integer 0..3"),
    ('{"type": "set_weight", "layer": 0, "i": 0, "j": 0, "value": "big"}', "value must be a finite number"),
    ('{"type": "speed", "epochs_per_frame": -3}', "epochs_per_frame must be an integer"),
    ('{"type": "add_points", "points": [{"x1": 99, "x2": 0, "label": 1}]}', "points[0].x1 must be -6..6, got 99"),
    ('{"type": "remove_point", "x1": "a", "x2": 0}', "x1 must be a finite number"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
]


@pytest.mark.parametrize("text,expect", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_input_is_answered_and_session_survives(client, text, expect):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_text(text)
        err = recv(ws, "error")
        assert expect in err["message"] or any(expect in m for m in err.get("messages", [])), err
        ws.send_json({"type": "step", "epochs": 2})
        frame_where(ws, lambda f: f["epoch"] == 2)


def test_oversized_binary_and_flood(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_text(json.dumps({"type": "ping", "pad": "x" * 70000}))
        assert "message too large" in recv(ws, "error")["message"]
        ws.send_bytes(b"\x00\x01")
        assert "binary messages" in recv(ws, "error")["message"]
        for _ in range(200):
            ws.send_text('{"type": "ping"}')
        assert "rate limit" in recv(ws, "error")["message"]
        import time

        time.sleep(2.5)
        ws.send_json({"type": "step", "epochs": 1})
        frame_where(ws, lambda f: f["epoch"] == 1)


def test_divergence_reported_and_reset_recovers(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "config", "config": {"problem": "regression", "dataset": "plane", "learning_rate": 10,
                                                   "layers": [{"units": 8, "activation": "relu"}] * 3,
                                                   "init": "he_normal"}})
        recv(ws, "ack")
        ws.send_json({"type": "step", "epochs": 50})
        f = frame_where(ws, lambda f: f["diverged"])
        assert f["arrays"]["output"].dtype == np.uint8  # grids stay valid
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.01}})
        recv(ws, "ack")
        ws.send_json({"type": "reset"})
        recv(ws, "ack")
        ws.send_json({"type": "step", "epochs": 3})
        f = frame_where(ws, lambda f: f["epoch"] == 3)
        assert not f["diverged"] and f["metrics"]["train_loss"] is not None


def test_every_setting_changes_without_compiling(client):
    before = metric(client.get("/metrics").text, "nnplay_xla_compilations")
    patches = [
        {"learning_rate": 0.3}, {"optimizer": "momentum", "momentum": 0.5}, {"optimizer": "rmsprop", "rho": 0.8},
        {"optimizer": "adam", "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}, {"optimizer": "sgd"},
        {"lr_schedule": "step", "decay_rate": 0.9, "decay_epochs": 2}, {"lr_schedule": "exponential"},
        {"lr_schedule": "cosine", "cosine_alpha": 0.1}, {"lr_schedule": "warmup_cosine", "warmup_epochs": 2},
        {"batch_size": 1}, {"batch_size": 50}, {"batch_size": 250}, {"shuffle": False}, {"l1": 0.01}, {"l2": 0.01},
        {"dropout": 0.3}, {"input_noise": 0.2}, {"batch_norm": True}, {"layer_norm": True, "batch_norm": False},
        {"early_stopping_patience": 3}, {"augmentation": {"jitter": 0.2, "flip_x1": True}},
        {"class_weight": "balanced", "class_ratio": 0.2},
        {"features": ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]},
        {"layers": []}, {"layers": [{"units": 8, "activation": a} for a in ("relu", "elu", "gelu", "silu", "sigmoid", "leaky_relu")]},
        {"layers": [{"units": 1, "activation": "linear"}]}, {"output_activation": "tanh", "loss": "mae"},
        {"dataset": "spiral", "classes": 3, "output_activation": "softmax", "loss": "categorical_crossentropy",
         "class_weight": None, "class_ratio": None},
        {"dataset": "blobs", "classes": 5}, {"n_points": 200, "noise": 0.3, "train_ratio": 0.8, "seed": 9},
        {"problem": "regression", "dataset": "multigauss", "classes": 2, "output_activation": "linear", "loss": "mse"},
    ]
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        for p in patches:
            ws.send_json({"type": "patch", "patch": p})
            msg = ack(ws, "config")
            ws.send_json({"type": "step", "epochs": 2})
            frame_where(ws, lambda f: f["version"] == msg["version"] and f["epoch"] >= 2)
    after = metric(client.get("/metrics").text, "nnplay_xla_compilations")
    assert after == before


def test_session_cap_and_origin(client, settings):
    socks = [client.websocket_connect("/ws") for _ in range(settings.max_sessions)]
    opened = [s.__enter__() for s in socks]
    try:
        for ws in opened:
            recv(ws, "state")
        with pytest.raises(WebSocketDisconnect) as exc:
            with client.websocket_connect("/ws") as extra:
                extra.receive_json()
        assert exc.value.code == 1013 and "server full" in exc.value.reason
    finally:
        for s in socks:
            s.__exit__(None, None, None)
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect("/ws", headers={"origin": "https://evil.example"}) as ws:
            ws.receive_json()
    assert exc.value.code == 1008


def test_quick_successive_patches_compose(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.3}})
        ws.send_json({"type": "patch", "patch": {"optimizer": "adam"}})
        ws.send_json({"type": "patch", "patch": {"l2": 0.001}})
        ack(ws, "config")
        ack(ws, "config")
        last = ack(ws, "config")
        st = recv(ws, "state")
        while st["version"] != last["version"]:
            st = recv(ws, "state")
        cfg = st["config"]
        assert (cfg["learning_rate"], cfg["optimizer"], cfg["l2"]) == (0.3, "adam", 0.001)


def test_send_loop_sends_messages_then_the_newest_frame_and_wakes_on_either():
    import asyncio

    from starlette.websockets import WebSocketState

    from app.ws import Outbox, _send_loop

    class FakeSession:
        def __init__(self):
            self.frames = []

        def take_frame(self):
            return self.frames.pop() if self.frames else None  # latest-wins: one at most

    class FakeWS:
        client_state = WebSocketState.CONNECTED

        def __init__(self):
            self.sent = []

        async def send_text(self, text):
            self.sent.append(json.loads(text))

        async def send_bytes(self, data):
            self.sent.append(data)

    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1

    async def scenario():
        ws, session, outbox, frames = FakeWS(), FakeSession(), Outbox(maxsize=3), Counter()
        for i in range(5):  # a client that has not read: only the newest 3 messages stay
            outbox.put({"i": i})
        session.frames.append(b"f1")
        task = asyncio.create_task(_send_loop(ws, session, outbox, type("M", (), {"frames_sent": frames})()))
        await asyncio.sleep(0.01)
        assert ws.sent == [{"i": 2}, {"i": 3}, {"i": 4}, b"f1"] and frames.n == 1
        session.frames.append(b"f2")  # a new frame, as the scheduler's notify announces it
        outbox.ready.set()
        await asyncio.sleep(0.01)
        outbox.put({"i": 5})  # a reply alone wakes it too
        await asyncio.sleep(0.01)
        assert ws.sent[4:] == [b"f2", {"i": 5}] and frames.n == 2
        await asyncio.sleep(0.01)  # nothing new: it waits, sends nothing
        assert len(ws.sent) == 6
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
