"""The scheduler's epochs per tick: auto speed, fixed speed alone, and fixed speed in a crowd."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from app.metrics import Metrics
from app.scheduler import Scheduler
from app.session import Command, Session, decode_frame
from core.config import parse_config


WIDE = {"layers": [{"units": 6, "activation": "tanh"}]}  # too wide for the narrow programs


def _session(engine, sid: int, speed, **cfg) -> Session:
    s = Session(sid, engine, parse_config({"seed": sid, **cfg}), lambda _s: None)
    s.playing, s.speed = True, speed
    return s


def _tick(sched: Scheduler) -> None:
    """One tick, then every client takes its frame (as each connection's sender does)."""
    sched.tick()
    for s in sched.sessions.values():
        s.take_frame()


def test_fixed_speed_alone_is_honoured_and_capped_in_a_crowd(engine):
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    alone = _session(engine, 1, 8)
    sched.add(alone)
    sched.auto_epochs = 2
    _tick(sched)
    assert alone.run.epoch == 8  # one session: its 8 epochs per frame, whatever auto says

    crowd = [_session(engine, 2, 8), _session(engine, 3, "auto")]
    for s in crowd:
        sched.add(s)
    sched.auto_epochs = 3
    _tick(sched)
    # sharing the ticks: the fixed speed is held to what auto speed affords everyone
    assert alone.run.epoch == 8 + 3
    assert [s.run.epoch for s in crowd] == [3, 3]

    alone.speed = 1  # below the cap: unchanged
    _tick(sched)
    assert alone.run.epoch == 8 + 3 + 1


def test_a_client_that_does_not_take_its_frame_gets_no_new_work(engine):
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    reader, stuck = _session(engine, 1, 2), _session(engine, 2, 2)
    for s in (reader, stuck):
        sched.add(s)
    sched.auto_epochs = 2
    sched.tick()
    assert reader.run.epoch == stuck.run.epoch == 2
    assert reader.take_frame() is not None  # the reader's sender took its frame; stuck's waits
    for _ in range(3):
        sched.tick()
        reader.take_frame()
    assert reader.run.epoch == 2 + 3 * 2
    assert stuck.run.epoch == 2 and stuck.frames_dropped == 0  # no training, no frame replaced
    assert stuck.take_frame() is not None  # taken at last: it trains again
    sched.tick()
    assert stuck.run.epoch == 4


def test_a_client_behind_on_frames_that_makes_a_change_gets_a_frame_showing_it(engine):
    """Its unsent frame no longer shows the session: the next tick replaces it with one that
    does (counted as dropped), instead of waiting for the client to take the stale one."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    stuck = _session(engine, 1, 2)
    sched.add(stuck)
    sched.auto_epochs = 2
    sched.tick()
    assert stuck.run.epoch == 2 and stuck.backlogged()
    sched.tick()
    assert stuck.run.epoch == 2 and stuck.frames_dropped == 0  # behind: no new work
    stuck.submit(Command("config", {"patch": {"learning_rate": 0.5}}, None))
    sched.tick()
    header, _ = decode_frame(stuck.take_frame())
    assert stuck.frames_dropped == 1 and header["version"] == stuck.version
    assert stuck.run.cfg.learning_rate == 0.5 and stuck.run.epoch == 4
    sched.stop()


def test_commands_after_a_step_see_the_network_after_it(engine):
    """"step 15" then "hidden"/"export"/"set_weight" queued in one go: each later command is
    applied after the 15 epochs (the ack of a step only says it was accepted)."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    s = _session(engine, 1, "auto")
    s.playing = False
    sched.add(s)
    replies: list[dict] = []
    for kind, args in [("step", {"epochs": 15}), ("hidden", {"layer": 0, "i": 1, "j": 0}),
                       ("export", {"format": "json"}), ("step", {"epochs": 2}), ("export", {"format": "json"})]:
        s.submit(Command(kind, args, replies.append))
    for _ in range(4):
        _tick(sched)
    got = [(r["type"], r.get("of"), r.get("epoch")) for r in replies]
    assert got == [("ack", "step", None), ("hidden", None, 15), ("export", None, 15),
                   ("ack", "step", None), ("export", None, 17)]
    assert s.run.epoch == 17 and not s.playing


def test_parts_are_halved_for_two_threads_only_when_padding_does_not_grow(engine):
    def parts(n, sizes, threads):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=sizes, threads=threads)
        try:
            return [(len(p), size) for p, size in sched._chunks(list(range(n)))]
        finally:
            sched.stop()

    assert parts(50, (8, 32, 64), 1) == [(50, 64)]
    assert parts(50, (8, 32, 64), 2) == [(25, 32), (25, 32)]
    assert parts(51, (8, 32, 64), 2) == [(26, 32), (25, 32)]
    assert parts(40, (8, 64), 2) == [(40, 64)]  # 2 x 64 rows would double the work
    assert parts(9, (8, 64), 2) == [(5, 8), (4, 8)]  # and 16 rows instead of 64
    assert parts(16, (8, 64), 2) == [(8, 8), (8, 8)]
    assert parts(130, (8, 64), 2) == [(64, 64), (64, 64), (2, 8)]  # already several parts
    assert parts(2, (8, 32, 64), 2) == [(2, 8)]  # never a session alone
    # three 64s and an 8 on two threads: one thread does two 64s while the other idles half
    # of that; 64, 64, 32, 32, 8 share it out (largest first, as the pool takes them)
    assert parts(200, (8, 32, 64), 2) == [(64, 64), (64, 64), (32, 32), (32, 32), (8, 8)]
    assert parts(200, (8, 32, 64), 1) == [(64, 64), (64, 64), (64, 64), (8, 8)]


def test_frames_are_drawn_in_parts_no_larger_than_frame_size(engine):
    """Batched frames spill the cache past FRAME_SIZE sessions (docs/benchmarks.md, eighth
    session): frame groups are split at it when a compiled size allows, training is not."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(8, 32, 64), threads=2)
    try:
        assert sched.FRAME_SIZE == 32
        frame_parts = [(len(p), size) for p, size in sched._chunks(list(range(200)), sched.FRAME_SIZE)]
        assert frame_parts == [(32, 32)] * 6 + [(8, 8)]
        assert max(size for _, size in sched._chunks(list(range(200)))) == 64
        # no compiled size that small: the smallest batched size there is
        sched.batched_sizes = (64,)
        assert [(len(p), s) for p, s in sched._chunks(list(range(50)), 32)] == [(50, 64)]
    finally:
        sched.stop()

    # a real tick asks for frame parts of at most FRAME_SIZE and training parts of any size;
    # narrow sessions train and draw in one call, in parts of at most FRAME_SIZE
    # (the wide part of 3 and the session alone draw their frames after training, each)
    for cfg, expected in ((WIDE, [None, sched.FRAME_SIZE, sched.FRAME_SIZE]), ({}, [sched.FRAME_SIZE])):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
        asked, chunks = [], sched._chunks
        sched._chunks = lambda items, largest=None, **kw: (asked.append(largest), chunks(items, largest, **kw))[1]
        for sid in range(1, 5):
            sched.add(_session(engine, sid, 1, **cfg))
        try:
            _tick(sched)
        finally:
            sched.stop()
        assert asked == expected


def test_two_threads_train_and_draw_exactly_as_one(engine):
    """4 sessions with sizes (3,): a batched call of 3 and one session alone, side by side on
    the pool; weights, epochs and every frame's bytes equal the one-thread scheduler's."""
    import threading

    def run(threads):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=threads)
        sched.auto_epochs = 2  # a crowd's fixed speed is capped by auto speed
        sessions = [_session(engine, sid, 2) for sid in range(1, 5)]
        for s in sessions:
            sched.add(s)
        where, train_part = set(), sched._train_part
        sched._train_part = lambda *a: (where.add(threading.current_thread().name), train_part(*a))[1]
        frames = []
        for _ in range(3):
            sched.tick()
            frames.append([s.take_frame() for s in sessions])
        sched.stop()
        return sessions, frames, where

    one, frames_one, where_one = run(1)
    two, frames_two, where_two = run(2)
    assert where_one == {threading.current_thread().name}
    assert all(name.startswith("nnplay-step") for name in where_two)
    assert [s.run.epoch for s in two] == [s.run.epoch for s in one] == [6] * 4
    for a, b in zip(one, two):
        assert a.run.weights() == b.run.weights()
    assert frames_two == frames_one and all(f is not None for tick in frames_one for f in tick)


def test_a_loop_waiting_only_for_a_client_to_take_its_frame_wakes_when_it_does(engine):
    """A tick that leaves out a playing session because its last frame is still unsent must not
    make the loop sleep the idle 0.25 s: taking the frame wakes it (this stall held one
    client to ~20 frames/s at half a core)."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    s = _session(engine, 1, 1)
    sched.add(s)
    assert sched.tick()  # trains and publishes a frame
    sched._wake.clear()
    assert not sched.tick()  # the frame is still there: no work this tick
    assert sched._backlogged and not sched._wake.is_set()
    assert s.take_frame() is not None
    assert sched._wake.is_set()

    s.playing = False  # nothing to wait for: taking a frame does not wake the loop
    sched._wake.clear()
    sched.tick()
    assert not sched._backlogged
    s.take_frame()
    assert not sched._wake.is_set()


def test_state_text_is_the_state_message_with_points_sent_once_per_data(engine):
    s = _session(engine, 1, "auto")
    text = s.state_text()
    assert json.loads(text) == json.loads(json.dumps(s.state_message()))
    assert len(json.loads(text)["points"]["train"]) == len(s.run.split.x_train)
    assert s._points()[1] is s._points()[1]  # reused while the data stay
    # the page has these points now: later state texts leave them out until the data change
    again = json.loads(s.state_text())
    assert "points" not in again and again == {k: v for k, v in json.loads(text).items() if k != "points"}
    s.run.regenerate(7)
    new = json.loads(s.state_text())
    assert new["points"] == json.loads(json.dumps(s.state_message()))["points"] != json.loads(text)["points"]
    assert "points" not in json.loads(s.state_text())
    # the scheduler answers a config change with it, as text
    replies: list = []
    s.submit(Command("config", {"patch": {"learning_rate": 0.1}}, replies.append))
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    sched.add(s)
    _tick(sched)
    assert replies[0]["type"] == "ack" and json.loads(replies[1])["config"]["learning_rate"] == 0.1


def test_auto_speed_alone_goes_past_one_call_and_a_crowd_is_held_to_one(engine):
    """A session alone trains as many epochs per frame as the period allows, past one compiled
    call's (``engine.chunk``); when a second one plays, both get at most one call's."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    chunk = engine.chunk
    sched._adapt(0.001)  # a quick tick: grow
    assert sched.auto_epochs == 2
    sched.auto_epochs = chunk
    for _ in range(40):
        sched._adapt(0.001)
    assert sched.auto_epochs == sched.max_auto_epochs > chunk
    sched._adapt(0.9 * sched.period)  # in the band: hold
    assert sched.auto_epochs == sched.max_auto_epochs
    sched._adapt(sched.period)  # over: shrink
    assert sched.auto_epochs < sched.max_auto_epochs

    alone = _session(engine, 1, "auto")
    sched.add(alone)
    sched.auto_epochs = chunk + 9
    _tick(sched)
    assert alone.run.epoch == chunk + 9
    assert len(alone.run.history) == chunk + 9  # a metrics row for every epoch, across two calls

    other = _session(engine, 2, "auto")
    sched.add(other)
    _tick(sched)
    assert sched.auto_epochs == chunk
    assert (alone.run.epoch, other.run.epoch) == (2 * chunk + 9, chunk)


def test_a_lone_narrow_session_trains_and_draws_in_one_engine_call(engine, monkeypatch):
    """TensorFlow Playground's default network fits the narrow programs (core.engine.NARROW):
    alone, a session's tick is one engine call that trains and draws, and the frame it
    publishes is the one a separate frame call draws from the same state. A session too wide
    for them makes a training call and a frame call."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    s = _session(engine, 1, 3)
    sched.add(s)
    calls = []
    for name in ("train_and_draw", "train", "frame", "train_many", "frame_many"):
        real = getattr(engine, name)
        monkeypatch.setattr(engine, name, (lambda n, f: lambda *a, **k: (calls.append(n), f(*a, **k))[1])(name, real))
    sched.tick()
    assert calls == ["train_and_draw"] and s.run.epoch == 3
    header, arrays = decode_frame(s.take_frame())
    out, neurons, row = s.run.frame()
    np.testing.assert_array_equal(arrays["output"], out[0])
    for j, units in enumerate(header["units"]):
        np.testing.assert_array_equal(arrays[f"layer{j}"], neurons[j, :units])
    names = engine.metric_names
    assert header["epoch"] == 3
    assert header["metrics"]["train_loss"] == float(row[names.index("train_loss")])
    assert header["metrics"]["grad_norm_6"] == float(row[names.index("grad_norm_6")]) > 0  # the output layer's

    s.submit(Command("config", {"patch": {"layers": [{"units": 6, "activation": "tanh"}]}}, None))
    calls.clear()
    sched.tick()
    assert calls == ["train", "frame"] and s.run.epoch == 6
    header, arrays = decode_frame(s.take_frame())
    assert header["units"] == [6] and arrays["layer0"].shape == (6, 20, 20)


@pytest.mark.parametrize("cfg", [{}, WIDE], ids=["narrow", "wide"])
def test_a_crowd_stacks_each_sessions_rows_made_once_per_setting(engine, monkeypatch, cfg):
    """Each session's data and settings are flattened once into rows and stacked from them
    every tick; a session whose learning rate changed gets new rows and trains its next
    batched epochs with the new rate, and every session's weights equal those of a
    scheduler that stacks the arrays themselves every tick. For narrow networks (batched
    narrow calls, ``Run.narrow_hyper``) and wide ones."""
    import app.scheduler as scheduler_module
    from core.engine import RowStacker, stack_hyper

    call = "train_many" if cfg else "train_draw_many"

    def run(rowed: bool):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
        if not rowed:  # the reference: every part stacked from the arrays themselves
            sched._inputs = lambda runs, narrow=False: (
                scheduler_module._stack([r.data for r in runs]),
                stack_hyper([r.narrow_hyper if narrow else r.hyper for r in runs]))
        sched.auto_epochs = 1
        sessions = [_session(engine, sid, 1, **cfg) for sid in range(1, 4)]
        for s in sessions:
            sched.add(s)
        made, seen = [], []
        with monkeypatch.context() as m:
            row = RowStacker.row
            m.setattr(RowStacker, "row", lambda self, d, h: (made.append(1), row(self, d, h))[1])
            real = getattr(engine, call)
            m.setattr(engine, call, lambda st, d, h, *a: (seen.append(np.asarray(h.opt.learning_rate)),
                                                          real(st, d, h, *a))[1])
            counts = []
            for k in range(4):
                if k == 2:
                    sessions[1].submit(Command("config", {"patch": {"learning_rate": 0.5}}, None))
                _tick(sched)
                counts.append(len(made))
        sched.stop()
        return sessions, counts, seen

    rowed, counts, seen = run(True)
    fresh, fresh_counts, _ = run(False)
    assert counts == [3, 3, 4, 4] and fresh_counts == [0, 0, 0, 0]  # one session's new rows in tick 3
    # (the order of a part's sessions turns every tick)
    np.testing.assert_allclose([sorted(lr.tolist()) for lr in seen], [[0.03] * 3] * 2 + [[0.03, 0.03, 0.5]] * 2)
    assert [s.run.epoch for s in rowed] == [4] * 3
    for a, b in zip(rowed, fresh):
        assert a.run.weights() == b.run.weights()


def test_frame_payloads_are_deflated_at_the_sessions_level_and_decode_to_the_same_arrays(engine):
    """``Session.compress_level`` (the server's NNPLAY_WS_COMPRESSION_LEVEL, or None when
    compression is off) deflates a frame's payload (raw deflate, as the page's
    DecompressionStream("deflate-raw") reads it); the arrays decoded are the same."""
    import zlib

    s = _session(engine, 1, 2)
    s.run.train(30)
    rows, drawn = s.run.train_and_frame(1)
    out, neurons, row = (np.asarray(x) for x in drawn)
    got = {}
    for level in (None, 1, 9):
        s.compress_level = level
        s.publish(out, neurons, rows[-1], rows)
        buf = s.take_frame()
        header, arrays = decode_frame(buf)
        assert header.get("payload") == (None if level is None else "deflate-raw")
        got[level] = (len(buf), arrays)
        sections, payload, deflated = s.body(out, neurons)
        assert deflated is (level is not None)
        if deflated:  # what the page inflates
            assert len(zlib.decompress(payload, wbits=-15)) == sum(
                int(np.prod(x["shape"])) * np.dtype(x["dtype"]).itemsize for x in sections)
    assert got[9][0] < got[1][0] < got[None][0]
    for level in (1, 9):
        assert got[level][1].keys() == got[None][1].keys()
        for name, a in got[None][1].items():
            np.testing.assert_array_equal(got[level][1][name], a)


def test_deflate_raw_is_raw_deflate_at_every_level():
    """Frames' payloads are deflated by ISA-L at levels 0 and 1 (a declared dependency: it is
    there) and by zlib at 2-9; any raw-deflate inflater reads both, whatever the bytes."""
    import zlib

    from app import session

    assert session.isal_zlib is not None
    rng = np.random.default_rng(0)
    grid = np.add.outer(np.arange(100), np.arange(100)).astype(np.uint8).tobytes()  # a smooth heatmap
    samples = [b"", b"x", grid, rng.integers(0, 256, 70_000, dtype=np.uint8).tobytes(), grid * 50]
    for level in (0, 1, 2, 6, 9):
        for data in samples:
            packed = session.deflate_raw(data, level)
            assert zlib.decompress(packed, wbits=-15) == data
    assert len(session.deflate_raw(grid, 0)) < len(grid) / 4 and len(session.deflate_raw(grid, 1)) < len(grid) / 4
    assert len(session.deflate_raw(grid * 50, 9)) <= len(session.deflate_raw(grid * 50, 1))


def test_frame_header_reads_the_header_without_the_payload():
    """``frame_header`` (the load benchmark's clients) gives what ``decode_frame`` gives as
    the header, from a frame built by hand: u32 length, JSON, then a payload it never reads
    (here bytes that are not valid deflate at all)."""
    import json
    import struct

    from app.session import decode_frame, deflate_raw, encode_frame, frame_header

    head = {"type": "frame", "version": 7, "epoch": 1234, "sections": [], "metrics": {"train_loss": 0.25}}
    text = json.dumps(head).encode()
    buf = struct.pack("<I", len(text)) + text + b"\xff" * 100
    assert frame_header(buf) == head
    section = {"name": "output", "dtype": "uint8", "shape": [2, 2], "offset": 0}
    real = encode_frame({**head, "payload": "deflate-raw", "sections": [section]}, deflate_raw(bytes([1, 2, 3, 4]), 1))
    header, arrays = decode_frame(real)
    assert frame_header(real) == header and header["epoch"] == 1234
    assert arrays["output"].tolist() == [[1, 2], [3, 4]]


def test_a_narrow_crowd_trains_and_draws_in_one_batched_call_as_each_would_alone(engine, monkeypatch):
    """Three default (narrow) sessions with a compiled batched size of 3: each tick is one
    engine call (``train_draw_many``), no separate frame call, and the sessions train and
    draw what each one stepped alone (single narrow calls) does, to float32 rounding: the
    batched program sums in another order. Weights to 1e-5, grids within one level."""
    calls: list[str] = []

    def run(sizes: tuple[int, ...]):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=sizes, threads=1)
        sched.auto_epochs = 2
        sessions = [_session(engine, sid, 2) for sid in range(1, 4)]
        for s in sessions:
            sched.add(s)
        frames = []
        with monkeypatch.context() as m:
            for name in ("train_and_draw", "train", "frame", "train_many", "frame_many", "train_draw_many"):
                real = getattr(engine, name)
                m.setattr(engine, name, (lambda n, f: lambda *a, **k: (calls.append(n), f(*a, **k))[1])(name, real))
            for _ in range(3):
                sched.tick()
                frames.append([decode_frame(s.take_frame()) for s in sessions])
        sched.stop()
        return sessions, frames

    crowd, crowd_frames = run((3,))
    assert calls == ["train_draw_many"] * 3
    calls.clear()
    alone, alone_frames = run(())
    assert calls == ["train_and_draw"] * 9
    assert [s.run.epoch for s in crowd] == [s.run.epoch for s in alone] == [6] * 3
    for a, b in zip(crowd, alone):
        np.testing.assert_allclose(a.run.weights_flat(), b.run.weights_flat(), rtol=1e-5, atol=1e-6)
        assert not np.array_equal(a.run.weights_flat(), crowd[0].run.weights_flat()) or a is crowd[0]
    for tick_a, tick_b in zip(crowd_frames, alone_frames):
        for (ha, aa), (hb, ab) in zip(tick_a, tick_b):
            assert ha["epoch"] == hb["epoch"] and ha["units"] == hb["units"] == [4, 2]
            assert len(ha["history"]) == len(hb["history"]) == 1  # measured after the tick's last epoch
            np.testing.assert_allclose(ha["metrics"]["train_loss"], hb["metrics"]["train_loss"], rtol=1e-5)
            for name in aa:
                if aa[name].dtype == np.uint8:  # one step: of 256 levels, or of the output's 128 (2-3 bytes)
                    step = 3 if name == "output" else 1
                    assert np.abs(aa[name].astype(int) - ab[name].astype(int)).max() <= step, name
                else:
                    np.testing.assert_allclose(aa[name], ab[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_crowd_that_cannot_hold_the_frame_rate_still_trains_at_tf_playgrounds_pace(engine):
    """Auto speed shrinks when ticks overrun the period, but a crowd trains at least
    min_epochs_per_s x its frame interval epochs a frame on average, for an interval of at
    most 1 / min_frame_rate: one epoch a frame at 12 frames a second is 12 epochs a second, a
    fifth of TF Playground's 60. Past that interval the target falls with the square of how
    far past it is; alone, or with the floor off: none. A fractional target is dithered from
    tick to tick, so that its mean is the target (not rounded up to the next epoch)."""
    import math

    def floors(n: int) -> list[int]:
        return [sched.epoch_floor() for _ in range(n)]

    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    try:
        over = 2 * sched.period  # a tick that overran: auto speed shrinks
        sched._crowded, sched.frame_interval, sched.auto_epochs = True, 0.08, 1
        assert sched.epoch_target() == pytest.approx(1.03 * 60 * 0.08)  # 4.94
        sched._adapt(over)
        assert sched.auto_epochs in (4, 5)
        got = floors(1000)
        assert set(got) == {4, 5} and sum(got) / 1000 == pytest.approx(1.03 * 4.8, abs=0.002)
        sched.frame_interval = 0.0725 / 1.03  # 4.35: 4 epochs most ticks, 5 on 35 % of them
        got = floors(1000)
        assert set(got) == {4, 5} and got.count(5) == pytest.approx(350, abs=2)
        sched.frame_interval = 0.1 / 1.03  # a whole number: every tick
        assert set(floors(20)) == {6}
        sched.auto_epochs = 20
        sched._adapt(over)
        assert sched.auto_epochs == 16  # above the floor: shrinks as before
        # frames slower than min_frame_rate: the target falls with the square of how much
        sched.frame_interval = 0.12
        assert sched.epoch_target() == pytest.approx(1.03 * 60 * 0.1 * (0.1 / 0.12) ** 2)
        assert sum(floors(600)) / 600 == pytest.approx(1.03 * 60 * 0.1 * (0.1 / 0.12) ** 2, abs=0.005)
        sched.frame_interval = 0.15
        assert sched.epoch_target() == pytest.approx(1.03 * 60 * 0.1 * (0.1 / 0.15) ** 2)  # 2.75
        sched.auto_epochs = 5
        sched._adapt(over)
        assert sched.auto_epochs == 4  # above the floor (2 or 3): shrinks as before
        sched.frame_interval = 0.3
        assert sched.epoch_target() == 1.0 and set(floors(10)) == {1}  # 1.03 x 60 x 0.1 x (1/3)^2 = 0.69: 1
        sched.frame_interval = 10.0 / 60 / 1.03  # never past one compiled call's epochs
        sched.min_frame_rate = 1
        assert set(floors(10)) == {10}
        sched.frame_interval = 1.0
        assert sched.epoch_target() == engine.chunk and set(floors(10)) == {engine.chunk}
        sched._crowded = False  # alone: the frame rate rules
        assert sched.epoch_floor() == 1
        sched._crowded, sched.min_epochs_per_s = True, 0  # NNPLAY_MIN_EPOCHS_PER_S=0: off
        assert sched.epoch_floor() == 1
        assert math.isclose(sched.epoch_target(), 1.0)
    finally:
        sched.stop()

    # the interval is measured between a crowd's frames of new training
    import time

    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    for sid in (1, 2):
        sched.add(_session(engine, sid, "auto"))
    try:
        _tick(sched)
        assert sched.frame_interval is None  # no earlier frame to measure from
        time.sleep(0.05)
        _tick(sched)
        assert 0.05 <= sched.frame_interval < 1.0
        for s in list(sched.sessions.values())[1:]:
            s.playing = False
        _tick(sched)
        assert sched.frame_interval is None and sched.epoch_floor() == 1  # one session plays: no crowd
    finally:
        sched.stop()


def test_frames_published_in_a_burst_wake_the_event_loop_once():
    """``Waker``: events set from another thread in a burst cost one wake-up of the loop (one
    ``call_soon_threadsafe``), and every one of them is set."""
    import asyncio
    import threading

    from app.ws import Waker

    async def main():
        loop = asyncio.get_running_loop()
        calls = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: (calls.append(a), real(*a))[1]
        events = [asyncio.Event() for _ in range(50)]
        waker = Waker.of(loop)
        assert Waker.of(loop) is waker
        burst = threading.Thread(target=lambda: [waker.set(e) for e in events])
        burst.start()
        burst.join()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 5)
        assert len(calls) == 1
        more = asyncio.Event()  # after the flush, the next one wakes the loop again
        threading.Thread(target=waker.set, args=(more,)).start()
        await asyncio.wait_for(more.wait(), 5)
        assert len(calls) == 2

    asyncio.run(main())


def test_a_narrow_crowd_reports_a_diverged_session_and_the_others_go_on(engine):
    """In a batched narrow call, a session whose learning rate is far too high diverges:
    its frames say so (grids still uint8, weights finite), it stops playing and keeps its
    state, the others in its part train on untouched, and after a reset it trains again."""
    regression = {"problem": "regression", "dataset": "plane", "init": "he_normal",
                  "layers": [{"units": 4, "activation": "relu"}] * 3}
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
    sched.auto_epochs = 4
    wild = _session(engine, 1, 4, learning_rate=10, **regression)
    calm = [_session(engine, sid, 4, learning_rate=0.01, **regression) for sid in (2, 3)]
    assert all(s.run.narrow for s in [wild, *calm])
    for s in [wild, *calm]:
        sched.add(s)
    try:
        seen = None
        for _ in range(25):
            sched.tick()
            frames = {s.id: s.take_frame() for s in sched.sessions.values()}
            if frames[1] is not None and decode_frame(frames[1])[0]["diverged"]:
                seen = decode_frame(frames[1])
                break
        assert seen is not None, "lr 10 should diverge within 100 epochs"
        header, arrays = seen
        assert arrays["output"].dtype == np.uint8 and np.isfinite(arrays["weights"]).all()
        assert not wild.playing and all(s.playing for s in calm)
        epoch, calm_epochs = wild.run.epoch, [s.run.epoch for s in calm]
        for _ in range(2):
            _tick(sched)
        assert wild.run.epoch == epoch and [s.run.epoch for s in calm] == [e + 8 for e in calm_epochs]
        assert not any(s.run.state.diverged for s in calm)

        wild.submit(Command("config", {"patch": {"learning_rate": 0.01}}, None))
        wild.submit(Command("reset", {}, None))
        wild.submit(Command("play", {}, None))
        _tick(sched)
        _tick(sched)
        assert wild.playing and not wild.run.state.diverged and wild.run.epoch == 8  # two ticks of 4
    finally:
        sched.stop()


def test_a_session_leaving_and_rejoining_a_narrow_crowd_keeps_its_trained_weights(engine):
    """A default session trained in a batched narrow call widens to six units (network
    surgery: the four trained units keep their weights), trains wide, narrows back to four
    (the four keep the wide training) and trains in the narrow crowd again."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
    sched.auto_epochs = 2
    sessions = [_session(engine, sid, 2) for sid in range(1, 4)]
    for s in sessions:
        sched.add(s)
    mover = sessions[0]

    def first_layer() -> np.ndarray:
        return np.asarray(mover.run.weights()[0]["w"])  # (inputs, units)

    def change(units: int) -> None:
        mover.submit(Command("config", {"patch": {"layers": [{"units": units, "activation": "tanh"},
                                                             {"units": 2, "activation": "tanh"}]}}, None))
        sched._apply(mover, mover.drain()[0])

    try:
        for _ in range(2):
            _tick(sched)
        narrow_trained = first_layer()
        assert mover.run.epoch == 4 and narrow_trained.shape == (2, 4)
        change(6)
        assert not mover.run.narrow
        np.testing.assert_array_equal(first_layer()[:, :4], narrow_trained)
        _tick(sched)
        assert mover.run.epoch == 6
        wide_trained = first_layer()
        assert not np.allclose(wide_trained[:, :4], narrow_trained)
        change(4)
        assert mover.run.narrow
        np.testing.assert_array_equal(first_layer(), wide_trained[:, :4])
        _tick(sched)
        assert mover.run.epoch == 8 and [s.run.epoch for s in sessions[1:]] == [8, 8]
        assert not np.allclose(first_layer(), wide_trained[:, :4])  # trained on, narrow
    finally:
        sched.stop()


def test_a_session_that_changed_is_in_the_first_part_published(engine, monkeypatch):
    """A change's frame is what its client waits for: sessions with a change this tick go in
    their group's first part, whose frames are published before the other parts' (the 99th
    percentile of change -> frame at 200 clients went from 205-255 ms to 150)."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
    sched.auto_epochs = 1
    sessions = [_session(engine, sid, 1) for sid in range(1, 7)]
    for s in sessions:
        sched.add(s)
    order: list[int] = []
    publish = Session.publish
    monkeypatch.setattr(Session, "publish", lambda self, *a: (order.append(self.id), publish(self, *a))[1])
    try:
        for changed in (6, 2, 5):
            _tick(sched)
            order.clear()
            sessions[changed - 1].submit(Command("config", {"patch": {"learning_rate": 0.1}}, None))
            _tick(sched)
            assert len(order) == 6 and changed in order[:3], (changed, order)
    finally:
        sched.stop()


def test_a_session_that_sat_a_tick_out_goes_first_in_the_next(engine, monkeypatch):
    """Sessions go in the order they last trained, those that waited longest first: one that
    sat a tick out (its client had not taken its frame) leads the next tick's first part, so
    it is not the one left in flight or behind again. In the rotated order alone its place
    was wherever the turn put it (first in 1 tick of 6)."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=1)
    sched.auto_epochs = 1
    sessions = [_session(engine, sid, 1) for sid in range(1, 7)]
    for s in sessions:
        sched.add(s)
    order: list[int] = []
    publish = Session.publish
    monkeypatch.setattr(Session, "publish", lambda self, *a: (order.append(self.id), publish(self, *a))[1])
    try:
        _tick(sched)
        for slow in (6, 2, 5, 3):
            sched.tick()
            for s in sessions:
                if s.id != slow:
                    s.take_frame()
            order.clear()
            _tick(sched)  # the slow client's frame is still waiting: it sits this tick out
            assert sorted(order) == [s.id for s in sessions if s.id != slow]
            order.clear()
            _tick(sched)
            assert len(order) == 6 and order[0] == slow, (slow, order)
    finally:
        sched.stop()


def test_a_failing_job_ends_its_tick_only_after_the_others_have_finished(engine):
    """A tick whose job fails is reported by the loop and the scheduler goes on; its other
    jobs, already running on the pool, finish before the tick ends (a job still running in
    the next tick would step the same sessions twice at once)."""
    import threading
    import time

    import pytest

    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(3,), threads=2)
    finished = []

    def slow():
        time.sleep(0.3)
        finished.append("slow")
        return []

    def boom():
        raise RuntimeError("a broken part")

    try:
        gen = sched._stream([(slow,), (boom,)])
        with pytest.raises(RuntimeError, match="broken part"):
            for _ in gen:
                pass
        assert finished == ["slow"]  # waited for, not left running
        assert all(t.is_alive() for t in threading.enumerate() if t.name.startswith("nnplay-step"))
        # the pool still steps sessions afterwards
        sessions = [_session(engine, sid, 1) for sid in (1, 2)]
        for s in sessions:
            sched.add(s)
        _tick(sched)
        assert [s.run.epoch for s in sessions] == [1, 1]
    finally:
        sched.stop()


def test_a_crowds_auto_speed_follows_its_frame_interval_not_the_tick(engine):
    """Overlapping ticks return early, so a crowd's auto speed reads the interval between its
    sessions' frames: a short tick with frames coming at half the frame rate shrinks it."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    try:
        sched.auto_epochs, sched.min_epochs_per_s = 10, 0
        assert sched._cycle(0.001) == 0.001  # alone: the tick
        sched._crowded, sched.frame_interval = True, 2 * sched.period
        assert sched._cycle(0.001) == 2 * sched.period
        sched._adapt(sched._cycle(0.001))
        assert sched.auto_epochs == 8
        sched.frame_interval = 0.5 * sched.period
        sched._adapt(sched._cycle(0.02))
        assert sched.auto_epochs > 8
    finally:
        sched.stop()


def test_an_overlapping_tick_leaves_its_last_job_running_for_the_next_tick_to_publish(engine):
    """With ``overlap`` (the scheduler's loop), a tick returns once every job has started and
    a thread of the pool has nothing left: five one-session jobs on two threads leave one in
    flight. Its session has no frame yet and sits the next tick out (it is not trained twice
    at once); that tick publishes it. Every epoch is trained exactly once, and a tick
    without ``overlap`` leaves nothing behind."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(1,), threads=2)
    sessions = [_session(engine, sid, 2) for sid in range(1, 6)]
    for s in sessions:
        sched.add(s)
    sched.auto_epochs = 2
    try:
        assert sched.tick(overlap=True)
        left = set(sched._inflight_ids)
        assert len(left) == 1 and len(sched._inflight) == 1
        (late,) = [s for s in sessions if s.id in left]
        for s in sessions:
            assert (s.take_frame() is None) == (s is late)
        sched._inflight[0].result()  # it finishes on its own; published by the next tick
        assert late.run.epoch == 2
        epochs = {s.id: s.run.epoch for s in sessions}
        assert sched.tick()  # no overlap: everything published before it returns
        assert not sched._inflight and not sched._inflight_ids
        frames = {s.id: s.take_frame() for s in sessions}
        assert all(f is not None for f in frames.values())
        assert late.run.epoch == epochs[late.id] == 2  # sat that tick out
        assert all(s.run.epoch == 4 for s in sessions if s is not late)
        assert decode_frame(frames[late.id])[0]["epoch"] == 2
        _tick(sched)
        assert late.run.epoch == 4 and all(s.run.epoch == 6 for s in sessions if s is not late)
    finally:
        sched.stop()


def test_history_rows_keep_measured_or_diverged_rows_with_non_finite_values_as_none():
    """A frame's ``history`` (``_history_rows``) against a per-value reference: rows whose
    train loss is NaN (epochs not measured) are dropped unless they diverged, the fields come
    in ``HISTORY_FIELDS`` order, and inf/NaN values become None (JSON has neither)."""
    import math

    from app.session import HISTORY_FIELDS, _history_rows

    names = ["epoch", "learning_rate", "diverged", "test_accuracy", "train_loss", "test_loss", "train_accuracy"]
    idx = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(3)
    hist = rng.normal(size=(9, len(names))).astype(np.float32)
    hist[:, idx["diverged"]] = 0
    hist[[1, 4], idx["train_loss"]] = np.nan  # not measured
    hist[6, idx["train_loss"]] = np.inf  # diverged: kept
    hist[6, idx["diverged"]] = 1
    hist[7, idx["train_loss"]] = np.nan
    hist[7, idx["diverged"]] = 1  # diverged without a loss: kept
    hist[2, idx["test_loss"]] = -np.inf
    want = []
    for r in hist:
        if math.isfinite(float(r[idx["train_loss"]])) or r[idx["diverged"]] > 0:
            want.append([float(r[idx[f]]) if math.isfinite(float(r[idx[f]])) else None for f in HISTORY_FIELDS])
    got = _history_rows(hist, [idx[f] for f in HISTORY_FIELDS], idx["diverged"])
    assert got == want and len(got) == 7
    assert got[4][1] is None and got[5][1] is None and got[1][2] is None
    assert _history_rows(hist[:0], [idx[f] for f in HISTORY_FIELDS], idx["diverged"]) == []


def test_frame_metrics_is_metrics_dict_with_non_finite_values_as_none(engine):
    """A frame's ``metrics`` (``frame_metrics``, one pass) against the engine's
    ``metrics_dict`` with non-finite values replaced afterwards, for measured rows with NaN
    and infinite losses, a diverged row, and a classification and a regression config."""
    import math

    from app.session import frame_metrics
    from core.engine import metrics_dict

    names = engine.metric_names
    rng = np.random.default_rng(5)
    for data in ({"dataset": "blobs", "classes": 3}, {"problem": "regression", "dataset": "plane"}, {}):
        cfg = parse_config(data)
        for case in range(4):
            row = rng.uniform(0, 3, len(names)).astype(np.float32)
            row[names.index("epoch")], row[names.index("best_epoch")] = 40 + case, 12
            row[names.index("diverged")] = case == 2
            row[names.index("stopped")] = case == 3
            if case:
                row[names.index("train_loss")] = [np.nan, np.inf, -np.inf][case - 1]
                row[names.index("r2")] = np.nan
            want = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                    for k, v in metrics_dict(row, names, cfg).items()}
            got = frame_metrics(row, names, cfg)
            assert got == want and list(got) == list(want)
            assert type(got["epoch"]) is int and type(got["diverged"]) is bool and got["diverged"] == (case == 2)
            assert (got["train_loss"] is None) == (case > 0)


def test_the_tick_order_moves_every_session_through_the_last_parts_within_a_few_ticks(engine):
    """The sessions in a tick's last parts get their frames last and, with overlapping ticks,
    sit the next tick out; the order's start moves by ~0.38 of the sessions each tick, so over
    30 ticks of 200 sessions nearly every one has been in the last fifth (a start moving by
    one session kept the same ~70 there), and each session's mean place is near the middle."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, threads=1)
    sessions = list(range(200))
    last, place = set(), np.zeros(200)
    for _ in range(30):
        order = sched._rotated(sessions)
        assert sorted(order) == sessions
        last.update(order[-40:])
        place[order] += np.arange(200)
    sched.stop()
    assert len(last) >= 190
    assert np.abs(place / 30 - 99.5).max() < 40


def test_a_small_crowd_at_the_frame_rate_cap_grows_its_auto_speed(engine):
    """Three sessions get a frame every period (the cap) from ticks of a few milliseconds: the
    loop waits most of each period for the next tick to be due (``_note_wait``), so the
    cycle auto speed holds to the period is that interval's working share, and it grows.
    Under full load the loop never waits and the cycle is the whole interval, as before."""
    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    try:
        sched.auto_epochs, sched.min_epochs_per_s = 4, 0
        sched._crowded, sched.frame_interval = True, sched.period
        for _ in range(20):
            sched._note_wait(0.004, sched.period - 0.004)
        assert 0.85 < sched._idle < 0.9
        assert sched._cycle(0.004) < 0.2 * sched.period
        sched._adapt(sched._cycle(0.004))
        assert sched.auto_epochs == 5  # grew (by a quarter, at least one)
        for _ in range(40):
            sched._note_wait(0.03, 0.0)
        assert sched._idle < 1e-4 and sched._cycle(0.03) == pytest.approx(sched.period, rel=1e-3)
        sched._adapt(sched._cycle(0.03))
        assert sched.auto_epochs == 4  # a full interval at the period: shrinks again
    finally:
        sched.stop()


def test_a_crowds_sessions_that_sit_ticks_out_are_owed_the_epochs(engine):
    """``_owed`` and ``_parts``: in a crowd, each auto-speed session is owed the crowd's epoch
    rate for the time since its last training was planned; a part trains its sessions' mean
    (each counted within a factor OWED_SHARES of a frame's share), and the difference carries
    over. The
    sessions that sit every third tick out (as the jobs left in flight do) are next to each
    other in the tick order, share parts, and train 1.25 shares a frame (rounded): 77 % of
    the epochs the others get, where training every session the same epochs a tick gave them
    2/3."""
    from types import SimpleNamespace

    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, batched_sizes=(8, 32))
    try:
        sched._crowded, sched.frame_interval, sched.auto_epochs = True, 0.07, 1
        rate = sched.epoch_rate()
        assert rate == pytest.approx(1.03 * 60)  # the floor's epochs a frame over the interval
        share = rate * 0.07  # 4.33 epochs a frame
        sessions = [SimpleNamespace(id=i, dirty=False, epoch_carry=0.0, credit_at=None) for i in range(64)]
        trained = np.zeros(64)
        key = (2, 16, sched.OWED, (), True)
        ticks, now = 600, 0.0
        for t in range(ticks):
            now += 0.07
            present = [s for s in sessions if not (s.id < 32 and t % 3 == 2)]
            owed = {s.id: sched._owed(s, rate, now) for s in present}
            parts = list(sched._parts(key, [(s, 1) for s in present], owed, now))
            assert sorted(s.id for _, part, _ in parts for s, _ in part) == [s.id for s in present]
            for k, part, size in parts:
                assert k[:2] == key[:2] and k[3:] == key[3:] and 1 <= k[2] <= engine.chunk
                assert size in (8, 32) and len(part) <= size
                assert share / 1.25 - 0.5 <= k[2] <= share * 1.25 + 0.5  # within the factor
                for s, n in part:
                    assert n == k[2]
                    trained[s.id] += n
        assert all(abs(s.epoch_carry) <= engine.chunk for s in sessions)
        expected = rate * ticks * 0.07
        # without what they are owed, the sessions that sat out would train 2/3 of this
        # with it, 1.25 shares (rounded) on each tick they train: 5 epochs a frame, not 4.33
        assert trained[:32] == pytest.approx(np.full(32, ticks * 2 / 3 * round(1.25 * share)), rel=0.01)
        assert trained[32:] == pytest.approx(np.full(32, expected), rel=0.02)
        assert all(s.epoch_carry > 0 for s in sessions[:32])  # still owed the rest
        # a session back from a long absence is owed at most OWED_SPAN intervals
        s = sessions[0]
        s.epoch_carry = 0.0
        assert sched._owed(s, rate, now + 60.0) == pytest.approx(rate * sched.OWED_SPAN * 0.07)
        # a group of fixed epochs keeps them
        fixed = list(sched._parts(key[:2] + (3,) + key[3:], [(x, 3) for x in sessions[:10]], {}, now))
        assert [k[2] for k, _, _ in fixed] == [3] * len(fixed)
    finally:
        sched.stop()


def test_a_crowd_trains_each_session_its_owed_epochs_through_ticks(engine):
    """Through ``tick``: a crowd's session whose client did not take its frames for a while is
    owed the epochs of that time, and trains more than one frame's share when it reads again."""
    import time

    sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300)
    a, b, c = (_session(engine, sid, "auto") for sid in (1, 2, 3))
    for s in (a, b, c):
        sched.add(s)
    try:
        sched.auto_epochs = 1
        sched.tick()
        a.take_frame(), b.take_frame(), c.take_frame()
        time.sleep(0.07)
        sched.tick()  # measures the crowd's frame interval
        a.take_frame(), b.take_frame(), c.take_frame()
        assert sched.frame_interval is not None
        time.sleep(0.03)
        sched.tick()  # all train; b's client will not take this frame for a while
        a.take_frame(), c.take_frame()
        ea, eb = a.run.epoch, b.run.epoch
        for _ in range(2):  # b sits these ticks out (its client has not taken its frame)
            time.sleep(0.03)
            sched.tick()
            a.take_frame(), c.take_frame()
        assert b.run.epoch == eb and a.run.epoch > ea
        time.sleep(0.03)
        b.take_frame()
        sched.tick()
        iv = sched.frame_interval
        assert iv < 0.1  # the rate owed is then the floor's 1.03 x 60 a second
        # (each session trains in a part of its own here: no batched sizes)
        share = 1.03 * 60 * iv
        assert b.epoch_carry > 0.5 * share  # owed three ticks' epochs, repaid 1.25 shares at a time
        assert b.run.epoch - eb == round(1.25 * share)
    finally:
        sched.stop()


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_scheduler_threads_run_under_sched_batch_and_the_callers_thread_does_not(engine):
    """The scheduler's loop and every thread of its pool (spawned from whichever thread ticks)
    run under SCHED_BATCH; the thread that made the scheduler (a server's event loop) keeps
    its policy; ``batch_policy=False`` leaves every thread's policy alone."""
    before = os.sched_getscheduler(0)
    for batch, want in ((True, os.SCHED_BATCH), (False, before)):
        sched = Scheduler(engine, Metrics(), frame_rate=30, idle_pause_s=300, threads=3, batch_policy=batch)
        try:
            sched.start()
            deadline = time.monotonic() + 10
            while sched._thread.native_id is None or os.sched_getscheduler(sched._thread.native_id) != want:
                assert time.monotonic() < deadline, "the loop's policy never became the one wanted"
                time.sleep(0.01)
            # the pool's threads, spawned by submits from this (default-policy) thread
            gate = threading.Barrier(3)
            futures = [sched._pool.submit(lambda: (gate.wait(10), threading.get_native_id())[1]) for _ in range(3)]
            tids = [f.result(timeout=10) for f in futures]
            assert len(set(tids)) == 3
            assert [os.sched_getscheduler(t) for t in tids] == [want] * 3
            assert os.sched_getscheduler(0) == before
        finally:
            sched.stop()
