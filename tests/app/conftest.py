from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def wait_ready(client: TestClient, timeout: float = 600) -> None:
    t_end = time.monotonic() + timeout
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < t_end, "engine did not become ready"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(warmup_sessions=[], max_sessions=3, rate_limit=40, idle_pause_s=300)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c
