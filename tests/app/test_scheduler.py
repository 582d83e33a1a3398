"""The scheduler's epochs per tick: auto speed, fixed speed alone, and fixed speed in a crowd."""

from __future__ import annotations

from app.metrics import Metrics
from app.scheduler import Scheduler
from app.session import Session
from core.config import parse_config


def _session(engine, sid: int, speed) -> Session:
    s = Session(sid, engine, parse_config({"seed": sid}), lambda _s: None)
    s.playing, s.speed = True, speed
    return s


def test_fixed_speed_alone_is_honoured_and_capped_in_a_crowd(engine):
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    alone = _session(engine, 1, 8)
    sched.add(alone)
    sched.auto_epochs = 2
    sched.tick()
    assert alone.run.epoch == 8  # one session: its 8 epochs per frame, whatever auto says

    crowd = [_session(engine, 2, 8), _session(engine, 3, "auto")]
    for s in crowd:
        sched.add(s)
    sched.auto_epochs = 3
    sched.tick()
    # sharing the ticks: the fixed speed is held to what auto speed affords everyone
    assert alone.run.epoch == 8 + 3
    assert [s.run.epoch for s in crowd] == [3, 3]

    alone.speed = 1  # below the cap: unchanged
    sched.tick()
    assert alone.run.epoch == 8 + 3 + 1
