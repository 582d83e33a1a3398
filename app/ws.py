"""The websocket protocol (docs/protocol.md): validate every client message, queue it for
the scheduler, stream frames latest-wins. Bad input is answered with an error message that
names the problem; the session keeps running."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from urllib.parse import urlsplit

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from core.config import Config, ConfigError, Point, fitting_defaults, format_errors, parse_config, patch_config

from app.session import Command, Session

log = logging.getLogger("nnplay.ws")

TYPES = ("config", "patch", "play", "pause", "step", "reset", "regenerate", "set_weight", "speed",
         "add_points", "remove_point", "export", "hidden", "ping", "join_room", "leave_room")
EXPORT_FORMATS = ("keras", "pytorch", "jax", "json", "npz")
CLOSE_FULL = 1013
CLOSE_POLICY = 1008


class BadMessage(ValueError):
    pass


def origin_allowed(ws: WebSocket, allowed: list[str]) -> bool:
    """Same origin (Origin's host equals Host) or listed; no Origin (non-browser) is allowed."""
    origin = ws.headers.get("origin")
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == ws.headers.get("host", "")


class TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _int(msg: dict, key: str, lo: int, hi: int) -> int:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadMessage(f"{key} must be an integer {lo}..{hi}, got {json.dumps(v)[:40]}")
    return v


def _float(msg: dict, key: str, lo: float, hi: float) -> float:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise BadMessage(f"{key} must be a finite number {lo:g}..{hi:g}, got {json.dumps(v)[:40]}")
    return float(v)


def check_hidden(cfg: Config, msg: dict) -> dict:
    """``layer``, ``i``, ``j`` of a hidden-space request, checked against ``cfg``'s network."""
    if not cfg.layers:
        raise BadMessage("layer: the hidden-space view needs at least one hidden layer; this network has none")
    layer = _int(msg, "layer", 0, len(cfg.layers) - 1)
    units = cfg.layers[layer].units
    return {"layer": layer, "i": _int(msg, "i", 0, units - 1), "j": _int(msg, "j", 0, units - 1)}


def parse_message(text: str, session: Session, limits) -> Command:
    """Validate one client message into a scheduler command (raises BadMessage/ConfigError)."""
    try:
        msg = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(BadMessage(f"{c} is not allowed")))
    except RecursionError:
        raise BadMessage("message is nested too deeply") from None
    except json.JSONDecodeError as err:
        raise BadMessage(f"malformed JSON: {err.msg} at position {err.pos}") from None
    except ValueError as err:  # e.g. an integer literal over Python's 4300-digit str->int limit
        raise BadMessage(f"malformed JSON: {str(err).split(';')[0]}") from None
    if not isinstance(msg, dict):
        raise BadMessage(f"a message must be a JSON object with a 'type', got {type(msg).__name__}")
    kind = msg.get("type")
    if kind not in TYPES:
        raise BadMessage(f"unknown message type {json.dumps(kind)[:40]}; allowed: {', '.join(TYPES)}")
    cfg = session.run.cfg
    args: dict = {"id": msg.get("id") if isinstance(msg.get("id"), (int, str)) else None}
    if kind == "config":
        data = msg.get("config")
        args["config"] = parse_config({**fitting_defaults(limits), **data} if isinstance(data, dict) else data, limits)
    elif kind == "patch":
        patch_config(cfg, msg.get("patch"), limits)  # answer bad values now...
        args["patch"] = msg["patch"]  # ...and apply to the config current when the scheduler runs it
        kind = "config"
    elif kind == "regenerate":
        seed = msg.get("seed", (cfg.seed + 1) % (2**31))
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise BadMessage(f"seed must be an integer 0..{2**31 - 1}, got {json.dumps(seed)[:40]}")
        args["patch"] = {"seed": seed}
        kind = "config"
    elif kind == "step":
        args["epochs"] = _int(msg, "epochs", 1, 1000) if "epochs" in msg else 1
    elif kind == "reset":
        if "seed" in msg:
            args["seed"] = _int(msg, "seed", 0, 2**31 - 1)
    elif kind == "speed":
        v = msg.get("epochs_per_frame")
        if v != "auto":
            _int(msg, "epochs_per_frame", 1, session.engine.chunk)
        args["speed"] = v
    elif kind == "set_weight":
        depth = len(cfg.layers)
        layer = _int(msg, "layer", 0, depth)
        which = msg.get("kind", "w")
        if which not in ("w", "b"):
            raise BadMessage(f"kind must be 'w' or 'b', got {json.dumps(which)[:40]}")
        ins = [len(cfg.features)] + [layer_.units for layer_ in cfg.layers]
        outs = [layer_.units for layer_ in cfg.layers] + [cfg.n_outputs]
        args.update(layer=layer, kind=which, j=_int(msg, "j", 0, outs[layer] - 1),
                    i=_int(msg, "i", 0, ins[layer] - 1) if which == "w" else 0,
                    value=_float(msg, "value", -100.0, 100.0))
    elif kind == "add_points":
        pts = msg.get("points")
        if not isinstance(pts, list) or not 1 <= len(pts) <= 1000:
            raise BadMessage("points must be a list of 1..1000 {x1, x2, label}")
        parsed = []
        for i, p in enumerate(pts):
            try:
                parsed.append(Point.model_validate(p))
            except ValidationError as err:
                raise ConfigError([f"points[{i}].{m}" for m in format_errors(err)]) from None
        parse_config(session.add_points(parsed).model_dump(exclude_none=True, exclude={"weights"}), limits)
        args["add_points"] = parsed
        kind = "config"
    elif kind == "export":
        fmt = msg.get("format")
        if fmt not in EXPORT_FORMATS:
            raise BadMessage(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {json.dumps(fmt)[:40]}")
        args["format"] = fmt
    elif kind == "join_room":
        args.update({k: msg.get(k) for k in ("room", "name", "member_id", "secret")})
    elif kind == "hidden":  # within the server's limits here; against the network in order, by the scheduler
        args.update(layer=_int(msg, "layer", 0, max(limits.max_layers - 1, 0)),
                    i=_int(msg, "i", 0, limits.max_units - 1), j=_int(msg, "j", 0, limits.max_units - 1))
    elif kind == "remove_point":
        args["remove_point"] = (_float(msg, "x1", -6, 6), _float(msg, "x2", -6, 6))
        kind = "config"
    return Command(kind, args)


def start_config(limits) -> Config:
    return parse_config(fitting_defaults(limits), limits)


async def serve_session(ws: WebSocket, app_state) -> None:
    settings, sched, metrics = app_state.settings, app_state.scheduler, app_state.metrics
    if not origin_allowed(ws, settings.allowed_origins):
        await ws.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    ip = client_ip(ws, settings.trusted_proxies)
    await ws.accept()
    if len(app_state.sessions) >= settings.max_sessions:
        await ws.close(code=CLOSE_FULL, reason=f"server full: {settings.max_sessions} sessions; try again soon")
        return
    if app_state.per_ip.get(ip, 0) >= settings.max_connections_per_ip:
        await ws.close(code=CLOSE_FULL, reason=f"too many connections from your address ({settings.max_connections_per_ip})")
        return
    loop = asyncio.get_running_loop()
    outbox = Outbox()
    waker = Waker.of(loop)

    def notify(_s: Session) -> None:
        waker.set(outbox.ready)

    def reply_threadsafe(msg: dict) -> None:
        loop.call_soon_threadsafe(outbox.put, msg)

    app_state.next_id += 1
    session = Session(app_state.next_id, app_state.engine, start_config(settings.limits), notify)
    session.reply = reply_threadsafe  # scheduler-initiated messages (idle-pause notice)
    # Frames' payloads are deflated by the scheduler's threads, not by the websocket (app/server.py),
    # for a client that says it can inflate them (``/ws?payload=deflate-raw``: the page does
    # where the browser has DecompressionStream("deflate-raw")); others get them as they are.
    deflate = settings.ws_compression and ws.query_params.get("payload") == "deflate-raw"
    session.compress_level = settings.ws_compression_level if deflate else None
    app_state.sessions[session.id] = session
    app_state.per_ip[ip] = app_state.per_ip.get(ip, 0) + 1
    metrics.sessions.set(len(app_state.sessions))
    sched.add(session)
    await ws.send_json(session.state_message() | {"server": {"max_layers": settings.max_layers,
                                                              "max_units": settings.max_units,
                                                              "max_points": settings.max_points,
                                                              "chunk": app_state.engine.chunk}})
    sender = asyncio.create_task(_send_loop(ws, session, outbox, metrics))
    room = RoomSlot()
    bucket = TokenBucket(settings.rate_limit, 2 * settings.rate_limit)
    try:
        while True:
            try:
                raw = await asyncio.wait_for(ws.receive(), timeout=settings.idle_timeout_s)
            except asyncio.TimeoutError:
                await ws.close(code=1000, reason="idle timeout")
                break
            if raw["type"] == "websocket.disconnect":
                break
            session.last_seen = time.monotonic()
            text = raw.get("text")
            error = None
            if text is None:
                error = "binary messages are not part of the protocol; send JSON text"
            elif len(text.encode()) > settings.max_message_bytes:
                error = f"message too large: {len(text.encode())} bytes, limit {settings.max_message_bytes}"
            elif not bucket.take():
                error = f"rate limit: at most {settings.rate_limit:g} messages per second"
            if error:
                metrics.errors.labels("bad_message").inc()
                outbox.put({"type": "error", "message": error})
                continue
            try:
                cmd = parse_message(text, session, settings.limits)
            except ConfigError as err:
                metrics.errors.labels("config").inc()
                outbox.put({"type": "error", "message": err.messages[0], "messages": err.messages})
                continue
            except BadMessage as err:
                metrics.errors.labels("bad_message").inc()
                outbox.put({"type": "error", "message": str(err)})
                continue
            if cmd.kind == "ping":
                outbox.put({"type": "pong", "id": cmd.args.get("id")})
                continue
            if cmd.kind in ("join_room", "leave_room"):
                await room_command(cmd, room, session, app_state, ip, lambda m: outbox.put(m))
                continue
            if room.member is not None:
                try:
                    room.member.check_locks(cmd.kind, cmd.args)
                except ValueError as err:
                    metrics.errors.labels("locked").inc()
                    outbox.put({"type": "error", "message": str(err)})
                    continue
            cmd.reply = reply_threadsafe
            session.submit(cmd)
            sched.poke()
    except WebSocketDisconnect:
        pass
    finally:
        session.closed = True
        sched.remove(session)
        if room.member is not None:
            await room.member.stop()
        sender.cancel()
        app_state.sessions.pop(session.id, None)
        app_state.per_ip[ip] = app_state.per_ip.get(ip, 1) - 1
        if app_state.per_ip[ip] <= 0:
            app_state.per_ip.pop(ip, None)
        metrics.sessions.set(len(app_state.sessions))
        metrics.frames_dropped.inc(session.frames_dropped)


class RoomSlot:
    """The classroom room a session is in (at most one)."""

    member = None


async def room_command(cmd: Command, slot: RoomSlot, session: Session, app_state, ip: str, send) -> None:
    """join_room (again with the same room: rename) or leave_room; errors name the problem."""
    from app.rooms.limits import clean_name
    from app.rooms.member import Membership
    from app.rooms.service import RoomError
    from app.rooms.tokens import normalise_code

    rooms = app_state.rooms
    cur = slot.member
    try:
        if cmd.kind == "leave_room":
            if cur is not None:
                slot.member = None
                await cur.stop(forget=True)
            send({"type": "room_left", "room": cur.code if cur else None})
            return
        if cur is not None and normalise_code(cmd.args["room"]) == cur.code:
            try:
                await cur.rename(clean_name(cmd.args["name"]))
            except ValueError as err:
                raise RoomError(422, str(err)) from None
            room = await rooms.room(cur.code)
            send({"type": "room_joined", "room": await rooms.public_state(room), "member_id": cur.member_id,
                  "name": cur.name, "worker": os.getpid()})
            return
        conn = secrets.token_hex(8)
        room, member_id, name, secret = await rooms.join(cmd.args["room"], cmd.args["name"], ip, conn,
                                                         cmd.args["member_id"], cmd.args["secret"])
        if cur is not None:
            slot.member = None
            await cur.stop()

        def closed() -> None:
            if slot.member is member:
                slot.member = None

        member = Membership(rooms, session, room, member_id, name, conn, send, closed)
        await member.start()
        slot.member = member
        joined = {"type": "room_joined", "room": await rooms.public_state(room), "member_id": member_id,
                  "name": name, "worker": os.getpid()}
        if secret is not None:
            joined["secret"] = secret
        else:  # taken up again: the page keeps its secret and gets its result back
            joined.update(rejoined=True, result=await rooms.own_result(room, member_id))
        send(joined)
    except RoomError as err:
        app_state.metrics.errors.labels("room").inc()
        send({"type": "error", "of": cmd.kind, "message": err.message})


class Waker:
    """Sets a loop's asyncio events from other threads with one wake-up of the loop per burst:
    the scheduler publishes a crowd's frames together, and a ``call_soon_threadsafe`` per
    frame wrote to the loop's self-pipe and woke it ~2,000 times a second for 200 sessions."""

    _by_loop: dict = {}
    _by_loop_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[asyncio.Event] = []
        self.lock = threading.Lock()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "Waker":
        with cls._by_loop_lock:
            waker = cls._by_loop.get(loop)
            if waker is None or waker.loop.is_closed():
                for old in [k for k, w in cls._by_loop.items() if w.loop.is_closed()]:
                    del cls._by_loop[old]
                waker = cls._by_loop[loop] = cls(loop)
            return waker

    def set(self, event: asyncio.Event) -> None:
        with self.lock:
            self.pending.append(event)
            if len(self.pending) > 1:  # a flush is scheduled already and will see this one
                return
        try:
            self.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop has closed (server shutting down)
            with self.lock:
                self.pending.clear()

    def _flush(self) -> None:
        with self.lock:
            events, self.pending = self.pending, []
        for event in events:
            event.set()


class Outbox:
    """One client's control messages (the oldest dropped past ``maxsize``: a client that never
    reads) and the event that wakes its sender: a message or a new frame is waiting."""

    def __init__(self, maxsize: int = 256):
        self.items: deque[dict | str] = deque(maxlen=maxsize)
        self.ready = asyncio.Event()

    def put(self, msg: dict | str) -> None:
        self.items.append(msg)
        self.ready.set()


async def _send_loop(ws: WebSocket, session: Session, outbox: Outbox, metrics) -> None:
    """Control messages first, then the newest frame; one send in flight at a time, so a
    slow client holds at most one frame here and the scheduler just overwrites it. One event
    wakes it (no tasks per frame): it is cleared before looking, so no wake-up is lost."""
    try:
        while ws.client_state == WebSocketState.CONNECTED:
            outbox.ready.clear()
            while outbox.items:
                msg = outbox.items.popleft()  # a dict, or JSON text encoded already
                await ws.send_text(msg if isinstance(msg, str) else dumps_text(msg))
            frame = session.take_frame()
            if frame is not None:
                await ws.send_bytes(frame)
                metrics.frames_sent.inc()
                continue
            await outbox.ready.wait()
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        pass
    except Exception:  # a broken socket ends this sender, never the server
        log.debug("sender stopped", exc_info=True)


def dumps_text(msg: dict) -> str:
    """A control message as JSON text (``dumps``; objects JSON lacks are written as strings)."""
    return orjson.dumps(msg, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def client_ip(ws: WebSocket, trusted: list[str]) -> str:
    peer = ws.client.host if ws.client else "unknown"
    fwd = ws.headers.get("x-forwarded-for")
    if fwd and peer in trusted:
        return fwd.split(",")[0].strip()
    return peer
