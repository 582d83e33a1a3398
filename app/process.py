"""A real ``nnplay serve`` process on a loopback port, for integration tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command(python: str | None = None) -> list[str]:
    """How to run ``nnplay`` with this Python: its console script, or the module when the
    project is on the path without being installed (as on a machine without a venv)."""
    python = python or sys.executable
    script = Path(python).with_name("nnplay")
    return [str(script)] if script.exists() else [python, "-m", "app.cli"]


def start(port: int, env: dict[str, str] | None = None, log: IO[bytes] | int | None = None) -> subprocess.Popen:
    """Start the server in its own process group (``env`` adds NNPLAY_* settings; batched
    warm-up is off unless given). ``log`` receives stdout and stderr (default: stderr piped)."""
    full = {**os.environ, "NNPLAY_WARMUP_SESSIONS": "", **(env or {})}
    out = subprocess.DEVNULL if log is None else log
    err = subprocess.PIPE if log is None else subprocess.STDOUT
    return subprocess.Popen([*command(), "serve", "--host", HOST, "--port", str(port)], cwd=ROOT, env=full,
                            stdout=out, stderr=err, start_new_session=True)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 600, batched: tuple[int, ...] = ()) -> float:
    """Seconds until /healthz is 200 (and lists the ``batched`` sizes); raises if the server
    exits or the time runs out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            tail = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as r:
                if r.status == 200 and set(batched) <= set(json.loads(r.read())["batched_sizes"]):
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> str:
    """Terminate the server's process group; returns its piped stderr (if any)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""
