"""``nnplay serve``: uvicorn around the app factory."""

from __future__ import annotations

import os

import uvicorn

from app.settings import Settings


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    # Workers are separate processes: each builds its own app from the same NNPLAY_* settings.
    os.environ.setdefault("NNPLAY_HOST", host)
    uvicorn.run("app.entry:create_app", factory=True, host=host, port=port, workers=workers,
                ws_max_size=4 * settings.max_message_bytes, ws_per_message_deflate=settings.ws_compression,
                log_level="info", proxy_headers=False)
    return 0
