"""One thread steps every playing session, in batched engine calls, off the event loop.

Each tick: apply queued commands, train the sessions that play (grouped by what a batched
call must share: depth, activations, batch bucket, epochs), draw their frames, publish them
latest-wins, then adapt the "auto" epochs-per-frame to hold the frame rate (and, in a crowd
that cannot, TF Playground's 60 epochs a second).

A tick's batched calls are independent (each session is in one of them), and XLA releases
the GIL while it computes, so with ``threads`` > 1 they run side by side on a small pool: on
2 cores two calls of 32 sessions finish ~1.4x sooner than one of 64. Each job trains a part,
draws its frames and deflates them; the scheduler thread publishes each job's frames as it
finishes. Everything that is shared (publishing frames, room judges, metrics of the tick)
stays on the scheduler thread. The loop's ticks overlap: a tick returns once a thread of the
pool has nothing left to start, and the next one plans and starts its jobs beside the last
ones, whose sessions sit it out (``tick``).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Callable

import jax
import numpy as np

from core.config import ConfigError, parse_config, patch_config
from core.engine import Engine, Packed, RowStacker

from app.metrics import Metrics
from app.session import Command, Session
from app.ws import check_hidden

log = logging.getLogger("nnplay.scheduler")


def _stack(trees: list):
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def _unstack(tree, n: int) -> list:
    leaves, treedef = jax.tree.flatten(tree)
    leaves = [np.asarray(a) for a in leaves]
    return [jax.tree.unflatten(treedef, [a[i] for a in leaves]) for i in range(n)]


def export_message(s: Session, fmt: str) -> dict:
    """The session's current model as code or weights (base64 for .npz)."""
    from core import export

    run = s.run
    weights = run.weights()
    norm = export.export_norm(run.state.norm, run.cfg) if run.cfg.batch_norm else None
    if fmt == "json":
        content = json.dumps({"config": run.cfg.model_dump(exclude_none=True, exclude={"weights"}), "weights": weights})
    elif fmt == "npz":
        content = base64.b64encode(export.weights_npz_bytes(weights)).decode()
    else:
        content = {"keras": export.keras_code, "pytorch": export.pytorch_code, "jax": export.jax_code}[fmt](
            run.cfg, weights, norm)
    return {"type": "export", "format": fmt, "content": content, "epoch": run.epoch}


def hidden_message(s: Session, a: dict) -> dict:
    """Neurons ``i`` and ``j`` of hidden ``layer`` on the warped input grid lines and on the
    training points, with the session's current weights. The indices are checked here, against
    the network as it is after the commands queued before this one."""
    run = s.run
    a = {**a, **check_hidden(run.cfg, a)}
    lines, points = run.hidden_space(a["layer"], a["i"], a["j"])
    clean = lambda v: np.round(np.nan_to_num(v, nan=0.0, posinf=1e6, neginf=-1e6), 4).tolist()  # noqa: E731
    labels = np.round(run.split.y_train.astype(np.float64), 4)
    return {"type": "hidden", "id": a.get("id"), "layer": a["layer"], "i": a["i"], "j": a["j"],
            "epoch": run.epoch, "version": s.version, "units": run.cfg.layers[a["layer"]].units,
            "activation": run.cfg.layers[a["layer"]].activation, "diverged": bool(run.state.diverged),
            "lines": clean(lines), "points": [[*p, y] for p, y in zip(clean(points), labels.tolist())]}


class Scheduler:
    def __init__(self, engine: Engine, metrics: Metrics, *, frame_rate: float, idle_pause_s: float,
                 batched_sizes: tuple[int, ...] = (), reply: Callable[[Session, dict], None] | None = None,
                 threads: int = 1, min_epochs_per_s: float = 60.0, min_frame_rate: float = 10.0,
                 batch_policy: bool = True):
        self.engine = engine
        self.batch_policy = batch_policy
        self.metrics = metrics
        self.period = 1.0 / frame_rate
        # A crowd whose ticks cannot hold the frame rate still trains at TF Playground's pace
        # (an epoch per animation frame, 60 a second) while its frames come at least
        # ``min_frame_rate`` times a second (see ``_adapt``).
        self.min_epochs_per_s = min_epochs_per_s
        self.min_frame_rate = min_frame_rate
        self.frame_interval: float | None = None  # a crowd's seconds between a session's frames (EWMA)
        self._floor_carry = 0.0  # the epoch floor's dithering remainder (``epoch_floor``)
        # jobs a tick left running (``tick``'s overlap), their sessions and those that train
        self._inflight: list = []
        self._inflight_ids: set[int] = set()
        self._inflight_training: set[int] = set()
        self._job_ids: dict = {}
        self._crowded = False
        self._turn = 0  # where this tick's order of sessions starts
        self._idle = 0.0  # share of the loop's time spent waiting for a tick to be due (``_note_wait``)
        self.idle_pause_s = idle_pause_s
        self.batched_sizes = tuple(sorted(batched_sizes))
        self.sessions: dict[int, Session] = {}
        self.auto_epochs = 1
        self.max_auto_epochs = 4 * engine.chunk  # one session alone; a crowd: engine.chunk
        self.reply = reply or (lambda s, msg: None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._backlogged = False  # the last tick left out sessions whose frame was not yet taken
        self.lock = threading.Lock()
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nnplay-step",
                                        initializer=self._set_policy) if self.threads > 1 else None
        # Each batched run's data and settings as flat rows (see ``_inputs``)
        self._stackers: dict[bool, RowStacker | None] = {False: None, True: None}  # wide, narrow
        self._rows: dict[int, tuple] = {}
        self._rows_lock = threading.Lock()
        self._i_loss = engine.metric_names.index("train_loss")
        self._i_stopped = engine.metric_names.index("stopped")

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nnplay-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def add(self, s: Session) -> None:
        s.on_taken = self._taken
        with self.lock:
            self.sessions[s.id] = s
        self._wake.set()

    def _taken(self) -> None:
        """A client took its frame: if the loop waits only for that, go on now."""
        if self._backlogged:
            self._wake.set()

    def remove(self, s: Session) -> None:
        with self.lock:
            self.sessions.pop(s.id, None)

    def poke(self) -> None:
        self._wake.set()

    # --- the loop ------------------------------------------------------------------------

    def _set_policy(self) -> None:
        """Run the calling thread (the scheduler's loop, a thread of its pool) under Linux's
        SCHED_BATCH policy, when ``batch_policy`` and the platform allow: a thread woken under
        it does not preempt the running one. The likely gain: a job thread that finishes wakes
        the loop while it still holds the GIL, and a loop that preempted it would wait for that
        GIL with its holder off the CPU (``py-spy --gil`` put ~5 % of the GIL's time in
        ``Condition.notify``). 200 clients, eight rounds: more frames in seven and as many in
        one, 0.7 a second more on average (+5 %); p99 change -> frame 143 ms at the median run
        against 158 (docs/benchmarks.md, sixteenth session). Only the policy changes, not the priority; the event loop's thread
        keeps the default."""
        if not self.batch_policy or not hasattr(os, "SCHED_BATCH"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:  # not permitted here (a seccomp profile): the default policy
            log.debug("SCHED_BATCH not available", exc_info=True)

    def _loop(self) -> None:
        self._set_policy()
        due = None  # when the next tick is due while sessions train: ticks keep a fixed cadence
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                busy = self.tick(overlap=True)
            except Exception:  # never let one bad tick stop the playground
                log.exception("scheduler tick failed")
                busy = False
            spent = time.perf_counter() - t0
            if busy:
                self._adapt(self._cycle(spent))
                # One period after the previous tick was due, not after this one started: the
                # wake-up's lateness (~1 ms on a busy machine) then does not add to every period
                # (one session got 28-29 frames/s of 30 that way). A tick that ran past it
                # starts the next one at once, without bursts to catch up.
                due = t0 + self.period if due is None else max(due + self.period, t0)
                # jobs still in flight (``tick``'s overlap): the next tick publishes them
                wait = 0.0 if self._inflight else max(due - time.perf_counter(), 0.0)
            else:
                due = None
                self._idle = 0.0
                # Idle: wake for commands (poke). Waiting only for a client to take its frame:
                # wake when it does (``_taken``), at the latest after a frame period.
                wait = self.period if self._backlogged else 0.25
            w0 = time.perf_counter()
            self._wake.wait(wait)
            self._wake.clear()
            if busy:
                self._note_wait(spent, time.perf_counter() - w0)

    def _note_wait(self, spent: float, waited: float) -> None:
        """Keep the share of the loop's time spent waiting for the next tick to be due (a
        moving average): the part of a crowd's frame interval that is not work."""
        self._idle = 0.7 * self._idle + 0.3 * waited / max(spent + waited, 1e-9)

    def _cycle(self, spent: float) -> float:
        """What auto speed holds to the frame period after a tick that took ``spent`` seconds:
        that, alone; in a crowd, the interval its sessions' frames come at, less the share of
        it the loop spent waiting for the next tick to be due. The ticks overlap, so a tick
        returns before its last jobs finish and its own length understates the cycle (50
        sessions: two jobs, a tick as long as one of them, and auto speed grew to 500 epochs
        a second at 16 frames/s). The interval alone overstates it for a small crowd at the
        frame-rate cap (3 sessions: frames every period, ticks of a few ms, and auto speed
        stayed at the epoch floor, 65 epochs a second each)."""
        if self._crowded and self.frame_interval:
            return self.frame_interval * (1.0 - self._idle)
        return spent

    def _adapt(self, spent: float) -> None:
        """Auto speed: as many epochs per frame as the frame period allows. One session alone
        may go past one compiled call's epochs (``Run.train`` makes several calls); a crowd is
        held to one call's (see ``tick``). Growth slows near the top so that a tick settles
        between 85 and 95 % of the period instead of swinging between 75 and 95. A crowd
        trains at least ``epoch_floor`` epochs a frame (``epoch_target`` on average)."""
        if spent < 0.85 * self.period:
            step = max(1, self.auto_epochs // (4 if spent < 0.6 * self.period else 10))
            self.auto_epochs = min(self.max_auto_epochs, self.auto_epochs + step)
        elif spent > 0.95 * self.period:
            self.auto_epochs = max(1, int(self.auto_epochs * 0.8))
        self.auto_epochs = max(self.auto_epochs, self.epoch_floor())

    def epoch_floor(self) -> int:
        """The fewest epochs per frame a crowd's auto speed trains this tick: ``epoch_target``
        dithered from tick to tick (error diffusion: 4.35 trains 4 or 5 epochs, 4.35 on
        average). Rounding the target up instead held a crowd at 5 epochs a frame and ~12.5
        frames a second where 4 epochs gave ~14.5 (200 sessions of net (a): the interval that
        asks for 4.35 epochs is the one 5 epochs a frame make), so the frame rate could not
        rise to where fewer epochs a frame suffice."""
        target = self.epoch_target()
        if target <= 1.0:
            self._floor_carry = 0.0
            return 1
        carry = self._floor_carry + target
        n = math.floor(carry + 1e-9)  # a whole target (up to rounding) every tick
        self._floor_carry = carry - n
        return max(1, min(self.engine.chunk, n))

    TURN_STRIDE = 0.381966  # 2 - the golden ratio: successive starts spread evenly over the order

    # The target aims this much above ``min_epochs_per_s``: the interval is measured when a
    # frame is published, and 200 sessions' median came out at 59.1-59.4 epochs/s for 60.
    FLOOR_MARGIN = 1.03

    def epoch_target(self) -> float:
        """Epochs per frame that train a crowd at ``min_epochs_per_s`` at the frame interval its
        sessions get (one epoch a frame at 12 frames a second would train 12 epochs a second,
        a fifth of TF Playground's pace), for an interval of at most 1 / ``min_frame_rate``.
        Extra epochs cost a crowd little beside its frames (64 sessions of net (a): 1 epoch and
        a frame 15 ms, 4 epochs and a frame 22 ms). Past that interval the target falls with
        the square of how far past it is (1.5x: less than half), so that a crowd whose epochs
        cost too much for that pace gets its frames back: a floor that switched off at a
        threshold made a crowd near it swing between 57 and 24 epochs a second. 1 alone."""
        iv = self.frame_interval
        if not self._crowded or iv is None or self.min_epochs_per_s <= 0:
            return 1.0
        limit = 1.0 / self.min_frame_rate
        epochs = self.FLOOR_MARGIN * self.min_epochs_per_s * min(iv, limit) * min(1.0, limit / iv) ** 2
        return float(min(self.engine.chunk, max(1.0, epochs)))

    def tick(self, overlap: bool = False) -> bool:
        """Step the sessions once. With ``overlap`` (the scheduler's own loop) the tick may
        return while its last jobs still run, as soon as a thread of the pool has nothing
        left to do: the next tick plans and starts its jobs beside them, and publishes them
        when they finish; their sessions sit that tick out. Without it, every job of the
        tick is published before it returns."""
        busy = self._inflight_ids
        with self.lock:
            sessions = [s for s in self.sessions.values() if not s.closed and s.id not in busy]
        # Parts publish as they finish (see below): the sessions are rotated every tick, so
        # that the ones in the last part, whose clients get their frames last, are not always
        # the same (their clients fell behind: 200 sessions' 5th percentile at 7.2 frames/s
        # against 8.8-9.2 in tick order). The start moves by ~0.38 of the sessions (the golden
        # ratio's stride), not by one: a step of one kept the same sessions near the end, in
        # the jobs left in flight (which sit the next tick out), for ~200 ticks (13 s) on end.
        sessions = self._rotated(sessions)
        now = time.monotonic()
        for s in sessions:
            cmds = s.drain()
            for i, cmd in enumerate(cmds):
                if s.step_epochs:  # what follows a step sees the network after it: next tick
                    s.requeue(cmds[i:])
                    break
                self._apply(s, cmd)
            if s.playing and now - s.last_seen > self.idle_pause_s:
                s.playing = False
                s.dirty = True
                self.reply(s, {"type": "notice", "message": "paused: no activity for a while"})
        # A client that has not taken its last frame yet (slow, or not reading at all) gets no
        # new work: its training waits for it, and the ticks stay short for the others. A
        # change it made is the exception: its unsent frame no longer shows the session, so
        # the next one (which replaces it) does, without waiting a tick for the sender; a
        # client's changes are rate-limited, so this work is bounded too.
        self._backlogged = any(s.backlogged() and s.wants_training() for s in sessions)
        # Sessions that changed go first: their groups' first parts, which are published first
        # (a change's frame is what its client is waiting for). The others go in the order
        # they last trained, those that have waited longest first (a stable sort: the rotated
        # order among those planned in the same tick). A session that sat a tick out (its job
        # was left in flight, or its client had not taken its frame) is then in the first
        # parts, published early, and is neither left in flight nor behind on its frame the
        # next tick: the sessions' frame counts spread half as much as in the rotated order
        # alone, whose sit-outs fell at random (200 clients: the slowest at 96-97 % of the
        # median frames/s instead of 94-96 %; docs/benchmarks.md, sixteenth session).
        sessions = [s for s in sessions if s.dirty] + sorted(
            (s for s in sessions if not s.dirty and not s.backlogged()), key=lambda s: s.planned_at)
        work: dict[tuple, list[tuple[Session, int]]] = defaultdict(list)
        crowded = self._crowded = sum(1 for s in sessions if s.wants_training()) > 1
        if crowded:
            self.auto_epochs = min(self.auto_epochs, self.engine.chunk)
        rate = self.epoch_rate() if crowded else None
        plan = time.perf_counter()
        owed: dict[int, float] = {}
        for s in sessions:
            n = s.wants_training()
            if n and not s.step_epochs:
                n = self.auto_epochs if s.speed == "auto" else int(s.speed)
                if crowded:  # a fixed speed is a wish: when sessions share the ticks, it may not
                    # slow everyone's frames (auto adapts to the load); a batched call trains
                    # at most one compiled call's epochs
                    n = min(n, self.auto_epochs, self.engine.chunk)
                if rate is not None and s.speed == "auto":
                    owed[s.id] = self._owed(s, rate, plan)
                    n = self.OWED  # each part's epochs follow from what its sessions are owed
            if n:
                s.planned_at = plan
                r = s.run
                narrow, gkey, _ = r.keys()
                key = (r.depth, self.engine.bucket(r.cfg.batch_size), n, gkey, narrow)
                work[key].append((s, n))
            if s.id not in owed:
                s.epoch_carry, s.credit_at = 0.0, None
        # Each job trains a part (and draws its frames), or draws a part of sessions that only
        # need a frame, and makes its frames' bodies (deflating them releases the GIL). The
        # jobs run side by side on the pool, and this thread publishes each job's frames as
        # soon as it is done, while the others still compute: a crowd's publishing no longer
        # waits for its last part, nor its last part's compute for the others' publishing.
        t0 = time.perf_counter()
        training = {s.id for group in work.values() for s, _ in group} | self._inflight_training
        jobs = [(self._train_job, *job) for key, group in work.items()
                for job in self._parts(key, group, owed, plan)]
        frames: dict[tuple, list[Session]] = defaultdict(list)
        for s in sessions:
            if s.dirty and s.id not in training:  # a paused session that changed: a frame with metrics
                narrow, _, fkey = s.run.keys()
                frames[(*fkey, narrow, True)].append(s)
        jobs += [(self._frame_job, key, part, size) for key, group in frames.items()
                 for part, size in self._chunks(group, self.FRAME_SIZE)]
        i_div, i_stop = self.engine.metric_names.index("diverged"), self.engine.metric_names.index("stopped")
        gaps = []
        for done in self._stream(jobs, overlap):
            now = time.perf_counter()
            for s, out, neurons, row, rows, body in done:
                s.publish(out, neurons, row, rows, body)
                s.dirty = False
                if row[i_div] > 0 or row[i_stop] > 0:
                    s.playing = False
                if s.id in training:
                    if now - s.trained_at < 2.0:  # not the first frame after a pause
                        gaps.append(now - s.trained_at)
                    s.trained_at = now
        carried = bool(busy)
        busy = {sid for f in self._inflight for sid in self._job_ids[f][0]}
        self._inflight_training = {sid for f in self._inflight for sid in self._job_ids[f][1]}
        self._inflight_ids = busy
        if work:
            self.metrics.step_seconds.observe(time.perf_counter() - t0)
        if crowded and gaps:
            # The mean, not the median: a session's epochs a second are its mean epochs a
            # frame over its mean interval, and the sessions that sat out a tick (their sender
            # was behind) have the longer ones. With the median, 200 sessions trained 55
            # epochs a second for a floor of 60.
            gap = float(np.mean(gaps))
            self.frame_interval = gap if self.frame_interval is None else 0.7 * self.frame_interval + 0.3 * gap
        elif not crowded and not carried:
            self.frame_interval = None
        return bool(work) or carried

    OWED = -1  # a group key's epochs when each part's are those its sessions are owed (``_parts``)

    def epoch_rate(self) -> float | None:
        """The epochs a second each of a crowd's auto-speed sessions is owed: the epochs a
        frame auto speed trains (``epoch_target`` while the crowd is held to the floor, which
        ``epoch_floor`` only dithers; ``auto_epochs`` above it) over the frame interval. None
        before an interval is measured."""
        iv = self.frame_interval
        if not iv:
            return None
        target = self.epoch_target()
        epochs = target if self.auto_epochs <= math.ceil(target) else float(self.auto_epochs)
        return epochs / iv

    def _owed(self, s: Session, rate: float, now: float) -> float:
        """Epochs ``s`` is owed at ``now``: ``rate`` times the time since its last training was
        planned (at most ``OWED_SPAN`` frame intervals: a session back from a pause, or whose
        client reads slowly, runs up no backlog), plus what its parts' shared counts left over."""
        iv = self.frame_interval or self.period
        since = iv if s.credit_at is None else min(now - s.credit_at, self.OWED_SPAN * iv)
        return s.epoch_carry + rate * since

    OWED_SPAN = 4.0
    # In a part's mean a session counts as owed between a frame's share / OWED_SHARES and
    # share x OWED_SHARES (``_parts``). 200 sessions (share 4.3): a range of +-1 epoch kept their
    # frames at least as fast as before; +-4.3 (and none) cost 0.4-0.9 frames/s.
    OWED_SHARES = 1.25

    def _parts(self, key: tuple, group: list[tuple[Session, int]], owed: dict[int, float], now: float):
        """A group's parts as (key, part, size), ``key`` with the part's epochs. In a group of
        sessions owed epochs (``OWED``), a part trains the mean of what its sessions are owed,
        each counted within a factor ``OWED_SHARES`` of a frame's share (``epoch_rate`` x the
        interval), rounded; each session carries the difference to its next tick.

        Every session of a tick used to train the same epochs, so the ones that sat ticks out
        (their jobs were still running, or their clients had not taken a frame) trained fewer
        a second: 200 sessions, 5th percentile 59.0-59.5 epochs/s at a median of 61.1. The
        tick orders its sessions by when they last trained, so those that sat a tick out share
        the first parts, are owed more and train more, up to the factor (a part that trains
        more is a longer job; wider ranges cost frames). The fifteenth session measured that
        order as 1-1.5 frames/s slower; nine pairs in the sixteenth found no difference beyond
        the machine's drift (docs/benchmarks.md)."""
        largest = self.FRAME_SIZE if key[-1] else None
        if key[2] != self.OWED:
            yield from ((key, part, size) for part, size in self._chunks(group, largest))
            return
        chunk = self.engine.chunk
        share = self.epoch_rate() * self.frame_interval
        least, most = share / self.OWED_SHARES, share * self.OWED_SHARES
        for part, size in self._chunks(group, largest):
            n = max(1, min(chunk, round(sum(min(max(owed[s.id], least), most) for s, _ in part) / len(part))))
            for s, _ in part:
                s.epoch_carry = max(-chunk, min(chunk, owed[s.id] - n))
                s.credit_at = now
            yield (key[:2] + (n,) + key[3:], [(s, n) for s, _ in part], size)

    def _rotated(self, sessions: list) -> list:
        """This tick's order: ``sessions`` started at a turn that moves by ``TURN_STRIDE``."""
        n = max(len(sessions), 1)
        self._turn = (self._turn + max(1, round(n * self.TURN_STRIDE))) % n
        return sessions[self._turn:] + sessions[:self._turn]

    def _stream(self, jobs: list[tuple], overlap: bool = False):
        """Each job's result (``(fn, *args)``) as soon as it is done: on the pool, side by side,
        in the order listed (largest parts first); without a pool, one after another here.
        The jobs the last tick left in flight come first as they finish. With ``overlap``, it
        stops once every job has started and fewer than ``threads`` still run, and leaves
        those in ``_inflight`` (``tick``): a tick that waited for its last jobs left cores idle
        while they ran, and again while the next tick planned (200 sessions: no job running
        for 9 % of the time, one for another 9 %)."""
        carried, self._inflight = self._inflight, []
        if self._pool is None or (len(jobs) < 2 and not carried):
            for fn, *args in jobs:
                yield fn(*args)
            return
        futures = []
        for fn, *args in jobs:
            future = self._pool.submit(fn, *args)
            part = args[1] if len(args) > 1 else []  # (key, part, size): its sessions
            ids = {(x[0] if isinstance(x, tuple) else x).id for x in part}
            self._job_ids[future] = (ids, ids if fn == self._train_job else set())
            futures.append(future)
        pending = set(carried) | set(futures)
        try:
            for future in as_completed(list(pending)):
                pending.discard(future)
                self._job_ids.pop(future, None)
                yield future.result()
                if overlap and len(pending) < self.threads and all(f.running() or f.done() for f in pending):
                    self._inflight, pending = list(pending), set()
                    return
        finally:  # a job that failed ends the tick, but none of its jobs may outlive it
            for future in pending:
                future.cancel()
                self._job_ids.pop(future, None)
            wait(pending)

    def _train_job(self, key: tuple, part: list[tuple[Session, int]], size: int) -> list[tuple]:
        """Train a part, draw the frames its training call did not draw (wide networks; a
        narrow one whose early stopping has just restored other weights), in parts of at most
        FRAME_SIZE, and make their bodies. Returns (session, output, neurons, metrics row,
        history rows, body) per session."""
        result = self._train_part(key, part, size)
        items, need = [], defaultdict(list)
        for s, _ in part:
            rows, frame = result[s.id]
            fresh = self._fresh_row(rows)
            if frame is not None and fresh is not None:
                items.append((s, frame[0], frame[1], fresh, rows))
            else:  # a session that has just trained has its metrics in its last history row
                narrow, _, fkey = s.run.keys()
                need[(*fkey, narrow, fresh is None)].append(s)
        for fkey, group in need.items():
            for fpart, fsize in self._chunks(group, self.FRAME_SIZE, balance=False):
                for s, (out, neurons, row) in zip(fpart, self._frame_part(fkey, fpart, fsize)):
                    rows = result[s.id][0]
                    items.append((s, out, neurons, row if fkey[-1] else self._fresh_row(rows), rows))
        return [(s, out, neurons, row, rows, s.body(out, neurons)) for s, out, neurons, row, rows in items]

    def _frame_job(self, key: tuple, part: list[Session], size: int) -> list[tuple]:
        """Draw a part of sessions that did not train (with metrics) and make the bodies."""
        empty = np.zeros((0, len(self.engine.metric_names)), np.float32)
        return [(s, out, neurons, row, empty, s.body(out, neurons))
                for s, (out, neurons, row) in zip(part, self._frame_part(key, part, size))]

    def _train_part(self, key: tuple, part: list[tuple[Session, int]], size: int) -> dict[int, tuple]:
        """Train one part of a group (its sessions are in no other part): one session alone,
        or ``size`` sessions (padded) in one batched call. Returns each session's new rows and
        the frame its training call drew (None: drawn later)."""
        depth, cap, n, _, narrow = key
        if size == 1:
            s, k = part[0]
            return {s.id: self._train_one(s, k)}
        runs = [s.run for s, _ in part]
        pad = runs + [runs[0]] * (size - len(runs))
        if narrow:
            states, hist, frames = self._narrow_call(pad, n, depth, cap, with_metrics=False)
            out: dict[int, tuple] = {}
            for j, (s, _) in enumerate(part):
                s.run.set_narrow_packed(states[j])
                out[s.id] = (hist[j], frames[j])
                if s.step_epochs:
                    s.step_epochs = 0
            self.metrics.epochs.inc(sum(len(hist[j]) for j in range(len(part))))
            return out
        states, hist, ok = self.engine.train_many(_stack([r.packed for r in pad]), *self._inputs(pad), n, depth, cap, n)
        new_states = _unstack(states, len(runs))
        hist, ok = np.asarray(hist), np.asarray(ok)
        out: dict[int, tuple] = {}
        for j, (s, _) in enumerate(part):
            s.run.state = new_states[j]
            out[s.id] = (hist[j][ok[j]], None)
            self._count(s, int(ok[j].sum()))
        return out

    # Frames are drawn in parts of at most this many sessions when a compiled size allows:
    # a batched frame's grids are (sessions, 8, 10,000) floats per layer, and 64 sessions'
    # (20 MB a layer, two threads side by side) spill the 32 MB cache: net (a) drew 450 us a
    # session in parts of 32, 860 us in parts of 64 (docs/benchmarks.md, eighth session).
    # Training has no such arrays and keeps the larger parts (4,350 vs 4,640 session-epochs/s).
    # Narrow parts train and draw in one call, and are held to it too: 200 sessions of net (a),
    # 4 epochs a frame, ticked in 42-45 ms in parts of 32 against 49-50 ms with parts of 64.
    FRAME_SIZE = 32

    def _chunks(self, items: list, largest: int | None = None, balance: bool = True) -> list[tuple[list, int]]:
        """Split a group into parts of a compiled batched size (1 = one at a time), of at most
        ``largest`` sessions when a compiled size that small exists. With several threads (and
        ``balance``), a group that fits one part is halved when two parts of a smaller compiled
        size pad to no more rows (50 sessions: 32 + 32 instead of 64)."""
        sizes = [b for b in self.batched_sizes if b > 1]
        if largest is not None and any(b <= largest for b in sizes):
            sizes = [b for b in sizes if b <= largest]
        parts, i = [], 0
        while i < len(items):
            rest = len(items) - i
            size = next((b for b in sizes if b >= rest), sizes[-1] if sizes else 1)
            if size <= 1 or rest == 1:
                parts.append((items[i:i + 1], 1))
                i += 1
            else:
                parts.append((items[i:i + size], size))
                i += size
        return self._balance(parts, sizes) if balance and self.threads > 1 and sizes else parts

    CALL_ROWS = 4  # a call's fixed cost, in padded session rows (host work, dispatch)

    def _makespan(self, parts: list[tuple[list, int]]) -> int:
        """The busiest thread's padded rows when the pool takes the parts largest first (each
        free thread takes the next part), a call's fixed cost included."""
        loads = [0] * self.threads
        for _, size in sorted(parts, key=lambda p: -p[1]):
            loads[loads.index(min(loads))] += size + self.CALL_ROWS
        return max(loads)

    def _balance(self, parts: list[tuple[list, int]], sizes: list[int]) -> list[tuple[list, int]]:
        """Split parts in two while that shortens the tick on the pool's threads: 50 sessions
        with sizes 8/32/64 go as 32 + 32 side by side instead of one 64; 200 as 64, 64, 32, 32
        and 8 instead of 64, 64, 64 and 8 (three 64s leave one thread idle for a third of the
        tick). A split that pads to more rows than it saves is not made, nor one that leaves a
        session alone."""
        fit = lambda n: 1 if n == 1 else next((b for b in sizes if b >= n), None)  # noqa: E731
        parts = list(parts)
        best = self._makespan(parts)
        improved = True
        while improved:
            improved = False
            for k in sorted(range(len(parts)), key=lambda k: -parts[k][1]):
                items, size = parts[k]
                half = (len(items) + 1) // 2
                if len(items) < 4 or fit(half) is None:  # no part of one: its own (slower) program
                    continue
                trial = parts[:k] + [(items[:half], fit(half)), (items[half:], fit(len(items) - half))] + parts[k + 1:]
                span = self._makespan(trial)
                if span < best:
                    parts, best, improved = trial, span, True
                    break
        return sorted(parts, key=lambda p: -p[1])  # largest first, as the makespan assumes

    def _fresh_row(self, rows: np.ndarray | None) -> np.ndarray | None:
        """The metrics row measured after the last epoch trained this tick, when it describes
        the session as it is now (not when early stopping has just restored other weights)."""
        if rows is None or not len(rows):
            return None
        last = rows[-1]
        loss, stopped = float(last[self._i_loss]), float(last[self._i_stopped])
        if not -math.inf < loss < math.inf or stopped > 0:
            return None
        return last

    def _frame_part(self, key: tuple, part: list[Session], size: int) -> list[tuple]:
        """The frames of one part of a frame group: (output, neurons, metrics row) each."""
        t = time.perf_counter()
        depth, narrow, with_metrics = key[0], key[-2], key[-1]
        if size == 1:
            out = [part[0].run.frame(with_metrics)]
        else:
            runs = [s.run for s in part]
            pad = runs + [runs[0]] * (size - len(runs))
            if narrow:  # 0 epochs: the narrow call only draws
                out = self._narrow_call(pad, 0, depth, self.engine.buckets[0], with_metrics)[2][:len(runs)]
            else:
                o, n, r = self.engine.frame_many(_stack([x.packed for x in pad]), *self._inputs(pad), depth,
                                                 with_metrics)
                o, n, r = np.asarray(o), np.asarray(n), np.asarray(r)
                out = [(o[j], n[j], r[j]) for j in range(len(runs))]
        self.metrics.frame_seconds.observe((time.perf_counter() - t) / len(part))
        return out

    def _narrow_call(self, pad: list, n: int, depth: int, cap: int, with_metrics: bool) -> tuple:
        """Train ``n`` epochs (0: none) and draw a part of narrow runs (``pad``: padded to a
        compiled size) in one batched narrow call. Returns per run its new narrow state, and
        as the wide programs give them: the history rows of the epochs it trained (k, M) and
        its frame (output grids, neuron grids of the narrow width, metrics row). Only the trained rows are
        widened (~4 of a call's 32 a session: widening all of them was ~6 % of a crowd's host
        work)."""
        engine = self.engine
        stacked = _stack([r.narrow_packed() for r in pad])
        states, hist, ok, (out, small, rows) = engine.train_draw_many(
            stacked, *self._inputs(pad, narrow=True), n, depth, cap, n, with_metrics)
        f, u = np.asarray(states.f), np.asarray(states.u)
        # The neuron grids stay narrow (..., NARROW_LAYERS, NARROW, G, G): a frame's body reads
        # only the units in use, which are among them.
        out, neurons = np.asarray(out), np.asarray(small)
        rows = engine.narrowing.wide_rows(rows)
        ok = np.asarray(ok)
        trained = engine.narrowing.wide_rows(np.asarray(hist)[ok])  # the sessions' rows, in order
        hist = np.split(trained, np.cumsum(ok.sum(1))[:-1])
        return ([Packed(f[j], u[j]) for j in range(len(pad))], hist,
                [(out[j], neurons[j], rows[j]) for j in range(len(pad))])

    ROWS = 1024  # runs whose rows are kept (~25 KB each; more are dropped all at once)

    def _inputs(self, runs: list, narrow: bool = False) -> tuple:
        """The stacked data and settings of a batched part's runs (padding included), from
        each run's flat rows (``RowStacker``), which are made again only when a run gets new
        data or settings (a change gives it new ``data`` or ``hyper`` objects). ``narrow``:
        with the settings of the narrow programs (``Run.narrow_hyper``)."""
        hyper = (lambda r: r.narrow_hyper) if narrow else (lambda r: r.hyper)  # noqa: E731
        if self._stackers[narrow] is None:
            self._stackers[narrow] = RowStacker(runs[0].data, hyper(runs[0]))
        stacker = self._stackers[narrow]
        rows = []
        for r in runs:
            with self._rows_lock:
                held = self._rows.get((id(r), narrow))
            # an entry holds the run and its inputs, so none of those ids can be reused while it lives
            if held is None or held[0] is not r or held[1] is not r.data or held[2] is not r.hyper:
                held = (r, r.data, r.hyper, stacker.row(r.data, hyper(r)))
                with self._rows_lock:
                    if len(self._rows) >= self.ROWS and (id(r), narrow) not in self._rows:
                        self._rows.clear()
                    self._rows[(id(r), narrow)] = held
            rows.append(held[3])
        return stacker.stack(rows, hyper(runs[0]))

    def _train_one(self, s: Session, n: int) -> tuple[np.ndarray, tuple | None]:
        """A session alone: a narrow network's frame comes with its training, in one call."""
        rows, frame = s.run.train_and_frame(n, every=n)
        self._count(s, len(rows))
        return rows, frame

    def _count(self, s: Session, epochs: int) -> None:
        self.metrics.epochs.inc(epochs)
        if s.step_epochs:
            s.step_epochs = 0

    # --- commands ------------------------------------------------------------------------

    def _target_config(self, s: Session, a: dict):
        """The new config, computed from the config current now (so quick successive
        patches compose instead of overwriting each other)."""
        limits = self.engine.limits
        if "patch" in a:
            return patch_config(s.run.cfg, a["patch"], limits)
        if "add_points" in a:
            new = s.add_points(a["add_points"])
        elif "remove_point" in a:
            new = s.remove_points(*a["remove_point"])
        else:
            return a["config"]
        return parse_config(new.model_dump(exclude_none=True, exclude={"weights"}), limits)

    def _apply(self, s: Session, cmd: Command) -> None:
        k, a = cmd.kind, cmd.args
        try:
            if k == "config":
                s.run.set_config(self._target_config(s, a))
                s.version += 1
            elif k == "play":
                s.playing = True
            elif k == "pause":
                s.playing = False
            elif k == "step":
                s.step_epochs = a["epochs"]
                s.playing = False
            elif k == "reset":
                s.run.reset(a.get("seed"))
                s.version += 1
            elif k == "speed":
                s.speed = a["speed"]
            elif k == "export":
                if cmd.reply:
                    cmd.reply(export_message(s, a["format"]))
                return
            elif k == "hidden":
                if cmd.reply:
                    cmd.reply(hidden_message(s, a))
                return
            elif k == "set_weight":
                s.run.set_param(a["layer"], a["kind"], a["i"], a["j"], a["value"])
                s.version += 1
            s.dirty = True
            if cmd.reply:
                cmd.reply({"type": "ack", "of": k, "id": a.get("id"), "version": s.version, "playing": s.playing})
                if k in ("config", "reset"):
                    cmd.reply(s.state_text())
        except (ConfigError, ValueError) as err:
            if cmd.reply and not isinstance(err, ConfigError):
                cmd.reply({"type": "error", "message": str(err)})
                return
            if cmd.reply:
                cmd.reply({"type": "error", "message": err.messages[0], "messages": err.messages})
        except Exception as err:  # report, keep the session and the server going
            log.exception("command %s failed", k)
            if cmd.reply:
                cmd.reply({"type": "error", "message": f"{k} failed: {type(err).__name__}"})
