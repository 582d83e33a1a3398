"""The jit-compiled training chunk and visualisation frame, for one session or many (vmap).

Everything that may change while a session runs is an array in ``Hyper`` (architecture
masks, activation indices, optimizer choice and settings, regularizer rates, batch size…).
Static are only: the maximum depth ``n_layers``, the padded point count ``N``, the batch
capacity ``bcap`` (a few buckets cover batch sizes 1..N) and the epochs per call ``chunk``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from core import optim
from core.data import features
from core.losses import grid_readout, outputs, per_row_loss
from core.metrics import evaluate, names
from core.model import D, K, Arch, Norm, Params, forward, grid_affine, grid_hidden, layer_masks, param_mask
from core.optim import OptHyper

GRID = 100  # output heatmap resolution, on [-6, 6]^2
NEURON_GRID = 20  # per-neuron heatmap resolution
BN_MOMENTUM = 0.9  # running statistics for inference; faster than Keras' 0.99 for short runs


class Task(NamedTuple):
    out_act: jax.Array  # () int32
    loss: jax.Array  # () int32
    out_mask: jax.Array  # (K,)
    classification: jax.Array  # () bool
    n_classes: jax.Array  # () int32 (1 for regression)
    class_w: jax.Array  # (K,) per-class loss weight
    batch_size: jax.Array  # () int32
    shuffle: jax.Array  # () bool
    patience: jax.Array  # () int32, 0 = no early stopping
    n_train: jax.Array  # () int32
    n_test: jax.Array  # () int32


class Reg(NamedTuple):
    l1: jax.Array
    l2: jax.Array
    dropout: jax.Array
    input_noise: jax.Array
    jitter: jax.Array
    flip_x1: jax.Array  # () bool
    flip_x2: jax.Array  # () bool


class Flags(NamedTuple):
    """Which optional work an epoch does at all. In a batched call these are shared by the
    group (the scheduler groups sessions by them), so they stay real branches under vmap."""

    shuffle: jax.Array  # () bool
    augment: jax.Array  # () bool: input noise, jitter or flips
    dropout: jax.Array  # () bool
    small: jax.Array  # () bool: the train and the test rows each fit in the first SMALL_ROWS


# The rows a small data set's metrics pass and shuffle look at (``Flags.small``): TF
# Playground's 500 points split in half fit, and their epoch then measures 512 rows instead
# of 2,048 and sorts 256 keys instead of 1,024 in a batched call (docs/benchmarks.md,
# thirteenth session).
SMALL_ROWS = 256


class Hyper(NamedTuple):
    arch: Arch
    opt: OptHyper
    reg: Reg
    task: Task
    flags: Flags


class Data(NamedTuple):
    x_train: jax.Array  # (N, 2) raw x1, x2; rows >= n_train are padding
    y_train: jax.Array  # (N,)
    x_test: jax.Array  # (N, 2)
    y_test: jax.Array  # (N,)
    # (N, D) padded features: None on the host (not transferred), filled in once per compiled
    # call by ``with_features`` rather than per epoch (XLA's sin costs more than a small layer).
    f_train: jax.Array | None = None
    f_test: jax.Array | None = None


def with_features(data: Data, width: int = D) -> Data:
    return data._replace(f_train=padded_features(data.x_train, width), f_test=padded_features(data.x_test, width))


def host_features(x: np.ndarray) -> np.ndarray:
    """(n, 2) -> (n, D) padded features in float64 NumPy, then float32 (constant grids)."""
    f = features(np.asarray(x, np.float64))
    return np.concatenate([f, np.zeros((len(f), D - f.shape[1]))], 1).astype(np.float32)


class TrainState(NamedTuple):
    params: Params
    opt_state: tuple
    norm: Norm
    key: jax.Array  # (2,) uint32
    epoch: jax.Array  # () int32, epochs trained
    best: Params  # early stopping: the weights with the lowest test loss so far
    best_norm: Norm
    best_loss: jax.Array
    best_epoch: jax.Array
    since_best: jax.Array
    stopped: jax.Array  # () bool, early stopping fired
    diverged: jax.Array  # () bool, loss or weights not finite
    grad_norm: jax.Array  # (L + 1,) mean per-layer gradient norm of the last measured epoch


def padded_features(x: jax.Array, width: int = D) -> jax.Array:
    """(n, 2) -> (n, width): the seven features and a zero column, or the first ``width``
    of them (a narrow program's inputs, see ``core.engine.NARROW``)."""
    f = features(x)
    if width <= f.shape[-1]:
        return f[..., :width]
    return jnp.concatenate([f, jnp.zeros(f.shape[:-1] + (width - f.shape[-1],), f.dtype)], -1)


def penalty(params: Params, arch: Arch, depth, reg: Reg) -> jax.Array:
    """L1 and L2 of the weights in use (biases and norm parameters are not penalised)."""
    hidden, out = layer_masks(arch, depth, params.w.shape[0])
    ws = [params.w[i] * m for i, m in enumerate(hidden)] + [params.w_out * out]
    l1 = sum(jnp.abs(w).sum() for w in ws)
    l2 = sum((w * w).sum() for w in ws)
    return reg.l1 * l1 + reg.l2 * l2


def _objective(params, x, y, rows, keep, norm, hyper: Hyper, depth: int, fused: bool = False, norms: bool = True):
    task = hyper.task
    z, _, stats = forward(params, x, hyper.arch, depth, norm=norm, rows=rows, keep=keep, fused=fused, norms=norms)
    loss = per_row_loss(z, y, task.out_act, task.loss, task.out_mask, task.classification, select=False)
    w = jnp.where(task.classification, task.class_w[jnp.clip(y.astype(jnp.int32), 0, K - 1)], 1.0)
    data = (loss * w * rows).sum() / jnp.maximum(rows.sum(), 1.0)
    return data + penalty(params, hyper.arch, depth, hyper.reg), stats


def _augment(x: jax.Array, reg: Reg, key: jax.Array) -> jax.Array:
    """Input noise and augmentation of the (already shuffled) training points."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = x + jax.random.normal(k1, x.shape) * (reg.input_noise + reg.jitter)
    flips = jax.random.bernoulli(k2, 0.5, x.shape) & jnp.stack([reg.flip_x1, reg.flip_x2])
    del k3
    return jnp.where(flips, -x, x)


def shuffled(key: jax.Array, n: jax.Array, N: int, sizes: tuple[int, ...] | None = None) -> jax.Array:
    """A uniformly random order of rows 0..n-1, followed by the padding rows n..N-1 in order.

    Each row gets random high bits above its own index, packed in one uint32, and the packed
    keys are sorted: one single-operand sort, ~100x cheaper on XLA's CPU backend than
    ``argsort`` of random floats (a two-operand sort with a comparator call per comparison).
    Only the smallest of ``sizes`` (default 16, 64, 256 and N) that holds the n real rows is
    sorted, chosen by a real branch on ``n``: 250 points sort 256 keys, not 1,024 (~5x less
    work). A batched call, whose sessions have their own ``n``, passes ``(N,)``. Equal random
    bits (22 of them for 1,024 keys) fall back to index order, a bias far below what any run
    can show."""
    if sizes is None:
        sizes = tuple(s for s in (16, 64, 256) if s < N) + (N,)

    def order(S: int):
        def run():
            bits = max(S - 1, 1).bit_length()
            rand = jax.random.bits(key, (S,), jnp.uint32) >> bits
            rand = jnp.where(jnp.arange(S) < n, rand, jnp.uint32(0xFFFFFFFF >> bits))  # padding last
            packed = (rand << bits) | jnp.arange(S, dtype=jnp.uint32)
            head = (jnp.sort(packed) & jnp.uint32((1 << bits) - 1)).astype(jnp.int32)
            return jnp.concatenate([head, jnp.arange(S, N, dtype=jnp.int32)])

        return run

    if len(sizes) == 1:
        return order(sizes[0])()
    which = jnp.searchsorted(jnp.asarray(sizes, jnp.int32), jnp.asarray(n, jnp.int32))
    return lax.switch(jnp.minimum(which, len(sizes) - 1), [order(S) for S in sizes])


def _tree_where(c, a, b):
    return jax.tree.map(lambda u, v: jnp.where(c, u, v), a, b)


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _epoch(state: TrainState, data: Data, hyper: Hyper, depth, n_layers: int, bcap: int, perm, k_aug, k_drop,
           batched: bool = False, loop: str = "both"):
    """One pass over the training points in minibatches, in the order ``perm`` (N,). Returns
    the new state (key not advanced), the epoch's mean per-layer gradient norms and its
    learning rate. Holds no sort, scatter or library call, so XLA compiles a loop over
    epochs as one function (see ``core/__init__``)."""
    task, reg = hyper.task, hyper.reg
    n = jnp.maximum(task.n_train, 1)
    y = data.y_train[perm]
    W = data.f_train.shape[-1]  # the program's width: D, or a narrow program's
    f = lax.cond(hyper.flags.augment, lambda: padded_features(_augment(data.x_train[perm], reg, k_aug), W),
                 lambda: data.f_train[perm])
    feats = jnp.concatenate([f, jnp.zeros((bcap, W))])
    ys = jnp.concatenate([y, jnp.zeros((bcap,))])
    B = jnp.clip(task.batch_size, 1, n)
    n_updates = (n + B - 1) // B
    lr = optim.schedule(state.epoch, hyper.opt)
    mask = param_mask(hyper.arch, depth, n_layers)

    def updates(full: bool):
        """The minibatch update. ``full``: with dropout and the batch/layer norm code; else
        without either, for the common case where all three are off. The choice is made
        once per epoch: even with the loop compiled as one function, a single loop with the
        norm and dropout branches inside trained net (a) 1.5x slower, for a program 30 %
        smaller (docs/benchmarks.md, sixth session)."""
        grad_fn = jax.value_and_grad(partial(_objective, fused=True, norms=full), has_aux=True)

        def update(i, carry):
            params, opt_state, norm, gsum = carry
            start = i * B
            xb = lax.dynamic_slice(feats, (start, 0), (bcap, W))
            yb = lax.dynamic_slice(ys, (start,), (bcap,))
            rows = ((jnp.arange(bcap) < B) & (start + jnp.arange(bcap) < n)).astype(jnp.float32)
            p = reg.dropout
            keep = None if not full else lax.cond(
                hyper.flags.dropout,
                lambda: (jax.random.uniform(jax.random.fold_in(k_drop, i), (bcap, n_layers, W)) >= p) / (1 - p),
                lambda: jnp.ones((bcap, n_layers, W)),
            )
            (_, stats), grads = grad_fn(params, xb, yb, rows, keep, norm, hyper, depth)
            grads = jax.tree.map(jnp.multiply, grads, mask)
            upd, opt_state = optim.update(grads, opt_state, params, lr, hyper.opt)
            params = jax.tree.map(lambda p_, u, m: p_ + u * m, params, upd, mask)
            if stats and full:
                k = len(stats)
                on = (jnp.arange(n_layers) < depth)[:, None] * (jnp.arange(n_layers) < k)[:, None]
                mu = jnp.stack([s[0] for s in stats] + [norm.mean[j] for j in range(k, n_layers)])
                var = jnp.stack([s[1] for s in stats] + [norm.var[j] for j in range(k, n_layers)])
                m = jnp.where(on, BN_MOMENTUM, 1.0)
                norm = Norm(m * norm.mean + (1 - m) * mu, m * norm.var + (1 - m) * var)
            gn = jnp.stack(
                [jnp.sqrt((grads.w[j] ** 2).sum() + (grads.b[j] ** 2).sum()) for j in range(n_layers)]
                + [jnp.sqrt((grads.w_out**2).sum() + (grads.b_out**2).sum())]
            )
            return params, opt_state, norm, gsum + gn

        # a new function per path: fori_loop caches traced bodies by function identity
        return lambda carry: lax.fori_loop(0, n_updates, update, carry)

    carry = (state.params, state.opt_state, state.norm, jnp.zeros(n_layers + 1))
    if loop == "both":
        # The flags are shared by a batched call's sessions, so this stays a real branch under vmap.
        optional = hyper.arch.batch_norm | hyper.arch.layer_norm | hyper.flags.dropout
        params, opt_state, norm, gsum = lax.cond(optional, updates(True), updates(False), carry)
    else:  # a program with one of the loops: the caller picks it by ``needs_full_loop``
        params, opt_state, norm, gsum = updates(loop == "full")(carry)
    state = state._replace(params=params, opt_state=opt_state, norm=norm, epoch=state.epoch + 1)
    return state, gsum / n_updates.astype(jnp.float32), lr


def needs_full_loop(hyper: Hyper) -> bool:
    """Whether training needs the minibatch loop with the batch/layer norm and dropout code
    (``hyper`` on the host, or one session's of a stacked group: they share these flags)."""
    a, f = hyper.arch, hyper.flags
    # np.asarray first: ``np.any`` of a device array calls its ``any``, a compiled reduction
    return bool(np.asarray(a.batch_norm).any() or np.asarray(a.layer_norm).any() or np.asarray(f.dropout).any())


def _measure(state: TrainState, data: Data, hyper: Hyper, depth, lr, gnorm, epochs_since):
    """Metrics after an epoch, divergence, and early stopping on the test loss (the lecture's
    "validation error"), which restores the best weights when patience runs out."""
    task = hyper.task
    m = _metrics(state, data, hyper, depth)
    diverged = state.diverged | ~jnp.isfinite(m["train_loss"]) | ~_finite(state.params)
    better = m["test_loss"] < state.best_loss
    since = jnp.where(better, 0, state.since_best + epochs_since)
    state = state._replace(
        best=_tree_where(better, state.params, state.best),
        best_norm=_tree_where(better, state.norm, state.best_norm),
        best_loss=jnp.where(better, m["test_loss"], state.best_loss),
        best_epoch=jnp.where(better, state.epoch, state.best_epoch),
        since_best=since,
        diverged=diverged,
        grad_norm=jnp.asarray(gnorm, jnp.float32),
    )
    stop = (task.patience > 0) & (since >= task.patience) & ~diverged
    state = state._replace(
        params=_tree_where(stop, state.best, state.params),
        norm=_tree_where(stop, state.best_norm, state.norm),
        stopped=stop,
    )
    return state, _row(m, state, lr, gnorm, hyper, depth)


def _metrics(state: TrainState, data: Data, hyper: Hyper, depth: int) -> dict:
    """The metrics of ``evaluate`` over the train and test rows; with ``flags.small`` (shared
    by a batched call, so a real branch) over the first SMALL_ROWS of each only, which hold
    all of them."""
    task = hyper.task
    N = data.x_train.shape[0]

    def over(S: int):
        def run(_):
            rows_tr = (jnp.arange(S) < task.n_train).astype(jnp.float32)
            rows_te = (jnp.arange(S) < task.n_test).astype(jnp.float32)
            # One forward pass over both sets (inference mode is row-wise): half the kernels
            # of two passes, so a smaller program that loads faster, and frames ~5 % faster.
            x = jnp.concatenate([data.f_train[:S], data.f_test[:S]])
            z, _, _ = forward(state.params, x, hyper.arch, depth, norm=state.norm)
            return evaluate(z[:S], data.y_train[:S], rows_tr, z[S:], data.y_test[:S], rows_te, task)

        return run

    if N <= SMALL_ROWS:
        return over(N)(None)
    return lax.cond(hyper.flags.small, over(SMALL_ROWS), over(N), None)


def _row(m: dict, state: TrainState, lr, gnorm, hyper: Hyper, depth: int) -> jax.Array:
    reg_loss = penalty(state.params, hyper.arch, depth, hyper.reg)
    head = jnp.stack([
        state.epoch.astype(jnp.float32), m["train_loss"], m["test_loss"], m["train_accuracy"],
        m["test_accuracy"], m["precision"], m["recall"], m["f1"], m["mse"], m["mae"], m["r2"],
        jnp.asarray(lr, jnp.float32), reg_loss, state.diverged.astype(jnp.float32),
        state.stopped.astype(jnp.float32), state.best_epoch.astype(jnp.float32),
    ])
    return jnp.concatenate([head, gnorm, m["confusion"].reshape(-1)]).astype(jnp.float32)


def train_chunk(
    state: TrainState, data: Data, hyper: Hyper, n_epochs: jax.Array, depth: jax.Array, every: jax.Array,
    *, n_layers: int, bcap: int, chunk: int, batched: bool = False, loop: str = "both", width: int = D,
) -> tuple[TrainState, jax.Array, jax.Array]:
    """Train up to ``chunk`` epochs (``n_epochs`` of them; fewer if early stopping fires or the
    run diverges). Metrics are measured every ``every`` epochs and after the last one; the
    history (chunk, M) holds NaN rows in between. Returns (state, history, (chunk,) trained).

    The epochs between two measurements are one loop that holds no sort and no large
    products, so XLA compiles it as a single function (see ``core/__init__``); their
    training orders are drawn before it (a sort each) and the metrics after it.
    ``n_epochs``, ``depth`` and ``every`` are shared by all sessions of a batched call, so the
    loops and conditionals on them stay real under ``vmap``. A session that stopped or
    diverged keeps its state (in a batch it computes along). ``batched``: this is traced
    under ``vmap``: the training orders are drawn over all N rows (see ``shuffled``), and a
    frozen session's epochs are computed and discarded instead of skipped by a branch.
    ``loop``: "both" holds the lean minibatch loop and the one with the batch/layer norm and
    dropout code, chosen per epoch; "lean" or "full" holds only that one, for a caller that
    picks the program by ``needs_full_loop`` (a lean program trains as if all three were off).
    ``width``: the padded width of the state's layers and of the inputs (see
    ``core.engine.NARROW``)."""
    M = len(names(n_layers))
    N = data.x_train.shape[0]
    data = with_features(data, width)
    task = hyper.task
    n_epochs = jnp.clip(n_epochs, 0, chunk)
    every = jnp.maximum(every, 1)
    sizes = (N,) if batched else None

    def shuffle(k):
        """``shuffled``; a batched call has no per-session branch on ``n``, but its shared
        ``flags.small`` picks SMALL_ROWS keys instead of N."""
        if not batched or N <= SMALL_ROWS:
            return shuffled(k, task.n_train, N, sizes)
        return lax.cond(hyper.flags.small, lambda: shuffled(k, task.n_train, N, (SMALL_ROWS,)),
                        lambda: shuffled(k, task.n_train, N, (N,)))
    nan_row = jnp.full((M,), jnp.nan, jnp.float32)

    def orders(key, k):
        """The next k epochs' keys (one split per epoch) and training orders, (chunk, ...)."""
        def one(e, c):
            key, perms, augs, drops = c
            key, k_perm, k_aug, k_drop = jax.random.split(key, 4)
            perm = lax.cond(hyper.flags.shuffle, lambda: shuffle(k_perm), lambda: jnp.arange(N, dtype=jnp.int32))
            put = lambda a, v: lax.dynamic_update_index_in_dim(a, v, e, 0)  # noqa: E731
            return key, put(perms, perm), put(augs, k_aug), put(drops, k_drop)

        keys0 = jnp.zeros((chunk,) + key.shape, key.dtype)
        return lax.fori_loop(0, k, one, (key, jnp.zeros((chunk, N), jnp.int32), keys0, keys0))

    def group(g, carry):
        state, hist, ok = carry
        start = g * every
        k = jnp.minimum(every, n_epochs - start)
        frozen = state.stopped | state.diverged

        def run(state):
            key, perms, augs, drops = orders(state.key, k)

            def epoch(e, c):
                at = lambda a: lax.dynamic_index_in_dim(a, e, 0, keepdims=False)  # noqa: E731
                return _epoch(c[0], data, hyper, depth, n_layers, bcap, at(perms), at(augs), at(drops), batched,
                              loop)

            state, gnorm, lr = lax.fori_loop(
                0, k, epoch, (state, jnp.zeros(n_layers + 1), jnp.zeros((), jnp.float32)))
            return _measure(state._replace(key=key), data, hyper, depth, lr, gnorm, k)

        if batched:
            new, row = run(state)
            state, row = _tree_where(frozen, state, new), jnp.where(frozen, jnp.nan, row)
        else:
            state, row = lax.cond(frozen, lambda s: (s, nan_row), run, state)
        hist = lax.dynamic_update_index_in_dim(hist, row, start + k - 1, 0)
        i = jnp.arange(chunk)
        ok = jnp.where((i >= start) & (i < start + k), ~frozen, ok)
        return state, hist, ok

    n_groups = (n_epochs + every - 1) // every
    hist, ok = jnp.full((chunk, M), jnp.nan, jnp.float32), jnp.zeros((chunk,), bool)
    return lax.fori_loop(0, n_groups, group, (state, hist, ok))


def _grid_features(n: int) -> np.ndarray:
    """Padded features of the n x n grid, computed once in NumPy (XLA's sin on 10,000 rows
    costs a millisecond per frame)."""
    return host_features(_grid_points(n))


def _grid_points(n: int) -> np.ndarray:
    """(n*n, 2): row r is x2 = 6 - 12 r/(n-1) (top is +6), column c is x1 = -6 + 12 c/(n-1)."""
    t = np.linspace(-6.0, 6.0, n, dtype=np.float32)
    x1, x2 = np.meshgrid(t, t[::-1])
    return np.stack([x1.ravel(), x2.ravel()], 1)


# The output heatmap's levels: 128 (7 bits) spread over 0..255. TF Playground draws its
# heatmap in 30 shades; 128 look the same on any screen, and a crowd's frames deflate to 16 %
# fewer bytes, which lets ISA-L's fastest level pack them smaller than the finest levels did
# at its next one, in half the time (``app.session.deflate_raw``; docs/benchmarks.md,
# eighteenth session).
OUTPUT_LEVELS = 128


def quantise(v: jax.Array, lo: float, hi: float, levels: int = 256) -> jax.Array:
    """Map [lo, hi] to 0..255 (clipped) in ``levels`` evenly spaced levels, each rounded to a
    byte (128: 0, 2, ..., 126, 129, ..., 253, 255, symmetric about 127.5); NaN becomes the
    midpoint so no NaN reaches a canvas."""
    v = jnp.where(jnp.isfinite(v), v, (lo + hi) / 2)
    q = jnp.round((jnp.clip(v, lo, hi) - lo) / (hi - lo) * (levels - 1))
    if levels != 256:
        q = jnp.round(q * (255 / (levels - 1)))
    return q.astype(jnp.uint8)


def frame(state: TrainState, data: Data, hyper: Hyper, depth: jax.Array, with_metrics: jax.Array, *, n_layers: int,
          width: int = D):
    """What the page draws: the output heatmap (2, GRID, GRID) uint8 (channel 0: class-1
    probability / top-class confidence / regression value mapped from [-1, 1]; channel 1:
    predicted class), each hidden neuron's activation on a NEURON_GRID grid (L, D, G, G) uint8
    (value mapped from [-1, 1]), and the current metrics row.

    ``with_metrics`` false skips the metrics (a NaN row): a session that has just trained has
    them already, in the row measured after its last epoch, which equals this one. It is
    shared by a batched call, so it stays a real branch under ``vmap``. ``width``: the state's
    padded width (neuron grids are (L, width, G, G))."""
    task = hyper.task
    # constants, not recomputed
    big, small = _grid_features(GRID)[:, :width], _grid_features(NEURON_GRID)[:, :width]
    G = NEURON_GRID
    M = len(names(n_layers))

    def for_depth(d):
        def run(state):
            # The grids stay two passes: one pass over both made batched frames 1.3-1.5x slower.
            h, w_out = grid_hidden(state.params, big.T, hyper.arch, d, norm=state.norm)
            value, cls = grid_readout(lambda k: grid_affine(w_out[:, :k], state.params.b_out[:k], h),
                                      task.out_act, task.out_mask, task.classification)
            value = quantise(value, 0.0, 1.0, OUTPUT_LEVELS).reshape(GRID, GRID)
            cls = cls.astype(jnp.uint8).reshape(GRID, GRID)
            _, hidden, _ = forward(state.params, small, hyper.arch, d, norm=state.norm)
            neurons = [quantise(h.T, -1.0, 1.0).reshape(width, G, G) for h in hidden]
            grids = jnp.stack(neurons) if n_layers else jnp.zeros((0, width, G, G), jnp.uint8)

            def measured(state):
                m = _metrics(state, with_features(data, width), hyper, d)
                lr = optim.schedule(jnp.maximum(state.epoch - 1, 0), hyper.opt)
                return _row(m, state, lr, state.grad_norm, hyper, d)

            row = lax.cond(with_metrics, measured, lambda _: jnp.full((M,), jnp.nan, jnp.float32), state)
            return jnp.stack([value, cls]), grids, row

        return run

    return for_depth(depth)(state)


def train_and_draw(
    state: TrainState, data: Data, hyper: Hyper, n_epochs: jax.Array, depth: jax.Array, every: jax.Array,
    draw: jax.Array, with_metrics: jax.Array, *, n_layers: int, bcap: int, chunk: int, loop: str = "both",
    width: int = D, batched: bool = False,
):
    """``train_chunk``, then, when ``draw``, the ``frame`` of the trained state: what a session
    that trains alone needs each tick, in one call instead of two (a call costs ~0.4 ms of
    dispatch here, as much as a small network's frame). With ``n_epochs`` 0 it only draws.
    Not drawing gives zero grids and a NaN row. Returns (state, history, trained, output
    grids, neuron grids, metrics row). ``batched``: traced under ``vmap`` (see ``train_chunk``);
    ``draw`` and ``with_metrics`` are then shared by the call's sessions."""
    state, hist, ok = train_chunk(state, data, hyper, n_epochs, depth, every, n_layers=n_layers, bcap=bcap,
                                  chunk=chunk, loop=loop, width=width, batched=batched)
    G, M = NEURON_GRID, len(names(n_layers))

    def blank(_):
        return (jnp.zeros((2, GRID, GRID), jnp.uint8), jnp.zeros((n_layers, width, G, G), jnp.uint8),
                jnp.full((M,), jnp.nan, jnp.float32))

    drawn = lax.cond(draw, lambda s: frame(s, data, hyper, depth, with_metrics, n_layers=n_layers, width=width),
                     blank, state)
    return (state, hist, ok) + tuple(drawn)


def predict(params: Params, norm: Norm, x: jax.Array, hyper: Hyper, depth: int) -> jax.Array:
    """Outputs (n, K) for raw points (n, 2), inference mode. ``depth`` is a Python int."""
    z, _, _ = forward(params, padded_features(x), hyper.arch, depth, norm=norm)
    return outputs(z, hyper.task.out_act, hyper.task.out_mask)
