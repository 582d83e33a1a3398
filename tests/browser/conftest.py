"""A real nnplay server (subprocess) and one headless Chromium for the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_url(artifacts):
    port = _free_port()
    env = dict(os.environ, NNPLAY_WARMUP_SESSIONS="",
               NNPLAY_JAX_CACHE=os.environ.get("NNPLAY_JAX_CACHE") or str(Path.home() / ".cache" / "nnplay-jax"))
    log = open(artifacts / "browser-server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not become ready in 150 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class ConsoleLog:
    def __init__(self):
        self.errors: list[str] = []

    def attach(self, page):
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture
def page_factory(browser, server_url, artifacts):
    """Open pages at a viewport; afterwards assert that none logged an error."""
    contexts, log = [], ConsoleLog()

    def open_page(hash_: str = "", width: int = 1280, height: int = 800):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        log.attach(page)
        page.goto(f"{server_url}/{('#' + hash_) if hash_ else ''}")
        page.get_by_role("status").filter(has_text="paused").wait_for(timeout=30000)
        return page

    open_page.allowed = []  # substrings of console errors a test expects (e.g. a 422 it provokes)
    yield open_page
    for ctx in contexts:
        ctx.close()
    errors = [e for e in log.errors if not any(a in e for a in open_page.allowed)]
    assert errors == [], errors
