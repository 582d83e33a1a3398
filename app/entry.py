"""The app factory ``nnplay serve`` runs (in every worker process).

Loading the engine's compiled programs is native work that releases the GIL, and so is
most of what a warm start waits for. This factory starts it in a thread first and only
then imports the web stack (FastAPI, SQLAlchemy: about a second), so the two overlap. The
app's own warm-up then finds the programs loaded, or waits for the ones still loading.
"""

from __future__ import annotations

import logging
import threading

from app.settings import Settings

log = logging.getLogger("nnplay")


def _prewarm(settings: Settings) -> None:
    try:
        from core.engine import Engine, enable_compilation_cache

        enable_compilation_cache(settings.jax_cache)
        Engine(settings.limits).warmup_first()
    except Exception:  # the lifespan's warm-up loads (and reports) everything again
        log.exception("loading the engine early failed")


def create_app():
    settings = Settings()
    threading.Thread(target=_prewarm, args=(settings,), name="nnplay-prewarm", daemon=True).start()
    from app.main import create_app as build

    return build(settings)
