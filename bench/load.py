"""Load benchmark: N websocket clients on loopback, each playing its own net (a).

Starts ``nnplay serve`` on a free loopback port (or uses --url), connects N clients, plays for
--seconds, changes the learning rate every second per client (each client reads every frame's
header and decodes every --decode-every-th frame whole) and measures:
delivered frames/s per client and epochs/s per session (p50, p5 and the slowest), control change -> first
frame reflecting it (p50, p99 ms), server CPU % (and per frame delivered) and RSS (of a server
at --url too, given --server-pid), and the machine's idle share. Bounded in clients and time;
stops the server it started.

    .venv/bin/python bench/load.py --clients 1 --seconds 15
    .venv/bin/python bench/load.py --clients 200 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app import process  # noqa: E402
from app.process import free_port  # noqa: E402
from app.session import decode_frame, frame_header  # noqa: E402

NET_A = {"dataset": "spiral", "n_points": 500, "features": ["x1", "x2"],
         "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "tanh"}],
         "optimizer": "sgd", "learning_rate": 0.03, "batch_size": 10}


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MiB) of a process and its children."""
    cpu, rss = 0.0, 0.0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text().split()
            cpu += (int(stat[13]) + int(stat[14])) / tick
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return cpu, rss


def machine_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of the whole machine since boot (Linux's /proc/stat; None elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal


async def client(url: str, seconds: float, out: dict, idx: int, start_evt: asyncio.Event, full_every: int = 1) -> None:
    box = [0, None, None, None, None]  # frames, first epoch, last epoch, their arrival times
    lat: list[float] = []
    by_tag: dict[str, float] = {}  # change sent, not yet acknowledged
    by_version: dict[int, float] = {}  # acknowledged: waiting for a frame of that version
    async with websockets.connect(url, max_size=2**24) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "config", "config": {**NET_A, "seed": idx}}))
        await ws.send(json.dumps({"type": "play"}))
        # Read (and drop) what arrives until every client is connected, as a page does: a
        # client that did not read would find its socket full of stale frames at the start
        # (it put the first second's changes 1-1.8 s behind; docs/benchmarks.md, tenth session).
        while not start_evt.is_set():
            try:
                await asyncio.wait_for(ws.recv(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
        # One deadline for the whole measurement (``asyncio.timeout``), not a ``wait_for`` per
        # message: that made a task for every frame, ~2,000 a second at 200 clients, on the
        # same two cores as the server.
        try:
            async with asyncio.timeout(seconds):
                await measure(ws, idx, box, by_tag, by_version, lat, full_every)
        except TimeoutError:
            pass
    frames, epochs0, epochs1, t0, t1 = box
    trained = (epochs1 or 0) - (epochs0 or 0)
    # A session's epochs a second: those between its first and last frames of the window over
    # the time between them. Over the whole window instead, the time before the first frame and
    # after the last one counted with none of its epochs (they arrive in frames outside the
    # window): about one frame interval's worth, 0.3 % at 15 frames/s, more for a client whose
    # frames came unevenly. That figure is kept as ``eps_window``.
    out[idx] = {"fps": frames / seconds, "eps": trained / (t1 - t0) if frames > 1 and t1 > t0 else 0.0,
                "eps_window": trained / seconds, "lat": lat}


async def measure(ws, idx: int, box: list, by_tag: dict, by_version: dict, lat: list, full_every: int = 1) -> None:
    """Count frames and their epochs (``box``: frames, first and last epoch, their times), change the
    learning rate once a second and time each change until the first frame of its version;
    until cancelled. Every frame's header is parsed (version, epoch); every ``full_every``-th
    frame is inflated and decoded whole, which checks its payload. A page decodes every frame,
    but on its own machine: here the clients share the server's two cores, and inflating
    every frame cost them ~6 % of a core at 200 clients (docs/benchmarks.md, thirteenth
    session, has figures both ways)."""
    next_change = time.monotonic() + random.random()
    while True:
        msg = await ws.recv()
        now = time.monotonic()
        if isinstance(msg, bytes):
            header = decode_frame(msg)[0] if box[0] % full_every == 0 else frame_header(msg)
            box[0] += 1
            if box[1] is None:
                box[1], box[3] = header["epoch"], now
            box[2], box[4] = header["epoch"], now
            for v in [v for v in by_version if header["version"] >= v]:
                lat.append(now - by_version.pop(v))
        else:
            m = json.loads(msg)
            if m["type"] == "ack" and m.get("of") == "config" and m.get("id") in by_tag:
                by_version[m["version"]] = by_tag.pop(m["id"])
        if now >= next_change:
            next_change = now + 1.0
            tag = f"c{idx}-{now}"
            by_tag[tag] = now
            await ws.send(json.dumps({"type": "patch", "id": tag,
                                      "patch": {"learning_rate": random.choice([0.01, 0.03, 0.1])}}))


async def main_async(args) -> dict:
    proc = None
    url = args.url
    if not url:
        port = free_port()
        sizes = tuple(args.warmup_sessions) if args.warmup_sessions is not None else (() if args.clients == 1 else (8, 32, 64))
        proc = process.start(port, {
            "NNPLAY_MAX_SESSIONS": str(max(args.clients, 1) + 5), "NNPLAY_WARMUP_SESSIONS": ",".join(map(str, sizes)),
            "NNPLAY_MAX_CONNECTIONS_PER_IP": str(args.clients + 5), "NNPLAY_RATE_LIMIT": "100",
            "NNPLAY_WS_COMPRESSION": "false" if args.no_compression else "true"},
            log=open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL)
        ready_s = await asyncio.to_thread(process.wait_ready, port, proc, 900, sizes)
        url = f"ws://127.0.0.1:{port}/ws?payload=deflate-raw"  # inflates frames, as browsers do
    try:
        out: dict = {}
        start_evt = asyncio.Event()
        tasks = [asyncio.create_task(client(url, args.seconds, out, i, start_evt, args.decode_every)) for i in range(args.clients)]
        await asyncio.sleep(min(10, 1 + args.clients * 0.05))
        pid = proc.pid if proc else args.server_pid  # the server whose CPU and RSS are measured
        cpu0, _ = proc_stats(pid) if pid else (0, 0)
        own0 = time.process_time()
        m0 = machine_times()
        t0 = time.monotonic()
        start_evt.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.seconds + 120)
        wall = time.monotonic() - t0
        own = time.process_time() - own0
        m1 = machine_times()
        cpu1, rss = proc_stats(pid) if pid else (0, 0)
        fps = np.array([o["fps"] for o in out.values()])
        if os.environ.get("LOAD_DUMP"):  # every client's rates, for a look at their spread
            Path(os.environ["LOAD_DUMP"]).write_text(json.dumps({i: [o["fps"], o["eps"]] for i, o in sorted(out.items())}))
        eps = np.array([o["eps"] for o in out.values()])
        lat = np.concatenate([o["lat"] for o in out.values()] or [np.zeros(0)]) * 1000
        return {
            "clients": args.clients, "seconds": args.seconds, "compression": not args.no_compression,
            "frames_per_s_p50": round(float(np.median(fps)), 1), "frames_per_s_p5": round(float(np.percentile(fps, 5)), 1),
            "epochs_per_s_p50": round(float(np.median(eps)), 1), "epochs_per_s_p5": round(float(np.percentile(eps, 5)), 1),
            # the slowest client: issue 3 asks for every session's rates, not a percentile
            "frames_per_s_min": round(float(fps.min()), 2), "epochs_per_s_min": round(float(eps.min()), 1),
            # the slowest by epochs over the whole window (the figure before 2026-11-28, sixteenth session)
            "epochs_per_s_min_window": round(float(min(o["eps_window"] for o in out.values())), 1),
            "change_to_frame_ms_p50": round(float(np.median(lat)), 1) if len(lat) else None,
            "change_to_frame_ms_p90": round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
            "change_to_frame_ms_p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "server_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1) if pid else None,
            # the server's CPU per frame its clients received (all of its work, training included)
            "server_cpu_us_per_frame": round(1e6 * (cpu1 - cpu0) / wall / max(float(fps.sum()), 1e-9), 1) if pid else None,
            "server_rss_mib": round(rss, 1) if pid else None,
            "server_ready_s": round(ready_s, 1) if proc else None,
            # the clients share the machine: their own CPU is load the server does not see
            "client_cpu_percent": round(100 * own / wall, 1),
            # the whole machine's idle share over the window: CPU the server could have used
            "machine_idle_percent": round(100 * (m1[0] - m0[0]) / max(m1[1] - m0[1], 1), 1) if m0 and m1 else None,
            "decode_every": args.decode_every, "loop": args.loop,
        }
    finally:
        if proc:
            process.stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--warmup-sessions", type=lambda v: [int(x) for x in v.split(",") if x], default=None,
                   help="batched sizes the started server compiles (default: none for 1 client, else 8,32,64)")
    p.add_argument("--decode-every", type=int, default=10, help="inflate and decode every Nth frame of a client "
                   "whole (1: every frame); every frame's header is parsed (default 10)")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                   help="the clients' event loop: uvloop (which uvicorn[standard] installs) where it is "
                   "installed (auto, the default), or asyncio's own. The clients share the server's cores, and "
                   "uvloop's transports cost them less per frame")
    p.add_argument("--no-compression", action="store_true", help="start the server with NNPLAY_WS_COMPRESSION=false")
    p.add_argument("--server-log", default=None, help="append the started server's output to this file")
    p.add_argument("--server-pid", type=int, default=None, help="with --url: the server's process id, whose "
                   "CPU and RSS are then measured as a started server's are")
    p.add_argument("--url", default=None, help="ws://127.0.0.1:PORT/ws?payload=deflate-raw of a running server "
                   "(loopback only)")
    args = p.parse_args()
    if not 1 <= args.clients <= 500 or not 1 <= args.seconds <= 900 or args.decode_every < 1:
        raise SystemExit("--clients must be 1..500, --seconds 1..900 and --decode-every 1 or more")
    if args.url and not args.url.startswith(("ws://127.", "ws://localhost", "ws://[::1]")):
        raise SystemExit("--url must be a loopback address")
    # A SIGTERM (e.g. from `timeout`) still runs the finally block that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    factory = None
    if args.loop != "asyncio":
        try:
            import uvloop
            factory, args.loop = uvloop.new_event_loop, "uvloop"
        except ImportError:
            if args.loop == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed")
            args.loop = "asyncio"
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(main_async(args))))


if __name__ == "__main__":
    main()
