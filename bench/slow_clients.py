"""Slow and misbehaving websocket clients against a real ``nnplay serve`` on loopback.

N abusive clients (default 200) connect and play: a third never read (tiny receive buffer,
so TCP backpressure reaches the server at once), a third read one message every few
seconds, a third read for a moment and then drop the TCP connection without a close
handshake and reconnect (bounded). Five normal clients play and read everything. Measured:
the normal clients' frames/s before and while the abusers are connected, and the server's
RSS (VmRSS from /proc/<pid>/status) once a second. Everything is bounded in count and time.

    .venv/bin/python bench/slow_clients.py --clients 200 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from app import process  # noqa: E402
from app.process import free_port  # noqa: E402

HOST = "127.0.0.1"  # loopback only


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def small_socket(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, port))
    s.setblocking(False)
    return s


async def normal_client(port: int, stop: asyncio.Event, counts: dict, key: int) -> None:
    async with connect(f"ws://{HOST}:{port}/ws", max_size=2**24, open_timeout=60) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "play"}))
        while not stop.is_set():
            try:
                m = await asyncio.wait_for(ws.recv(), timeout=1)
            except asyncio.TimeoutError:
                continue
            if isinstance(m, bytes):
                counts[key] = counts.get(key, 0) + 1
            if counts.get(("ping", key), 0) < time.monotonic() // 20:  # keep clear of the idle pause
                counts[("ping", key)] = time.monotonic() // 20
                await ws.send('{"type": "ping"}')


async def abusive_client(port: int, mode: str, stop: asyncio.Event, stats: dict, rng: random.Random) -> None:
    reconnects = 0
    while not stop.is_set() and reconnects < 20:
        try:
            sock = small_socket(port) if mode == "never" else None
            kw = {"sock": sock} if sock else {}
            ws = await connect(f"ws://{HOST}:{port}/ws", max_size=2**24, max_queue=1, open_timeout=60, **kw)
        except Exception as err:  # refused (server full) counts, and ends this client
            stats["connect_failed"] = stats.get("connect_failed", 0) + 1
            stats.setdefault("connect_errors", set()).add(type(err).__name__)
            return
        stats["connected"] = stats.get("connected", 0) + 1
        try:
            await ws.send(json.dumps({"type": "play"}))
            await ws.send(json.dumps({"type": "speed", "epochs_per_frame": 1}))
            if mode == "never":
                await stop.wait()
            elif mode == "slow":
                while not stop.is_set():
                    await asyncio.sleep(3)
                    await asyncio.wait_for(ws.recv(), timeout=5)
            else:  # read a little, then vanish mid-stream without a close handshake
                t_end = time.monotonic() + rng.uniform(0.5, 4)
                while time.monotonic() < t_end and not stop.is_set():
                    await asyncio.wait_for(ws.recv(), timeout=5)
                ws.transport.abort()
                stats["aborted"] = stats.get("aborted", 0) + 1
                reconnects += 1
                continue
        except Exception as err:
            stats.setdefault("errors", set()).add(type(err).__name__)
            reconnects += 1
        finally:  # never leave a socket open behind (the server would rightly keep its session)
            ws.transport.abort()
        if mode != "drop":
            return


async def measure(port: int, pid: int, args) -> dict:
    rng = random.Random(args.seed)
    counts: dict = {}
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()
    stop_all = asyncio.Event()

    async def sampler():
        while not stop_all.is_set():
            v = rss_mib(pid)
            if v is not None:
                rss.append((round(time.monotonic() - t0, 1), round(v, 1)))
            await asyncio.sleep(1)

    samp = asyncio.create_task(sampler())
    normals = [asyncio.create_task(normal_client(port, stop_all, counts, k)) for k in range(args.normal)]

    def fps(dt: float, before: dict) -> list[float]:
        return [round((counts.get(k, 0) - before.get(k, 0)) / dt, 1) for k in range(args.normal)]

    await asyncio.sleep(min(5, args.seconds / 2))  # normal clients settle
    c0, t_a = dict(counts), time.monotonic()
    await asyncio.sleep(args.baseline_seconds)
    baseline = fps(time.monotonic() - t_a, c0)
    rss_before = rss[-1][1] if rss else None

    stop_abuse = asyncio.Event()
    stats = {m: {} for m in ("never", "slow", "drop")}
    modes = ["never", "slow", "drop"]
    abusers = []
    for i in range(args.clients):
        mode = modes[i % 3]
        abusers.append(asyncio.create_task(abusive_client(port, mode, stop_abuse, stats[mode], rng)))
        if i % 20 == 19:
            await asyncio.sleep(0.2)
    t_connected = round(time.monotonic() - t0, 1)
    c1, t_b = dict(counts), time.monotonic()
    await asyncio.sleep(args.seconds)
    during = fps(time.monotonic() - t_b, c1)
    rss_during_max = max((v for t, v in rss if t >= t_connected), default=None)
    stop_abuse.set()
    await asyncio.wait(abusers, timeout=30)
    for t in abusers:
        t.cancel()
    await asyncio.sleep(5)  # the server notices the departures
    c2, t_c = dict(counts), time.monotonic()
    await asyncio.sleep(args.baseline_seconds)
    after = fps(time.monotonic() - t_c, c2)
    stop_all.set()
    await asyncio.wait(normals + [samp], timeout=30)
    with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=10) as r:
        health = json.loads(r.read())
    for s in stats.values():
        for k in ("errors", "connect_errors"):
            if k in s:
                s[k] = sorted(s[k])
    return {
        "normal_fps_baseline": baseline, "normal_fps_with_abusers": during, "normal_fps_after": after,
        "abuser_stats": stats, "abusers_connected_at_s": t_connected,
        "rss_mib_before": rss_before, "rss_mib_max_with_abusers": rss_during_max,
        "rss_mib_end": rss[-1][1] if rss else None, "rss_series": rss[:: max(1, len(rss) // 40)],
        "sessions_after": health["sessions"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200, help="abusive clients (at most 1000)")
    ap.add_argument("--normal", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30, help="time with the abusers connected (at most 600)")
    ap.add_argument("--baseline-seconds", type=float, default=8)
    ap.add_argument("--warmup-sessions", default="", help="NNPLAY_WARMUP_SESSIONS for the server")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.clients = max(0, min(args.clients, 1000))
    args.seconds = max(1.0, min(args.seconds, 600.0))
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="nnplay-slow-")) / "server.log"
    env = {**os.environ, "NNPLAY_WARMUP_SESSIONS": args.warmup_sessions,
           "NNPLAY_MAX_SESSIONS": str(args.clients + args.normal + 10),
           "NNPLAY_MAX_CONNECTIONS_PER_IP": str(args.clients + args.normal + 10)}
    with open(log_path, "wb") as log:
        proc = process.start(port, env, log=log)
    try:
        warm = process.wait_ready(port, proc, 600)
        result = asyncio.run(asyncio.wait_for(measure(port, proc.pid, args), timeout=args.seconds + 3 * 60))
        result["server_alive"] = proc.poll() is None
    finally:
        process.stop(proc)
    text = log_path.read_text(errors="replace")
    result.update({"args": vars(args), "warmup_s": round(warm, 1), "log": str(log_path),
                   "log_tracebacks": text.count("Traceback"), "log_exception_lines": text.count("Exception")})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
