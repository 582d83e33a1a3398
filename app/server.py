"""``nnplay serve``: uvicorn around the app factory."""

from __future__ import annotations

import os

from functools import lru_cache

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import BINARY, CONT, Frame

from app.settings import Settings


class TextDeflate(PerMessageDeflate):
    """permessage-deflate for text messages only. Binary messages are frames whose payload the
    scheduler's threads have deflated already (``Session.body``); RFC 7692 lets a sender
    leave any message uncompressed (RSV1 unset), and the compression context does not see it.
    Compressing frames here, on the event loop, bound 200 sessions to ~6.5 frames/s on 2
    cores against ~11 uncompressed (docs/benchmarks.md, tenth session)."""

    _binary = False  # the message being sent is binary (for its continuation frames)

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode is not CONT:
            self._binary = frame.opcode is BINARY
        if self._binary and frame.opcode in (BINARY, CONT):
            return frame
        return super().encode(frame)


class TextDeflateFactory(ServerPerMessageDeflateFactory):
    def process_request_params(self, params, accepted_extensions):
        response, extension = super().process_request_params(params, accepted_extensions)
        extension.__class__ = TextDeflate  # the same state, binary messages passed through
        return response, extension


def deflate_extensions(level: int) -> list[ServerPerMessageDeflateFactory]:
    """permessage-deflate as uvicorn offers it (4 KiB windows, memory level 5), at zlib
    ``level``, for text messages (``TextDeflate``)."""
    return [TextDeflateFactory(server_max_window_bits=12, client_max_window_bits=12,
                               compress_settings={"level": level, "memLevel": 5})]


@lru_cache(maxsize=1)
def _level() -> int:
    """zlib's level for text messages: the frames' level, but at least 1 (zlib's 0 stores)."""
    return max(1, Settings().ws_compression_level)


class DeflateLevelProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol (what ``--ws auto`` picks), compressing text messages at
    NNPLAY_WS_COMPRESSION_LEVEL instead of zlib's default 6 and leaving binary ones (frames,
    deflated already) as they are (``TextDeflate``)."""

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
