"""Soak: N sessions change settings continually against a real ``nnplay serve`` on loopback.

Each client plays its own network and every 0.5–2 s sends one valid random change (learning
rate, optimizer, activation, layer count and width, features, regularizers, batch size,
dataset, schedule...) or a control message (pause/play, step, reset, regenerate, set a
weight, speed). Measured once the warm-up is over: error messages received (valid input, so
the expected count is 0), server log lines with a traceback, RSS of the server every 10 s
(growth after warm-up), XLA compilations from /metrics (start vs end), frames/s per client.
Bounded in clients and time; loopback only.

    .venv/bin/python bench/soak.py --clients 50 --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
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
from app import process  # noqa: E402
from app.process import free_port  # noqa: E402

ACTS = ["relu", "tanh", "sigmoid", "linear", "leaky_relu", "elu", "gelu", "silu"]
FEATURES = ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]


def random_change(rng: random.Random, depth: int) -> dict:
    """One valid message a curious learner could send."""
    k = rng.randrange(20)
    layers = [{"units": rng.randint(1, 8), "activation": rng.choice(ACTS)} for _ in range(rng.randint(0, 6))]
    patches = [
        {"learning_rate": rng.choice([1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1, 3, 10])},
        {"optimizer": rng.choice(["sgd", "momentum", "rmsprop", "adam"])},
        {"layers": layers},
        {"layers": [{"units": rng.randint(1, 8), "activation": rng.choice(ACTS)} for _ in range(depth)]},
        {"features": rng.sample(FEATURES, rng.randint(1, 7))},
        {"l2": rng.choice([0, 1e-4, 1e-3, 0.01]), "l1": rng.choice([0, 1e-4, 1e-3])},
        {"dropout": rng.choice([0, 0.1, 0.3, 0.5])},
        {"batch_size": rng.choice([1, 10, 30, 100, 500])},
        {"dataset": rng.choice(["circle", "xor", "gauss", "spiral", "moons", "checkerboard"])},
        {"noise": rng.choice([0, 0.1, 0.25, 0.5])},
        {"lr_schedule": rng.choice(["constant", "step", "exponential", "cosine", "warmup_cosine"])},
        {"batch_norm": rng.random() < 0.5, "layer_norm": False},
        {"input_noise": rng.choice([0, 0.1, 0.5])},
        {"train_ratio": rng.choice([0.2, 0.5, 0.8])},
        {"early_stopping_patience": rng.choice([0, 20])},
    ]
    if k < len(patches):
        return {"type": "patch", "patch": patches[k]}
    return rng.choice([
        {"type": "pause"}, {"type": "play"}, {"type": "step", "epochs": rng.randint(1, 50)},
        {"type": "reset"}, {"type": "regenerate"}, {"type": "speed", "epochs_per_frame": rng.choice(["auto", 1, 8])},
        {"type": "set_weight", "layer": 0, "kind": "b", "j": 0, "value": rng.uniform(-3, 3)},
    ])


async def client(url: str, deadline: float, idx: int, out: dict) -> None:
    rng = random.Random(idx)
    frames, errors, depth = 0, [], 2
    async with websockets.connect(url, max_size=2**24) as ws:
        state = json.loads(await ws.recv())
        depth = len(state.get("config", {}).get("layers", [])) or 2
        await ws.send(json.dumps({"type": "play"}))
        next_change = time.monotonic() + rng.uniform(0.5, 2)
        playing = True
        while time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(ws.recv(), timeout=0.5)
                if isinstance(msg, bytes):
                    frames += 1
                else:
                    m = json.loads(msg)
                    if m.get("type") == "error":
                        errors.append(m.get("message"))
                    if m.get("type") == "state" and "config" in m:
                        depth = len(m["config"]["layers"])
            except asyncio.TimeoutError:
                pass
            if time.monotonic() >= next_change:
                next_change = time.monotonic() + rng.uniform(0.5, 2)
                change = random_change(rng, depth)
                if change["type"] == "set_weight" and depth == 0:
                    continue
                if change["type"] == "pause":
                    playing = False
                elif change["type"] == "play":
                    playing = True
                elif not playing and rng.random() < 0.5:
                    await ws.send(json.dumps({"type": "play"}))
                    playing = True
                await ws.send(json.dumps(change))
    out[idx] = {"frames": frames, "errors": errors}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = {}
    for name in ("nnplay_xla_compilations", "nnplay_sessions_active", "nnplay_frames_sent_total",
                 "nnplay_training_epochs_total", "nnplay_step_seconds_sum", "nnplay_step_seconds_count",
                 "nnplay_frame_seconds_sum", "nnplay_frame_seconds_count"):
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        found[name] = float(m.group(1)) if m else float("nan")
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main_async(args) -> dict:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="nnplay-soak-", suffix=".log", delete=False)
    sizes = (8, 32, 64)
    proc = process.start(port, {"NNPLAY_MAX_SESSIONS": str(args.clients + 5),
                                "NNPLAY_WARMUP_SESSIONS": ",".join(map(str, sizes)),
                                "NNPLAY_MAX_CONNECTIONS_PER_IP": str(args.clients + 5),
                                "NNPLAY_IDLE_TIMEOUT_S": "3600"}, log=log)
    try:
        ready = await asyncio.to_thread(process.wait_ready, port, proc, 900, sizes)
        url = f"ws://127.0.0.1:{port}/ws"
        t0 = time.monotonic()
        deadline = t0 + args.warmup + args.minutes * 60
        out: dict = {}
        tasks = [asyncio.create_task(client(url, deadline, i, out)) for i in range(args.clients)]
        await asyncio.sleep(args.warmup)
        start = scrape(port)
        samples = [(time.monotonic() - t0, rss_mib(proc.pid))]
        while time.monotonic() < deadline - 1:
            await asyncio.sleep(min(10, max(0.1, deadline - 1 - time.monotonic())))
            samples.append((time.monotonic() - t0, rss_mib(proc.pid)))
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=120)
        end = scrape(port)
        failed = [t.exception() for t in tasks if t.exception() is not None]
        rss = np.array([s[1] for s in samples])
        logtext = Path(log.name).read_text(errors="replace")
        errors = [e for o in out.values() for e in o["errors"]]
        return {
            "clients": args.clients, "minutes": args.minutes, "server_ready_s": round(ready, 1),
            "client_failures": [repr(e)[:200] for e in failed][:5],
            "error_messages": len(errors), "error_examples": sorted(set(errors))[:5],
            "tracebacks_in_log": logtext.count("Traceback"),
            "rss_mib_after_warmup": round(float(rss[0]), 1), "rss_mib_end": round(float(rss[-1]), 1),
            "rss_mib_max": round(float(rss.max()), 1),
            "rss_growth_percent": round(100 * (rss[-1] - rss[0]) / rss[0], 2),
            "rss_samples": [round(float(r), 1) for r in rss],
            "compilations_after_warmup": start["nnplay_xla_compilations"],
            "compilations_end": end["nnplay_xla_compilations"],
            "epochs_trained": end["nnplay_training_epochs_total"] - start["nnplay_training_epochs_total"],
            "scheduler_ticks": end["nnplay_step_seconds_count"] - start["nnplay_step_seconds_count"],
            "train_ms_per_tick": round(1000 * (end["nnplay_step_seconds_sum"] - start["nnplay_step_seconds_sum"])
                                       / max(1, end["nnplay_step_seconds_count"] - start["nnplay_step_seconds_count"]), 1),
            "frame_ms_per_session": round(1000 * (end["nnplay_frame_seconds_sum"] - start["nnplay_frame_seconds_sum"])
                                          / max(1, end["nnplay_frame_seconds_count"] - start["nnplay_frame_seconds_count"]), 2),
            "frames_per_client_per_s_median": round(float(np.median(
                [o["frames"] for o in out.values()])) / (args.warmup + args.minutes * 60), 2),
            "log": log.name,
        }
    finally:
        process.stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--warmup", type=float, default=60, help="seconds of load before the baseline is taken")
    args = p.parse_args()
    if not 1 <= args.clients <= 500 or not 0 < args.minutes <= 120:
        p.error("--clients must be 1..500 and --minutes 0..120")
    print(json.dumps(asyncio.run(main_async(args)), indent=1))


if __name__ == "__main__":
    main()
