"""Host side of the engine: configs become arrays, runs are stepped, weights move in and out.

``Engine`` owns the compiled functions (one padded network, compiled once for a few batch
capacities); ``Run`` is one training run (a CLI run or one websocket session) that can be
changed while it trains without recompiling: hyperparameters are swapped as data, the
architecture by "network surgery" that keeps every surviving neuron's weights.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import NamedTuple
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from core import data as datasets
from core import optim
from core.config import (
    ACTIVATIONS, FEATURES, LOSSES, OPTIMIZERS, OUTPUT_ACTIVATIONS, SCHEDULES, Config, Limits, fitting_defaults,
)
from core.metrics import names as metric_names
from core.model import D, K, Arch, Norm, Params, forward, init_params
from core.optim import OptHyper
from core.train import (
    SMALL_ROWS, Data, Flags, Hyper, Reg, Task, TrainState, frame, needs_full_loop, padded_features, predict,
    train_and_draw, train_chunk,
)

log = logging.getLogger("nnplay.engine")

# Compiler options of the batched training programs. XLA's CPU backend hands large
# reductions to XNNPACK ("YNN fusions", library calls); a loop holding one is not compiled
# as one function (see ``core/__init__``), so each of the ~250 operations of a batched
# minibatch update was dispatched on its own. Keeping XNNPACK for the products only (the
# minibatch products are written as elementwise sums, see ``model.matmul``) lets the
# batched epochs compile as one function too (docs/benchmarks.md, seventh session).
BATCHED_TRAINING = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}

# --- compilation counting ----------------------------------------------------------------

_compilations = 0
_cache_hits = 0
_count_lock = threading.Lock()
_listening = False


def _on_duration(event: str, *args, **kwargs) -> None:
    global _compilations
    if event == "/jax/core/compile/backend_compile_duration":
        with _count_lock:
            _compilations += 1


def _on_event(event: str, *args, **kwargs) -> None:
    global _cache_hits
    if event == "/jax/compilation_cache/cache_hits":
        with _count_lock:
            _cache_hits += 1


def compilations() -> int:
    """XLA compilations in this process so far. Executables loaded from the persistent
    compilation cache are not counted (JAX reports them as backend compiles too)."""
    _listen()
    return _compilations - _cache_hits


def _listen() -> None:
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _listening = True


def enable_compilation_cache(path: str | None = None) -> str:
    """Persist compiled executables so that later starts skip XLA compilation."""
    path = path or os.environ.get("NNPLAY_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "nnplay-jax")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


# --- configs become arrays --------------------------------------------------------------


def pad_points(n_max: int, split: datasets.Split) -> Data:
    def pad(a, rows):
        out = np.zeros((rows,) + a.shape[1:], np.float32)
        out[: len(a)] = a
        return out

    x_train, x_test = pad(split.x_train, n_max), pad(split.x_test, n_max)
    return Data(x_train, pad(split.y_train, n_max), x_test, pad(split.y_test, n_max))


def class_weights(cfg: Config, split: datasets.Split) -> np.ndarray:
    w = np.ones(K, np.float32)
    if cfg.problem != "classification" or cfg.class_weight is None:
        return w
    if cfg.class_weight == "balanced":  # Keras/sklearn: n / (classes * count)
        counts = np.bincount(split.y_train.astype(int), minlength=cfg.classes)[: cfg.classes]
        w[: cfg.classes] = len(split.y_train) / (cfg.classes * np.maximum(counts, 1))
    else:
        w[: cfg.classes] = cfg.class_weight
    return w


def hyper_from_config(cfg: Config, split: datasets.Split, n_layers: int) -> Hyper:
    f, i = np.float32, np.int32
    unit_mask = np.zeros((n_layers, D), f)
    act = np.zeros(n_layers, i)
    for j, layer in enumerate(cfg.layers):
        unit_mask[j, : layer.units] = 1
        act[j] = ACTIVATIONS.index(layer.activation)
    out_mask = np.zeros(K, f)
    out_mask[: cfg.n_outputs] = 1
    arch = Arch(
        feat_mask=np.array([x in cfg.features for x in FEATURES] + [False], f),
        unit_mask=unit_mask, act=act, out_mask=out_mask,
        batch_norm=np.bool_(cfg.batch_norm), layer_norm=np.bool_(cfg.layer_norm),
    )
    opt = OptHyper(
        optimizer=i(OPTIMIZERS.index(cfg.optimizer)), learning_rate=f(cfg.learning_rate), momentum=f(cfg.momentum),
        beta_1=f(cfg.beta_1), beta_2=f(cfg.beta_2), rho=f(cfg.rho), epsilon=f(cfg.epsilon),
        schedule=i(SCHEDULES.index(cfg.lr_schedule)), decay_rate=f(cfg.decay_rate),
        decay_epochs=i(cfg.decay_epochs), warmup_epochs=i(cfg.warmup_epochs), cosine_alpha=f(cfg.cosine_alpha),
    )
    aug = cfg.augmentation
    reg = Reg(l1=f(cfg.l1), l2=f(cfg.l2), dropout=f(cfg.dropout), input_noise=f(cfg.input_noise),
              jitter=f(aug.jitter), flip_x1=np.bool_(aug.flip_x1), flip_x2=np.bool_(aug.flip_x2))
    cls = cfg.problem == "classification"
    task = Task(
        out_act=i(OUTPUT_ACTIVATIONS.index(cfg.resolved_output_activation)), loss=i(LOSSES.index(cfg.resolved_loss)),
        out_mask=out_mask, classification=np.bool_(cls), n_classes=i(cfg.classes if cls else 1),
        class_w=class_weights(cfg, split), batch_size=i(cfg.batch_size), shuffle=np.bool_(cfg.shuffle),
        patience=i(cfg.early_stopping_patience), n_train=i(len(split.y_train)), n_test=i(len(split.y_test)),
    )
    flags = Flags(shuffle=np.bool_(cfg.shuffle), augment=np.bool_(cfg.input_noise > 0 or aug.active),
                  dropout=np.bool_(cfg.dropout > 0),
                  small=np.bool_(max(len(split.y_train), len(split.y_test)) <= SMALL_ROWS))
    return Hyper(arch=arch, opt=opt, reg=reg, task=task, flags=flags)


def _fans(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    sizes = [len(cfg.features)] + [layer.units for layer in cfg.layers] + [cfg.n_outputs]
    return np.array(sizes[:-1]), np.array(sizes[1:])


def fresh_params(cfg: Config, n_layers: int, rng: np.random.Generator) -> Params:
    """Initial weights: from ``cfg.weights`` if given, else drawn with ``cfg.init``. Padded
    slots get initialised values too, so a unit added later starts from a sensible weight."""
    fan_in, fan_out = _fans(cfg)
    fan_in = np.concatenate([fan_in, np.full(n_layers + 1 - len(fan_in), 8)])
    fan_out = np.concatenate([fan_out[:-1], np.full(n_layers + 1 - len(fan_out), 8), fan_out[-1:]])
    p = init_params(rng, n_layers, cfg.init, fan_in, fan_out)
    if cfg.weights is not None:
        p = import_weights(p, cfg)
    return p


def import_weights(p: Params, cfg: Config) -> Params:
    """Write ``cfg.weights`` (the form ``export_weights`` gives) into padded parameters."""
    w, b, g, be = (np.array(a, np.float32, copy=True) for a in (p.w, p.b, p.gamma, p.beta))
    w_out, b_out = np.array(p.w_out, copy=True), np.array(p.b_out, copy=True)
    rows = _input_rows(cfg)
    for j, lw in enumerate(cfg.weights):
        mat = np.array(lw.w, np.float32)
        src = rows if j == 0 else np.arange(mat.shape[0])
        if j < len(cfg.layers):
            w[j][np.ix_(src, np.arange(mat.shape[1]))] = mat
            b[j, : mat.shape[1]] = lw.b
            if lw.gamma is not None:
                g[j, : mat.shape[1]] = lw.gamma
            if lw.beta is not None:
                be[j, : mat.shape[1]] = lw.beta
        else:
            w_out[np.ix_(src, np.arange(mat.shape[1]))] = mat
            b_out[: mat.shape[1]] = lw.b
    return Params(w, b, g, be, w_out, b_out)


def _input_rows(cfg: Config) -> np.ndarray:
    return np.array([FEATURES.index(x) for x in cfg.features])


def export_weights(p: Params, cfg: Config) -> list[dict]:
    """Weights and biases per layer (hidden layers, then the output) in real shapes:
    ``{"w": (inputs x units), "b": (units,)}`` plus ``gamma``/``beta`` with batch or layer norm."""
    out = []
    prev = _input_rows(cfg)
    for j, layer in enumerate(cfg.layers):
        cols = np.arange(layer.units)
        entry = {"w": np.asarray(p.w[j])[np.ix_(prev, cols)].tolist(), "b": np.asarray(p.b[j])[cols].tolist()}
        if cfg.batch_norm or cfg.layer_norm:
            entry["gamma"] = np.asarray(p.gamma[j])[cols].tolist()
            entry["beta"] = np.asarray(p.beta[j])[cols].tolist()
        out.append(entry)
        prev = cols
    cols = np.arange(cfg.n_outputs)
    out.append({"w": np.asarray(p.w_out)[np.ix_(prev, cols)].tolist(), "b": np.asarray(p.b_out)[cols].tolist()})
    return out


@lru_cache(maxsize=4096)
def _weight_index(features: tuple[str, ...], units: tuple[int, ...], n_outputs: int, n_layers: int) -> np.ndarray:
    """Where ``flat_weights``' values sit in the padded parameters laid end to end
    (w, w_out, b, b_out): every layer's ``w`` (inputs x units, row-major), then every ``b``."""
    L, out_k = n_layers, K
    o_wout, o_b = L * D * D, L * D * D + D * out_k
    o_bout = o_b + L * D
    rows = np.array([FEATURES.index(x) for x in features], np.int64)
    w_idx, b_idx = [], []
    for j, u in enumerate(units):
        w_idx.append((j * D * D + rows[:, None] * D + np.arange(u)[None, :]).ravel())
        b_idx.append(o_b + j * D + np.arange(u))
        rows = np.arange(u)
    w_idx.append((o_wout + rows[:, None] * out_k + np.arange(n_outputs)[None, :]).ravel())
    b_idx.append(o_bout + np.arange(n_outputs))
    return np.concatenate(w_idx + b_idx)


def flat_weights(p: Params, cfg: Config) -> np.ndarray:
    """Every layer's weights, then every layer's biases, in real shapes, as one float32 vector:
    what ``export_weights`` gives, flattened, at a fraction of the cost (one gather)."""
    L = np.shape(p.w)[0]
    idx = _weight_index(tuple(cfg.features), tuple(layer.units for layer in cfg.layers), cfg.n_outputs, L)
    padded = np.concatenate([np.ravel(np.asarray(a, np.float32)) for a in (p.w, p.w_out, p.b, p.b_out)])
    return padded[idx]


def surgery(old: Params, old_cfg: Config, new_cfg: Config, n_layers: int, rng: np.random.Generator) -> Params:
    """Parameters for ``new_cfg`` that keep every weight whose two ends survive the change.

    Units and layers are matched by position, features by name. Weights of new units or
    new connections are freshly initialised; the output layer keeps the rows of units that
    still feed it."""
    fresh = fresh_params(new_cfg.model_copy(update={"weights": None}), n_layers, rng)
    w, b, g, be = (np.array(a, np.float32, copy=True) for a in (fresh.w, fresh.b, fresh.gamma, fresh.beta))
    w_out, b_out = np.array(fresh.w_out, copy=True), np.array(fresh.b_out, copy=True)
    old_w, old_b = np.asarray(old.w), np.asarray(old.b)
    kept_feats = [FEATURES.index(x) for x in new_cfg.features if x in old_cfg.features]
    old_units = [layer.units for layer in old_cfg.layers]
    new_units = [layer.units for layer in new_cfg.layers]
    for j in range(min(len(old_units), len(new_units))):
        rows = kept_feats if j == 0 else list(range(min(old_units[j - 1], new_units[j - 1])))
        cols = list(range(min(old_units[j], new_units[j])))
        w[j][np.ix_(rows, cols)] = old_w[j][np.ix_(rows, cols)]
        b[j, cols] = old_b[j, cols]
        g[j, cols] = np.asarray(old.gamma)[j, cols]
        be[j, cols] = np.asarray(old.beta)[j, cols]
    same_out = old_cfg.n_outputs == new_cfg.n_outputs
    if same_out:
        if len(old_units) == len(new_units):
            rows = kept_feats if not new_units else list(range(min(old_units[-1], new_units[-1])))
            w_out[rows, : new_cfg.n_outputs] = np.asarray(old.w_out)[rows, : new_cfg.n_outputs]
        b_out[:] = np.asarray(old.b_out)
    return Params(w, b, g, be, w_out, b_out)


def new_state(params: Params, n_layers: int, seed: int) -> TrainState:
    params = Params(*(np.asarray(a, np.float32) for a in params))
    norm = Norm(np.zeros((n_layers, D), np.float32), np.ones((n_layers, D), np.float32))
    return TrainState(
        params=params, opt_state=jax.tree.map(np.asarray, _opt_init(params)), norm=norm,
        key=_key(seed),
        epoch=np.int32(0), best=params, best_norm=norm, best_loss=np.float32(np.inf), best_epoch=np.int32(0),
        since_best=np.int32(0), stopped=np.bool_(False), diverged=np.bool_(False),
        grad_norm=np.zeros(n_layers + 1, np.float32),
    )


def _key(seed: int) -> np.ndarray:
    """A threefry key (2,) uint32 made on the host, as jax.random.PRNGKey(seed) would."""
    return np.array([0, seed & 0xFFFFFFFF], np.uint32)


def _opt_init(params: Params):
    """Optimizer states built on the host: optax's init is traced once, abstractly, and
    materialised with NumPy, so no device computation (and no compilation) is needed."""
    # Every initial value is zero (moments, counters); the injected hyperparameters are
    # overwritten before each step.
    shapes = jax.eval_shape(optim.init, params)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


# Batched calls share what selects code: activations, norms, output activation, loss,
# optimizer and the optional work flags (the scheduler groups sessions by ``group_key``), so
# these stay real branches under vmap instead of selects that compute every alternative.
HYPER_AXES = Hyper(
    arch=Arch(feat_mask=0, unit_mask=0, act=None, out_mask=0, batch_norm=None, layer_norm=None),
    opt=OptHyper(*([None] + [0] * (len(OptHyper._fields) - 1))), reg=0,
    task=Task(*[0] * len(Task._fields))._replace(out_act=None, loss=None),
    flags=Flags(shuffle=None, augment=None, dropout=None, small=None))


def _code_key(hyper: Hyper, depth: int) -> tuple:
    a, t = hyper.arch, hyper.task
    return (depth, tuple(np.asarray(a.act).tolist()), bool(a.batch_norm), bool(a.layer_norm),
            int(t.out_act), int(t.loss), bool(hyper.flags.small))


def group_key(hyper: Hyper, depth: int) -> tuple:
    """Sessions with equal keys can be stepped in one batched call."""
    f = hyper.flags
    return _code_key(hyper, depth) + (int(hyper.opt.optimizer), bool(f.shuffle), bool(f.augment), bool(f.dropout))


def frame_key(hyper: Hyper, depth: int) -> tuple:
    """Sessions with equal keys can be drawn in one batched frame call: a frame does not use
    the optimizer or the optional-work flags, so sessions that differ in those share it."""
    return _code_key(hyper, depth)


def stack_hyper(hypers, s: int | None = None) -> Hyper:
    """Stack per-session Hyper into one batched Hyper; the shared parts come from the first
    (all must have the same ``group_key``)."""
    hs = [hypers] * s if s is not None else list(hypers)
    return _shared(jax.tree.map(lambda *a: np.stack(a), *hs), hs[0])


def _shared(stacked: Hyper, h0: Hyper) -> Hyper:
    """A stacked Hyper with the parts a batched call shares (one value for all its sessions,
    ``HYPER_AXES``) taken from its first session."""
    return stacked._replace(
        arch=stacked.arch._replace(act=np.asarray(h0.arch.act), batch_norm=h0.arch.batch_norm,
                                   layer_norm=h0.arch.layer_norm),
        opt=stacked.opt._replace(optimizer=h0.opt.optimizer),
        task=stacked.task._replace(out_act=h0.task.out_act, loss=h0.task.loss),
        flags=h0.flags,
    )


class RowStacker:
    """Sessions' data and settings stacked for a batched call from one flat host buffer per
    dtype and session (``row``, made once per change of a session's data or settings): a
    part of a crowd then costs one ``np.stack`` per dtype and a view per argument, instead
    of a ``np.stack`` of every session's array per argument (~45 of them, ~2,900 arrays for
    64 sessions, every tick: the parts of a crowd change from tick to tick as clients fall
    behind, so stacked parts could seldom be kept; docs/benchmarks.md, tenth session).
    ``stack`` gives the trees that stacking ``data`` and ``stack_hyper`` give, value for value."""

    def __init__(self, data: Data, hyper: Hyper):
        leaves, self.treedef = jax.tree.flatten((data, hyper))
        self.dtypes: list[np.dtype] = []
        sizes: list[int] = []
        self.places: list[tuple[int, int, int, tuple]] = []  # (buffer, offset, size, shape)
        for x in leaves:
            x = np.asarray(x)
            if x.dtype not in self.dtypes:
                self.dtypes.append(x.dtype)
                sizes.append(0)
            b = self.dtypes.index(x.dtype)
            self.places.append((b, sizes[b], x.size, x.shape))
            sizes[b] += x.size
        self.sizes = sizes

    def row(self, data: Data, hyper: Hyper) -> list[np.ndarray]:
        groups: list[list[np.ndarray]] = [[] for _ in self.dtypes]
        for (b, _, _, _), x in zip(self.places, jax.tree.leaves((data, hyper))):
            groups[b].append(np.asarray(x, self.dtypes[b]).ravel())
        return [np.concatenate(g) if g else np.zeros(0, dt) for g, dt in zip(groups, self.dtypes)]

    def stack(self, rows: list[list[np.ndarray]], h0: Hyper) -> tuple[Data, Hyper]:
        """(stacked data, stacked Hyper) of the sessions whose ``row``s these are, in order;
        the shared settings come from ``h0``, the first session's."""
        S = len(rows)
        mats = [np.stack([r[b] for r in rows]) for b in range(len(self.dtypes))]
        leaves = [mats[b][:, off:off + size].reshape((S,) + shape) for b, off, size, shape in self.places]
        data, hyper = jax.tree.unflatten(self.treedef, leaves)
        return data, _shared(hyper, h0)


def bucket(batch_size: int, buckets: tuple[int, ...]) -> int:
    for cap in buckets:
        if batch_size <= cap:
            return cap
    return buckets[-1]


# --- the compiled functions ---------------------------------------------------------------

HIDDEN_LINES = 21  # hidden-space view: grid lines per direction over the input domain
HIDDEN_LINE_POINTS = 50  # points per grid line


def hidden_lines() -> np.ndarray:
    """(2 * HIDDEN_LINES, HIDDEN_LINE_POINTS, 2): horizontal lines (x2 fixed) bottom to top,
    then vertical lines (x1 fixed) left to right, over [-6, 6]^2."""
    t = np.linspace(-6.0, 6.0, HIDDEN_LINES, dtype=np.float32)
    s = np.linspace(-6.0, 6.0, HIDDEN_LINE_POINTS, dtype=np.float32)
    horizontal = np.stack(np.broadcast_arrays(s[None, :], t[:, None]), -1)
    vertical = np.stack(np.broadcast_arrays(t[:, None], s[None, :]), -1)
    return np.concatenate([horizontal, vertical])


def hidden_activations(params: Params, norm: Norm, x: jax.Array, arch: Arch, depth, *, n_layers: int) -> jax.Array:
    """Every hidden layer's activations (L, n, D) for raw points (n, 2), inference mode; one
    traced program for every depth (layers past ``depth`` are zeros)."""
    _, hidden, _ = forward(params, padded_features(x), arch, depth, norm=norm)
    return jnp.stack(hidden) if n_layers else jnp.zeros((0, x.shape[0], D), jnp.float32)



class Packed(NamedTuple):
    """A ``TrainState`` packed by ``StateCodec`` (see there), leading axes kept."""

    f: object  # (..., n_float) float32
    u: object  # (..., n_uint) uint32


class StateCodec:
    """A ``TrainState`` as two flat buffers: float32 leaves in one, int32/uint32/bool leaves
    (bit-exact) in a uint32 one. The compiled training program returns the state in this
    form: each output buffer of an XLA call costs ~6 us, and a state is 65 of them
    (~0.4 ms a call, more than a small network's epoch), against two. The host side packs
    and unpacks with NumPy views; leading (batch) axes are kept."""

    def __init__(self, template: TrainState):
        leaves, self.treedef = jax.tree.flatten(template)
        self.fields: list[tuple[bool, int, int, tuple, np.dtype]] = []  # (float?, offset, size, shape, dtype)
        off = {True: 0, False: 0}
        for a in leaves:
            a = np.asarray(a)
            is_f = a.dtype == np.float32
            assert is_f or a.dtype in (np.int32, np.uint32, np.bool_), a.dtype
            self.fields.append((is_f, off[is_f], a.size, a.shape, a.dtype))
            off[is_f] += a.size
        self.n_float, self.n_uint = off[True], off[False]
        before = TrainState._fields[: TrainState._fields.index("epoch")]
        self._epoch_field = self.fields[sum(len(jax.tree.leaves(getattr(template, f))) for f in before)]
        # Where (w, w_out, b, b_out) laid end to end, ``flat_weights``' layout, sit in the
        # float buffer: the params are the state's first leaves, in Params' field order.
        where = dict(zip(Params._fields, self.fields))
        self.params_index = np.concatenate([np.arange(where[k][1], where[k][1] + where[k][2])
                                            for k in ("w", "w_out", "b", "b_out")])

    def epoch(self, packed: "Packed") -> int:
        """Epochs trained, read from a packed state without unpacking the rest."""
        _, off, _, _, _ = self._epoch_field
        return int(np.asarray(packed.u)[off].view(np.int32))

    def _lead(self, leaves) -> tuple:
        first = np.shape(leaves[0])
        return first[: len(first) - len(self.fields[0][3])]

    def pack_host(self, state) -> tuple[np.ndarray, np.ndarray]:
        leaves = jax.tree.leaves(state)
        lead = self._lead(leaves)
        fs, us = [], []
        for (is_f, _, size, _, dtype), a in zip(self.fields, leaves):
            a = np.asarray(a).reshape(lead + (size,))
            if is_f:
                fs.append(a.astype(np.float32, copy=False))
            else:
                us.append(a.view(np.uint32) if dtype == np.int32 else a.astype(np.uint32, copy=False))
        return np.concatenate(fs, -1), np.concatenate(us, -1) if us else np.zeros(lead + (0,), np.uint32)

    def unpack_host(self, f, u) -> TrainState:
        f, u = np.asarray(f), np.asarray(u)
        lead = f.shape[:-1]
        out = []
        for is_f, off, size, shape, dtype in self.fields:
            a = (f if is_f else u)[..., off:off + size].reshape(lead + shape)
            if dtype == np.bool_:
                a = a != 0
            elif dtype == np.int32:
                a = a.view(np.int32)
            out.append(a)
        return jax.tree.unflatten(self.treedef, out)

    def pack(self, state) -> tuple[jax.Array, jax.Array]:
        """In a traced program (one session)."""
        fs, us = [], []
        for (is_f, _, _, _, dtype), a in zip(self.fields, jax.tree.leaves(state)):
            a = jnp.ravel(a)
            if is_f:
                fs.append(a.astype(jnp.float32))
            else:
                us.append(jax.lax.bitcast_convert_type(a, jnp.uint32) if dtype == np.int32 else a.astype(jnp.uint32))
        return jnp.concatenate(fs), jnp.concatenate(us) if us else jnp.zeros((0,), jnp.uint32)

    def unpack(self, f, u) -> TrainState:
        """In a traced program (one session)."""
        out = []
        for is_f, off, size, shape, dtype in self.fields:
            a = jax.lax.slice_in_dim(f if is_f else u, off, off + size).reshape(shape)
            if dtype == np.bool_:
                a = a != 0
            elif dtype == np.int32:
                a = jax.lax.bitcast_convert_type(a, jnp.int32)
            out.append(a)
        return jax.tree.unflatten(self.treedef, out)


# --- the narrow programs -------------------------------------------------------------------
#
# Every program pads a network to L = 6 layers of D = 8 units. A network of at most
# NARROW_LAYERS layers of at most NARROW units, whose features are among the first NARROW
# (x1, x2, x1_sq, x2_sq) - TensorFlow Playground's default [4, 2] on x1, x2 among them -
# trains alone on programs compiled for that smaller padding instead: the same code with
# (3, 4, 4) layers. Its minibatch update does a quarter of the padded products and visits
# half the layer slots; net (a) of the benchmark trained ~1.6x (width) and ~1.2x more
# (layers) as many epochs a second (docs/benchmarks.md, ninth session). ``Run`` keeps such a
# session's state in the narrow form while it trains alone and widens it (host NumPy, one
# gather) when it joins a batched call; everything outside the hot calls sees the wide state
# and wide metrics rows.

NARROW = 4
NARROW_LAYERS = 3


def narrow_params(p: Params, width: int = NARROW, layers: int = NARROW_LAYERS) -> Params:
    """One (unbatched) ``Params``' first ``layers`` layers and ``width`` inputs and units."""
    return Params(w=p.w[:layers, :width, :width], b=p.b[:layers, :width], gamma=p.gamma[:layers, :width],
                  beta=p.beta[:layers, :width], w_out=p.w_out[:width], b_out=p.b_out)


def _narrow_norm(n: Norm, width: int, layers: int) -> Norm:
    return Norm(n.mean[:layers, :width], n.var[:layers, :width])


def narrow_state(s: TrainState, width: int = NARROW, layers: int = NARROW_LAYERS) -> TrainState:
    """The part of one (unbatched) state a narrow program trains: ``narrow_params`` of the
    weights, the optimizer moments and the early-stopping copy, the norms' statistics, and
    the gradient norms of the kept layers and of the output. Only valid for networks that fit."""
    in_opt = lambda x: narrow_params(x, width, layers) if isinstance(x, Params) else x  # noqa: E731
    g = np.asarray(s.grad_norm)
    return s._replace(
        params=narrow_params(s.params, width, layers),
        opt_state=jax.tree.map(in_opt, s.opt_state, is_leaf=lambda x: isinstance(x, Params)),
        norm=_narrow_norm(s.norm, width, layers), best=narrow_params(s.best, width, layers),
        best_norm=_narrow_norm(s.best_norm, width, layers), grad_norm=np.concatenate([g[:layers], g[-1:]]))


def narrow_hyper(h: Hyper, width: int = NARROW, layers: int = NARROW_LAYERS) -> Hyper:
    """One (unbatched) ``Hyper`` for the narrow programs."""
    a = h.arch
    return h._replace(arch=a._replace(feat_mask=a.feat_mask[:width], unit_mask=a.unit_mask[:layers, :width],
                                      act=a.act[:layers]))


def fits_narrow(cfg: Config, layers: int = NARROW_LAYERS) -> bool:
    """Whether ``cfg``'s network fits the narrow programs: at most ``layers`` layers of at most
    NARROW units, features among the first NARROW, and no batch/layer norm or dropout (those
    train with the full minibatch loop, which has no narrow program)."""
    return (len(cfg.layers) <= layers and all(layer.units <= NARROW for layer in cfg.layers)
            and all(FEATURES.index(x) < NARROW for x in cfg.features)
            and not (cfg.batch_norm or cfg.layer_norm or cfg.dropout > 0))


class Narrowing:
    """How a state and a metrics row of the narrow programs sit in the wide ones.
    ``index[i]``: the wide float position of narrow float ``i``; the integer buffer is laid
    out the same in both forms. ``rows``: the wide metrics column of each narrow one."""

    def __init__(self, wide: StateCodec, template: TrainState, layers: int):
        self.layers = layers
        f, u = wide.pack_host(template)
        ids = wide.unpack_host(np.arange(f.shape[-1], dtype=np.float32), u)  # exact below 2**24
        self.codec = StateCodec(narrow_state(ids, NARROW, layers))
        fn, un = self.codec.pack_host(narrow_state(ids, NARROW, layers))
        ints = lambda c: [fld[1:] for fld in c.fields if not fld[0]]  # noqa: E731
        assert ints(self.codec) == ints(wide) and np.array_equal(un, u), "integer leaves must not depend on width"
        self.index = fn.astype(np.int64)
        self.inverse = np.full(f.shape[-1], -1, np.int64)
        self.inverse[self.index] = np.arange(len(self.index))
        wide_layers = np.shape(template.params.w)[0]
        wide_names = metric_names(wide_layers)

        def column(name: str) -> int:  # the output's gradient norm comes after the hidden layers'
            out = name.startswith("grad_norm_") and int(name.removeprefix("grad_norm_")) == layers
            return wide_names.index(f"grad_norm_{wide_layers}" if out else name)

        self.rows = np.array([column(n) for n in metric_names(layers)])
        self.n_wide_rows = len(wide_names)
        # gradient norms of layer slots the narrow programs lack: 0 where a row was measured
        kept = set(self.rows.tolist())
        self.absent = np.array([i for i in range(len(wide_names)) if i not in kept], np.int64)

    def narrow(self, packed: Packed) -> Packed:
        return Packed(np.asarray(packed.f)[..., self.index], np.asarray(packed.u))

    def widen(self, packed: Packed, base: np.ndarray) -> Packed:
        """The narrow ``packed`` written into a copy of the wide float buffer ``base`` (which
        holds the padded slots' values: they are not trained while narrow)."""
        f = np.array(base, np.float32, copy=True)
        f[..., self.index] = np.asarray(packed.f)
        return Packed(f, np.asarray(packed.u))

    def wide_rows(self, rows: np.ndarray) -> np.ndarray:
        """Metrics rows (..., narrow M) as the wide programs give them (NaN rows stay NaN)."""
        rows = np.asarray(rows)
        out = np.full(rows.shape[:-1] + (self.n_wide_rows,), np.nan, np.float32)
        out[..., self.rows] = rows
        out[..., self.absent] = np.where(np.isnan(rows[..., :1]), np.nan, 0.0)
        return out


def _train_packed(f, u, data, hyper, n_epochs, depth, every, *, codec: StateCodec, **kw):
    state, hist, ok = train_chunk(codec.unpack(f, u), data, hyper, n_epochs, depth, every, **kw)
    return codec.pack(state) + (hist, ok)


def _train_draw_packed(f, u, data, hyper, n_epochs, depth, every, draw, with_metrics, *, codec: StateCodec, **kw):
    state, *rest = train_and_draw(codec.unpack(f, u), data, hyper, n_epochs, depth, every, draw, with_metrics, **kw)
    return codec.pack(state) + tuple(rest)


def _frame_packed(f, u, data, hyper, depth, with_metrics, *, codec: StateCodec, n_layers: int, width: int = D):
    return frame(codec.unpack(f, u), data, hyper, depth, with_metrics, n_layers=n_layers, width=width)


def _state_out(args):
    return jax.tree.structure((0, 0, 0, 0))


def _triple_out(args):
    return jax.tree.structure((0, 0, 0))


def _drawn_out(args):
    return jax.tree.structure((0,) * 7)


def _source_key() -> str:
    """Changes whenever the engine's code, JAX or the backend changes."""
    h = hashlib.sha256(f"{jax.__version__}-{jax.default_backend()}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _dtype(x) -> str:
    """dtype of an argument without copying a device array to the host."""
    return x.dtype.str if hasattr(x, "dtype") else np.asarray(x).dtype.str


def _signature(leaves) -> tuple:
    """(shape, dtype) per argument, which picks the program. Arrays and NumPy scalars have
    both as attributes: reading them costs ~0.25 us a leaf, np.shape and np.asarray ~1.5 us
    (a single session's call has 111 leaves, and a live session makes two calls a frame)."""
    try:
        return tuple([(x.shape, x.dtype) for x in leaves])
    except AttributeError:  # a Python scalar among them
        return tuple((np.shape(x), np.dtype(_dtype(x))) for x in leaves)


@lru_cache(maxsize=4096)
def _device_scalar(dtype: str, value) -> jax.Array:
    """A scalar argument on the device, put there once (a put costs ~70 us, a call ~1 ms)."""
    return jax.device_put(np.asarray(value, dtype), jax.devices()[0])


def _pack_layout(leaves) -> tuple[list[np.dtype], list[int], list[tuple[int, int, tuple]]]:
    """Buffer dtypes (in order of first use), their sizes, and per argument (buffer, offset,
    shape): how ``_pack`` lays the arguments out and ``_unpack`` finds them."""
    dtypes: list[np.dtype] = []
    sizes: list[int] = []
    layout = []
    for x in leaves:
        dt, shape = np.dtype(_dtype(x)), tuple(np.shape(x))
        if dt not in dtypes:
            dtypes.append(dt)
            sizes.append(0)
        b = dtypes.index(dt)
        layout.append((b, sizes[b], shape))
        sizes[b] += int(np.prod(shape, dtype=np.int64))
    return dtypes, sizes, layout


def _pack(leaves, layout) -> list[np.ndarray]:
    dtypes, _, places = layout
    groups: list[list[np.ndarray]] = [[] for _ in dtypes]
    for x, (b, _, _) in zip(leaves, places):
        groups[b].append(np.asarray(x).ravel())
    return [np.concatenate(g).astype(dt, copy=False) for g, dt in zip(groups, dtypes)]


def _unpack(buffers, layout) -> list:
    """Inside the traced program: static slices of the buffers, free in XLA."""
    return [buffers[b][off:off + int(np.prod(shape, dtype=np.int64))].reshape(shape) for b, off, shape in layout[2]]


_programs: dict[tuple, tuple] = {}  # (cache dir, name, signature) -> (callable, output treedef)
_program_locks: dict[tuple, threading.Lock] = {}
_programs_lock = threading.Lock()


class _Exportable:
    """A jitted function whose traced program is exported once (``jax.export``) and stored
    beside the compilation cache. Later processes load it instead of tracing the padded
    network again (tracing is most of a warm start); the executable itself then comes from
    the persistent compilation cache. Without a cache directory it is a plain jit call.

    Loaded programs are shared by every ``Engine`` of the process (``_programs``), so a
    server can start loading them in a thread before its web stack is imported."""

    def __init__(self, name: str, fn, out_structure, *, packed: bool = False, options: dict | None = None):
        self.name, self.fn, self.out_structure, self.options = name, fn, out_structure, options
        # compiler options go on the outermost jit only
        self._direct = jax.jit(fn, compiler_options=options) if options else fn
        # Packed: the program takes one flat buffer per dtype and slices the arguments out of
        # it. For the batched calls, whose ~110 arguments are stacked on the host each tick:
        # putting them on the device one by one costs ~70 us each (~8 ms a call), a few
        # buffers ~0.3 ms.
        self.packed = packed
        self._calls: dict[tuple, tuple] = {}  # signature -> (callable, output treedef, layout)
        # Repeated calls of one session: (id(data), id(hyper)) -> what ``_repeat`` needs.
        self._repeats: dict[tuple, tuple] = {}

    REPEATS = 1024  # sessions whose flattened inputs are kept (each holds its device inputs)

    def __call__(self, *args):
        directory = jax.config.jax_compilation_cache_dir
        if not directory:
            return self._direct(*args)
        found = self._repeat(args)
        if found is not None:
            return found
        leaves, treedef = jax.tree.flatten(args)
        sig = (treedef, _signature(leaves))
        found = self._calls.get(sig)
        if found is None:
            found = self._calls[sig] = self._shared(sig, leaves, treedef, args, directory)
        call, out, layout = found
        if layout is not None:
            # The host buffers go to the call as they are: jit moves them itself. A
            # ``device_put`` first cost ~0.33 ms more of the calling thread per batched call of
            # 32 sessions right after another call ran (0.58 against 0.25 ms).
            return jax.tree.unflatten(out, call(*_pack(leaves, layout)))
        # Host arrays and device arrays must look alike to the exported call (it has fixed
        # shardings): every argument goes on the device committed, as its outputs are. Only
        # the ones not already there are put, in one call (a put per leaf costs more than a
        # small network's frame).
        host = []
        for i, x in enumerate(leaves):
            if isinstance(x, jax.Array) and x.committed:
                continue
            if isinstance(x, np.generic):  # epochs, depth, flags: the same few values again and again
                leaves[i] = _device_scalar(x.dtype.str, x.item())
            else:
                host.append(i)
        if host:
            put = jax.device_put([leaves[i] for i in host], jax.devices()[0])
            for i, x in zip(host, put):
                leaves[i] = x
        self._remember(args, leaves, call, out, moved=len(host) + sum(isinstance(x, np.generic) for x in args[4:]))
        return jax.tree.unflatten(out, call(*leaves))

    # A session's calls differ only in the state and a few scalars: its data and settings are
    # the same device arrays (``Run.device_inputs``) until they change. Flattening and
    # checking those ~45 arguments on every call cost ~0.15 ms of a 1-epoch call's ~0.5
    # (docs/benchmarks.md, eighth session); a call that repeats them reuses their leaves.

    @staticmethod
    def _head(args) -> tuple | None:
        """(state buffers' signature, scalars' dtypes) when ``args`` is ``(f, u, data, hyper,
        *NumPy scalars)``, the form of a session's training and frame calls; else None."""
        if len(args) < 4 or not all(isinstance(x, (jax.Array, np.ndarray)) for x in args[:2]):
            return None
        tail = args[4:]
        if not all(isinstance(x, np.generic) for x in tail):
            return None
        return (args[0].shape, args[0].dtype, args[1].shape, args[1].dtype, tuple(x.dtype for x in tail))

    def _remember(self, args, leaves, call, out, moved: int) -> None:
        """Keep the flattened ``data`` and ``hyper`` of a call that passed them on the device
        already (host ones may change in place; they are put on the device every call)."""
        head = self._head(args)
        if head is None:
            return
        n_mid = len(leaves) - 2 - len(args[4:])
        mid = leaves[2:2 + n_mid]
        # ``moved``: arguments put on the device or made device scalars by this call; the
        # state buffers and the trailing scalars may be among them, data and hyper may not
        state_moved = sum(not (isinstance(x, jax.Array) and x.committed) for x in args[:2])
        if moved > state_moved + len(args[4:]):
            return
        if len(self._repeats) >= self.REPEATS:
            self._repeats.clear()
        # the entry holds data and hyper themselves, so their ids stay theirs while it lives
        self._repeats[(id(args[2]), id(args[3]))] = (args[2], args[3], head, mid, call, out)

    def _repeat(self, args):
        if len(args) < 4:
            return None
        hit = self._repeats.get((id(args[2]), id(args[3])))
        if hit is None or hit[0] is not args[2] or hit[1] is not args[3] or self._head(args) != hit[2]:
            return None
        _, _, _, mid, call, out = hit
        f, u = args[0], args[1]
        if not (isinstance(f, jax.Array) and f.committed and isinstance(u, jax.Array) and u.committed):
            f, u = jax.device_put([f, u], jax.devices()[0])
        scalars = [_device_scalar(x.dtype.str, x.item()) for x in args[4:]]
        return jax.tree.unflatten(out, call(f, u, *mid, *scalars))

    def _shared(self, sig, leaves, treedef, args, directory: str) -> tuple:
        """The process-wide program for this signature, loaded (or compiled) once. Threads
        that ask for one being loaded wait for it; loaded ones never wait for another."""
        key = (directory, self.name, sig)
        with _programs_lock:
            lock = _program_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in _programs:
                _programs[key] = self._prepare(leaves, treedef, args, directory)
            return _programs[key]

    def stored(self, *args) -> bool:
        """Whether this call's program is exported already (so it loads, not compiles)."""
        directory = jax.config.jax_compilation_cache_dir
        if not directory:
            return False
        leaves, treedef = jax.tree.flatten(args)
        return self._path(Path(directory), leaves, treedef).exists()

    def _prepare(self, leaves, treedef, args, directory: str) -> tuple:
        layout = _pack_layout(leaves) if self.packed else None
        fn = self.fn

        def flat(*xs):
            if layout is not None:
                xs = _unpack(xs, layout)
            return jax.tree.leaves(fn(*jax.tree.unflatten(treedef, xs)))

        if layout is not None:
            specs = [jax.ShapeDtypeStruct((size,), dt) for dt, size in zip(*layout[:2])]
        else:
            specs = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in leaves]
        try:
            call = self._load(Path(directory), leaves, treedef, flat, specs)
        except (ImportError, OSError, NotImplementedError) as err:  # export unavailable: trace as usual
            log.warning("exported %s unavailable (%s); using plain jit", self.name, err)
            call = jax.jit(flat, compiler_options=self.options)
        return call, self.out_structure(args), layout

    def _path(self, directory: Path, leaves, treedef) -> Path:
        sig = hashlib.sha256(repr([(np.shape(x), str(np.asarray(x).dtype)) for x in leaves]).encode()
                             + str(treedef).encode()).hexdigest()[:12]
        packed = "-packed" if self.packed else ""
        return directory / "exported" / f"{self.name}{packed}-{_source_key()}-{sig}.bin"

    def _load(self, directory: Path, leaves, treedef, flat, specs):
        path = self._path(directory, leaves, treedef)
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except (OSError, ValueError):
            exported = jax.export.export(jax.jit(flat))(*specs)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(exported.serialize())
            tmp.replace(path)
        return jax.jit(exported.call, compiler_options=self.options)


@dataclass
class Engine:
    """Compiled training and frame functions for networks up to ``limits``."""

    limits: Limits = field(default_factory=Limits)
    chunk: int = 32  # epochs per compiled call (fewer run when asked)

    def __post_init__(self) -> None:
        _listen()
        self.n_layers = self.limits.max_layers
        self.n_max = 1 << max(int(np.ceil(np.log2(self.limits.max_points))), 4)
        self.buckets = tuple(sorted({min(16, self.n_max), min(128, self.n_max), self.n_max}))
        self.metric_names = metric_names(self.n_layers)
        static = f"L{self.n_layers}-N{self.n_max}-E{self.chunk}"
        template = new_state(fresh_params(self.default_config(), self.n_layers, np.random.default_rng(0)),
                             self.n_layers, 0)
        self.codec = StateCodec(template)
        self.narrow_layers = min(NARROW_LAYERS, self.n_layers)
        self.narrowing = Narrowing(self.codec, template, self.narrow_layers)
        train = partial(_train_packed, codec=self.codec, n_layers=self.n_layers, chunk=self.chunk)
        frame_ = partial(_frame_packed, codec=self.codec, n_layers=self.n_layers)
        # One session's training: per bucket, a program with the lean minibatch loop only and
        # one with the batch/layer norm and dropout loop only. The lean one, what the default
        # settings need before a server reports ready, loads in 0.8 s instead of the 1.5 s of
        # one holding both loops (docs/benchmarks.md, eighth session). Batched programs keep
        # both loops: a group's sessions share the flags that pick one.
        self._train = {
            (cap, full): _Exportable(f"train-{static}-B{cap}-{'full' if full else 'lean'}",
                                     jax.jit(partial(train, bcap=cap, loop="full" if full else "lean")), _state_out)
            for cap in self.buckets for full in (False, True)
        }
        self._frame = _Exportable(f"frame-{static}", jax.jit(frame_), _triple_out)
        # The narrow programs (see ``fits_narrow``): the lean loop only, and each draws the
        # frame of the state it trained when asked (``train_and_draw``), so that a session
        # training alone makes one call a tick; with 0 epochs it only draws.
        narrow, tag = self.narrowing.codec, f"W{NARROW}L{self.narrow_layers}"
        self._train_narrow = {
            cap: _Exportable(f"train_draw-{static}-{tag}-B{cap}-lean", jax.jit(partial(
                _train_draw_packed, codec=narrow, n_layers=self.narrow_layers, chunk=self.chunk, bcap=cap,
                loop="lean", width=NARROW)), _drawn_out)
            for cap in self.buckets
        }
        self._train_many = {
            cap: _Exportable(f"train_many-{static}-B{cap}", jax.jit(jax.vmap(
                partial(train, bcap=cap, batched=True),
                in_axes=(0, 0, 0, HYPER_AXES, None, None, None))), _state_out, packed=True, options=BATCHED_TRAINING)
            for cap in self.buckets
        }
        # A crowd of narrow networks (TF Playground's default among them: a lecture hall that
        # opened one link) trains and draws in one batched narrow call per part, instead of a
        # wide training call and a wide frame call: 64 sessions of net (a), 1 epoch and a
        # frame, 15 ms instead of 27 (docs/benchmarks.md, eleventh session).
        self._train_draw_many = {
            cap: _Exportable(f"train_draw_many-{static}-{tag}-B{cap}", jax.jit(jax.vmap(partial(
                _train_draw_packed, codec=narrow, n_layers=self.narrow_layers, chunk=self.chunk, bcap=cap,
                loop="lean", width=NARROW, batched=True),
                in_axes=(0, 0, 0, HYPER_AXES, None, None, None, None, None))), _drawn_out, packed=True,
                options=BATCHED_TRAINING)
            for cap in self.buckets
        }
        self._frame_many = _Exportable(f"frame_many-{static}", jax.jit(jax.vmap(
            frame_, in_axes=(0, 0, 0, HYPER_AXES, None, None))), _triple_out, packed=True)
        # the hidden-space view's probe: the grid lines and up to n_max data points at once
        self.n_probe = self.n_max + 2 * HIDDEN_LINES * HIDDEN_LINE_POINTS
        self._hidden = _Exportable(f"hidden-{static}", jax.jit(partial(hidden_activations, n_layers=self.n_layers)),
                                   lambda args: jax.tree.structure(0))

    def bucket(self, batch_size: int) -> int:
        return bucket(batch_size, self.buckets)

    def default_config(self) -> Config:
        """The default settings, shrunk to this engine's limits (an operator's
        NNPLAY_MAX_LAYERS=1 must not meet the default two hidden layers)."""
        return Config(**fitting_defaults(self.limits))

    def _packed(self, state) -> Packed:
        return state if isinstance(state, Packed) else Packed(*self.codec.pack_host(state))

    def _like(self, given, f, u):
        """The new state in the form the caller gave: ``Packed`` stays packed (on the device);
        a ``TrainState`` comes back as one with NumPy leaves."""
        return Packed(f, u) if isinstance(given, Packed) else self.codec.unpack_host(f, u)

    def train(self, state, data, hyper, n_epochs: int, depth: int, batch_size: int, every: int = 1,
              full: bool | None = None, narrow: bool = False):
        """Returns (new state, history (chunk, M), trained (chunk,)). ``state`` is a
        ``TrainState`` or, cheaper, a ``Packed`` one (what ``Run`` keeps). ``full``: whether
        the settings need the norm and dropout loop (``needs_full_loop``; read from ``hyper``
        when not given, a copy to the host when ``hyper`` is on the device). ``narrow``: train
        with the narrow programs; ``state`` is then a narrow ``Packed`` state
        (``narrowing.narrow``) and ``hyper`` a narrow one (``narrow_hyper``)."""
        if narrow:
            assert not full, "the narrow programs hold the lean loop only"
            state, hist, ok, _ = self.train_and_draw(state, data, hyper, n_epochs, depth, batch_size, every,
                                                     draw=False)
            return state, hist, ok
        full = needs_full_loop(hyper) if full is None else full
        f, u, hist, ok = self._train[(self.bucket(batch_size), full)](
            *self._packed(state), data, hyper, np.int32(n_epochs), np.int32(depth), np.int32(max(every, 1)))
        return self._like(state, f, u), hist, ok

    def train_and_draw(self, state, data, hyper, n_epochs: int, depth: int, batch_size: int, every: int = 1,
                       draw: bool = True, with_metrics: bool = False):
        """The narrow programs' one call: train ``n_epochs`` (0: none), then draw the frame.
        ``state`` is a narrow ``Packed`` state (``narrowing.narrow``), ``hyper`` a narrow one
        (``narrow_hyper``). Returns (state, history, trained, (output grids, neuron grids
        (NARROW_LAYERS, NARROW, G, G), metrics row)); the rows have the narrow programs'
        gradient norms (``narrowing.wide_rows`` widens them)."""
        assert isinstance(state, Packed), "a narrow call takes a narrow packed state"
        f, u, hist, ok, out, neurons, row = self._train_narrow[self.bucket(batch_size)](
            *state, data, hyper, np.int32(n_epochs), np.int32(depth), np.int32(max(every, 1)), np.bool_(draw),
            np.bool_(with_metrics))
        return Packed(f, u), hist, ok, (out, neurons, row)

    def frame(self, state, data, hyper, depth: int, with_metrics: bool = True):
        """(output grids, neuron grids, metrics row); the row is NaN without ``with_metrics``."""
        return self._frame(*self._packed(state), data, hyper, np.int32(depth), np.bool_(with_metrics))

    def train_many(self, states, datas, hypers, n_epochs: int, depth: int, cap: int, every: int):
        """Step a stack of sessions (leading axis) that share depth, activations (``hypers``'
        ``arch.act`` is one (L,) array), batch bucket, epoch count and measuring interval."""
        f, u, hist, ok = self._train_many[cap](*self._packed(states), datas, hypers, np.int32(n_epochs),
                                               np.int32(depth), np.int32(every))
        return self._like(states, f, u), hist, ok

    def train_draw_many(self, states: Packed, datas, hypers, n_epochs: int, depth: int, cap: int, every: int,
                        with_metrics: bool = False):
        """``train_and_draw`` for a stack of narrow sessions (leading axis) that share what
        ``train_many``'s share; it always draws. ``states``: narrow ``Packed`` states stacked
        (host arrays), ``hypers``: narrow hypers stacked (``stack_hyper``). Returns (states,
        history, trained, output grids, neuron grids (S, NARROW_LAYERS, NARROW, G, G), rows),
        the rows with the narrow programs' columns (``narrowing.wide_rows`` widens them)."""
        f, u, hist, ok, out, neurons, rows = self._train_draw_many[cap](
            *states, datas, hypers, np.int32(n_epochs), np.int32(depth), np.int32(max(every, 1)), np.bool_(True),
            np.bool_(with_metrics))
        return Packed(f, u), hist, ok, (out, neurons, rows)

    def wide_neurons(self, small) -> np.ndarray:
        """Narrow neuron grids (..., NARROW_LAYERS, NARROW, G, G) in the wide programs' shape
        (..., L, D, G, G): absent units read 0, quantised to 128, as the wide programs draw them."""
        small = np.asarray(small)
        lead = small.shape[:-4]
        neurons = np.full(lead + (self.n_layers, D) + small.shape[-2:], 128, np.uint8)
        neurons[..., :small.shape[-4], :small.shape[-3], :, :] = small
        return neurons

    def frame_many(self, states, datas, hypers, depth: int, with_metrics: bool = True):
        return self._frame_many(*self._packed(states), datas, hypers, np.int32(depth), np.bool_(with_metrics))

    def hidden(self, state, hyper, x: np.ndarray, depth: int):
        """Hidden activations (L, n_probe, D) of ``x`` (n_probe, 2) with the state's weights."""
        return self._hidden(state.params, state.norm, np.asarray(x, np.float32), hyper.arch, np.int32(depth))

    def _singles(self, run: "Run") -> list[tuple[str, "_Exportable", tuple]]:
        """Each single-session program with arguments shaped as the server's calls are."""
        common = self.codec.pack_host(run.state) + (run.data, run.hyper)
        calls = [(f"train-B{cap}-{'full' if full else 'lean'}", self._train[(cap, full)],
                  common + (np.int32(0), np.int32(0), np.int32(1)))
                 for cap in self.buckets for full in (False, True)]
        calls.append(("frame", self._frame, common + (np.int32(0), np.bool_(True))))
        narrow = tuple(self.narrowing.narrow(Packed(*common[:2]))) + (
            run.data, narrow_hyper(run.hyper, NARROW, self.narrow_layers))
        calls += [(f"train-narrow-B{cap}", self._train_narrow[cap],
                   narrow + (np.int32(0), np.int32(0), np.int32(1), np.bool_(True), np.bool_(True)))
                  for cap in self.buckets]
        calls.append(("hidden", self._hidden, (run.state.params, run.state.norm,
                                                np.zeros((self.n_probe, 2), np.float32), run.hyper.arch, np.int32(0))))
        return calls

    def _load_side_by_side(self, calls, background: bool = False) -> None:
        # Each program is its own exported function: loading (or compiling) them side by
        # side overlaps XLA's native work (it releases the GIL). ``background``: one at a
        # time, so that sessions training meanwhile keep their frame rate (see ``warmup``).
        with ThreadPoolExecutor(1 if background else max(len(calls), 1), thread_name_prefix="nnplay-warmup") as pool:
            for result in pool.map(lambda c: jax.block_until_ready(c[1](*c[2])), calls):
                del result

    def warmup_first(self) -> bool:
        """Load what a new session with default settings needs first: the training program
        of its batch bucket (the narrow one, which draws the frames too). Returns whether every other single-session
        program is exported already, so that loading it (about a second each) is all that
        is left: a server may then report ready and load the rest right after."""
        run = Run(self, self.default_config())
        cap = self.bucket(self.default_config().batch_size)
        if run.narrow:
            first = {f"train-narrow-B{cap}"}  # it draws the frames too
        else:
            first = {f"train-B{cap}-{'full' if run.full_loop else 'lean'}", "frame"}
        calls = self._singles(run)
        self._load_side_by_side([c for c in calls if c[0] in first])
        return all(exp.stored(*args) for name, exp, args in calls if name not in first)

    def warmup(self, *, batched_sizes: tuple[int, ...] = (), singles: bool = True, background: bool = False) -> None:
        """Compile every function this engine will call (all buckets), so that no setting
        change later triggers a compilation. Programs loaded already cost nothing.
        ``background``: a server that serves already loads them one at a time. Ten loads side
        by side right after it reported ready took one session from 32 to 27-28 frames/s
        over the first seconds; a lower CPU priority for the loading threads was worse (25:
        a thread that holds the GIL then waits for the CPU while the scheduler waits for the
        GIL). See docs/benchmarks.md, ninth session."""
        run = Run(self, self.default_config())
        if singles:
            self._load_side_by_side(self._singles(run), background)
        for s in batched_sizes:
            stack = lambda t: jax.tree.map(lambda a: np.stack([a] * s), t)  # noqa: E731
            st, da, hy = stack(run.state), stack(run.data), stack_hyper(run.hyper, s)
            # side by side, as the single-session programs: a cold batched training program
            # compiles for ~2.5 minutes here
            calls = [(f"train_many-B{cap}", lambda cap=cap: self.train_many(st, da, hy, 0, 0, cap, 1), ())
                     for cap in self.buckets]
            calls.append(("frame_many", lambda: self.frame_many(st, da, hy, 0), ()))
            nst = self.narrowing.narrow(Packed(*self.codec.pack_host(st)))
            nhy = stack_hyper(narrow_hyper(run.hyper, NARROW, self.narrow_layers), s)
            calls += [(f"train_draw_many-B{cap}", lambda cap=cap: self.train_draw_many(nst, da, nhy, 0, 0, cap, 1), ())
                      for cap in self.buckets]
            self._load_side_by_side(calls, background)


class Run:
    """One training run whose settings can change while it trains."""

    def __init__(self, engine: Engine, cfg: Config, *, split: datasets.Split | None = None):
        self.engine = engine
        self.cfg = cfg
        self.split = split or datasets.split(cfg)
        self.data = pad_points(engine.n_max, self.split)
        self.hyper = hyper_from_config(cfg, self.split, engine.n_layers)
        self._rng = np.random.default_rng(cfg.seed)
        self._state: TrainState | None = None
        self._packed: Packed | None = None
        # ``_packed`` in the narrow form (``Engine.narrowing``), and the wide float buffer it
        # was cut from (the padded slots' values, for widening it again)
        self._narrowed = False
        self._base: np.ndarray | None = None
        self.state = new_state(fresh_params(cfg, engine.n_layers, self._rng), engine.n_layers, cfg.seed)
        self.history: list[np.ndarray] = []
        self._device: tuple | None = None  # (data, hyper) on the device, and what they copy
        self._device_narrow: tuple | None = None  # the same with the narrow hyper
        self._narrow_hyper: tuple | None = None  # (hyper, its narrow form)
        self._keys: tuple | None = None  # (cfg, hyper, what ``keys`` gives for them)

    def device_inputs(self, narrow: bool = False) -> tuple[Data, Hyper]:
        """``data`` and ``hyper`` on the device, copied once per change of either (they stay
        NumPy for batching): putting ~60 small arrays on the device costs ~0.8 ms a call.
        ``narrow``: with the hyper of the narrow programs."""
        held = self._device_narrow if narrow else self._device
        if held is None or held[0] is not self.data or held[1] is not self.hyper:
            hyper = self.narrow_hyper if narrow else self.hyper
            held = (self.data, self.hyper, jax.device_put((self.data, hyper), jax.devices()[0]))
            if narrow:
                self._device_narrow = held
            else:
                self._device = held
        return held[2]

    @property
    def narrow_hyper(self) -> Hyper:
        """``hyper`` for the narrow programs, made once per ``hyper`` (the same object until
        a setting changes, so that batched calls can keep its stacked row)."""
        held = self._narrow_hyper
        if held is None or held[0] is not self.hyper:
            held = self._narrow_hyper = (self.hyper, narrow_hyper(self.hyper, NARROW, self.engine.narrow_layers))
        return held[1]

    @property
    def narrow(self) -> bool:
        """Whether this run trains alone with the narrow programs (``fits_narrow``)."""
        return self.keys()[0]

    def keys(self) -> tuple[bool, tuple, tuple]:
        """(``narrow``, ``group_key``, ``frame_key``), made once per config and settings: a
        crowd's tick reads them for every session (~5.5 us a session made afresh)."""
        held = self._keys
        if held is None or held[0] is not self.cfg or held[1] is not self.hyper:
            depth = self.depth
            held = self._keys = (self.cfg, self.hyper, (fits_narrow(self.cfg, self.engine.narrow_layers),
                                                        group_key(self.hyper, depth), frame_key(self.hyper, depth)))
        return held[2]

    @property
    def depth(self) -> int:
        return len(self.cfg.layers)

    @property
    def full_loop(self) -> bool:
        """Whether training needs the minibatch loop with the norm and dropout code."""
        return needs_full_loop(self.hyper)

    @property
    def state(self) -> TrainState:
        """The training state (NumPy leaves), unpacked from ``packed`` when first read."""
        if self._state is None:
            self._state = self.engine.codec.unpack_host(*self.packed)
        return self._state

    @state.setter
    def state(self, state) -> None:
        """A ``TrainState`` or a (wide) ``Packed`` one."""
        if isinstance(state, Packed):
            self._packed, self._state = state, None
        else:
            self._state, self._packed = state, None
        self._narrowed = False

    @property
    def packed(self) -> Packed:
        """The state as the compiled programs take it: training and frames use this form, so
        the state is not unpacked (65 arrays) on every call. Always the wide form (batched
        calls stack it); a narrow one is widened here, once."""
        if self._packed is None:
            self._packed = Packed(*self.engine.codec.pack_host(self._state))
        elif self._narrowed:
            self._packed, self._narrowed = self.engine.narrowing.widen(self._packed, self._base), False
        return self._packed

    def _narrow_packed(self) -> Packed:
        """The state in the narrow form, cut from the wide one when it is not in that form yet."""
        if not self._narrowed:
            wide = self.packed
            self._base = np.asarray(wide.f)
            self._packed, self._narrowed = self.engine.narrowing.narrow(wide), True
        return self._packed

    narrow_packed = _narrow_packed

    def set_narrow_packed(self, packed: Packed) -> None:
        """The state a narrow call trained from ``narrow_packed()`` (a batched one's row)."""
        assert self._narrowed, "the state must have been taken in the narrow form"
        self._packed, self._state = packed, None

    @property
    def epoch(self) -> int:
        if self._state is None:
            return self.engine.codec.epoch(self._packed)  # the integer buffer is the same narrow or wide
        return int(self.state.epoch)

    def train(self, n_epochs: int, every: int = 1) -> np.ndarray:
        """Train ``n_epochs`` (in chunks), measuring every ``every`` epochs; returns the new
        metrics rows (k, M) (NaN rows between measurements)."""
        return self._train(n_epochs, every, draw=False)[0]

    def train_and_frame(self, n_epochs: int, every: int = 1, with_metrics: bool = False) -> tuple[np.ndarray, tuple | None]:
        """``train``, and the frame of the trained state when the narrow programs draw it in
        the same call (else None: ``frame`` draws it). The frame's row is NaN without
        ``with_metrics``; the last measured training row then says the same."""
        return self._train(n_epochs, every, draw=True, with_metrics=with_metrics)

    def _train(self, n_epochs: int, every: int, draw: bool, with_metrics: bool = False):
        rows, drawn = [], None
        left = n_epochs
        narrow = self.narrow
        while left > 0:
            k = min(left, self.engine.chunk)
            if narrow:
                self._packed, hist, ok, drawn = self.engine.train_and_draw(
                    self._narrow_packed(), *self.device_inputs(True), k, self.depth, self.cfg.batch_size, every,
                    draw=draw and k == left, with_metrics=with_metrics)
                self._state = None  # a cached unpacked state is now stale
                hist = self.engine.narrowing.wide_rows(hist)
            else:
                self.state, hist, ok = self.engine.train(
                    self.packed, *self.device_inputs(), k, self.depth, self.cfg.batch_size, every, full=self.full_loop)
            hist, ok = np.asarray(hist), np.asarray(ok)
            rows.append(hist[ok])
            left -= k
            if not ok.all():  # stopped early or diverged: the frame must show the state it ended in
                drawn = None if left > 0 else drawn
                break
        new = np.concatenate(rows) if rows else np.zeros((0, len(self.engine.metric_names)), np.float32)
        self.history.extend(new)
        if narrow and draw and drawn is None:  # nothing trained, or it stopped before the last call
            drawn = self._draw(with_metrics)
        return new, (self._narrow_frame(drawn) if narrow and draw else None)

    def _draw(self, with_metrics: bool):
        return self.engine.train_and_draw(self._narrow_packed(), *self.device_inputs(True), 0, self.depth,
                                          self.cfg.batch_size, 1, draw=True, with_metrics=with_metrics)[3]

    def _narrow_frame(self, drawn) -> tuple:
        """A narrow program's frame in the wide shapes (neuron grids (L, D, G, G), wide row)."""
        out, small, row = drawn
        return np.asarray(out), self.engine.wide_neurons(small), self.engine.narrowing.wide_rows(row)

    def frame(self, with_metrics: bool = True):
        """(output grids (2, GRID, GRID), neuron grids (L, D, G, G), metrics row), uint8 grids."""
        if self.narrow:
            return self._narrow_frame(self._draw(with_metrics))
        out, neurons, row = self.engine.frame(self.packed, *self.device_inputs(), self.depth, with_metrics)
        return np.asarray(out), np.asarray(neurons), np.asarray(row)

    def metrics(self, row: np.ndarray | None = None) -> dict:
        """The latest metrics as a dict (confusion as a classes x classes list)."""
        if row is None:
            row = self.frame()[2]
        return metrics_dict(row, self.engine.metric_names, self.cfg)

    def set_config(self, new: Config) -> None:
        """Apply a new config live. Data-affecting fields regenerate the points; architecture
        or feature changes do network surgery; everything else is swapped in as data."""
        old = self.cfg
        data_keys = ("seed", "problem", "dataset", "classes", "n_points", "noise", "train_ratio", "class_ratio", "points")
        if any(getattr(old, k) != getattr(new, k) for k in data_keys):
            self.split = datasets.split(new)
            self.data = pad_points(self.engine.n_max, self.split)
        arch_keys = ("features", "layers", "classes", "problem", "output_activation", "batch_norm", "layer_norm")
        if new.weights is not None and new.weights != old.weights:
            self._replace_params(fresh_params(new, self.engine.n_layers, self._rng))
        elif any(getattr(old, k) != getattr(new, k) for k in arch_keys) or old.n_outputs != new.n_outputs:
            self._replace_params(surgery(self.state.params, old, new, self.engine.n_layers, self._rng))
        if new.optimizer != old.optimizer:  # a fresh optimizer state for the new optimizer
            self.state = self.state._replace(opt_state=jax.tree.map(np.asarray, _opt_init(self.state.params)))
        self.cfg = new
        self.hyper = hyper_from_config(new, self.split, self.engine.n_layers)
        if new.early_stopping_patience != old.early_stopping_patience:
            self.state = self.state._replace(stopped=np.bool_(False), since_best=np.int32(0))

    def _replace_params(self, params: Params) -> None:
        keep_epoch = self.state.epoch
        st = new_state(params, self.engine.n_layers, int(self._rng.integers(2**31)))
        self.state = st._replace(epoch=keep_epoch, norm=self.state.norm)

    def reset(self, seed: int | None = None) -> None:
        """Fresh weights (and optimizer state), epoch 0; the data stay."""
        self._rng = np.random.default_rng(self.cfg.seed if seed is None else seed)
        cfg = self.cfg
        self.state = new_state(fresh_params(cfg, self.engine.n_layers, self._rng), self.engine.n_layers, cfg.seed)
        self.history = []

    def regenerate(self, seed: int) -> None:
        self.set_config(self.cfg.model_copy(update={"seed": seed}))

    def set_param(self, layer: int, kind: str, i: int, j: int, value: float) -> None:
        """Edit one weight (``kind='w'``, input i -> unit j) or bias (``kind='b'``, unit j) of
        ``layer`` (0-based hidden layers; ``len(layers)`` is the output), in real indices."""
        p = self.state.params
        w, b, w_out, b_out = (np.array(a, copy=True) for a in (p.w, p.b, p.w_out, p.b_out))
        is_out = layer == len(self.cfg.layers)
        if kind == "w":
            row = _input_rows(self.cfg)[i] if layer == 0 else i
            if is_out:
                w_out[row, j] = value
            else:
                w[layer, row, j] = value
        elif is_out:
            b_out[j] = value
        else:
            b[layer, j] = value
        self.state = self.state._replace(params=p._replace(w=w, b=b, w_out=w_out, b_out=b_out), diverged=np.bool_(False))

    def weights(self) -> list[dict]:
        return export_weights(self.state.params, self.cfg)

    def weights_flat(self) -> np.ndarray:
        """``flat_weights`` of the current parameters. From a packed state (after training) it
        is one gather from the float buffer: unpacking the whole state for it cost ~0.35 ms
        per frame, 70 ms of every tick at 200 sessions (docs/benchmarks.md, seventh session)."""
        if self._state is None:
            cfg = self.cfg
            idx = _weight_index(tuple(cfg.features), tuple(layer.units for layer in cfg.layers), cfg.n_outputs,
                                self.engine.n_layers)
            at = self.engine.codec.params_index[idx]
            if self._narrowed:  # every weight in use is in the narrow form
                at = self.engine.narrowing.inverse[at]
            return np.asarray(self._packed.f)[at]
        return flat_weights(self.state.params, self.cfg)

    def hidden_space(self, layer: int, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Neurons ``i`` and ``j`` of hidden ``layer`` on the grid lines (2 * HIDDEN_LINES,
        HIDDEN_LINE_POINTS, 2) and on the training points (n_train, 2). One compiled program
        for every layer and neuron choice: all activations come back, NumPy selects."""
        lines = hidden_lines()
        n_lines = lines.shape[0] * lines.shape[1]
        x_train = self.split.x_train
        x = np.zeros((self.engine.n_probe, 2), np.float32)
        x[:n_lines] = lines.reshape(-1, 2)
        x[n_lines:n_lines + len(x_train)] = x_train
        acts = np.asarray(self.engine.hidden(self.state, self.hyper, x, self.depth))[layer][:, [i, j]]
        return acts[:n_lines].reshape(lines.shape), acts[n_lines:n_lines + len(x_train)]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs (n, outputs) for raw points (n, 2)."""
        out = predict(self.state.params, self.state.norm, jnp.asarray(x, jnp.float32), self.hyper, self.depth)
        return np.asarray(out)[:, : self.cfg.n_outputs]


def metrics_dict(row: np.ndarray, names: tuple[str, ...], cfg: Config) -> dict:
    values = np.asarray(row).tolist()
    d = dict(zip(names[:-K * K], values[:-K * K]))  # the confusion matrix comes last
    k = cfg.classes if cfg.problem == "classification" else 0
    conf = values[-K * K:]
    d["confusion"] = [[int(conf[i * K + j]) if math.isfinite(conf[i * K + j]) else 0 for j in range(k)] for i in range(k)]
    d["epoch"] = int(d["epoch"])
    d["best_epoch"] = int(d["best_epoch"])
    d["diverged"] = bool(d["diverged"])
    d["stopped"] = bool(d["stopped"])
    return d
