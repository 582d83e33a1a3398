"""Operator settings, from ``NNPLAY_*`` environment variables."""

from __future__ import annotations

import os

from pydantic import Field, field_validator
from typing import Annotated

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.config import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NNPLAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    max_sessions: int = Field(200, ge=1, le=10000, description="concurrent websocket sessions per worker")
    max_layers: int = Field(6, ge=0, le=6)
    max_units: int = Field(8, ge=1, le=8)
    max_points: int = Field(1000, ge=20, le=4000)
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra websocket origins besides the page's own (JSON list or comma list)")
    frame_ancestors: str = Field("*", description="CSP frame-ancestors: who may embed the page")
    frame_rate: float = Field(30.0, ge=1, le=120, description="frame-rate cap per session")
    min_epochs_per_s: float = Field(60.0, ge=0, le=100000, description="auto speed in a crowd that cannot "
                                    "hold the frame-rate cap: at least this many epochs a second per session "
                                    "(TF Playground's pace: an epoch per animation frame), while frames stay at "
                                    "min_frame_rate or more; 0: no floor")
    min_frame_rate: float = Field(10.0, ge=1, le=120, description="the frame rate the epoch floor above "
                                  "never pushes a crowd's frames below")
    idle_pause_s: float = Field(300.0, ge=1, description="pause a session after this long without a message")
    idle_timeout_s: float = Field(1800.0, ge=1, description="close a session after this long without a message")
    ws_compression: bool = Field(True, description="deflate frames' payloads (in the scheduler's threads, "
                                 "net (a)'s 12.5 KB to ~5.3 KB in ~35 us) and text messages (permessage-deflate); "
                                 "turn off where CPU, not bandwidth, is the limit (many sessions on a local network)")
    ws_compression_level: int = Field(0, ge=0, le=9, description="level of that compression: 0 and 1 deflate "
                                      "frames with ISA-L at that level (net (a)'s frame to ~4.7 KB in ~16 us, ~4.0 KB "
                                      "in ~31 us); 2-9 with zlib at that level (6: ~3.5 KB for ~11x the CPU of 0); text "
                                      "messages use zlib at this level (at least 1)")
    max_message_bytes: int = Field(65536, ge=1024, le=1 << 20)
    rate_limit: float = Field(40.0, ge=1, description="client messages per second (burst: twice that)")
    max_connections_per_ip: int = Field(50, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list, description="peers whose X-Forwarded-For is honoured")
    warmup_sessions: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [1, 8, 32, 64], description="batched sizes compiled at start")
    # One thread more than cores: while one stacks a part's inputs or publishes (holding the
    # GIL), the others keep every core in XLA. 200 clients on 2 cores: 10.5-12.1 frames/s with
    # 3 threads against 9.5-9.6 with 2 (docs/benchmarks.md, twelfth session).
    scheduler_threads: int = Field(default_factory=lambda: min((os.cpu_count() or 1) + 1, 16), ge=1, le=16,
                                   description="batched engine calls run side by side on this many threads "
                                               "(default: one more than the CPU count, at most 16)")
    scheduler_batch_policy: bool = Field(True, description="run the scheduler's threads under Linux's SCHED_BATCH "
                                                           "policy (a woken thread does not preempt the running one: "
                                                           "fewer GIL convoys, ~5 % more frames for 200 sessions)")
    jax_cache: str | None = Field(None, description="persistent XLA compilation cache directory")
    # Classroom rooms
    data_dir: str = Field(".nnplay-data", description="where the default SQLite database lives")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the rooms database; "
                                     "default sqlite:///<data_dir>/nnplay.db (PostgreSQL when scaled out)")
    redis_url: str | None = Field(None, description="Redis for room broadcasts across workers/replicas; "
                                  "unset: in-process (one worker)")
    room_ttl_hours: float = Field(12.0, gt=0, le=24 * 90, description="a room expires this long after creation")
    room_max_members: int = Field(300, ge=1, le=100000, description="students per room")
    room_join_rate: float = Field(30.0, gt=0, description="room joins per minute per client address")
    room_create_rate: float = Field(10.0, gt=0, description="new rooms per minute per client address")

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return v or None

    @field_validator("allowed_origins", "trusted_proxies", "warmup_sessions", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):  # a JSON list or a comma-separated list
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @property
    def limits(self) -> Limits:
        return Limits(max_layers=self.max_layers, max_units=self.max_units, max_points=self.max_points)
