"""Start-up order: when the server reports ready, and the early-loading app factory."""

from __future__ import annotations

import threading

import pytest

from app.main import AppState
from app.settings import Settings


class _Engine:
    """Stands in for the engine: the first programs load at once, the rest when allowed."""

    def __init__(self, rest_stored: bool):
        self.rest_stored = rest_stored
        self.rest = threading.Event()
        self.calls: list[str] = []

    def warmup_first(self) -> bool:
        self.calls.append("first")
        return self.rest_stored

    def warmup(self, *, batched_sizes=(), singles=True, background=False):
        self.calls.append(f"rest sizes={batched_sizes} singles={singles} background={background}")
        if singles:
            assert self.rest.wait(10)


@pytest.mark.parametrize("rest_stored", [True, False])
def test_ready_before_the_rest_loads_only_when_it_is_stored(rest_stored):
    state = AppState(Settings(warmup_sessions=[1, 8]))
    state.engine = fake = _Engine(rest_stored)
    warm = threading.Thread(target=state.warm)
    warm.start()
    try:
        # The remaining single-session programs are still loading: ready only if they merely
        # load (exported already), never while one may still compile.
        assert state.ready.wait(5) if rest_stored else not state.ready.wait(0.5)
    finally:
        fake.rest.set()
        warm.join(10)
    assert state.ready.is_set() and state.warmup_seconds is not None
    # a server that serves already loads the rest one at a time (background); one that is
    # not ready yet loads its single-session programs side by side
    assert fake.calls == ["first", f"rest sizes=() singles=True background={rest_stored}",
                          "rest sizes=(8,) singles=False background=True"]
    assert state.scheduler.batched_sizes == (8,)


def test_the_serving_factory_loads_the_first_programs_before_the_app_asks(monkeypatch, tmp_path):
    """``app.entry.create_app`` starts loading in a thread, then builds the usual app."""
    import app.entry as entry

    started = threading.Event()
    seen = {}

    def prewarm(settings):
        seen["settings"] = settings
        started.set()

    monkeypatch.setattr(entry, "_prewarm", prewarm)
    app = entry.create_app()
    assert started.wait(5)
    assert app.title == "nnplay" and isinstance(seen["settings"], Settings)
    assert {getattr(r, "path", None) for r in app.routes} >= {"/healthz", "/ws", "/api/schema"}
