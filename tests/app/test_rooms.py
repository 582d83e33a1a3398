"""Classroom rooms through a real app (TestClient): who may do what, joins, locks, pushes,
reports and server-judged challenges."""

from __future__ import annotations

import base64
import sqlite3
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.main import create_app
from app.rooms.limits import RateLimiter
from app.settings import Settings
from tests.app.conftest import wait_ready
from tests.app.wsutil import frame_where, recv

EVIL = "<img src=x onerror=1>"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("rooms") / "rooms.db"


@pytest.fixture(scope="module")
def client(db):
    s = Settings(warmup_sessions=[], max_sessions=20, database_url=f"sqlite:///{db}",
                 room_create_rate=1000, room_join_rate=1000)
    with TestClient(create_app(s)) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def rooms(client):
    return client.app.state.nn.rooms


def new_room(client, title="t") -> dict:
    r = client.post("/api/rooms", json={"title": title})
    assert r.status_code == 201, r.text
    return r.json()


def auth(room: dict) -> dict:
    return {"Authorization": f"Bearer {room['token']}"}


def join(ws, code, name=None) -> dict:
    recv(ws, "state")
    ws.send_json({"type": "join_room", "room": code, **({"name": name} if name is not None else {})})
    return recv(ws, "room_joined")


def next_json(ws, want: str, limit: int = 2000) -> dict:
    """Next JSON message of type ``want`` on a socket that also receives frames."""
    return recv(ws, want, limit)


def dash_until(dws, pred, limit: int = 400) -> dict:
    for _ in range(limit):
        m = dws.receive_json()
        if pred(m):
            return m
    raise AssertionError("no dashboard message matched")


def snapshot(db, code) -> tuple:
    with sqlite3.connect(db) as c:
        room = c.execute("SELECT * FROM rooms WHERE code=?", (code,)).fetchall()
        members = c.execute("SELECT * FROM members WHERE room=? ORDER BY id", (code,)).fetchall()
        results = c.execute("SELECT * FROM results WHERE room=? ORDER BY id", (code,)).fetchall()
    return room, members, results


ACTIONS = [
    ("post", "/push", {"preset": "mlp-xor"}),
    ("post", "/locks", {"locks": ["learning_rate"]}),
    ("post", "/challenge", {"title": "x", "metric": "test_loss", "target": 0.5, "rank_by": "params"}),
    ("post", "/challenge/stop", {}),
    ("post", "/leaderboard", {"revealed": True}),
    ("post", "/settings", {"hide_names": True}),
    ("delete", "", None),
]


def test_create_and_public_state(client, db):
    room = new_room(client, "Lecture 3")
    code = room["code"]
    assert room["student_url"] == f"/#room={code}" and room["dashboard_url"] == f"/classroom#room={code}"
    state = client.get(f"/api/rooms/{code.lower()}").json()
    assert state["code"] == code and state["title"] == "Lecture 3" and state["members"] == 0
    assert state["leaderboard"] is None and state["expires_at"] > time.time() + 11 * 3600
    # the database holds the token's SHA-256, never the token
    with sqlite3.connect(db) as c:
        dump = "\n".join(c.iterdump())
    assert room["token"] not in dump
    import hashlib

    assert hashlib.sha256(room["token"].encode()).hexdigest() in dump
    qr = client.get(f"/api/rooms/{code}/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith("<svg") and f"http://testserver/#room={code}" in qr.text
    assert client.get("/api/rooms/ZZZZZZ").json() == {"error": "room ZZZZZZ not found or expired",
                                                      "messages": ["room ZZZZZZ not found or expired"]}
    assert client.get("/api/rooms/ZZZZZZ/qr.svg").status_code == 404
    r = client.post("/api/rooms", json={"title": "x" * 81})
    assert r.status_code == 422 and "title must be" in r.json()["error"]


def test_room_creation_is_rate_limited(client, rooms, monkeypatch):
    monkeypatch.setattr(rooms, "create_limit", RateLimiter(1, clock=lambda: 0.0))
    assert client.post("/api/rooms").status_code == 201
    r = client.post("/api/rooms")
    assert r.status_code == 429 and r.json()["error"].startswith("rate limit: at most 1 new rooms per minute")


@pytest.mark.parametrize("method,path,body", ACTIONS, ids=[a[1] or "delete" for a in ACTIONS])
def test_every_lecturer_action_is_refused_without_the_right_token(client, db, rooms, method, path, body):
    room, other = new_room(client), new_room(client)
    code = room["code"]
    # a room with some state to keep: a challenge, a member and a result
    client.post(f"/api/rooms/{code}/challenge", headers=auth(room),
                json={"title": "c", "metric": "test_accuracy", "target": 0.9, "rank_by": "time"})
    with client.websocket_connect("/ws") as ws:
        member = join(ws, code, "Ada")["member_id"]
        ch = client.get(f"/api/rooms/{code}").json()["challenge"]
        rooms.store.record_result(code, ch["id"], member, "Ada", 25, 0.1, 0.95, 10, 2.0, "time")
        before = snapshot(db, code)
        cases = [({}, 401, "lecturer token required"),
                 ({"Authorization": "Bearer wrong-token"}, 403, f"invalid lecturer token for room {code}"),
                 (auth(other), 403, f"invalid lecturer token for room {code}"),
                 ({"Authorization": room["token"]}, 401, "lecturer token required")]  # not a Bearer header
        for headers, status, message in cases:
            r = client.request(method.upper(), f"/api/rooms/{code}{path}", headers=headers, json=body)
            assert (r.status_code, r.json()["error"]) == (status, message), (headers, r.text)
        assert snapshot(db, code) == before
        # nothing was broadcast either: the next message after a ping is its pong
        ws.send_json({"type": "ping", "id": "p"})
        m = recv(ws)
        while m["type"] == "frame":
            m = recv(ws)
        assert m == {"type": "pong", "id": "p"}
        # and the right token works
        r = client.request(method.upper(), f"/api/rooms/{code}{path}", headers=auth(room), json=body)
        assert r.status_code == 200, r.text


def test_dashboard_socket_refuses_without_the_right_token(client, db):
    room, other = new_room(client), new_room(client)
    code = room["code"]
    before = snapshot(db, code)
    for first, reason in [({"type": "hello"}, "lecturer token required"),
                          ({"type": "auth"}, "lecturer token required"),
                          ({"type": "auth", "token": "wrong"}, "invalid lecturer token"),
                          ({"type": "auth", "token": other["token"]}, "invalid lecturer token")]:
        with client.websocket_connect(f"/ws/room/{code}") as dws:
            dws.send_json(first)
            with pytest.raises(WebSocketDisconnect) as e:
                dws.receive_json()
            assert (e.value.code, e.value.reason) == (1008, reason)
    with client.websocket_connect("/ws/room/ZZZZZZ") as dws:
        dws.send_json({"type": "auth", "token": room["token"]})
        with pytest.raises(WebSocketDisconnect) as e:
            dws.receive_json()
        assert e.value.reason == "room ZZZZZZ not found or expired"
    assert snapshot(db, code) == before
    with client.websocket_connect(f"/ws/room/{code}") as dws:
        dws.send_json({"type": "auth", "token": room["token"]})
        d = dws.receive_json()
        assert d["type"] == "dashboard" and d["room"]["code"] == code and d["members"] == []


def test_join_errors_and_names(client, rooms, monkeypatch):
    room = new_room(client)
    code = room["code"]
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        for msg, error in [({"room": "ZZZZZZ"}, "room ZZZZZZ not found or expired"),
                           ({"room": 5}, "room ? not found or expired"),
                           ({"room": code, "name": "x" * 25}, "name must be at most 24 characters, got 25")]:
            ws.send_json({"type": "join_room", **msg})
            assert recv(ws, "error") == {"type": "error", "of": "join_room", "message": error}
        # HTML in a name is data: stored and returned verbatim
        ws.send_json({"type": "join_room", "room": code, "name": f"  {EVIL} "})
        joined = recv(ws, "room_joined")
        assert joined["name"] == EVIL and joined["room"]["members"] == 1 and isinstance(joined["worker"], int)
        with client.websocket_connect(f"/ws/room/{code}") as dws:
            dws.send_json({"type": "auth", "token": room["token"]})
            assert dws.receive_json()["members"][0]["name"] == EVIL
        # joining the same room again renames, keeping the member id
        ws.send_json({"type": "join_room", "room": code, "name": "Ada"})
        again = recv(ws, "room_joined")
        assert again["member_id"] == joined["member_id"] and again["name"] == "Ada" and again["room"]["members"] == 1
        ws.send_json({"type": "leave_room"})
        assert recv(ws, "room_left") == {"type": "room_left", "room": code}
        assert client.get(f"/api/rooms/{code}").json()["members"] == 0

    # member cap
    monkeypatch.setattr(rooms.settings, "room_max_members", 2)
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b, \
            client.websocket_connect("/ws") as c:
        join(a, code), join(b, code)
        recv(c, "state")
        c.send_json({"type": "join_room", "room": code})
        assert recv(c, "error")["message"] == "room is full (2)"
    monkeypatch.undo()

    # join rate limit per address
    now = [0.0]
    monkeypatch.setattr(rooms, "join_limit", RateLimiter(2, clock=lambda: now[0]))
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        for _ in range(2):
            ws.send_json({"type": "join_room", "room": code})
            recv(ws, "room_joined")
            ws.send_json({"type": "join_room", "room": code, "name": "new"})  # a rename is no join
            recv(ws, "room_joined")
            ws.send_json({"type": "leave_room"})
            recv(ws, "room_left")
        ws.send_json({"type": "join_room", "room": code})
        err = recv(ws, "error")
        assert err["message"] == "join rate limit: at most 2 joins per minute from your address; try again in 30 s"
        now[0] = 30.0
        ws.send_json({"type": "join_room", "room": code})
        recv(ws, "room_joined")
    monkeypatch.undo()

    # expiry (a clock past the room's time to live)
    real = rooms.clock
    monkeypatch.setattr(rooms, "clock", lambda: real() + 12 * 3600 + 1)
    assert client.get(f"/api/rooms/{code}").status_code == 404
    r = client.post(f"/api/rooms/{code}/push", headers=auth(room), json={"preset": "mlp-xor"})
    assert r.status_code == 404 and r.json()["error"] == f"room {code} not found or expired"
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "join_room", "room": code})
        assert recv(ws, "error")["message"] == f"room {code} not found or expired"


def test_push_reaches_every_member_of_the_room_only(client):
    a, b = new_room(client), new_room(client)
    with client.websocket_connect("/ws") as s1, client.websocket_connect("/ws") as s2, \
            client.websocket_connect("/ws") as s3, client.websocket_connect("/ws") as lone:
        join(s1, a["code"]), join(s2, a["code"]), join(s3, b["code"])
        recv(lone, "state")
        r = client.post(f"/api/rooms/{a['code']}/push", headers=auth(a),
                        json={"preset": "mlp-xor", "config": {"learning_rate": 0.3}})
        assert r.status_code == 200
        for s in (s1, s2):
            p = recv(s, "room_push")
            assert p["preset"] == "mlp-xor" and p["view"] == "playground"
            assert p["config"]["dataset"] == "xor" and p["config"]["learning_rate"] == 0.3
            assert p["config"]["layers"] == [{"units": 4, "activation": "tanh"}]
            assert p["config"]["optimizer"] == "sgd"  # a full config: defaults filled in
        for s in (s3, lone):
            s.send_json({"type": "ping", "id": 1})
            m = recv(s)
            while m["type"] == "frame":
                m = recv(s)
            assert m["type"] == "pong", m
        # the last push is in the room's state for late joiners
        assert client.get(f"/api/rooms/{a['code']}").json()["pushed"]["preset"] == "mlp-xor"
        r = client.post(f"/api/rooms/{a['code']}/push", headers=auth(a), json={"config": {"learning_rate": 99}})
        assert r.status_code == 422 and r.json()["error"] == "learning_rate must be 1e-06..10, got 99"
        r = client.post(f"/api/rooms/{a['code']}/push", headers=auth(a), json={"preset": "nope"})
        assert r.status_code == 422 and r.json()["error"].startswith("preset must be one of tfp-default")
        # closing the room reaches its members
        client.delete(f"/api/rooms/{a['code']}", headers=auth(a))
        for s in (s1, s2):
            assert recv(s, "room_closed")["message"] == "the lecturer closed this room"
        assert client.get(f"/api/rooms/{a['code']}").status_code == 404


def test_locks_are_enforced_on_the_server(client):
    room = new_room(client)
    code = room["code"]
    with client.websocket_connect("/ws") as ws:
        join(ws, code)
        r = client.post(f"/api/rooms/{code}/locks", headers=auth(room), json={"locks": ["learning_rate", "activation"]})
        assert r.json() == {"type": "room_locks", "locks": ["learning_rate", "activation"]}
        assert recv(ws, "room_locks")["locks"] == ["learning_rate", "activation"]
        bad = client.post(f"/api/rooms/{code}/locks", headers=auth(room), json={"locks": ["learning_rat"]})
        assert bad.status_code == 422 and "unknown control 'learning_rat'" in bad.json()["error"]
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.5, "noise": 0.1}})
        assert recv(ws, "error")["message"] == "learning_rate is locked by the lecturer"
        ws.send_json({"type": "config", "config": {"learning_rate": 0.5}})
        assert recv(ws, "error")["message"] == "learning_rate is locked by the lecturer"
        ws.send_json({"type": "patch", "patch": {"layers": [{"units": 4, "activation": "relu"}]}})
        assert recv(ws, "error")["message"] == "activation is locked by the lecturer"
        # unlocked fields still apply (and a deeper network keeping the activation is fine)
        ws.send_json({"type": "patch", "patch": {"noise": 0.2, "layers": [{"units": 3, "activation": "tanh"}] * 3}})
        st = recv(ws, "state")
        assert st["config"]["noise"] == 0.2 and len(st["config"]["layers"]) == 3
        assert st["config"]["learning_rate"] == 0.03
        # the lecturer's push may change locked fields; the page applies it as a config
        client.post(f"/api/rooms/{code}/push", headers=auth(room), json={"config": {"learning_rate": 0.1}})
        pushed = recv(ws, "room_push")["config"]
        ws.send_json({"type": "config", "config": pushed})
        assert recv(ws, "state")["config"]["learning_rate"] == 0.1
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.03}})
        assert recv(ws, "error")["message"] == "learning_rate is locked by the lecturer"
        client.post(f"/api/rooms/{code}/locks", headers=auth(room), json={"locks": []})
        recv(ws, "room_locks")
        ws.send_json({"type": "patch", "patch": {"learning_rate": 0.03}})
        assert recv(ws, "state")["config"]["learning_rate"] == 0.03


def block_mean(grid: np.ndarray, k: int) -> np.ndarray:
    n = grid.shape[0] // k
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = grid[i * k:(i + 1) * k, j * k:(j + 1) * k].astype(float).mean()
    return np.round(out).astype(np.uint8)


def test_reports_reach_the_dashboard(client):
    room = new_room(client)
    code = room["code"]
    with client.websocket_connect("/ws") as s1, client.websocket_connect("/ws") as s2:
        recv(s1, "state")
        f1 = recv(s1, "frame")  # paused: the first frame stays the newest
        s1.send_json({"type": "join_room", "room": code, "name": "Ada"})
        m1 = recv(s1, "room_joined")["member_id"]
        m2 = join(s2, code, "Bob")["member_id"]
        # 3 features -> 3 -> 1 output: (3*3+3) + (3*1+1) = 16 parameters
        s2.send_json({"type": "patch", "patch": {"features": ["x1", "x2", "x1x2"],
                                                 "layers": [{"units": 3, "activation": "tanh"}]}})
        version = recv(s2, "state")["version"]
        f2 = frame_where(s2, lambda f: f["version"] == version)
        with client.websocket_connect(f"/ws/room/{code}") as dws:
            dws.send_json({"type": "auth", "token": room["token"]})
            d = dws.receive_json()
            assert [m["member_id"] for m in d["members"]] == [m1, m2]
            r1 = dash_until(dws, lambda m: m["type"] == "report" and m["member_id"] == m1)
            r2 = dash_until(dws, lambda m: m["type"] == "report" and m["member_id"] == m2
                            and m["params"] == 16)
            assert r1["params"] == 2 * 4 + 4 + 4 * 2 + 2 + 2 * 1 + 1 == 25 and r1["name"] == "Ada"
            assert r1["epoch"] == 0 and r1["playing"] is False and r1["thumb_size"] == 25
            for r, f in ((r1, f1), (r2, f2)):
                th = np.frombuffer(base64.b64decode(r["thumb"]), np.uint8).reshape(25, 25)
                np.testing.assert_array_equal(th, block_mean(f["arrays"]["output"], 4))
                assert r["test_loss"] == pytest.approx(f["metrics"]["test_loss"])
            # spotlight: a 50x50 thumb and the member's config, to this dashboard
            dws.send_json({"type": "spotlight", "member_id": m2})
            sp = dash_until(dws, lambda m: m["type"] == "report" and m.get("spot"))
            assert sp["member_id"] == m2 and sp["thumb_size"] == 50 and sp["config"]["features"] == ["x1", "x2", "x1x2"]
            th = np.frombuffer(base64.b64decode(sp["thumb"]), np.uint8).reshape(50, 50)
            np.testing.assert_array_equal(th, block_mean(f2["arrays"]["output"], 2))
            s1.close()
            assert dash_until(dws, lambda m: m["type"] == "member_left")["member_id"] == m1
        # students never receive reports (their own or anyone's)
        s2.send_json({"type": "ping", "id": 2})
        m = recv(s2)
        while m["type"] != "pong":
            assert m["type"] == "frame", m
            m = recv(s2)


def test_challenge_is_judged_from_real_training_and_ranked(client):
    room = new_room(client)
    code = room["code"]
    nets = {
        "Ada": {"dataset": "circle"},  # the default 2 -> 4 -> 2 -> 1: 25 parameters
        "Bob": {"dataset": "circle", "features": ["x1_sq", "x2_sq"], "layers": [], "learning_rate": 0.3},  # 3
        "Cy": {"dataset": "circle", "features": ["x1"], "layers": [], "learning_rate": 0.3},  # 2: cannot
    }
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b, \
            client.websocket_connect("/ws") as c, client.websocket_connect(f"/ws/room/{code}") as dws:
        dws.send_json({"type": "auth", "token": room["token"]})
        dws.receive_json()
        ids = {}
        for ws, (name, cfg) in zip((a, b, c), nets.items()):
            ids[name] = join(ws, code, name)["member_id"]
            ws.send_json({"type": "config", "config": cfg})
            recv(ws, "state")
        r = client.post(f"/api/rooms/{code}/challenge", headers=auth(room),
                        json={"title": "circle", "metric": "test_accuracy", "target": 0.9, "rank_by": "params"})
        ch = r.json()["challenge"]
        assert ch["active"] and ch["target"] == 0.9
        for ws in (a, b, c):
            assert recv(ws, "room_challenge")["challenge"]["id"] == ch["id"]
            ws.send_json({"type": "play"})
        # a student cannot submit a result
        c.send_json({"type": "result", "params": 1, "test_accuracy": 1.0})
        assert recv(c, "error")["message"].startswith('unknown message type "result"')
        results = {}
        while len(results) < 2:
            m = dash_until(dws, lambda m: m["type"] == "result")
            results[m["name"]] = m
        assert set(results) == {"Ada", "Bob"}
        assert results["Bob"]["params"] == 3 and results["Ada"]["params"] == 25
        for res in results.values():
            assert res["test_accuracy"] >= 0.9 and res["value"] == res["test_accuracy"] and res["epoch"] > 0
        own = recv(b, "room_result", limit=5000)["result"]
        assert own["member_id"] == ids["Bob"] and own["params"] == 3
        # hidden until revealed; the lecturer always sees it
        assert client.get(f"/api/rooms/{code}/leaderboard").status_code == 403
        board = client.get(f"/api/rooms/{code}/leaderboard", headers=auth(room)).json()["leaderboard"]
        assert [(row["rank"], row["name"], row["params"]) for row in board][:2] == [(1, "Bob", 3), (2, "Ada", 25)]
        assert "Cy" not in [row["name"] for row in board]
        assert client.get(f"/api/rooms/{code}").json()["leaderboard"] is None
        client.post(f"/api/rooms/{code}/challenge/stop", headers=auth(room))
        client.post(f"/api/rooms/{code}/leaderboard", headers=auth(room), json={"revealed": True})
        shown = recv(c, "room_leaderboard", limit=5000)
        assert [row["name"] for row in shown["leaderboard"]][:2] == ["Bob", "Ada"]
        public = client.get(f"/api/rooms/{code}").json()
        assert [row["name"] for row in public["leaderboard"]][:2] == ["Bob", "Ada"]
        assert set(public) == {"code", "title", "locks", "challenge", "pushed", "leaderboard_revealed",
                               "leaderboard", "hide_names", "members", "expires_at"}
        client.post(f"/api/rooms/{code}/settings", headers=auth(room), json={"hide_names": True})
        hidden = client.get(f"/api/rooms/{code}/leaderboard").json()["leaderboard"]
        assert [row["name"] for row in hidden][:2] == ["Student 1", "Student 2"]
        for ws in (a, b, c):
            ws.send_json({"type": "pause"})


def member_row(db, member_id) -> tuple:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT room, member_id, name, secret_hash, conn FROM members WHERE member_id=?",
                         (member_id,)).fetchone()


def pong(ws, id_="p") -> list[str]:
    """The types of the JSON messages before the pong (frames skipped)."""
    ws.send_json({"type": "ping", "id": id_})
    seen = []
    while (m := recv(ws))["type"] != "pong":
        if m["type"] != "frame":
            seen.append(m["type"])
    return seen


def test_a_reconnecting_student_keeps_their_member_and_result(client, db, monkeypatch):
    room, other = new_room(client), new_room(client)
    code = room["code"]
    r = client.post(f"/api/rooms/{code}/challenge", headers=auth(room),
                    json={"title": "c", "metric": "test_accuracy", "target": 0.9, "rank_by": "params"})
    ch = r.json()["challenge"]
    rooms = client.app.state.nn.rooms
    with client.websocket_connect(f"/ws/room/{code}") as dws:
        dws.send_json({"type": "auth", "token": room["token"]})
        assert dws.receive_json()["members"] == []
        with client.websocket_connect("/ws") as ws:
            first = join(ws, code, "Ada")
            mid, secret = first["member_id"], first["secret"]
            assert len(secret) >= 22 and "rejoined" not in first
            rooms.store.record_result(code, ch["id"], mid, "Ada", 3, 0.2, 0.95, 40, 2.5, "params")
            ws.close()  # (inside: leaving the block may cancel the server's side before it notices)
            # disconnected: gone from the wall and the count
            dash_until(dws, lambda m: m["type"] == "member_left" and m["member_id"] == mid)
        assert client.get(f"/api/rooms/{code}").json()["members"] == 0
        # the database holds the secret's SHA-256, never the secret
        import hashlib

        assert member_row(db, mid)[3] == hashlib.sha256(secret.encode()).hexdigest()
        with client.websocket_connect("/ws") as ws:
            recv(ws, "state")
            ws.send_json({"type": "join_room", "room": code.lower(), "member_id": mid, "secret": secret})
            again = recv(ws, "room_joined")
            assert again["member_id"] == mid and again["rejoined"] is True and "secret" not in again
            assert again["name"] == "Ada" and again["room"]["members"] == 1  # no name given: kept
            assert again["result"]["params"] == 3 and again["result"]["value"] == 0.95
            assert dash_until(dws, lambda m: m["type"] == "member_joined")["member_id"] == mid
            board = client.get(f"/api/rooms/{code}/leaderboard", headers=auth(room)).json()["leaderboard"]
            assert [(row["member_id"], row["params"]) for row in board] == [(mid, 3)]
            held = member_row(db, mid)

            # wrong secret, none, another member's id, another room's member: a new member each
            # time, the original untouched (and its connection not replaced)
            with client.websocket_connect("/ws") as o:
                theirs = join(o, other["code"], "Cy")
                with client.websocket_connect("/ws") as bob_ws:
                    bob = join(bob_ws, code, "Bob")
                    attempts = [{"member_id": mid, "secret": "x" * 32}, {"member_id": mid},
                                {"member_id": mid, "secret": bob["secret"]},
                                {"member_id": bob["member_id"], "secret": secret},
                                {"member_id": theirs["member_id"], "secret": theirs["secret"]},
                                {"member_id": mid, "secret": theirs["secret"]},
                                {"member_id": ["x"], "secret": {"a": 1}}]
                    for extra in attempts:
                        with client.websocket_connect("/ws") as eve:
                            recv(eve, "state")
                            eve.send_json({"type": "join_room", "room": code, "name": "Eve", **extra})
                            new = recv(eve, "room_joined")
                            assert new["member_id"] not in (mid, bob["member_id"], theirs["member_id"]), extra
                            assert new["name"] == "Eve" and new["secret"] and "rejoined" not in new
                            eve.send_json({"type": "leave_room"})  # out of the count again
                            recv(eve, "room_left")
                    assert member_row(db, mid) == held
                    assert member_row(db, theirs["member_id"])[:3] == (other["code"], theirs["member_id"], "Cy")
                    assert pong(ws) == [] and pong(o) == []
                    assert pong(bob_ws) == []
                    bob_ws.send_json({"type": "leave_room"})
                    recv(bob_ws, "room_left")

            # the same member from a second connection while the first still holds it (a
            # duplicated tab, a half-open socket): not counted twice even in a full room, and
            # the first connection lets go
            monkeypatch.setattr(rooms.settings, "room_max_members", 1)
            with client.websocket_connect("/ws") as dup:
                recv(dup, "state")
                dup.send_json({"type": "join_room", "room": code, "name": "Ada L.", "member_id": mid,
                               "secret": secret})
                taken = recv(dup, "room_joined")
                assert (taken["member_id"], taken["name"], taken["room"]["members"]) == (mid, "Ada L.", 1)
                assert recv(ws, "room_left") == {"type": "room_left", "room": code, "reason": "replaced"}
                with client.websocket_connect("/ws") as late:
                    recv(late, "state")
                    late.send_json({"type": "join_room", "room": code})
                    assert recv(late, "error")["message"] == "room is full (1)"
                monkeypatch.undo()
                # dup's close leaves the room (the replaced connection no longer holds the member)
                dup.close()
                dash_until(dws, lambda m: m["type"] == "member_left" and m["member_id"] == mid)
                assert client.get(f"/api/rooms/{code}").json()["members"] == 0
        board = client.get(f"/api/rooms/{code}/leaderboard", headers=auth(room)).json()["leaderboard"]
        assert [row["member_id"] for row in board] == [mid]

    # leaving on purpose forgets the member: its secret no longer takes it up
    with client.websocket_connect("/ws") as ws:
        recv(ws, "state")
        ws.send_json({"type": "join_room", "room": code, "member_id": mid, "secret": secret})
        assert recv(ws, "room_joined")["member_id"] == mid
        ws.send_json({"type": "leave_room"})
        recv(ws, "room_left")
        ws.send_json({"type": "join_room", "room": code, "member_id": mid, "secret": secret})
        assert recv(ws, "room_joined")["member_id"] != mid
    assert member_row(db, mid) is None


def test_a_revealed_leaderboard_follows_new_results(client):
    room = new_room(client)
    code = room["code"]
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        bob = join(a, code, "Bob")["member_id"]
        a.send_json({"type": "config", "config": {"dataset": "circle", "features": ["x1_sq", "x2_sq"], "layers": [],
                                                  "learning_rate": 0.3}})
        recv(a, "state")
        join(b, code, "Watcher")
        client.post(f"/api/rooms/{code}/challenge", headers=auth(room),
                    json={"title": "circle", "metric": "test_accuracy", "target": 0.9, "rank_by": "params"})
        client.post(f"/api/rooms/{code}/leaderboard", headers=auth(room), json={"revealed": True})
        for ws in (a, b):
            assert recv(ws, "room_leaderboard") == {"type": "room_leaderboard", "revealed": True, "leaderboard": []}
        a.send_json({"type": "play"})
        # no second reveal: the result alone brings the new ranking to every student
        shown = recv(b, "room_leaderboard", limit=5000)
        assert shown["revealed"] is True
        assert [(row["rank"], row["member_id"], row["name"], row["params"]) for row in shown["leaderboard"]] \
            == [(1, bob, "Bob", 3)]
        assert shown["leaderboard"][0]["value"] >= 0.9
        assert recv(a, "room_leaderboard", limit=5000)["leaderboard"] == shown["leaderboard"]
        lecturer = client.get(f"/api/rooms/{code}/leaderboard", headers=auth(room)).json()["leaderboard"]
        assert lecturer == shown["leaderboard"]
        a.send_json({"type": "pause"})


def test_leaderboard_broadcasts_are_coalesced(tmp_path):
    """50 results in a burst while revealed: one broadcast now, one with the final ranking later."""
    import asyncio

    from app.rooms.service import Rooms, room_channel

    async def main():
        rooms = Rooms(Settings(warmup_sessions=[], database_url=f"sqlite:///{tmp_path / 'r.db'}"),
                      monotonic=lambda: 100.0)
        await rooms.start()
        try:
            code = "ABCDEF"
            rooms.store.create_room(code, "h", "", 3600)
            ch = {"id": "c1", "title": "", "metric": "test_loss", "target": 0.5, "rank_by": "params",
                  "dataset": None, "started_at": 0.0, "active": True}
            rooms.store.update_room(code, challenge=ch, leaderboard_revealed=True)
            sub = await rooms.hub.subscribe(room_channel(code))
            rooms.store.record_result(code, "c1", "m0", "s0", 100, 0.1, None, 1, 1.0, "params")
            rooms.board_changed(code)
            first = await asyncio.wait_for(sub.__anext__(), 30)
            assert [r["member_id"] for r in first["leaderboard"]] == ["m0"]
            for i in range(1, 50):  # the burst: written while the first broadcast was just sent
                rooms.store.record_result(code, "c1", f"m{i}", f"s{i}", 100 - i, 0.1, None, 1, 1.0, "params")
                rooms.board_changed(code)
            assert len(rooms._board_due) == 1
            second = await asyncio.wait_for(sub.__anext__(), 30)
            assert [r["params"] for r in second["leaderboard"]] == list(range(51, 101))
            assert code not in rooms._board_due and sub.queue.empty()
        finally:
            await rooms.close()

    asyncio.run(main())
