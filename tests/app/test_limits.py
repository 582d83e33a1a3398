"""Operator limits, idle timeout, numerics under abuse, and HTTP hardening, through TestClient.

One app with lowered limits (max_units=4, max_points=200, 2 connections per address,
frame-ancestors 'none'). Settings that the server reads on every connection or message
(trusted proxies, idle timeout) are changed per test on that app's Settings object, which
is what an operator's NNPLAY_* values would set, without paying another engine warm-up.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import wait_ready
from tests.app.wsutil import frame_where, recv


@pytest.fixture(scope="module")
def lim_settings() -> Settings:
    return Settings(warmup_sessions=[], max_sessions=8, max_units=4, max_points=200, max_connections_per_ip=2,
                    rate_limit=1000, frame_ancestors="'none'")


@pytest.fixture(scope="module")
def lim(lim_settings):
    app = create_app(lim_settings)

    async def boom():
        raise RuntimeError("secret internals")

    app.add_api_route("/_boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c, timeout=300)
        yield c


def ack(ws, of: str, limit: int = 400) -> dict:
    """The next ack of ``of``; an error reply fails the test instead of waiting forever."""
    for _ in range(limit):
        msg = recv(ws)
        assert msg["type"] != "error", msg
        if msg["type"] == "ack" and msg["of"] == of:
            return msg
    raise AssertionError(f"no ack of {of}")


def refused(client, headers=None) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect("/ws", headers=headers or {}) as ws:
            ws.receive_json()
            ws.receive_json()
    return exc.value


def assert_valid_frame(f: dict) -> None:
    out = f["arrays"]["output"]
    assert out.dtype == np.uint8 and out.shape == (100, 100)
    for name, a in f["arrays"].items():
        if name.startswith("layer"):
            assert a.dtype == np.uint8
    assert np.all(np.isfinite(f["arrays"]["weights"]))
    if not f["diverged"]:
        for k in ("train_loss", "test_loss"):
            v = f["metrics"][k]
            assert v is None or np.isfinite(v), (k, v)


# --- connection limits ---------------------------------------------------------------------

def test_connections_per_ip_capped_forwarded_for_ignored_from_untrusted_peer(lim, monkeypatch):
    monkeypatch.setattr(lim.app.state.nn.settings, "trusted_proxies", [])
    with lim.websocket_connect("/ws", headers={"x-forwarded-for": "10.0.0.1"}) as a, \
            lim.websocket_connect("/ws", headers={"x-forwarded-for": "10.0.0.2"}) as b:
        recv(a, "state"), recv(b, "state")
        # the header is not believed: all three come from the TestClient peer
        exc = refused(lim, {"x-forwarded-for": "10.0.0.3"})
        assert exc.code == 1013 and "too many connections" in exc.reason
    with lim.websocket_connect("/ws") as c:  # slots are given back on close
        assert recv(c, "state")["type"] == "state"


def test_connections_per_ip_use_forwarded_for_from_trusted_proxy(lim, monkeypatch):
    monkeypatch.setattr(lim.app.state.nn.settings, "trusted_proxies", ["testclient"])
    hdr = lambda ip: {"x-forwarded-for": f"{ip}, 172.16.0.9"}  # noqa: E731  (first hop is the client)
    with lim.websocket_connect("/ws", headers=hdr("10.0.0.1")) as a, \
            lim.websocket_connect("/ws", headers=hdr("10.0.0.1")) as b, \
            lim.websocket_connect("/ws", headers=hdr("10.0.0.2")) as c:
        for ws in (a, b, c):
            recv(ws, "state")
        exc = refused(lim, hdr("10.0.0.1"))
        assert exc.code == 1013 and "(2)" in exc.reason
        assert lim.app.state.nn.per_ip == {"10.0.0.1": 2, "10.0.0.2": 1}
    assert lim.app.state.nn.per_ip == {}


def test_idle_session_paused_then_closed(lim, monkeypatch):
    nn = lim.app.state.nn
    monkeypatch.setattr(nn.settings, "idle_timeout_s", 3.0)  # the pause check runs once per tick: margin
    monkeypatch.setattr(nn.scheduler, "idle_pause_s", 1.0)
    t0 = time.monotonic()
    with lim.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "play"})
        notice, closed = None, None
        for _ in range(5000):  # frames until paused, then the close
            m = ws.receive()
            if m["type"] == "websocket.close":
                closed = m
                break
            if m.get("text") and '"notice"' in m["text"]:
                notice = time.monotonic() - t0
            assert time.monotonic() - t0 < 30
        assert notice is not None and notice >= 1.0
        assert closed is not None and closed["code"] == 1000 and closed["reason"] == "idle timeout"
        assert 3.0 <= time.monotonic() - t0 < 30
    assert not nn.sessions


# --- server-side network and data limits ------------------------------------------------------

def test_max_units_and_points_enforced(lim):
    with lim.websocket_connect("/ws") as ws:
        st = recv(ws, "state")
        assert st["server"]["max_units"] == 4 and st["server"]["max_points"] == 200
        assert st["config"]["n_points"] <= 200 and all(la["units"] <= 4 for la in st["config"]["layers"])
        # the start config fits the limits, so an unrelated patch is accepted (it used to fail:
        # "n_points must be 10..200, got 500", the unvalidated default)
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.1}})
        ack(ws, "config")
        ws.send_json({"type": "patch", "patch": {"layers": [{"units": 6}]}})
        assert recv(ws, "error")["message"] == "layers[0].units must be 1..4, got 6"
        ws.send_json({"type": "config", "config": {"layers": [{"units": 4}] * 2 + [{"units": 5}]}})
        assert recv(ws, "error")["message"] == "layers[2].units must be 1..4, got 5"
        ws.send_json({"type": "patch", "patch": {"n_points": 201}})
        assert recv(ws, "error")["message"] == "n_points must be 10..200, got 201"
        pts = [{"x1": (i % 20) / 4 - 2.5, "x2": (i // 20) - 5, "label": i % 2} for i in range(201)]
        ws.send_json({"type": "config", "config": {"dataset": "custom", "points": pts}})
        assert recv(ws, "error")["message"] == "points must hold at most 200 points, got 201"
        n = len(st["points"]["train"]) + len(st["points"]["test"])
        ws.send_json({"type": "add_points", "points": pts[: 201 - n]})
        assert "at most 200 points" in recv(ws, "error")["message"]
        # at the limits, it trains
        ws.send_json({"type": "patch", "patch": {"layers": [{"units": 4}] * 6, "n_points": 100}, "id": 1})
        v = ack(ws, "config")["version"]
        ws.send_json({"type": "step", "epochs": 3})
        f = frame_where(ws, lambda f: f["version"] == v and f["epoch"] >= 3)
        assert f["units"] == [4] * 6
        assert_valid_frame(f)


# --- numerics under abuse ---------------------------------------------------------------------

def test_huge_weights_stay_valid_and_reset_recovers(lim):
    with lim.websocket_connect("/ws") as ws:
        st = recv(ws, "state")
        units = [la["units"] for la in st["config"]["layers"]]
        ins = [len(st["config"]["features"])] + units
        outs = units + [1]
        n = 0
        for layer, (a, b) in enumerate(zip(ins, outs)):
            for i in range(a):
                for j in range(b):
                    ws.send_json({"type": "set_weight", "layer": layer, "kind": "w", "i": i, "j": j,
                                  "value": 100.0 if (i + j) % 2 else -100.0})
                    n += 1
            for j in range(b):
                ws.send_json({"type": "set_weight", "layer": layer, "kind": "b", "j": j, "value": 100.0})
                n += 1
        for _ in range(n):
            ack(ws, "set_weight")
        ws.send_json({"type": "patch", "patch": {"learning_rate": 10.0, "optimizer": "sgd"}})
        ack(ws, "config")
        ws.send_json({"type": "step", "epochs": 40})
        f = frame_where(ws, lambda f: f["epoch"] >= 40)
        assert_valid_frame(f)
        assert f["diverged"] or all(v is None or np.isfinite(v) for v in f["metrics"].values()
                                    if isinstance(v, float))
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.03}})
        ack(ws, "config")
        ws.send_json({"type": "reset"})
        ack(ws, "reset")
        ws.send_json({"type": "step", "epochs": 3})
        f = frame_where(ws, lambda f: f["epoch"] == 3)
        assert_valid_frame(f)
        assert not f["diverged"] and np.isfinite(f["metrics"]["train_loss"])
        assert float(np.max(np.abs(f["arrays"]["weights"]))) < 50


def test_batch_norm_on_zero_variance_data(lim):
    pts = [{"x1": 1.5, "x2": -0.5, "label": i % 2} for i in range(40)]
    with lim.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "config", "config": {"dataset": "custom", "points": pts, "batch_norm": True,
                                                   "layer_norm": False, "batch_size": 8, "optimizer": "adam"}})
        st = recv(ws, "state")
        assert st["config"]["n_points"] <= 200  # a full config gets defaults that fit the limits
        v = st["version"]
        ws.send_json({"type": "step", "epochs": 30})
        f = frame_where(ws, lambda f: f["version"] == v and (f["epoch"] >= 30 or f["diverged"]))
        assert_valid_frame(f)
        assert f["diverged"] or np.isfinite(f["metrics"]["train_loss"])
        # also layer norm, and both, on the same degenerate data
        for patch in ({"batch_norm": False, "layer_norm": True}, {"batch_norm": True, "layer_norm": True}):
            ws.send_json({"type": "patch", "patch": patch})
            v = ack(ws, "config")["version"]
            ws.send_json({"type": "step", "epochs": 10})
            f = frame_where(ws, lambda f: f["version"] == v and (f["epoch"] >= 40 or f["diverged"]))
            assert_valid_frame(f)


# --- HTTP hardening ---------------------------------------------------------------------------

def test_security_headers_follow_settings(lim):
    for path in ("/", "/healthz", "/api/schema", "/static/does-not-exist.js", "/_boom"):
        r = lim.get(path)  # /_boom: a 500 from Starlette's outermost error middleware
        csp = r.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert "script-src 'self'" in csp and "object-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_errors_carry_no_traceback(lim):
    responses = {
        404: lim.get("/no/such/page"),
        422: lim.post("/api/backprop", content=b"{not json", headers={"content-type": "application/json"}),
        500: lim.get("/_boom"),
    }
    responses[4220] = lim.post("/api/sweep", json={"epochs": "x" * 10})
    for i, body in enumerate((b"NaN", b"Infinity", b"-Infinity", b"[NaN]")):  # were 500s (NaN echoed in 422)
        for path in ("/api/backprop", "/api/lr_range", "/api/paths"):
            responses[10000 + 10 * i + len(path)] = lim.post(path, content=body, headers={"content-type": "application/json"})
    for code, r in responses.items():
        assert r.status_code == (422 if code >= 4220 else code), (code, r.text)
        for leak in ("Traceback", 'File "', "secret internals", "RuntimeError", "/work/", "site-packages"):
            assert leak not in r.text, (code, r.text[:500])


def test_static_traversal_refused(lim):
    for path in ("/static/../app/main.py", "/static/%2e%2e/app/main.py", "/static/..%2fapp%2fmain.py",
                 "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static//etc/passwd", "/static/..\\app\\main.py",
                 "/static/%252e%252e/app/main.py"):
        r = lim.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "create_app" not in r.text and "root:" not in r.text, path
