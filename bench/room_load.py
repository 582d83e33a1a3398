"""Classroom broadcast benchmark: one room of N students on loopback, the lecturer pushes K times.

Starts ``nnplay serve`` on a free loopback port (app/process.py) with the session, per-address
connection and join-rate caps raised for N clients and a temporary rooms database; creates a
room over HTTP; connects N student websockets (``/ws``, each joins the room and stays paused,
reading everything the server sends) and the lecturer's dashboard socket; then POSTs K pushes
(each with a distinct seed, ``--gap`` seconds apart) and measures, per push, the time from
sending the POST to the moment the LAST student received its ``room_push`` (p50/p99 over the K
pushes), and per student and push the same for each student (p50/p99 over N*K). Also the POST's
own response time, server CPU % during the pushes and RSS. Clients and server share the
machine's cores, so the figures include the clients' own scheduling. Bounded in N, K and time;
stops the server it started.

    .venv/bin/python bench/room_load.py --students 200 --pushes 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from app import process  # noqa: E402
from app.process import free_port  # noqa: E402
from load import proc_stats  # noqa: E402

SEED0 = 1000


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[float, float, dict]:
    """(send time, response seconds, JSON body) of one request (perf_counter clock)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method=method, headers=headers)
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())
    return t0, time.perf_counter() - t0, out


async def student(url: str, code: str, idx: int, got: dict[int, float], joined: asyncio.Event, stop: asyncio.Event) -> None:
    """Join the room, then record when each push (by its seed) arrives; frames are read and dropped."""
    async with websockets.connect(url, max_size=2**24, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "join_room", "room": code, "name": f"s{idx}"}))
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if isinstance(msg, bytes):
                continue
            now = time.perf_counter()
            m = json.loads(msg)
            if m["type"] == "room_push":
                got.setdefault(m["config"]["seed"], now)
            elif m["type"] == "room_joined":
                joined.set()
            elif m["type"] == "error" and m.get("of") == "join_room":
                raise RuntimeError(f"student {idx}: {m['message']}")


async def dashboard(url: str, token: str, stop: asyncio.Event, counts: dict) -> None:
    """The lecturer's dashboard socket, consuming reports like the page does."""
    async with websockets.connect(url, max_size=2**24, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while not stop.is_set():
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except asyncio.TimeoutError:
                continue
            counts[msg["type"]] = counts.get(msg["type"], 0) + 1


def pct(a, q) -> float:
    return round(float(np.percentile(np.asarray(a) * 1000, q)), 1)


async def main_async(args) -> dict:
    port = free_port()
    data = tempfile.mkdtemp(prefix="nnplay-room-bench-")
    n = args.students
    proc = process.start(port, {
        "NNPLAY_MAX_SESSIONS": str(n + 20), "NNPLAY_MAX_CONNECTIONS_PER_IP": str(n + 20),
        "NNPLAY_ROOM_JOIN_RATE": "100000", "NNPLAY_ROOM_CREATE_RATE": "1000", "NNPLAY_ROOM_MAX_MEMBERS": str(n + 20),
        "NNPLAY_DATA_DIR": data, "NNPLAY_DATABASE_URL": ""}, log=subprocess.DEVNULL)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        ready_s = await asyncio.to_thread(process.wait_ready, port, proc, 900)
        base = f"http://127.0.0.1:{port}"
        _, _, made = await asyncio.to_thread(http, "POST", f"{base}/api/rooms", {"title": "bench"})
        code, token = made["code"], made["token"]
        got = [dict() for _ in range(n)]
        joined = [asyncio.Event() for _ in range(n)]
        t_join = time.perf_counter()
        for i in range(n):  # connect in small batches, as a class would
            tasks.append(asyncio.create_task(student(f"ws://127.0.0.1:{port}/ws", code, i, got[i], joined[i], stop)))
            if i % 20 == 19:
                await asyncio.sleep(0.05)
        all_joined = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in joined)))
        done, _ = await asyncio.wait([all_joined, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not all_joined:  # a student gave up (refused join, closed socket)
                raise t.exception() or RuntimeError("a student's socket closed before the pushes")
        all_joined.cancel()
        if not all(e.is_set() for e in joined):
            raise RuntimeError(f"only {sum(e.is_set() for e in joined)} of {n} students joined in 120 s")
        join_s = time.perf_counter() - t_join
        counts: dict = {}
        tasks.append(asyncio.create_task(dashboard(f"ws://127.0.0.1:{port}/ws/room/{code}", token, stop, counts)))
        await asyncio.sleep(2)  # reports flowing, joins settled

        cpu0, rss0 = proc_stats(proc.pid)
        w0 = time.perf_counter()
        last, each, post_s = [], [], []
        for k in range(args.pushes):
            seed = SEED0 + k
            t0, dt, _ = await asyncio.to_thread(http, "POST", f"{base}/api/rooms/{code}/push",
                                                {"config": {"seed": seed, "dataset": "spiral"}}, token)
            post_s.append(dt)
            deadline = time.perf_counter() + 30
            while any(seed not in g for g in got) and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            missing = sum(seed not in g for g in got)
            if missing:
                raise RuntimeError(f"push {k}: {missing} of {n} students did not receive it in 30 s")
            times = [g[seed] - t0 for g in got]
            last.append(max(times))
            each.extend(times)
            await asyncio.sleep(args.gap)
        wall = time.perf_counter() - w0
        cpu1, rss1 = proc_stats(proc.pid)
        return {
            "students": n, "pushes": args.pushes, "gap_s": args.gap,
            "push_to_last_student_ms_p50": pct(last, 50), "push_to_last_student_ms_p99": pct(last, 99),
            "push_to_last_student_ms_max": round(max(last) * 1000, 1),
            "push_to_student_ms_p50": pct(each, 50), "push_to_student_ms_p99": pct(each, 99),
            "push_post_ms_p50": pct(post_s, 50),
            "server_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
            "server_rss_mib_before": round(rss0, 1), "server_rss_mib_after": round(rss1, 1),
            "join_all_s": round(join_s, 1), "server_ready_s": round(ready_s, 1),
            "dashboard_messages": counts,
        }
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        process.stop(proc)


def table(r: dict) -> str:
    rows = [
        ("students", r["students"]), ("pushes", f"{r['pushes']} ({r['gap_s']} s apart)"),
        ("push → last student ms, p50 / p99 / max",
         f"{r['push_to_last_student_ms_p50']} / {r['push_to_last_student_ms_p99']} / {r['push_to_last_student_ms_max']}"),
        ("push → each student ms, p50 / p99", f"{r['push_to_student_ms_p50']} / {r['push_to_student_ms_p99']}"),
        ("push POST response ms, p50", r["push_post_ms_p50"]),
        ("server CPU % during pushes", r["server_cpu_percent"]),
        ("server RSS MiB before / after", f"{r['server_rss_mib_before']} / {r['server_rss_mib_after']}"),
        ("all students joined in s", r["join_all_s"]),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=200)
    p.add_argument("--pushes", type=int, default=20)
    p.add_argument("--gap", type=float, default=1.0, help="seconds between pushes")
    args = p.parse_args()
    if not 1 <= args.students <= 500 or not 1 <= args.pushes <= 100 or not 0 <= args.gap <= 10:
        raise SystemExit("--students must be 1..500, --pushes 1..100, --gap 0..10")
    # A SIGTERM (e.g. from `timeout`) still runs the finally block that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    result = asyncio.run(main_async(args))
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
