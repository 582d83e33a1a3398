"""The rules of a room: who may do what, expiry, member cap, rate limits, the leaderboard.

Every lecturer action goes through ``authorize`` (token required, hashed, compared in
constant time) before anything is read for writing; a refusal changes nothing. Database
calls run in a thread (``asyncio.to_thread``) so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Callable

from core.config import DATASETS, Config, ConfigError, parse_config

from app.rooms import tokens
from app.rooms.hub import make_hub
from app.rooms.limits import RateLimiter
from app.rooms.store import Full, Store, database_url

log = logging.getLogger("nnplay.rooms")

ACTIVE_S = 90.0  # a member counts while seen this recently (sessions touch every TOUCH_S)
TOUCH_S = 30.0
BOARD_S = 0.5  # a revealed leaderboard is re-sent at most twice a second per room
TITLE_MAX = 80
METRICS = ("test_loss", "test_accuracy")
RANK_BY = ("params", "time")
# Lockable controls: config fields, plus page controls that stand for several fields.
PAGE_LOCKS = ("activation", "regularization", "speed", "preset")
LOCKABLE = tuple(f for f in Config.model_fields if f != "weights") + PAGE_LOCKS


class RoomError(Exception):
    """A refusal: HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str, messages: list[str] | None = None):
        super().__init__(message)
        self.status, self.message, self.messages = status, message, messages or [message]


def not_found(code: object) -> RoomError:
    shown = code if isinstance(code, str) and len(code) <= 16 else "?"
    return RoomError(404, f"room {shown} not found or expired")


def room_channel(code: str) -> str:
    return f"room:{code}"


def dash_channel(code: str) -> str:
    return f"room:{code}:dash"


def member_channel(code: str, member_id: str) -> str:
    return f"room:{code}:member:{member_id}"


class Rooms:
    def __init__(self, settings, clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.store = Store(database_url(settings.database_url, settings.data_dir), clock=lambda: self.clock())
        self.hub = make_hub(settings.redis_url)
        self.join_limit = RateLimiter(settings.room_join_rate, clock=monotonic)
        self.create_limit = RateLimiter(settings.room_create_rate, clock=monotonic)
        self.monotonic = monotonic
        self._board_due: dict[str, asyncio.Task] = {}
        self._board_last: dict[str, float] = {}
        self.presets: list[dict] = []
        self.limits = settings.limits

    async def start(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        await self.hub.start()

    async def close(self) -> None:
        await self.hub.close()
        await asyncio.to_thread(self.store.close)

    @property
    def ttl_s(self) -> float:
        return self.settings.room_ttl_hours * 3600.0

    # --- reading -----------------------------------------------------------------------

    async def room(self, code: object) -> dict:
        c = tokens.normalise_code(code)
        room = await asyncio.to_thread(self.store.get_room, c) if c else None
        if room is None:
            raise not_found(code)
        return room

    async def authorize(self, code: object, token: str | None) -> dict:
        """The room if ``token`` is its lecturer token; else 401 (none), 404, 403."""
        if not token:
            raise RoomError(401, "lecturer token required")
        room = await self.room(code)
        if not tokens.token_matches(token, room["token_hash"]):
            raise RoomError(403, f"invalid lecturer token for room {room['code']}")
        return room

    async def public_state(self, room: dict) -> dict:
        """What anyone with the code may see: no per-member data but the revealed leaderboard."""
        count = await asyncio.to_thread(self.store.count_members, room["code"], ACTIVE_S)
        board = await self.leaderboard(room) if room["leaderboard_revealed"] else None
        return {"code": room["code"], "title": room["title"], "locks": room["locks"],
                "challenge": room["challenge"], "pushed": room["pushed"],
                "leaderboard_revealed": room["leaderboard_revealed"], "leaderboard": board,
                "hide_names": room["hide_names"], "members": count, "expires_at": room["expires_at"]}

    async def leaderboard(self, room: dict) -> list[dict]:
        ch = room["challenge"]
        if not ch:
            return []
        rows = await asyncio.to_thread(self.store.results, room["code"], ch["id"])
        return rank(rows, ch, room["hide_names"])

    # --- lecturer actions --------------------------------------------------------------

    async def create(self, title: object, ip: str) -> dict:
        if title is None:
            title = ""
        if not isinstance(title, str) or len(title.strip()) > TITLE_MAX:
            raise RoomError(422, f"title must be a string of at most {TITLE_MAX} characters")
        wait = self.create_limit.take(ip)
        if wait:
            raise RoomError(429, f"rate limit: at most {self.create_limit.per_minute:g} new rooms per minute "
                                 f"from your address; try again in {math.ceil(wait)} s")
        token = tokens.new_token()
        for _ in range(20):
            room = await asyncio.to_thread(self.store.create_room, tokens.new_code(), tokens.hash_token(token),
                                           title.strip(), self.ttl_s)
            if room is not None:
                return {"code": room["code"], "token": token, "title": room["title"],
                        "student_url": f"/#room={room['code']}", "dashboard_url": f"/classroom#room={room['code']}",
                        "expires_at": room["expires_at"]}
        raise RoomError(503, "no free room code; try again")

    async def push(self, room: dict, body: dict) -> dict:
        preset, view, base = body.get("preset"), None, {}
        if preset is not None:
            found = next((p for p in self.presets if p["name"] == preset), None)
            if found is None:
                names = ", ".join(p["name"] for p in self.presets)
                raise RoomError(422, f"preset must be one of {names}, got {str(preset)[:40]!r}")
            base, view = found["config"], found.get("view")
        config = body.get("config", {})
        if not isinstance(config, dict):
            raise RoomError(422, "config must be a JSON object (a full or partial config)")
        if preset is None and not config:
            raise RoomError(422, "push needs a config or a preset")
        from core.config import fitting_defaults

        try:
            cfg = parse_config({**fitting_defaults(self.limits), **base, **config}, self.limits)
        except ConfigError as err:
            raise RoomError(422, err.messages[0], err.messages) from None
        pushed = {"config": cfg.model_dump(exclude_none=True, exclude={"weights"}), "preset": preset, "view": view,
                  "at": self.clock()}
        await asyncio.to_thread(self.store.update_room, room["code"], pushed=pushed)
        msg = {"type": "room_push", **pushed}
        await self.hub.publish(room_channel(room["code"]), msg)
        return msg

    async def set_locks(self, room: dict, body: dict) -> dict:
        locks = body.get("locks")
        if not isinstance(locks, list) or not all(isinstance(x, str) for x in locks):
            raise RoomError(422, "locks must be a list of control names")
        bad = [x for x in locks if x not in LOCKABLE]
        if bad:
            raise RoomError(422, f"locks: unknown control {bad[0][:40]!r}; allowed: {', '.join(LOCKABLE)}")
        locks = sorted(set(locks), key=LOCKABLE.index)
        await asyncio.to_thread(self.store.update_room, room["code"], locks=locks)
        msg = {"type": "room_locks", "locks": locks}
        await self.hub.publish(room_channel(room["code"]), msg)
        return msg

    async def start_challenge(self, room: dict, body: dict) -> dict:
        title = body.get("title", "")
        if not isinstance(title, str) or len(title.strip()) > TITLE_MAX:
            raise RoomError(422, f"title must be a string of at most {TITLE_MAX} characters")
        metric, rank_by, target = body.get("metric"), body.get("rank_by", "params"), body.get("target")
        if metric not in METRICS:
            raise RoomError(422, f"metric must be one of {', '.join(METRICS)}, got {str(metric)[:40]!r}")
        if rank_by not in RANK_BY:
            raise RoomError(422, f"rank_by must be one of {', '.join(RANK_BY)}, got {str(rank_by)[:40]!r}")
        hi = 1.0 if metric == "test_accuracy" else 100.0
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) \
                or not 0 < target <= hi:
            raise RoomError(422, f"target must be a number in (0, {hi:g}] for {metric}, got {str(target)[:40]}")
        dataset = body.get("dataset")
        if dataset is not None and dataset not in DATASETS:
            raise RoomError(422, f"dataset must be one of {', '.join(DATASETS)}, got {str(dataset)[:40]!r}")
        ch = {"id": secrets.token_hex(4), "title": title.strip(), "metric": metric, "target": float(target),
              "rank_by": rank_by, "dataset": dataset, "started_at": self.clock(), "active": True}
        await asyncio.to_thread(self.store.update_room, room["code"], challenge=ch, leaderboard_revealed=False)
        msg = {"type": "room_challenge", "challenge": ch}
        await self.hub.publish(room_channel(room["code"]), msg)
        await self.hub.publish(dash_channel(room["code"]), msg)
        return msg

    async def stop_challenge(self, room: dict) -> dict:
        ch = room["challenge"]
        if not ch:
            raise RoomError(409, f"room {room['code']} has no challenge to stop")
        ch = {**ch, "active": False, "stopped_at": self.clock()}
        await asyncio.to_thread(self.store.update_room, room["code"], challenge=ch)
        msg = {"type": "room_challenge", "challenge": ch}
        await self.hub.publish(room_channel(room["code"]), msg)
        await self.hub.publish(dash_channel(room["code"]), msg)
        return msg

    async def reveal(self, room: dict, body: dict) -> dict:
        revealed = body.get("revealed")
        if not isinstance(revealed, bool):
            raise RoomError(422, "revealed must be true or false")
        room = await asyncio.to_thread(self.store.update_room, room["code"], leaderboard_revealed=revealed)
        msg = {"type": "room_leaderboard", "revealed": revealed,
               "leaderboard": await self.leaderboard(room) if revealed else []}
        await self.hub.publish(room_channel(room["code"]), msg)
        return msg

    async def update_settings(self, room: dict, body: dict) -> dict:
        hide = body.get("hide_names")
        if not isinstance(hide, bool):
            raise RoomError(422, "hide_names must be true or false")
        room = await asyncio.to_thread(self.store.update_room, room["code"], hide_names=hide)
        await self.hub.publish(room_channel(room["code"]), {"type": "room_settings", "hide_names": hide})
        if room["leaderboard_revealed"]:  # the names on the shown leaderboard change
            await self.hub.publish(room_channel(room["code"]), {
                "type": "room_leaderboard", "revealed": True, "leaderboard": await self.leaderboard(room)})
        return {"hide_names": hide}

    async def delete(self, room: dict) -> dict:
        await asyncio.to_thread(self.store.delete_room, room["code"])
        msg = {"type": "room_closed", "message": "the lecturer closed this room"}
        await self.hub.publish(room_channel(room["code"]), msg)
        await self.hub.publish(dash_channel(room["code"]), msg)
        return {"closed": room["code"]}

    # --- students ----------------------------------------------------------------------

    async def join(self, code: object, name: object, ip: str, conn: str, member_id: object = None,
                   secret: object = None) -> tuple[dict, str, str, str | None]:
        """(room, member_id, clean name, secret) or RoomError. With the ``member_id`` and
        ``secret`` of a member of this room, that member is taken up again (secret None: the
        page keeps the one it has); without, or with a wrong one, a new member is made."""
        from app.rooms.limits import clean_name

        try:
            name = clean_name(name) if name is not None else None
        except ValueError as err:
            raise RoomError(422, str(err)) from None
        wait = self.join_limit.take(ip)
        if wait:
            raise RoomError(429, f"join rate limit: at most {self.join_limit.per_minute:g} joins per minute "
                                 f"from your address; try again in {math.ceil(wait)} s")
        room = await self.room(code)
        cap = self.settings.room_max_members
        try:
            if isinstance(member_id, str) and isinstance(secret, str) and len(member_id) <= 32 and len(secret) <= 64:
                again = await asyncio.to_thread(self.store.rejoin_member, room["code"], member_id, secret, name,
                                                cap, ACTIVE_S, conn)
                if again is not None:  # another connection that still holds this member lets go
                    await self.hub.publish(member_channel(room["code"], member_id), {"type": "replaced", "conn": conn})
                    return room, member_id, again[0], None
            member_id, secret = secrets.token_urlsafe(9), tokens.new_token()
            await asyncio.to_thread(self.store.add_member, room["code"], member_id, name or "", cap, ACTIVE_S,
                                    tokens.hash_token(secret), conn)
        except Full:
            raise RoomError(409, f"room is full ({cap})") from None
        return room, member_id, name or "", secret

    async def own_result(self, room: dict, member_id: str) -> dict | None:
        """The member's recorded result in the current challenge, as ``room_result`` has it."""
        ch = room["challenge"]
        r = await asyncio.to_thread(self.store.member_result, room["code"], ch["id"], member_id) if ch else None
        if r is None:
            return None
        return {"member_id": member_id, "name": r["name"], "value": r[ch["metric"]], "challenge_id": ch["id"],
                "rank_by": ch["rank_by"], "metric": ch["metric"], "params": r["params"], "test_loss": r["test_loss"],
                "test_accuracy": r["test_accuracy"], "epoch": r["epoch"], "seconds": r["seconds"]}

    def board_changed(self, code: str) -> None:
        """A result was written while the leaderboard is revealed: send the students the new
        ranking, at most once per BOARD_S per room (a burst of results becomes one broadcast
        now and one with the final ranking BOARD_S later)."""
        if code not in self._board_due:
            self._board_due[code] = asyncio.create_task(self._send_board(code))

    async def _send_board(self, code: str) -> None:
        try:
            wait = self._board_last.get(code, -math.inf) + BOARD_S - self.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._board_last[code] = self.monotonic()
            del self._board_due[code]  # a result written from here on schedules the next broadcast
            if len(self._board_last) > 1000:
                old = self.monotonic() - BOARD_S
                self._board_last = {k: t for k, t in self._board_last.items() if t > old}
            room = await asyncio.to_thread(self.store.get_room, code)
            if room is not None and room["leaderboard_revealed"]:
                await self.hub.publish(room_channel(code), {"type": "room_leaderboard", "revealed": True,
                                                            "leaderboard": await self.leaderboard(room)})
        except Exception:
            if self._board_due.get(code) is asyncio.current_task():
                del self._board_due[code]
            log.exception("leaderboard broadcast for room %s failed", code)


def rank(rows: list[dict], ch: dict, hide_names: bool) -> list[dict]:
    """Rows that met the target, best first: fewest parameters (then fastest) for
    rank_by=params, fastest (then fewest parameters) for rank_by=time."""
    if ch["rank_by"] == "params":
        rows = sorted(rows, key=lambda r: (r["params"], r["seconds"], r["at"]))
    else:
        rows = sorted(rows, key=lambda r: (r["seconds"], r["params"], r["at"]))
    out = []
    for i, r in enumerate(rows, 1):
        name = r["name"] if r["name"] and not hide_names else f"Student {i}"
        out.append({"rank": i, "member_id": r["member_id"], "name": name, "params": r["params"],
                    "value": r[ch["metric"]], "metric": ch["metric"], "seconds": round(r["seconds"], 2),
                    "epoch": r["epoch"]})
    return out
