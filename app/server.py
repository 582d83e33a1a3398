"""``nnplay serve``: uvicorn around the app factory."""

from __future__ import annotations

import os

from functools import lru_cache

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from app.settings import Settings


def deflate_extensions(level: int) -> list[ServerPerMessageDeflateFactory]:
    """permessage-deflate as uvicorn offers it (4 KiB windows, memory level 5), at zlib ``level``."""
    return [ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12,
                                           compress_settings={"level": level, "memLevel": 5})]


@lru_cache(maxsize=1)
def _level() -> int:
    return Settings().ws_compression_level


class DeflateLevelProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol (what ``--ws auto`` picks), compressing at NNPLAY_WS_COMPRESSION_LEVEL instead of
    zlib's default 6: with many sessions every frame is compressed, and level 1 takes less
    than half the CPU for frames ~12 % larger (docs/benchmarks.md, seventh session)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:  # offered in the handshake, which comes later
            self.conn.available_extensions = deflate_extensions(_level())


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    # Workers are separate processes: each builds its own app from the same NNPLAY_* settings.
    os.environ.setdefault("NNPLAY_HOST", host)
    uvicorn.run("app.entry:create_app", factory=True, host=host, port=port, workers=workers,
                ws=DeflateLevelProtocol, ws_max_size=4 * settings.max_message_bytes,
                ws_per_message_deflate=settings.ws_compression,
                log_level="info", proxy_headers=False)
    return 0
