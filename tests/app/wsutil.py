"""Helpers for talking to a session through Starlette's TestClient websocket."""

from __future__ import annotations

from app.session import decode_frame


def recv(ws, want: str | None = None, limit: int = 400):
    """Next message (JSON dict, or ('frame', header, arrays)); skip until type ``want``."""
    for _ in range(limit):
        m = ws.receive()
        if m.get("bytes") is not None:
            header, arrays = decode_frame(m["bytes"])
            msg = {"type": "frame", **header, "arrays": arrays}
        elif m.get("text") is not None:
            import json

            msg = json.loads(m["text"])
        else:
            raise AssertionError(f"socket closed: {m}")
        if want is None or msg["type"] == want:
            return msg
    raise AssertionError(f"no {want} message")


def frame_where(ws, pred, limit: int = 400):
    for _ in range(limit):
        msg = recv(ws, "frame")
        if pred(msg):
            return msg
    raise AssertionError("no frame matched")


def ack(ws, of: str, limit: int = 400) -> dict:
    """The next ack of a given command kind (acks of earlier commands are skipped)."""
    for _ in range(limit):
        msg = recv(ws, "ack")
        if msg["of"] == of:
            return msg
    raise AssertionError(f"no ack of {of}")
