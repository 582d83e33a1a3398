"""How the engine's programs are built for speed, checked where a change could silently undo
it: the training epochs compile to one function (XLA's small-loop option), and the state
crosses each call as two packed buffers that round-trip bit for bit."""

from __future__ import annotations

import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core
from core.config import Limits, parse_config
from core.engine import BATCHED_TRAINING, HYPER_AXES, Engine, Packed, Run, stack_hyper
from core.train import train_chunk


@pytest.mark.parametrize("flags, expected", [
    ("", "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1073741824"),
    ("--xla_dump_to=/tmp/x", "--xla_dump_to=/tmp/x --xla_backend_extra_options="
                             "xla_cpu_small_while_loop_byte_threshold=1073741824"),
    ("--xla_backend_extra_options=a=1", "--xla_backend_extra_options=a=1,"
                                        "xla_cpu_small_while_loop_byte_threshold=1073741824"),
    ("--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=5",  # the operator's choice stays
     "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=5"),
])
def test_the_small_loop_option_joins_whatever_xla_flags_hold(flags, expected):
    assert core._with_small_loops(flags) == expected


def test_the_option_is_set_in_this_process():
    import os

    assert "xla_cpu_small_while_loop_byte_threshold" in os.environ["XLA_FLAGS"]


def _small_calls(hlo: str) -> dict[str, str]:
    """Computations that XLA's CPU runtime runs as one function: name -> text."""
    names = set(re.findall(r'to_apply=%([\w.\-]+), frontend_attributes=\{xla_cpu_small_call="true"\}', hlo))
    blocks = {}
    for block in re.split(r"\n(?=\S)", hlo):
        m = re.match(r"%([\w.\-]+) ", block)
        if m and m.group(1) in names:
            blocks[m.group(1)] = block
    return blocks


def test_the_epochs_between_measurements_compile_to_one_function(engine):
    """A sort, scatter or library call inside the epoch loop would make XLA dispatch each of
    its operations separately again (net (a) trained 2-4x slower that way). The compiled
    training program must hold the epoch loop (the one over the training orders (chunk, N)
    int32) inside a computation marked as one call, and the minibatch loop inside it."""
    cfg = parse_config({"dataset": "xor", "n_points": 40, "layers": [{"units": 3}], "batch_size": 5})
    run = Run(engine, cfg)
    data, hyper = run.device_inputs()
    N = run.data.x_train.shape[0]
    fn = jax.jit(partial(train_chunk, n_layers=engine.n_layers, bcap=16, chunk=4))
    hlo = fn.lower(run.state, data, hyper, jnp.int32(4), jnp.int32(1), jnp.int32(4)).compile().as_text()
    calls = _small_calls(hlo)
    assert calls, "no loop compiled as one function"
    L, D = engine.n_layers, 8
    epoch_loops = [b for b in calls.values() if f"s32[4,{N}]" in b and f"f32[{L},{D},{D}]" in b]
    assert epoch_loops, "the epoch loop is dispatched operation by operation"
    assert any(" while(" in b for b in epoch_loops)


def test_a_state_packs_and_unpacks_bit_for_bit(engine):
    run = Run(engine, parse_config({"dataset": "spiral", "layers": [{"units": 4}, {"units": 2}],
                                    "optimizer": "adam", "early_stopping_patience": 2}))
    run.train(3)
    state = run.state
    codec = engine.codec
    f, u = codec.pack_host(state)
    assert f.dtype == np.float32 and u.dtype == np.uint32
    back = codec.unpack_host(f, u)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # inside a program the same layout: packing traced equals packing on the host
    f2, u2 = jax.jit(codec.pack)(jax.tree.map(jnp.asarray, state))
    np.testing.assert_array_equal(np.asarray(f2), f)
    np.testing.assert_array_equal(np.asarray(u2), u)
    # negative ints, the key's high bits and both bools survive
    odd = state._replace(since_best=np.int32(-7), key=np.array([0xFFFFFFFF, 3], np.uint32),
                         stopped=np.bool_(True), diverged=np.bool_(False))
    again = jax.jit(lambda f, u: codec.pack(codec.unpack(f, u)))(*codec.pack_host(odd))
    round_trip = codec.unpack_host(*again)
    assert int(round_trip.since_best) == -7 and list(round_trip.key) == [0xFFFFFFFF, 3]
    assert bool(round_trip.stopped) is True and bool(round_trip.diverged) is False
    assert codec.epoch(Packed(f, u)) == 3


def test_stacked_states_pack_along_their_leading_axis(engine):
    runs = [Run(engine, parse_config({"dataset": "circle", "seed": s})) for s in (1, 2, 3)]
    stacked = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *[r.state for r in runs])
    f, u = engine.codec.pack_host(stacked)
    assert f.shape == (3, engine.codec.n_float) and u.shape == (3, engine.codec.n_uint)
    for j, r in enumerate(runs):
        one_f, one_u = engine.codec.pack_host(r.state)
        np.testing.assert_array_equal(f[j], one_f)
        np.testing.assert_array_equal(u[j], one_u)
    back = engine.codec.unpack_host(f, u)
    np.testing.assert_array_equal(back.params.w[2], runs[2].state.params.w)


def test_a_run_trains_on_its_packed_state_and_unpacks_only_when_read(engine):
    """Training through ``Run`` (packed) and through ``Engine.train`` with the unpacked state
    give the same weights; reading ``run.state`` after training unpacks the new state."""
    cfg = parse_config({"dataset": "xor", "layers": [{"units": 3}], "optimizer": "momentum", "seed": 5})
    a, b = Run(engine, cfg), Run(engine, cfg)
    a.train(5)
    assert isinstance(a.packed, Packed) and a.epoch == 5
    state, _, _ = engine.train(b.state, *b.device_inputs(), 5, b.depth, cfg.batch_size, 5)
    assert not isinstance(state, Packed)
    # ``a`` trains on the narrow programs (a 3-unit net), ``engine.train`` on the wide ones:
    # equal up to a few float32 units in the last place (see tests/core/test_narrow.py)
    np.testing.assert_allclose(np.asarray(a.state.params.w), np.asarray(state.params.w), rtol=2e-6, atol=2e-7)
    assert int(a.state.epoch) == int(state.epoch) == 5


@pytest.mark.parametrize("layers,features", [([{"units": 3}], ["x1", "x2"]),
                                             ([{"units": 5}, {"units": 2}, {"units": 8}], ["x2", "x1_sq", "sin_x1"]),
                                             ([], ["x1x2", "x2"])])
def test_the_frame_weights_come_from_the_packed_state_without_unpacking_it(engine, layers, features):
    """A frame's weights (``Run.weights_flat``) after training are gathered from the packed
    float buffer; they equal the unpacked state's ``flat_weights`` and the exported weights."""
    cfg = parse_config({"dataset": "circle", "layers": layers, "features": features, "optimizer": "adam",
                        "batch_norm": bool(layers)})
    run = Run(engine, cfg)
    run.train(3)
    packed_flat = run.weights_flat()
    assert run._state is None  # nothing was unpacked
    exported = run.weights()  # reads (unpacks) the state
    want = np.concatenate([np.ravel(x["w"]) for x in exported] + [np.ravel(x["b"]) for x in exported])
    np.testing.assert_array_equal(packed_flat, np.asarray(want, np.float32))
    np.testing.assert_array_equal(packed_flat, run.weights_flat())  # the unpacked path agrees


def test_batched_epochs_compile_to_one_function_too():
    """The batched training program (``vmap``) must not hand its minibatch reductions to
    XNNPACK (a library call): with ``BATCHED_TRAINING``'s compiler options its epoch loop is
    one function as well (net (a) batched trained ~2x faster than operation by operation).
    A one-layer engine keeps this compile short; the layers are the same code repeated."""
    small = Engine(limits=Limits(max_layers=1, max_points=100))
    cfg = parse_config({"dataset": "xor", "n_points": 40, "layers": [{"units": 3}], "batch_size": 5},
                       limits=small.limits)
    run = Run(small, cfg)
    S = 16  # XLA's cost model hands reductions this large to XNNPACK
    stack = lambda t: jax.tree.map(lambda a: np.stack([np.asarray(a)] * S), t)  # noqa: E731
    N = run.data.x_train.shape[0]
    fn = jax.vmap(partial(train_chunk, n_layers=1, bcap=16, chunk=4, batched=True),
                  in_axes=(0, 0, HYPER_AXES, None, None, None))
    args = (stack(run.state), stack(run.data), stack_hyper(run.hyper, S), jnp.int32(4), jnp.int32(1), jnp.int32(4))
    hlo = jax.jit(fn, compiler_options=BATCHED_TRAINING).lower(*args).compile().as_text()
    epoch_loops = [b for b in _small_calls(hlo).values() if f"s32[{S},4,{N}]" in b and " while(" in b]
    assert epoch_loops, "the batched epoch loop is dispatched operation by operation"
    assert "ynn" not in "".join(epoch_loops)
    # without the options the reductions go to XNNPACK and no epoch loop is one function
    plain = jax.jit(fn).lower(*args).compile().as_text()
    assert "ynn" in plain
    assert not [b for b in _small_calls(plain).values() if f"s32[{S},4,{N}]" in b]
