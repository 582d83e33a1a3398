"""HTTP API of classroom rooms and the lecturer dashboard socket (docs/protocol.md).

Lecturer actions carry ``Authorization: Bearer <token>``; refusals are answered with
``{"error": message, "messages": [...]}`` and change nothing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from functools import lru_cache

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.rooms.service import ACTIVE_S, RoomError, Rooms, dash_channel, member_channel

router = APIRouter(prefix="/api/rooms")

DASH_REPORT_S = 0.5  # at most 2 reports per second per member on a dashboard
SPOT_TTL = 15.0  # a spotlight lapses unless the dashboard renews it (every SPOT_TTL / 3)
AUTH_TIMEOUT = 10.0


def _rooms(request: Request) -> Rooms:
    return request.app.state.nn.rooms


def _error(err: RoomError) -> JSONResponse:
    return JSONResponse({"error": err.message, "messages": err.messages}, status_code=err.status)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed")))
    except (ValueError, RecursionError) as err:
        raise RoomError(400, f"body must be JSON: {str(err)[:80]}") from None
    if not isinstance(body, dict):
        raise RoomError(400, "body must be a JSON object")
    return body


def _ip(request: Request) -> str:
    from app.ws import client_ip

    return client_ip(request, request.app.state.nn.settings.trusted_proxies)


def _lecturer(action):
    """Route body: authorize first (nothing is parsed or changed on refusal), then act."""

    async def handler(request: Request, code: str):
        rooms = _rooms(request)
        try:
            room = await rooms.authorize(code, _bearer(request))
            return JSONResponse(await action(rooms, room, await _body(request)))
        except RoomError as err:
            return _error(err)

    handler.__name__ = action.__name__
    return handler


@router.post("", status_code=201)
async def create_room(request: Request):
    try:
        body = await _body(request)
        return JSONResponse(await _rooms(request).create(body.get("title"), _ip(request)), status_code=201)
    except RoomError as err:
        return _error(err)


@router.get("/{code}")
async def room_state(request: Request, code: str):
    rooms = _rooms(request)
    try:
        return await rooms.public_state(await rooms.room(code))
    except RoomError as err:
        return _error(err)


@router.get("/{code}/qr.svg")
async def room_qr(request: Request, code: str):
    try:
        room = await _rooms(request).room(code)
    except RoomError as err:
        return _error(err)
    url = f"{str(request.base_url).rstrip('/')}/#room={room['code']}"
    svg = await asyncio.to_thread(_qr_svg, url)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=3600"})


@lru_cache(maxsize=256)
def _qr_svg(url: str) -> bytes:
    import segno

    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="svg", scale=10, border=2, dark="#000", light="#fff",
                                    xmldecl=False, title=url)
    return buf.getvalue()


@router.get("/{code}/leaderboard")
async def get_leaderboard(request: Request, code: str):
    """The lecturer sees it always; everyone else once it is revealed."""
    rooms = _rooms(request)
    try:
        token = _bearer(request)
        room = await rooms.authorize(code, token) if token else await rooms.room(code)
        if not token and not room["leaderboard_revealed"]:
            raise RoomError(403, f"the leaderboard of room {room['code']} is not revealed yet")
        return {"challenge": room["challenge"], "revealed": room["leaderboard_revealed"],
                "leaderboard": await rooms.leaderboard(room)}
    except RoomError as err:
        return _error(err)


async def push(rooms: Rooms, room: dict, body: dict):
    return await rooms.push(room, body)


async def locks(rooms: Rooms, room: dict, body: dict):
    return await rooms.set_locks(room, body)


async def challenge(rooms: Rooms, room: dict, body: dict):
    return await rooms.start_challenge(room, body)


async def challenge_stop(rooms: Rooms, room: dict, body: dict):
    return await rooms.stop_challenge(room)


async def leaderboard(rooms: Rooms, room: dict, body: dict):
    return await rooms.reveal(room, body)


async def settings(rooms: Rooms, room: dict, body: dict):
    return await rooms.update_settings(room, body)


async def delete(rooms: Rooms, room: dict, body: dict):
    return await rooms.delete(room)


router.add_api_route("/{code}/push", _lecturer(push), methods=["POST"])
router.add_api_route("/{code}/locks", _lecturer(locks), methods=["POST"])
router.add_api_route("/{code}/challenge", _lecturer(challenge), methods=["POST"])
router.add_api_route("/{code}/challenge/stop", _lecturer(challenge_stop), methods=["POST"])
router.add_api_route("/{code}/leaderboard", _lecturer(leaderboard), methods=["POST"])
router.add_api_route("/{code}/settings", _lecturer(settings), methods=["POST"])
router.add_api_route("/{code}", _lecturer(delete), methods=["DELETE"])


# --- the lecturer dashboard --------------------------------------------------------------

async def serve_dashboard(ws: WebSocket, code: str, app_state) -> None:
    """``WS /ws/room/{code}``: the first message authenticates (the token never goes in the
    URL, so never in a log); then the dashboard state, then reports and results live."""
    from app.ws import CLOSE_POLICY, origin_allowed

    rooms: Rooms = app_state.rooms
    if not origin_allowed(ws, app_state.settings.allowed_origins):
        await ws.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    await ws.accept()
    try:
        first = json.loads(await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT))
    except (asyncio.TimeoutError, ValueError, KeyError, WebSocketDisconnect, RuntimeError):
        first = None
    token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
    if not isinstance(token, str) or not token:
        await _close(ws, "lecturer token required")
        return
    try:
        room = await rooms.authorize(code, token)
    except RoomError as err:
        await _close(ws, "invalid lecturer token" if err.status == 403 else err.message)
        return
    code = room["code"]
    sub = await rooms.hub.subscribe(dash_channel(code))
    dash = Dashboard(ws, rooms, code)
    try:
        members = await asyncio.to_thread(rooms.store.list_members, code, ACTIVE_S)
        await ws.send_json({"type": "dashboard", "room": await rooms.public_state(room), "members": members,
                            "leaderboard": await rooms.leaderboard(room), "worker": os.getpid()})
        forward = asyncio.create_task(dash.forward(sub))
        renew = asyncio.create_task(dash.renew())
        try:
            await dash.read()
        finally:
            forward.cancel()
            renew.cancel()
            await dash.spotlight(None)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()


async def _close(ws: WebSocket, reason: str) -> None:
    from app.ws import CLOSE_POLICY

    if ws.client_state == WebSocketState.CONNECTED:
        await ws.close(code=CLOSE_POLICY, reason=reason)


class Dashboard:
    def __init__(self, ws: WebSocket, rooms: Rooms, code: str):
        self.ws, self.rooms, self.code = ws, rooms, code
        self.spot: str | None = None
        self.last: dict[str, float] = {}

    async def read(self) -> None:
        while True:
            try:
                msg = json.loads(await self.ws.receive_text())
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "spotlight":
                mid = msg.get("member_id")
                await self.spotlight(mid if isinstance(mid, str) and len(mid) <= 32 else None)
                await self.ws.send_json({"type": "spotlight", "member_id": self.spot})
            elif msg.get("type") == "ping":
                await self.ws.send_json({"type": "pong"})

    async def spotlight(self, member_id: str | None) -> None:
        if self.spot and self.spot != member_id:
            await self.rooms.hub.publish(member_channel(self.code, self.spot), {"type": "spotlight", "ttl": 0})
        self.spot = member_id
        if member_id:
            await self.rooms.hub.publish(member_channel(self.code, member_id), {"type": "spotlight", "ttl": SPOT_TTL})

    async def renew(self) -> None:
        while True:
            await asyncio.sleep(SPOT_TTL / 3)
            if self.spot:
                await self.rooms.hub.publish(member_channel(self.code, self.spot),
                                             {"type": "spotlight", "ttl": SPOT_TTL})

    async def forward(self, sub) -> None:
        """Results and membership at once; reports at most 2/s per member, the spotlighted
        member's at full rate."""
        try:
            async for msg in sub:
                if msg.get("type") == "report" and msg.get("member_id") != self.spot:
                    now = time.monotonic()
                    if now - self.last.get(msg["member_id"], 0.0) < DASH_REPORT_S:
                        continue
                    self.last[msg["member_id"]] = now
                elif msg.get("type") == "member_left":
                    self.last.pop(msg.get("member_id"), None)
                await self.ws.send_json(msg)
                if msg.get("type") == "room_closed":
                    await _close(self.ws, "room closed")
                    return
        except (WebSocketDisconnect, RuntimeError):
            pass

