"""One student session's membership of a room: forwards the room's broadcasts to the page,
enforces the lecturer's locks, reports to the dashboard about once a second, and judges
challenge results from the session's own metrics (students cannot submit numbers)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from typing import Callable

import numpy as np

from core.config import Config, ConfigError, parse_config, patch_config

from app.rooms.service import TOUCH_S, Rooms, dash_channel, member_channel, room_channel

log = logging.getLogger("nnplay.rooms")

REPORT_S = 1.0
SPOT_REPORT_S = 0.25
FORWARD = ("room_push", "room_locks", "room_challenge", "room_leaderboard", "room_settings", "room_closed")


class LockedError(ValueError):
    pass


def thumb(grid: np.ndarray, size: int, mean: bool = True) -> np.ndarray:
    """A size x size uint8 downsample: block means (values) or samples (class indices)."""
    g = grid.shape[-1]
    if g % size == 0:
        k = g // size
        if mean:
            return np.round(grid.reshape(size, k, size, k).mean(axis=(1, 3))).astype(np.uint8)
        return np.ascontiguousarray(grid[k // 2::k, k // 2::k])
    idx = np.linspace(0, g - 1, size).round().astype(int)
    return np.ascontiguousarray(grid[np.ix_(idx, idx)])


def b64(a: np.ndarray) -> str:
    return base64.b64encode(a.astype(np.uint8).tobytes()).decode()


class Membership:
    def __init__(self, rooms: Rooms, session, room: dict, member_id: str, name: str, conn: str,
                 send: Callable[[dict], None], on_closed: Callable[[], None]):
        self.rooms, self.session = rooms, session
        self.code, self.member_id, self.name, self.conn = room["code"], member_id, name, conn
        self.send, self.on_closed = send, on_closed
        self.locks: list[str] = list(room["locks"])
        self.challenge: dict | None = room["challenge"]
        self.pushed: dict | None = room["pushed"]
        self.revealed: bool = room["leaderboard_revealed"]
        self._pushed_cfg: Config | None = None
        self.best: tuple[str, int] | None = None  # (challenge id, params) last recorded
        self.spot_until = 0.0
        self.tasks: list[asyncio.Task] = []
        self.subs: list = []
        self.loop = asyncio.get_running_loop()

    async def start(self) -> None:
        hub = self.rooms.hub
        self.subs = [await hub.subscribe(room_channel(self.code)),
                     await hub.subscribe(member_channel(self.code, self.member_id))]
        self.tasks = [asyncio.create_task(self._forward(self.subs[0])),
                      asyncio.create_task(self._control(self.subs[1])),
                      asyncio.create_task(self._report_loop())]
        self.session.watch = self.on_frame
        await hub.publish(dash_channel(self.code), {"type": "member_joined", "member_id": self.member_id,
                                                    "name": self.name})

    async def stop(self, remove: bool = True, forget: bool = False) -> None:
        """Leave: stop forwarding and reporting. ``remove``: the member leaves the room (if
        this connection still holds it), kept for a rejoin unless ``forget``."""
        self.session.watch = None
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        for s in self.subs:
            s.close()
        if remove:
            try:
                if await asyncio.to_thread(self.rooms.store.remove_member, self.member_id, self.conn, forget):
                    await self.rooms.hub.publish(dash_channel(self.code), {"type": "member_left",
                                                                           "member_id": self.member_id})
            except Exception:  # leaving must never break the session's own shutdown
                log.exception("leaving room %s failed", self.code)

    async def rename(self, name: str) -> None:
        self.name = name
        await asyncio.to_thread(self.rooms.store.rename_member, self.member_id, name)

    # --- from the room -----------------------------------------------------------------

    async def _forward(self, sub) -> None:
        async for msg in sub:
            kind = msg.get("type")
            if kind not in FORWARD:
                continue
            if kind == "room_push":
                self.pushed, self._pushed_cfg = {k: msg.get(k) for k in ("config", "preset", "view", "at")}, None
            elif kind == "room_locks":
                self.locks = list(msg["locks"])
            elif kind == "room_challenge":
                self.challenge = msg["challenge"]
            elif kind == "room_leaderboard":
                self.revealed = bool(msg.get("revealed"))
            self.send(msg)
            if kind == "room_closed":
                await self.stop(remove=False)
                self.on_closed()
                return

    async def _control(self, sub) -> None:
        async for msg in sub:
            if msg.get("type") == "spotlight":
                self.spot_until = time.monotonic() + float(msg.get("ttl", 0))
            elif msg.get("type") == "replaced" and msg.get("conn") != self.conn:
                # the member joined again on another connection (a duplicated tab, or a
                # reconnect while this socket still looked open): that one holds it now
                await self.stop(remove=False)
                self.on_closed()
                self.send({"type": "room_left", "room": self.code, "reason": "replaced"})
                return

    # --- locks -------------------------------------------------------------------------

    def pushed_config(self) -> Config | None:
        if self._pushed_cfg is None and self.pushed and self.pushed.get("config"):
            try:
                self._pushed_cfg = parse_config(self.pushed["config"], self.rooms.limits)
            except ConfigError:
                return None
        return self._pushed_cfg

    def check_locks(self, kind: str, args: dict) -> None:
        """Raise LockedError naming the first locked control the command would change. A value
        the lecturer pushed is allowed (the page applies a push by sending it as its config)."""
        if not self.locks:
            return
        if kind == "speed":
            if "speed" in self.locks:
                raise LockedError("speed is locked by the lecturer")
            return
        if kind != "config":
            return
        old = self.session.run.cfg
        if "add_points" in args or "remove_point" in args:
            for f in ("points", "dataset"):
                if f in self.locks:
                    raise LockedError(f"{f} is locked by the lecturer")
            return
        new = args["config"] if "config" in args else patch_config(old, args["patch"], self.rooms.limits)
        pushed = self.pushed_config()
        for lock in self.locks:
            if lock in ("speed", "preset"):  # page-only: speed is its own message; a preset is a config
                continue
            if _changed(lock, old, new) and (pushed is None or _changed(lock, pushed, new)):
                raise LockedError(f"{lock} is locked by the lecturer")

    # --- from the scheduler thread -------------------------------------------------------

    def on_frame(self, metrics: dict, cfg: Config) -> None:
        """Judge the challenge on every frame (cheap comparisons); a new or better hit is
        recorded on the event loop."""
        ch = self.challenge
        if not ch or not ch.get("active") or metrics.get("diverged"):
            return
        if ch.get("dataset") and cfg.dataset != ch["dataset"]:
            return
        v = metrics.get(ch["metric"])
        if v is None or not (v <= ch["target"] if ch["metric"] == "test_loss" else v >= ch["target"]):
            return
        params = cfg.n_params
        if self.best and self.best[0] == ch["id"] and (ch["rank_by"] == "time" or params >= self.best[1]):
            return
        self.best = (ch["id"], params)
        hit = {"challenge_id": ch["id"], "rank_by": ch["rank_by"], "metric": ch["metric"], "params": params,
               "test_loss": metrics.get("test_loss"), "test_accuracy": metrics.get("test_accuracy"),
               "epoch": int(metrics.get("epoch", 0)), "seconds": max(0.0, self.rooms.clock() - ch["started_at"])}
        self.loop.call_soon_threadsafe(lambda: self.tasks.append(asyncio.ensure_future(self._record(hit))))

    async def _record(self, hit: dict) -> None:
        written = await asyncio.to_thread(
            self.rooms.store.record_result, self.code, hit["challenge_id"], self.member_id, self.name,
            hit["params"], hit["test_loss"], hit["test_accuracy"], hit["epoch"], hit["seconds"], hit["rank_by"])
        if not written:
            return
        result = {"member_id": self.member_id, "name": self.name, "value": hit[hit["metric"]], **hit}
        self.send({"type": "room_result", "result": result})
        await self.rooms.hub.publish(dash_channel(self.code), {"type": "result", **result})
        if self.revealed:
            self.rooms.board_changed(self.code)

    # --- reports -----------------------------------------------------------------------

    async def _report_loop(self) -> None:
        last_touch = time.monotonic()
        while True:
            spot = time.monotonic() < self.spot_until
            await asyncio.sleep(SPOT_REPORT_S if spot else REPORT_S)
            try:
                report = await asyncio.to_thread(self.report, 50 if spot else 25, spot)
                if report is not None:
                    await self.rooms.hub.publish(dash_channel(self.code), report)
                if time.monotonic() - last_touch > TOUCH_S:
                    last_touch = time.monotonic()
                    await asyncio.to_thread(self.rooms.store.touch_member, self.member_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room report failed")

    def report(self, size: int = 25, spot: bool = False) -> dict | None:
        """The dashboard's view of this session (off the event loop: downsampling)."""
        latest = self.session.latest
        if latest is None:
            return None
        out, metrics, cfg, version = latest
        multi = cfg.n_outputs > 1
        rep = {"type": "report", "member_id": self.member_id, "name": self.name, "worker": os.getpid(),
               "epoch": metrics.get("epoch"), "params": cfg.n_params, "test_loss": metrics.get("test_loss"),
               "test_accuracy": metrics.get("test_accuracy"), "train_loss": metrics.get("train_loss"),
               "diverged": bool(metrics.get("diverged")), "playing": self.session.playing,
               "problem": cfg.problem, "classes": cfg.classes, "dataset": cfg.dataset,
               "thumb_size": size, "thumb": b64(thumb(out[0], size)),
               "thumb_class": b64(thumb(out[1], size, mean=False)) if multi else None,
               "config_version": version, "spot": spot}
        if spot:
            rep["config"] = cfg.model_dump(exclude_none=True, exclude={"weights"})
        return rep


def _changed(lock: str, old: Config, new: Config) -> bool:
    if lock == "activation":  # per layer; added layers may take an activation already there
        a, b = [la.activation for la in old.layers], [la.activation for la in new.layers]
        return any(x != y for x, y in zip(a, b)) or any(y not in a for y in b[len(a):] if a)
    if lock == "regularization":
        return (old.l1, old.l2) != (new.l1, new.l2)
    return getattr(old, lock) != getattr(new, lock)
