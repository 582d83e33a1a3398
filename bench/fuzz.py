"""Bounded fuzzing of a real ``nnplay serve`` process on a free loopback port.

Phase "validation" (NNPLAY_RATE_LIMIT=100000, so every message reaches the validator): a few
websocket sessions receive --messages malformed / out-of-range / NaN / wrong-type / deeply
nested / oversized / unknown / binary messages; each must be answered by an ``error``. Then
the fuzzed sessions must still train and a bystander session must have kept receiving frames.
Phase "http": schemathesis against /openapi.json if it is installed, else random JSON bodies
to the POST endpoints; no 5xx allowed. Phase "flood" (default rate limit, on a second server
start): messages as fast as possible; the server must answer "rate limit" errors and survive.
Finally the server's stderr must hold no "Traceback"/"Exception". Prints a JSON summary.

    .venv/bin/python bench/fuzz.py --messages 10000 --seconds 300
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect  # noqa: E402

from app import process  # noqa: E402
from app.process import free_port, stop, wait_ready  # noqa: E402
from app.session import decode_frame  # noqa: E402

HOST = "127.0.0.1"  # loopback only


def start(port: int, env_extra: dict, log_path: Path) -> subprocess.Popen:
    return process.start(port, env_extra, log=open(log_path, "wb"))


# --- message generator --------------------------------------------------------------------

def bad_message(rng: random.Random) -> tuple[str, str | bytes]:
    """(category, payload): every payload is invalid for a session on the default config."""
    num = lambda: rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * rng.randint(4301, 6000),  # noqa: E731
                              "-7", "1e-300", '"3"', "true", "null", "[]", "{}"])
    fields = ["learning_rate", "batch_size", "noise", "n_points", "momentum", "epsilon", "dropout", "classes", "seed"]
    kinds = {
        "malformed": lambda: rng.choice(['{"type": "play"', "{'type': 'play'}", "", " ", "nul", '{"type": play}',
                                         '{"a":1,}', "\x00", '"just a string"', "42", "[]", "null"]),
        "unknown_type": lambda: json.dumps({"type": rng.choice(["dance", "PLAY", "", None, 7, ["play"], {"t": 1}])}),
        "nan_inf": lambda: '{"type": "patch", "patch": {"%s": %s}}' % (rng.choice(fields), rng.choice(["NaN", "Infinity", "-Infinity"])),
        "out_of_range": lambda: rng.choice([
            json.dumps({"type": "patch", "patch": {"learning_rate": rng.choice([0, 11, -1, 1e9])}}),
            json.dumps({"type": "patch", "patch": {"layers": [{"units": rng.choice([0, 9, 100, -1])}]}}),
            json.dumps({"type": "patch", "patch": {"layers": [{"units": 2}] * rng.randint(7, 40)}}),
            json.dumps({"type": "step", "epochs": rng.choice([0, 1001, 10**12])}),
            json.dumps({"type": "set_weight", "layer": 0, "i": 0, "j": 0, "value": rng.choice([100.5, -1e6])}),
            json.dumps({"type": "set_weight", "layer": rng.randint(3, 99), "i": 0, "j": 0, "value": 1}),
            json.dumps({"type": "speed", "epochs_per_frame": rng.choice([0, 33, 10**9])}),
            json.dumps({"type": "add_points", "points": [{"x1": rng.uniform(6.01, 1e6), "x2": 0, "label": 1}]}),
            json.dumps({"type": "remove_point", "x1": 7, "x2": 0}),
            json.dumps({"type": "reset", "seed": rng.choice([-1, 2**31])}),
            json.dumps({"type": "patch", "patch": {"n_points": rng.choice([5, 4001, 10**6])}}),
        ]),
        "huge_number": lambda: '{"type": "step", "epochs": %s}' % num(),
        "wrong_type": lambda: rng.choice([
            json.dumps({"type": "patch", "patch": rng.choice(["lr=1", 3, [1], None, True])}),
            json.dumps({"type": "config", "config": rng.choice(["x", 3, [], None])}),
            json.dumps({"type": "patch", "patch": {rng.choice(fields): rng.choice(["x", [], {}, True])}}),
            json.dumps({"type": "step", "epochs": rng.choice(["3", True, 2.5, None, [3]])}),
            json.dumps({"type": "set_weight", "layer": "0", "i": 0, "j": 0, "value": 1}),
            json.dumps({"type": "add_points", "points": rng.choice([{}, "p", [], [1, 2], [{"x1": 0}]])}),
            json.dumps({"type": "export", "format": rng.choice([None, "onnx", 1, "KERAS"])}),
        ]),
        "unknown_field": lambda: json.dumps({"type": "patch", "patch": {rng.choice(["warp", "lr", "__proto__", "", "Seed"]): 1}}),
        "bad_combination": lambda: json.dumps({"type": "patch", "patch": rng.choice([
            {"problem": "regression"}, {"classes": 3}, {"dataset": "plane"},
            {"loss": "categorical_crossentropy"}, {"output_activation": "linear"}, {"class_weight": [1, 2, 3]}])}),
        "deep": lambda: rng.choice(["[" * (d := rng.randint(1000, 20000)) + "]" * d,
                                    '{"type": "patch", "patch": {"seed": ' + "[" * (d := rng.randint(500, 5000)) + "]" * d + "}}",
                                    '{"a":' * (d := rng.randint(1000, 8000)) + "1" + "}" * d]),
        "oversized": lambda: json.dumps({"type": "ping", "pad": "x" * rng.randint(65537, 200000)}),
        "binary": lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 256))),
        "random_text": lambda: "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 64))),
    }
    cat = rng.choice(list(kinds))
    return cat, kinds[cat]()


# --- phases ---------------------------------------------------------------------------------

def open_session(port: int):
    ws = connect(f"ws://{HOST}:{port}/ws", max_size=2**24, open_timeout=30)
    first = json.loads(ws.recv(timeout=30))
    assert first["type"] == "state", first
    return ws


def step_and_wait(ws, epochs: int, timeout: float = 60) -> dict:
    """Send step; return the first frame whose epoch reaches the target (skipping older replies)."""
    t_end = time.monotonic() + timeout
    target = None
    ws.send(json.dumps({"type": "step", "epochs": epochs}))
    while time.monotonic() < t_end:
        m = ws.recv(timeout=max(0.1, t_end - time.monotonic()))
        if isinstance(m, bytes):
            h, _ = decode_frame(m)
            if target is None:
                target = h["epoch"] + epochs if h["epoch"] == 0 else None
            if h["epoch"] >= epochs and (target is None or h["epoch"] >= target):
                return h
    raise AssertionError("no frame after step")


def validation_phase(port: int, n: int, seconds: float, seed: int, sessions: int = 4) -> dict:
    rng = random.Random(seed)
    socks = [open_session(port) for _ in range(sessions)]
    bystander = open_session(port)
    bystander.send(json.dumps({"type": "play"}))
    t0 = time.monotonic()
    sent = Counter()
    replies = Counter()
    errors_by_cat = Counter()
    missing = 0
    frames_seen = 0
    bystander_frames = 0
    bystander_epochs = []
    i = 0
    while i < n and time.monotonic() - t0 < seconds:
        ws = socks[i % sessions]
        cat, payload = bad_message(rng)
        ws.send(payload)
        sent[cat] += 1
        # one error reply per message, in order (frames may come in between)
        got = False
        t_msg = time.monotonic()
        while time.monotonic() - t_msg < 10:
            m = ws.recv(timeout=10)
            if isinstance(m, bytes):
                frames_seen += 1
                continue
            msg = json.loads(m)
            replies[msg["type"]] += 1
            if msg["type"] == "error":
                errors_by_cat[cat] += 1
                got = True
                break
        missing += not got
        i += 1
        if i % 200 == 0:  # drain the bystander (it plays throughout)
            while True:
                try:
                    m = bystander.recv(timeout=0)
                except TimeoutError:
                    break
                if isinstance(m, bytes):
                    bystander_frames += 1
                    bystander_epochs.append(decode_frame(m)[0]["epoch"])
    elapsed = time.monotonic() - t0
    # the fuzzed sessions still train
    still_train = []
    for ws in socks:
        h = step_and_wait(ws, 3)
        still_train.append(h["epoch"] >= 3 and not h["diverged"] and h["metrics"]["train_loss"] is not None)
        ws.close()
    t_b = time.monotonic()
    while time.monotonic() - t_b < 3:
        try:
            m = bystander.recv(timeout=1)
        except TimeoutError:
            continue
        if isinstance(m, bytes):
            bystander_frames += 1
            bystander_epochs.append(decode_frame(m)[0]["epoch"])
    bystander.close()
    return {
        "messages_sent": i, "seconds": round(elapsed, 1), "messages_per_s": round(i / elapsed, 1),
        "sent_by_category": dict(sent), "error_replies_by_category": dict(errors_by_cat),
        "replies_by_type": dict(replies), "messages_without_error_reply": missing,
        "frames_interleaved": frames_seen, "fuzzed_sessions_still_train": still_train,
        "bystander_frames": bystander_frames,
        "bystander_epochs_monotonic": bystander_epochs == sorted(bystander_epochs),
        "bystander_last_epoch": bystander_epochs[-1] if bystander_epochs else None,
    }


def random_json(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice([None, True, False, 0, -1, 10**rng.randint(0, 30), rng.uniform(-1e6, 1e6), "x", "", "sgd",
                           "relu", [], {}, 0.5, 1e-9, 100000])
    if r < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["config", "epochs", "learning_rates", "lr_min", "lr_max", "surface", "optimizers", "steps", "x", "y",
            "weights", "learning_rate", "every", "start", "layers", "optimizer", "momentum", "junk"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def http_phase(port: int, n: int, seconds: float, seed: int) -> dict:
    base = f"http://{HOST}:{port}"
    out: dict = {}
    try:
        import schemathesis  # noqa: F401
        out["schemathesis"] = "installed"
    except ImportError:
        out["schemathesis"] = "not installed"
    rng = random.Random(seed)
    codes: Counter = Counter()
    five_hundreds = []
    t0 = time.monotonic()
    i = 0
    endpoints = ["/api/backprop", "/api/sweep", "/api/lr_range", "/api/paths"]
    while i < n and time.monotonic() - t0 < seconds:
        path = endpoints[i % len(endpoints)]
        body = random_json(rng)
        if isinstance(body, dict) and path in ("/api/sweep", "/api/lr_range") and rng.random() < 0.7:
            body["epochs"] = rng.choice([1, 2, 5, 0, -1, "5", 10**9])  # keep training short when valid
        if isinstance(body, dict) and rng.random() < 0.3:
            body["config"] = {"n_points": 50, **{k: random_json(rng, 2) for k in rng.sample(
                ["learning_rate", "layers", "optimizer", "batch_size", "dataset", "noise"], 2)}}
        raw = json.dumps(body).encode()
        if rng.random() < 0.1:
            raw = rng.choice([b"{not json", b"", b"1" * 5000, b"[" * 5000, b"NaN", b'{"epochs": Infinity}'])
        req = urllib.request.Request(base + path, data=raw, headers={"content-type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                code, text = r.status, r.read(2000).decode(errors="replace")
        except urllib.error.HTTPError as e:
            code, text = e.code, e.read(2000).decode(errors="replace")
        codes[code] += 1
        if code >= 500 or "Traceback" in text:
            five_hundreds.append({"path": path, "body": raw[:300].decode(errors="replace"), "code": code})
        i += 1
    out.update({"requests": i, "seconds": round(time.monotonic() - t0, 1), "status_codes": dict(codes),
                "server_errors": five_hundreds[:10], "server_error_count": len(five_hundreds)})
    return out


def schemathesis_phase(port: int, examples: int, seconds: float) -> dict:
    """Run the schemathesis CLI (if installed) against the OpenAPI schema, bounded."""
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        return {"ran": False, "why": "schemathesis not installed"}
    cmd = [str(exe), "run", f"http://{HOST}:{port}/openapi.json", "--checks", "not_a_server_error",
           f"--max-examples={examples}", "--request-timeout=60"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired as e:
        return {"ran": True, "timed_out": True, "tail": (e.stdout or b"")[-1500:].decode(errors="replace")
                if isinstance(e.stdout, bytes) else (e.stdout or "")[-1500:]}
    return {"ran": True, "rc": p.returncode, "tail": (p.stdout + p.stderr)[-2500:]}


def flood_phase(port: int, seconds: float) -> dict:
    ws = open_session(port)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < seconds and sent < 20000:
        ws.send('{"type": "ping"}')
        sent += 1
    replies = Counter()
    rate_limited = 0
    t1 = time.monotonic()
    while time.monotonic() - t1 < 5:
        try:
            m = ws.recv(timeout=1)
        except TimeoutError:
            break
        if isinstance(m, bytes):
            continue
        msg = json.loads(m)
        replies[msg["type"]] += 1
        rate_limited += msg["type"] == "error" and "rate limit" in msg["message"]
    time.sleep(2.5)  # the bucket refills
    h = step_and_wait(ws, 2)
    ws.close()
    return {"sent": sent, "seconds": round(t1 - t0, 2), "replies_received": dict(replies),
            "rate_limit_errors_received": rate_limited, "trains_after_flood": h["epoch"] >= 2,
            "note": "the outbox keeps the newest 256 control messages of a client that reads slower than it sends"}


def scan_log(path: Path) -> dict:
    text = path.read_text(errors="replace")
    return {"log_bytes": len(text), "tracebacks": text.count("Traceback"), "exception_lines": text.count("Exception"),
            "tail_if_any": text[-2000:] if ("Traceback" in text or "Exception" in text) else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=600, help="cap on the websocket fuzzing phase")
    ap.add_argument("--http", type=int, default=300, help="random HTTP requests")
    ap.add_argument("--http-seconds", type=float, default=180)
    ap.add_argument("--schemathesis-examples", type=int, default=20)
    ap.add_argument("--flood-seconds", type=float, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ready-timeout", type=float, default=600)
    args = ap.parse_args()
    args.messages = max(1, min(args.messages, 1_000_000))
    summary: dict = {"args": vars(args)}
    logdir = Path(tempfile.mkdtemp(prefix="nnplay-fuzz-"))
    ok = True

    port = free_port()
    log1 = logdir / "server-validation.log"
    proc = start(port, {"NNPLAY_RATE_LIMIT": "100000"}, log1)
    try:
        summary["warmup_s"] = round(wait_ready(port, proc, args.ready_timeout), 1)
        summary["websocket"] = v = validation_phase(port, args.messages, args.seconds, args.seed)
        summary["http_random"] = http_phase(port, args.http, args.http_seconds, args.seed)
        summary["schemathesis"] = schemathesis_phase(port, args.schemathesis_examples, args.http_seconds)
        summary["server_alive"] = proc.poll() is None
        ok &= v["messages_without_error_reply"] == 0 and all(v["fuzzed_sessions_still_train"])
        ok &= v["bystander_frames"] > 0 and summary["http_random"]["server_error_count"] == 0
    finally:
        stop(proc)
    summary["log_validation"] = scan_log(log1)

    port = free_port()
    log2 = logdir / "server-flood.log"
    proc = start(port, {}, log2)
    try:
        wait_ready(port, proc, args.ready_timeout)
        summary["flood"] = f = flood_phase(port, args.flood_seconds)
        ok &= f["rate_limit_errors_received"] > 0 and f["trains_after_flood"]
    finally:
        stop(proc)
    summary["log_flood"] = scan_log(log2)
    ok &= summary["log_validation"]["tracebacks"] == 0 and summary["log_flood"]["tracebacks"] == 0
    ok &= summary["log_validation"]["exception_lines"] == 0 and summary["log_flood"]["exception_lines"] == 0
    summary["logs"] = str(logdir)
    summary["ok"] = bool(ok)
    print(json.dumps(summary, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
