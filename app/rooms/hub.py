"""Broadcast to a room: in one process (``LocalHub``), or through Redis pub/sub (``RedisHub``)
so that sessions on different workers or replicas share a room.

Both: ``await hub.publish(channel, msg)``; ``sub = await hub.subscribe(channel)`` returns once
the subscription is live (a message published after that arrives); ``async for msg in sub``;
``sub.close()``. Each process holds one Redis subscriber connection and fans out locally, so
a room of 200 students costs one Redis message per broadcast per worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import defaultdict

log = logging.getLogger("nnplay.rooms")

QUEUE = 1000  # per subscriber; a consumer that falls this far behind loses the oldest messages


class Subscription:
    def __init__(self, hub: "LocalHub", channel: str):
        self.hub, self.channel = hub, channel
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        self.closed = False

    def deliver(self, msg: dict) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(msg)

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        msg = await self.queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._drop(self)
            self.deliver(None)


class LocalHub:
    """In-process fan-out (one worker)."""

    def __init__(self):
        self.subs: dict[str, set[Subscription]] = defaultdict(set)

    async def publish(self, channel: str, msg: dict) -> None:
        self.fan_out(channel, msg)

    def fan_out(self, channel: str, msg: dict) -> None:
        for sub in list(self.subs.get(channel, ())):
            sub.deliver(msg)

    async def subscribe(self, channel: str) -> Subscription:
        sub = Subscription(self, channel)
        self.subs[channel].add(sub)
        return sub

    def _drop(self, sub: Subscription) -> None:
        subs = self.subs.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subs[sub.channel]

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for subs in list(self.subs.values()):
            for sub in list(subs):
                sub.close()


class RedisHub(LocalHub):
    """Redis pub/sub: one subscriber connection per process, local fan-out from it."""

    PREFIX = "nnplay:"

    def __init__(self, url: str):
        super().__init__()
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.reader: asyncio.Task | None = None
        self.pending: dict[str, asyncio.Future] = {}
        self.lock = asyncio.Lock()
        self.own = f"{self.PREFIX}hub:{os.getpid()}:{id(self)}"

    async def start(self) -> None:
        """Connect now: a Redis that cannot be reached fails the start, not the first join."""
        await self.redis.ping()
        await self.pubsub.subscribe(self.own)  # the reader always has a connection to read
        self.reader = asyncio.create_task(self._read(), name="nnplay-redis-hub")

    async def publish(self, channel: str, msg: dict) -> None:
        await self.redis.publish(self.PREFIX + channel, json.dumps(msg, separators=(",", ":"), allow_nan=False))

    async def subscribe(self, channel: str) -> Subscription:
        async with self.lock:
            sub = Subscription(self, channel)
            first = channel not in self.subs
            self.subs[channel].add(sub)
            if first:
                fut = self.pending[channel] = asyncio.get_running_loop().create_future()
                await self.pubsub.subscribe(self.PREFIX + channel)
        if first:
            await asyncio.wait_for(asyncio.shield(fut), timeout=10)
        else:
            await asyncio.shield(self.pending.get(channel) or _done())
        return sub

    def _drop(self, sub: Subscription) -> None:
        super()._drop(sub)
        if sub.channel not in self.subs:
            self.pending.pop(sub.channel, None)
            asyncio.get_running_loop().create_task(self._unsubscribe(sub.channel))

    async def _unsubscribe(self, channel: str) -> None:
        async with self.lock:
            if channel not in self.subs:  # nobody subscribed again meanwhile
                try:
                    await self.pubsub.unsubscribe(self.PREFIX + channel)
                except Exception:
                    log.debug("unsubscribe %s failed", channel, exc_info=True)

    async def _read(self) -> None:
        n = len(self.PREFIX)
        while True:
            try:
                m = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis hub: reading failed; retrying")
                await asyncio.sleep(1)
                continue
            if m is None:
                continue
            channel = m["channel"].decode()[n:]
            if m["type"] == "subscribe":
                fut = self.pending.get(channel)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif m["type"] == "message":
                try:
                    msg = json.loads(m["data"])
                except ValueError:
                    continue
                self.fan_out(channel, msg)

    async def close(self) -> None:
        await super().close()
        if self.reader:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.pubsub.aclose()
        await self.redis.aclose()


def _done() -> asyncio.Future:
    f = asyncio.get_running_loop().create_future()
    f.set_result(None)
    return f


def make_hub(redis_url: str | None) -> LocalHub:
    return RedisHub(redis_url) if redis_url else LocalHub()
