"""One websocket session: a training ``Run`` plus what the page needs to follow it.

The scheduler thread owns every mutation of the run: the websocket handler validates a
message, queues a command, and the scheduler applies it before its next step. Frames are
latest-wins: a slow client gets fewer frames, never a growing queue.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import orjson

try:  # ISA-L's deflate (python-isal): see ``deflate_raw``
    from isal import isal_zlib
except ImportError:  # pragma: no cover - a platform without its wheels deflates with zlib
    isal_zlib = None

from core.config import Config, Point
from core.engine import Engine, Run
from core.model import K

# Metrics kept in the incremental history sent to the page (one row per measured frame).
HISTORY_FIELDS = ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "learning_rate")
MAX_PENDING_HISTORY = 2000


@dataclass
class Command:
    kind: str
    args: dict = field(default_factory=dict)
    reply: Callable[[dict], None] | None = None


class Session:
    def __init__(self, sid: int, engine: Engine, cfg: Config, notify: Callable[["Session"], None]):
        self.id = sid
        self.engine = engine
        self.run = Run(engine, cfg)
        self.version = 1
        self.playing = False
        self.speed: int | str = "auto"
        self.step_epochs = 0  # queued "step N" epochs
        self.commands: deque[Command] = deque()
        self.lock = threading.Lock()
        self.notify = notify
        self.last_seen = time.monotonic()
        self.closed = False
        # zlib level of the frames' payloads (``body``); None sends them as they are
        self.compress_level: int | None = None
        self.dirty = True  # a frame should be produced even when paused
        self.trained_at = -math.inf  # when the scheduler last published a frame of new training (perf_counter)
        # a crowd's auto speed (``Scheduler._owed``): epochs owed beyond the last part's count,
        # and when the session's last training was planned (perf_counter)
        self.epoch_carry = 0.0
        self.credit_at: float | None = None
        self.planned_at = -math.inf  # when a tick last gave it training (perf_counter; ``Scheduler.tick``)
        # Latest frame parts (written by the scheduler) and history not yet sent.
        self._frame: tuple[dict, list[np.ndarray]] | None = None
        self._history: list[list[float]] = []
        self.frames_dropped = 0
        # Classroom: the newest (output grid, metrics, config, version), read by room reports,
        # and the room's challenge judge called on every frame (scheduler thread).
        self.latest: tuple | None = None
        self.watch: Callable[[dict, Config], None] | None = None
        self._points_of: tuple | None = None  # (split, its points for the page)
        self._points_sent = None  # the data split whose points the page has been sent
        self.on_taken: Callable[[], None] | None = None  # the scheduler, told when a frame leaves
        self._base: tuple | None = None  # a frame header's fixed fields and what they were made for (``publish``)
        self._idx = {n: i for i, n in enumerate(engine.metric_names)}
        self._hist_cols = [self._idx[f] for f in HISTORY_FIELDS]

    # --- called from the event loop --------------------------------------------------

    def submit(self, cmd: Command) -> None:
        with self.lock:
            self.commands.append(cmd)

    def take_frame(self) -> bytes | None:
        """The newest frame with every history row since the last one sent, or None."""
        with self.lock:
            if self._frame is None:
                return None
            header, payload = self._frame
            self._frame = None
            history, self._history = self._history, []
        if self.on_taken:
            self.on_taken()
        header = {**header, "history": history}
        return encode_frame(header, payload)

    # --- called from the scheduler thread ---------------------------------------------

    def drain(self) -> list[Command]:
        with self.lock:
            cmds = list(self.commands)
            self.commands.clear()
        return cmds

    def requeue(self, cmds: list[Command]) -> None:
        """Put commands back in front of any that arrived since, in their order."""
        with self.lock:
            self.commands.extendleft(reversed(cmds))

    def backlogged(self) -> bool:
        """The last frame is still waiting for the client to take it."""
        return self._frame is not None

    def wants_training(self) -> int:
        """Epochs to train this tick (0: none)."""
        if self.step_epochs:
            return self.step_epochs
        return 1 if self.playing else 0

    def body(self, out: np.ndarray, neurons: np.ndarray) -> tuple[list[dict], bytes, bool]:
        """A frame's payload: (sections, bytes, whether the bytes are deflated). Reads only the
        configuration and the weights, so the scheduler's threads make the bodies of a tick's
        frames side by side (ISA-L's deflate releases the GIL) before it publishes them in order."""
        cfg = self.run.cfg
        units = [layer.units for layer in cfg.layers]
        multi = cfg.n_outputs > 1
        parts = [np.ascontiguousarray(out[0])]
        if multi:
            parts.append(np.ascontiguousarray(out[1]))
        for j, u in enumerate(units):
            parts.append(np.ascontiguousarray(neurons[j, :u]))
        flat = self.run.weights_flat()
        if not np.isfinite(flat).all():
            flat = np.nan_to_num(flat, nan=0.0, posinf=3.4e38, neginf=-3.4e38).astype(np.float32)
        parts.append(flat)
        sections = _sections(multi, len(units), tuple((p.dtype.num, p.shape) for p in parts), parts)
        raw = b"".join(p.tobytes() for p in parts)
        if self.compress_level is None:
            return sections, raw, False
        return sections, deflate_raw(raw, self.compress_level), True

    def publish(self, out: np.ndarray, neurons: np.ndarray, row: np.ndarray, hist_rows: np.ndarray,
                body: tuple[list[dict], bytes, bool] | None = None) -> None:
        """Store a frame (replacing an unsent one) and append measured history rows. ``body``:
        the frame's ``body``, when made already."""
        cfg = self.run.cfg
        finite = frame_metrics(row, self.engine.metric_names, cfg)
        sections, payload, deflated = body if body is not None else self.body(out, neurons)
        # the fields that follow from the configuration and the payload's layout, made once
        # for each (a crowd publishes ~3,400 frames a second)
        key = (deflated, out.shape[-1], neurons.shape[-1] if neurons.size else 0)
        made = self._base
        if made is None or made[0] is not cfg or made[1] is not sections or made[2] != key:
            base = {"type": "frame", "units": [layer.units for layer in cfg.layers], "features": list(cfg.features),
                    "outputs": cfg.n_outputs, "classes": cfg.classes if cfg.problem == "classification" else 0,
                    "grid": int(key[1]), "neuron_grid": int(key[2]), "sections": sections}
            if deflated:
                base["payload"] = "deflate-raw"
            self._base = made = (cfg, sections, key, base)
        header = {**made[3], "version": self.version, "epoch": int(self.run.epoch), "playing": self.playing,
                  "diverged": finite["diverged"], "stopped": finite["stopped"], "metrics": finite}
        rows = _history_rows(hist_rows, self._hist_cols, self._idx["diverged"])
        with self.lock:
            if self._frame is not None:
                self.frames_dropped += 1
            self._frame = (header, payload)
            self._history.extend(rows)
            del self._history[:-MAX_PENDING_HISTORY]
        self.latest = (out, finite, cfg, self.version)
        watch = self.watch
        if watch is not None:
            try:
                watch(finite, cfg)
            except Exception:  # a room's judge never stops the frames
                logging.getLogger("nnplay.rooms").exception("challenge judge failed")
        self.notify(self)

    def state_message(self, points: bool = True) -> dict:
        cfg = self.run.cfg
        msg = {
            "type": "state", "version": self.version, "config": cfg.model_dump(exclude_none=True, exclude={"weights"}),
            "playing": self.playing, "speed": self.speed, "epoch": int(self.run.epoch),
            "n_params": cfg.n_params, "history_fields": list(HISTORY_FIELDS),
        }
        if points:
            msg["points"] = self._points()[0]
            self._points_sent = self.run.split
        return msg

    def state_text(self) -> str:
        """``state_message`` as JSON text, with ``points`` only when the data changed since the
        page was last sent them (the page keeps the ones it has): every setting change answers
        with a state message, and 500 points are ~15 KB of the ~16 of one. Their text is built
        once per data split (encoding them each time dominated the event loop's JSON work)."""
        head = dumps(self.state_message(points=False)).decode()
        split = self.run.split
        if self._points_sent is split:
            return head
        self._points_sent = split
        return f'{head[:-1]},"points":{self._points()[1]}}}'

    def _points(self) -> tuple[dict, str]:
        """The data points as the page draws them, and as JSON text, built once per data split
        (a learning-rate change sends a state message too: rounding 500 points cost ~2 ms)."""
        split = self.run.split
        if self._points_of is None or self._points_of[0] is not split:
            pts = {"train": _points(split.x_train, split.y_train), "test": _points(split.x_test, split.y_test)}
            self._points_of = (split, pts, json.dumps(pts, separators=(",", ":")))
        return self._points_of[1], self._points_of[2]

    def add_points(self, pts: list[Point]) -> Config:
        cfg = self.run.cfg
        existing = cfg.points if cfg.dataset == "custom" and cfg.points else _as_points(self.run)
        return cfg.model_copy(update={"dataset": "custom", "points": list(existing) + list(pts)})

    def remove_points(self, x1: float, x2: float) -> Config:
        """Remove the point nearest to (x1, x2)."""
        cfg = self.run.cfg
        existing = list(cfg.points) if cfg.dataset == "custom" and cfg.points else _as_points(self.run)
        if len(existing) <= 1:
            return cfg
        d = [(p.x1 - x1) ** 2 + (p.x2 - x2) ** 2 for p in existing]
        existing.pop(int(np.argmin(d)))
        return cfg.model_copy(update={"dataset": "custom", "points": existing})


_SECTIONS: dict[tuple, list[dict]] = {}


def _sections(multi: bool, n_layers: int, key: tuple, parts: list[np.ndarray]) -> list[dict]:
    """Each payload array's name, dtype, shape and byte offset; the same for every frame of a
    configuration, so built once per layout (frames share the list: it is only serialised)."""
    found = _SECTIONS.get((multi, n_layers, key))
    if found is None:
        names = ["output"] + (["output_class"] if multi else []) + [f"layer{j}" for j in range(n_layers)] + ["weights"]
        found, offset = [], 0
        for name, p in zip(names, parts):
            found.append({"name": name, "dtype": str(p.dtype), "shape": list(p.shape), "offset": offset})
            offset += p.nbytes
        if len(_SECTIONS) > 4096:
            _SECTIONS.clear()
        _SECTIONS[(multi, n_layers, key)] = found
    return found


_HEADS: dict[tuple, tuple] = {}


def frame_metrics(row: np.ndarray, names: tuple[str, ...], cfg: Config) -> dict:
    """``metrics_dict`` of a frame's row as the page gets it, in one pass: non-finite values
    as None (JSON has no NaN), the counts as ints and the flags as bools."""
    n = len(names) - K * K  # the confusion matrix comes last
    head = _HEADS.get(names)
    if head is None:
        head = _HEADS[names] = (names[:n], names.index("epoch"), names.index("best_epoch"),
                                names.index("diverged"), names.index("stopped"))
    values = np.asarray(row).tolist()
    conf = values[n:]
    values = [v if -math.inf < v < math.inf else None for v in values[:n]]
    d = dict(zip(head[0], values))
    k = cfg.classes if cfg.problem == "classification" else 0
    d["confusion"] = [[int(conf[i * K + j]) if -math.inf < conf[i * K + j] < math.inf else 0 for j in range(k)]
                      for i in range(k)]
    for i in head[1:3]:
        if values[i] is not None:
            d[names[i]] = int(values[i])
    for i in head[3:]:
        d[names[i]] = bool(values[i])  # NaN (a row not measured) reads as not diverged
    return d


def _as_points(run: Run) -> list[Point]:
    s = run.split
    out = [Point(x1=float(x[0]), x2=float(x[1]), label=float(y), subset="train") for x, y in zip(s.x_train, s.y_train)]
    out += [Point(x1=float(x[0]), x2=float(x[1]), label=float(y), subset="test") for x, y in zip(s.x_test, s.y_test)]
    return out


def _points(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    return [[round(float(a), 4), round(float(b), 4), round(float(c), 4)] for (a, b), c in zip(x, y)]


def _history_rows(hist_rows: np.ndarray, cols: list[int], i_diverged: int) -> list[list]:
    """The measured rows of a training call's history as the page's ``history`` lists
    (``HISTORY_FIELDS``, non-finite values as None): rows with a train loss, or that diverged.
    One ``tolist`` for all of them and plain float tests (a NumPy scalar test per value cost
    ~7 us a frame; NumPy's indexing and ``isfinite`` on a tick's ~4 rows ~3 us)."""
    if not len(hist_rows):
        return []
    loss = cols[_TRAIN_LOSS]
    return [[v if -math.inf < v < math.inf else None for v in (row[c] for c in cols)]
            for row in np.asarray(hist_rows).tolist() if -math.inf < row[loss] < math.inf or row[i_diverged] > 0]


_TRAIN_LOSS = HISTORY_FIELDS.index("train_loss")


def dumps(obj) -> bytes:
    """Compact JSON as UTF-8, by orjson: a frame's header in ~1.2 us instead of the standard
    library's ~19 (every frame's header is made on the event loop; 200 sessions send ~2,000 a
    second). NumPy scalars and arrays are written as numbers; a non-finite float becomes null
    (the messages hold none: metrics are made finite before)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_frame(header: dict, payload: bytes) -> bytes:
    """``[u32 little-endian header length][UTF-8 JSON header][payload]``; the header's
    ``sections`` give each array's name, dtype, shape and byte offset in the payload, and
    ``payload: "deflate-raw"`` says the payload is deflated (RFC 1951, no zlib header)."""
    head = dumps(header)
    return struct.pack("<I", len(head)) + head + payload


def deflate_raw(data: bytes, level: int) -> bytes:
    """Raw deflate (RFC 1951, no zlib header: what the page's DecompressionStream("deflate-raw")
    inflates) of a frame's payload. Levels 0 and 1 use ISA-L, which releases the GIL while it
    works (zlib's one-shot compress held it: two threads deflated 1.2x as fast as one,
    against 2.1x). Level 1 deflated net (a)'s 12.5 KB frame in ~35 us against zlib's ~115 us
    at its level 1 (docs/benchmarks.md, twelfth session); level 0, the default since the output
    heatmap has 128 levels (``core.train.OUTPUT_LEVELS``), in ~16 us to ~4.7 KB, fewer bytes
    than level 1 made of the 256-level heatmaps (~4.9 KB; eighteenth session). ISA-L's higher
    levels pack no tighter on these frames, so levels 2-9 are zlib's. Without ISA-L, zlib's
    level 1 stands in for both."""
    if level <= 1:
        if isal_zlib is not None:
            return isal_zlib.compress(data, level, wbits=-15)
        level = 1
    return zlib.compress(data, level, wbits=-15)


def frame_header(buf: bytes) -> dict:
    """A frame's JSON header alone, its payload left as it is (the load benchmark's clients
    count frames and their versions from the headers)."""
    (n,) = struct.unpack_from("<I", buf)
    return orjson.loads(memoryview(buf)[4:4 + n])


def decode_frame(buf: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Inverse of encode_frame (tests, load benchmark). Inflates with ISA-L where it is
    installed (20 us for net (a)'s frame against zlib's 35) and parses the header with orjson:
    the load benchmark's clients decode every frame on the server's own cores."""
    (n,) = struct.unpack_from("<I", buf)
    header = orjson.loads(buf[4:4 + n])
    body = memoryview(buf)[4 + n:]
    if header.get("payload") == "deflate-raw":
        body = memoryview((isal_zlib or zlib).decompress(body, wbits=-15))
    arrays = {}
    for s in header["sections"]:
        count = int(np.prod(s["shape"])) if s["shape"] else 1
        arrays[s["name"]] = np.frombuffer(body, dtype=s["dtype"], count=count, offset=s["offset"]).reshape(s["shape"])
    return header, arrays
