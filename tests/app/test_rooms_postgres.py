"""Classroom rooms through the real app on a real PostgreSQL server (the store's own checks run
on both backends in test_rooms_store.py): create, join, push, a judged challenge and its
leaderboard, with the database read back directly."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import wait_ready
from tests.app.test_rooms import auth, dash_until, join, new_room
from tests.app.wsutil import recv


@pytest.fixture(scope="module")
def pg_url(postgres):
    return postgres.new_database()


@pytest.fixture(scope="module")
def client(pg_url):
    s = Settings(warmup_sessions=[], max_sessions=5, database_url=pg_url, room_create_rate=1000,
                 room_join_rate=1000)
    with TestClient(create_app(s)) as c:
        wait_ready(c)
        yield c


def rows(url, sql, **params) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_the_app_migrates_postgres_at_start(client, pg_url):
    assert rows(pg_url, "SELECT version FROM schema_version") == [(3,)]
    tables = rows(pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert sorted(t for (t,) in tables) == ["members", "results", "rooms", "schema_version"]
    kinds = dict(rows(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'rooms'"))
    assert kinds["locks"] == "json" and kinds["hide_names"] == "boolean" and kinds["expires_at"] == "double precision"


def test_room_on_postgres_create_join_push_challenge_leaderboard(client, pg_url):
    room = new_room(client, "Lecture on PostgreSQL")
    code = room["code"]
    # the database holds the token's SHA-256, never the token
    stored = rows(pg_url, "SELECT * FROM rooms WHERE code = :code", code=code)
    assert len(stored) == 1 and room["token"] not in repr(stored)
    assert stored[0][1] == hashlib.sha256(room["token"].encode()).hexdigest()
    assert client.get(f"/api/rooms/{code}").json()["title"] == "Lecture on PostgreSQL"

    with client.websocket_connect("/ws") as ws, client.websocket_connect(f"/ws/room/{code}") as dws:
        dws.send_json({"type": "auth", "token": room["token"]})
        assert dws.receive_json()["type"] == "dashboard"
        member = join(ws, code, "Ada")["member_id"]
        assert rows(pg_url, "SELECT member_id, name FROM members WHERE room = :code", code=code) == [(member, "Ada")]
        assert client.get(f"/api/rooms/{code}").json()["members"] == 1

        # a push of x1², x2² straight into the output (3 parameters) separates circle quickly
        cfg = {"dataset": "circle", "features": ["x1_sq", "x2_sq"], "layers": [], "learning_rate": 0.3}
        r = client.post(f"/api/rooms/{code}/push", headers=auth(room), json={"preset": "mlp-xor", "config": cfg})
        assert r.status_code == 200, r.text
        pushed = recv(ws, "room_push")
        assert pushed["preset"] == "mlp-xor" and pushed["config"]["features"] == ["x1_sq", "x2_sq"]
        assert client.get(f"/api/rooms/{code}").json()["pushed"]["config"]["dataset"] == "circle"
        r = client.post(f"/api/rooms/{code}/locks", headers=auth(room), json={"locks": ["learning_rate"]})
        assert r.status_code == 200 and client.get(f"/api/rooms/{code}").json()["locks"] == ["learning_rate"]
        ws.send_json({"type": "config", "config": pushed["config"]})
        recv(ws, "state")

        ch = client.post(f"/api/rooms/{code}/challenge", headers=auth(room),
                         json={"title": "circle", "metric": "test_accuracy", "target": 0.9,
                               "rank_by": "params"}).json()["challenge"]
        assert recv(ws, "room_challenge")["challenge"]["id"] == ch["id"]
        ws.send_json({"type": "play"})
        hit = dash_until(dws, lambda m: m["type"] == "result", limit=5000)
        assert hit["member_id"] == member and hit["params"] == 3 and hit["test_accuracy"] >= 0.9
        ws.send_json({"type": "pause"})
        stored = rows(pg_url, "SELECT member_id, params, test_accuracy FROM results "
                              "WHERE room = :code AND challenge_id = :ch", code=code, ch=ch["id"])
        assert stored == [(member, 3, pytest.approx(hit["test_accuracy"]))]

        board = client.get(f"/api/rooms/{code}/leaderboard", headers=auth(room)).json()["leaderboard"]
        assert [(row["rank"], row["name"], row["params"]) for row in board] == [(1, "Ada", 3)]
        assert client.get(f"/api/rooms/{code}").json()["leaderboard"] is None  # not yet revealed
        client.post(f"/api/rooms/{code}/leaderboard", headers=auth(room), json={"revealed": True})
        client.post(f"/api/rooms/{code}/settings", headers=auth(room), json={"hide_names": True})
        public = client.get(f"/api/rooms/{code}").json()
        assert public["leaderboard_revealed"] is True and public["hide_names"] is True
        assert [row["name"] for row in public["leaderboard"]] == ["Student 1"]
        assert rows(pg_url, "SELECT leaderboard_revealed, hide_names FROM rooms WHERE code = :code",
                    code=code) == [(True, True)]

    client.delete(f"/api/rooms/{code}", headers=auth(room))
    assert client.get(f"/api/rooms/{code}").status_code == 404
    for table in ("rooms", "members", "results"):
        col = "code" if table == "rooms" else "room"
        assert rows(pg_url, f"SELECT count(*) FROM {table} WHERE {col} = :code", code=code) == [(0,)]
