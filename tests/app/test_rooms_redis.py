"""Rooms across processes: a real Redis server and a real ``nnplay serve --workers 2``."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from app import process
from app.rooms.hub import RedisHub

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = process.free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import redis

        r = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        r.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_hub_publishes_across_instances(redis_url):
    async def main():
        a, b = RedisHub(redis_url), RedisHub(redis_url)
        await a.start(), await b.start()
        try:
            sub_b = await b.subscribe("room:ABCDEF")
            sub_b2 = await b.subscribe("room:ABCDEF")
            sub_a = await a.subscribe("room:ABCDEF")
            other = await b.subscribe("room:OTHER2")
            await a.publish("room:ABCDEF", {"type": "room_push", "n": 1})
            for sub in (sub_a, sub_b, sub_b2):
                assert await asyncio.wait_for(sub.__anext__(), 5) == {"type": "room_push", "n": 1}
            assert other.queue.empty()
            sub_b.close()
            await b.publish("room:ABCDEF", {"n": 2})  # b's remaining subscriber still gets it
            assert await asyncio.wait_for(sub_b2.__anext__(), 5) == {"n": 2}
            assert await asyncio.wait_for(sub_a.__anext__(), 5) == {"n": 2}
            assert sub_b.queue.qsize() == 1  # only the end marker
        finally:
            await a.close(), await b.close()

    asyncio.run(main())


def http(port, method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


async def next_of(ws, kind: str, timeout: float = 60) -> dict:
    """Next JSON message of a type (frames and other messages skipped)."""
    async def loop():
        while True:
            m = await ws.recv()
            if isinstance(m, str):
                msg = json.loads(m)
                if msg["type"] == kind:
                    return msg
    return await asyncio.wait_for(loop(), timeout)


def test_two_workers_share_a_room(redis_url, tmp_path):
    import websockets

    port = process.free_port()
    env = {"NNPLAY_WORKERS": "2", "NNPLAY_REDIS_URL": redis_url, "NNPLAY_WARMUP_SESSIONS": "",
           "NNPLAY_DATABASE_URL": f"sqlite:///{tmp_path / 'rooms.db'}"}
    log = open(tmp_path / "server.log", "wb")
    proc = process.start(port, env, log=log)
    try:
        process.wait_ready(port, proc, timeout=300)
        room = http(port, "POST", "/api/rooms", {"title": "two workers"})
        code, token = room["code"], room["token"]

        async def main():
            uri = f"ws://127.0.0.1:{port}"
            dash = await websockets.connect(f"{uri}/ws/room/{code}", max_size=None)
            await dash.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(await dash.recv())["type"] == "dashboard"
            students, pids = [], {}
            for i in range(24):  # connections land on either worker; open until both are seen
                if len(set(pids.values())) == 2 and len(students) >= 4:
                    break
                ws = await websockets.connect(f"{uri}/ws", max_size=None)
                await ws.send(json.dumps({"type": "join_room", "room": code, "name": f"s{i}"}))
                joined = await next_of(ws, "room_joined")
                students.append(ws)
                pids[joined["member_id"]] = joined["worker"]
            assert len(set(pids.values())) == 2, f"all students on one worker: {pids}"
            await asyncio.to_thread(http, port, "POST", f"/api/rooms/{code}/push", {"preset": "mlp-xor"}, token)
            for ws in students:
                push = await next_of(ws, "room_push", timeout=30)
                assert push["preset"] == "mlp-xor" and push["config"]["dataset"] == "xor"
            seen: dict[str, int] = {}
            while {pids[m] for m in seen} != set(pids.values()) or len(seen) < len(pids):
                rep = await next_of(dash, "report", timeout=30)
                assert rep["params"] == 25 and rep["worker"] == pids[rep["member_id"]]
                seen[rep["member_id"]] = rep["worker"]
            for ws in students + [dash]:
                await ws.close()

        asyncio.run(main())
    finally:
        process.stop(proc)
        log.close()
