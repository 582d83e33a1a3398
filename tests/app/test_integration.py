"""A real ``nnplay serve`` process on a free loopback port, driven by a real websocket client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from app import process
from app.process import free_port, stop, wait_ready
from app.session import decode_frame


def start(port: int):
    return process.start(port, {"NNPLAY_MAX_SESSIONS": "4"})


@pytest.fixture()
def server():
    port = free_port()
    proc = start(port)
    try:
        wait_ready(port, proc)
        yield port, proc
    finally:
        log = stop(proc)
        assert "Traceback" not in log, log[-3000:]


def frames(ws, n: int):
    got = []
    while len(got) < n:
        msg = ws.recv(timeout=60)
        if isinstance(msg, bytes):
            got.append(decode_frame(msg))
    return got


def test_real_server_trains_and_answers(server):
    port, _ = server
    with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
        state = json.loads(ws.recv(timeout=30))
        assert state["type"] == "state"
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")  # on by default
        ws.send(json.dumps({"type": "patch", "patch": {"dataset": "spiral", "optimizer": "adam", "learning_rate": 0.01}}))
        ws.send(json.dumps({"type": "play"}))
        got = frames(ws, 20)
        epochs = [h["epoch"] for h, _ in got]
        assert epochs[-1] > epochs[0]
        ws.send(json.dumps({"type": "dance"}))
        while True:
            msg = ws.recv(timeout=30)
            if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                assert "unknown message type" in json.loads(msg)["message"]
                break
        frames(ws, 3)  # still training
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        text = r.read().decode()
    assert "nnplay_frames_sent_total" in text


def test_cross_site_origin_refused(server):
    port, _ = server
    from websockets.exceptions import InvalidStatus, ConnectionClosed

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        with connect(f"ws://127.0.0.1:{port}/ws", origin="https://evil.example") as ws:
            ws.recv(timeout=10)
            ws.recv(timeout=10)


def test_restart_then_reconnect(server):
    """Kill the server while a client is connected; a new server on the same port serves
    the client again (the page re-sends its URL config on reconnect)."""
    port, proc = server
    cfg = {"dataset": "xor", "layers": [{"units": 3, "activation": "relu"}]}
    with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"type": "config", "config": cfg}))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with pytest.raises(Exception):
            for _ in range(100):
                ws.recv(timeout=10)
    proc2 = start(port)
    try:
        wait_ready(port, proc2)
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            json.loads(ws.recv(timeout=30))
            ws.send(json.dumps({"type": "config", "config": cfg}))
            while True:
                msg = ws.recv(timeout=30)
                if isinstance(msg, str) and json.loads(msg)["type"] == "state":
                    assert json.loads(msg)["config"]["layers"] == cfg["layers"]
                    break
    finally:
        stop(proc2)


def test_command_without_console_script_runs_the_module(tmp_path):
    assert process.command(sys.executable) == [str(Path(sys.executable).with_name("nnplay"))]
    bare = str(tmp_path / "python3")  # a Python whose folder has no nnplay script
    assert process.command(bare) == [bare, "-m", "app.cli"]
    # and the module form is a working nnplay: a bad config exits 2 with the field named
    out = subprocess.run([sys.executable, "-m", "app.cli", "train", "-", "--epochs", "1"], cwd=process.ROOT,
                         input='{"learning_rate": -1}', capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "learning_rate" in out.stderr, out.stderr


def test_compression_can_be_turned_off():
    port = free_port()
    proc = process.start(port, {"NNPLAY_MAX_SESSIONS": "2", "NNPLAY_WS_COMPRESSION": "false"})
    try:
        wait_ready(port, proc)
        with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:  # the client offers it
            assert json.loads(ws.recv(timeout=30))["type"] == "state"
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send(json.dumps({"type": "play"}))
            (header, arrays), = frames(ws, 1)
            assert arrays["output"].shape == (100, 100)
    finally:
        log = stop(proc)
        assert "Traceback" not in log, log[-3000:]


def test_the_deflate_level_is_the_operators(monkeypatch):
    """NNPLAY_WS_COMPRESSION_LEVEL reaches the protocol uvicorn builds per connection, and
    changes the bytes on the wire: a text message at level 1 and at 9 (zlib's own inflate reads
    both); level 0 (the frames' default, ISA-L's fastest) compresses text at zlib's level 1. Binary messages (frames, whose payload the scheduler deflates) pass through as they
    are, flagged uncompressed, and leave the compression context alone."""
    import asyncio
    import zlib

    from uvicorn.config import Config as UvicornConfig
    from uvicorn.server import ServerState
    from websockets.frames import Frame, Opcode

    import app.server as server_mod

    async def offered(level: str):
        monkeypatch.setenv("NNPLAY_WS_COMPRESSION_LEVEL", level)
        server_mod._level.cache_clear()
        cfg = UvicornConfig(app=lambda scope, receive, send: None, ws=server_mod.DeflateLevelProtocol)
        cfg.load()
        proto = server_mod.DeflateLevelProtocol(cfg, ServerState(), {})
        return proto.conn.available_extensions

    try:
        (zero,), (one,), (nine,) = asyncio.run(offered("0")), asyncio.run(offered("1")), asyncio.run(offered("9"))
    finally:
        server_mod._level.cache_clear()
    assert one.compress_settings == {"level": 1, "memLevel": 5} and nine.compress_settings["level"] == 9
    assert zero.compress_settings == one.compress_settings  # frames' level 0 (ISA-L); zlib's 0 would store text
    payload = Path(__file__).with_name("test_integration.py").read_bytes() * 3  # text-like, compressible
    wire = {}
    for name, factory in (("1", one), ("9", nine)):
        _, ext = factory.process_request_params([], [])
        inflate = zlib.decompressobj(-12)
        frame = ext.encode(Frame(Opcode.TEXT, payload))
        assert frame.rsv1 and inflate.decompress(bytes(frame.data) + b"\x00\x00\xff\xff") == payload
        wire[name] = len(frame.data)
        binary = ext.encode(Frame(Opcode.BINARY, payload[:5000]))
        assert not binary.rsv1 and bytes(binary.data) == payload[:5000]
        again = ext.encode(Frame(Opcode.TEXT, payload))  # the context saw only the text messages
        assert inflate.decompress(bytes(again.data) + b"\x00\x00\xff\xff") == payload
    assert wire["9"] < wire["1"] < len(payload)
    from app.settings import Settings
    for bad in ("12", "-1"):
        with pytest.raises(Exception, match="ws_compression_level"):
            monkeypatch.setenv("NNPLAY_WS_COMPRESSION_LEVEL", bad)
            Settings()


def test_a_real_server_compresses_at_the_level_it_is_given():
    """Frames' payloads come deflated (at the operator's level) to a client that asks for
    them so, as the page does where the browser can inflate them, and as they are to one that
    does not (an older browser); both decode to a frame of the same network."""
    import struct

    port = free_port()
    proc = process.start(port, {"NNPLAY_MAX_SESSIONS": "2", "NNPLAY_WS_COMPRESSION_LEVEL": "9"})
    try:
        wait_ready(port, proc)
        sizes = {}
        for query in ("?payload=deflate-raw", ""):
            with connect(f"ws://127.0.0.1:{port}/ws{query}", origin=f"http://127.0.0.1:{port}") as ws:
                assert json.loads(ws.recv(timeout=30))["type"] == "state"
                assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
                ws.send(json.dumps({"type": "play"}))
                while not isinstance(msg := ws.recv(timeout=60), bytes):
                    pass
                (n,) = struct.unpack_from("<I", msg)
                assert json.loads(msg[4:4 + n]).get("payload") == ("deflate-raw" if query else None)
                header, arrays = decode_frame(msg)
                assert arrays["output"].shape == (100, 100) and header["units"] == [4, 2]
                sizes[query] = len(msg) - 4 - n
        assert sizes["?payload=deflate-raw"] < sizes[""] / 1.5
    finally:
        log = stop(proc)
        assert "Traceback" not in log, log[-3000:]


def test_the_load_benchmark_measures_a_real_server(server):
    """``bench/load.py`` against a real server: its clients play, change their learning rate
    and get frames of the change, and each session's epochs a second over its frames' own
    span are more than those over the whole window (the figure before the sixteenth session,
    which counted the time before the first frame and after the last with none of their
    epochs). It measures the server's CPU (given its process id), per frame too, and the
    machine's idle share. A smoke test of the benchmark's parts, not a speed test."""
    port, proc = server
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "bench/load.py", "--clients", "2", "--seconds", "3", "--decode-every", "1",
                        "--url", f"ws://127.0.0.1:{port}/ws?payload=deflate-raw", "--server-pid", str(proc.pid)],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["clients"] == 2 and d["compression"]
    assert d["frames_per_s_min"] > 1 and d["epochs_per_s_min"] > 1
    assert d["epochs_per_s_min"] > d["epochs_per_s_min_window"] > 0
    assert d["change_to_frame_ms_p50"] is not None and d["change_to_frame_ms_p99"] >= d["change_to_frame_ms_p50"]
    # a server that trains uses CPU: per frame, its share over the frames its clients received
    assert d["server_cpu_percent"] > 0 and d["server_rss_mib"] > 50
    frames = d["frames_per_s_p50"] * 2
    assert d["server_cpu_us_per_frame"] == pytest.approx(1e4 * d["server_cpu_percent"] / frames, rel=0.2)
    assert 0 <= d["machine_idle_percent"] <= 100
