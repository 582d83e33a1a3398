"""The backpropagation walkthrough: the lecture's numbers, and other networks against jax.grad."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.backprop import BackpropRequest, parse_request, walkthrough
from core.config import ConfigError


def x64():
    """float64 in JAX for the duration of a ``with`` block (the API moved between versions)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64()


# --- the lecture's worked example ---------------------------------------------------------------


def test_defaults_are_the_lecture_example():
    req = BackpropRequest()
    assert req.inputs == [1.0, 1.0] and req.target == [0.5]
    assert [spec.w for spec in req.weights] == [[[0.5, 0.5], [0.5, 0.5]], [[0.5], [0.5]]]
    assert all(spec.b is None for spec in req.weights)
    assert (req.hidden_activation, req.output_activation, req.loss) == ("sigmoid", "linear", "half_squared_error")
    assert req.learning_rate == 0.01


def test_lecture_numbers():
    r = walkthrough(BackpropRequest())
    hidden, out = r["layers"]
    # forward: x_j = 1.0*0.5 + 1.0*0.5 = 1.0, then sigmoid
    assert hidden["z"] == [1.0, 1.0]
    assert hidden["a"] == pytest.approx([0.731059] * 2, abs=1e-6)
    assert r["steps"][0]["text"] == "z1_1 = x1*w1_11 + x2*w1_21 = 1.0*0.5 + 1.0*0.5 = 1.0"
    # gradients: the lecture rounds sigmoid(1) to 0.731 and so gets 0.168861 (= 0.231*0.731)
    # where the exact value is 0.168918; input->hidden it gives 0.0227 (exact 0.0227144).
    assert np.array(hidden["dE_dW"]) == pytest.approx(np.full((2, 2), 0.0227), abs=5e-5)
    assert np.array(out["dE_dW"]) == pytest.approx(np.full((2, 1), 0.168861), abs=1e-4)
    # the updates the lecture prints: 0.499773 and 0.49831139
    assert np.array(hidden["w_new"]) == pytest.approx(np.full((2, 2), 0.499773), abs=1e-6)
    assert np.array(out["w_new"]) == pytest.approx(np.full((2, 1), 0.49831139), abs=1e-6)
    assert hidden["b"] is None and hidden["dE_db"] is None and hidden["b_new"] is None
    assert r["loss"] == pytest.approx(0.5 * (0.5 - 0.7310585786300049) ** 2)


def test_steps_walk_forward_loss_backward_update():
    r = walkthrough(BackpropRequest())
    phases = [s["phase"] for s in r["steps"]]
    order = ["forward", "loss", "backward", "update"]
    assert phases == sorted(phases, key=order.index)
    assert phases.count("forward") == 2 + 2 + 1 + 1  # z and a per unit
    assert phases.count("loss") == 1
    assert phases.count("update") == 4 + 2
    backward_layers = [s["layer"] for s in r["steps"] if s["phase"] == "backward"]
    assert backward_layers == sorted(backward_layers, reverse=True)  # output layer first
    for s in r["steps"]:
        assert set(s) == {"phase", "layer", "text", "value"}
        assert s["text"].endswith(f"{s['value']:.6g}") or s["text"].endswith(f"{s['value']:.6g}.0")
    assert [s["text"] for s in r["steps"] if s["phase"] == "update"][-1] == (
        "w2_21 = w2_21 - lr*dE/dw2_21 = 0.5 - 0.01*0.168917 = 0.498311")
    json.dumps(r, allow_nan=False)  # JSON-ready


# --- other networks against jax.grad in float64 -------------------------------------------------

JAX_ACTS = {
    "linear": lambda z: z,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
    "elu": jax.nn.elu,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softmax": jax.nn.softmax,
}


def jax_loss(name, y, t):
    if name == "half_squared_error":
        return 0.5 * jnp.sum((t - y) ** 2)
    if name == "mse":
        return jnp.mean((t - y) ** 2)
    if name == "mae":
        return jnp.mean(jnp.abs(t - y))
    if name == "binary_crossentropy":
        return -jnp.mean(t * jnp.log(y) + (1 - t) * jnp.log(1 - y))
    return -jnp.sum(t * jnp.log(y))


def reference(req: BackpropRequest):
    """Loss, z, a and the gradients w.r.t. every W, b, z and a, all from jax.grad."""
    L = len(req.weights)
    acts = [req.hidden_activation] * (L - 1) + [req.output_activation]
    with x64():
        x, t = jnp.array(req.inputs), jnp.array(req.target)
        Ws = [jnp.array(s.w) for s in req.weights]
        bs = [jnp.zeros(len(s.w[0])) if s.b is None else jnp.array(s.b) for s in req.weights]

        def E(Ws, bs, dz, da):  # dz, da: zeros added to z and a, so grads give dE/dz, dE/da
            h, zs, as_ = x, [], []
            for W, b, ez, ea, act in zip(Ws, bs, dz, da, acts):
                z = h @ W + b + ez
                h = JAX_ACTS[act](z) + ea
                zs.append(z)
                as_.append(h)
            return jax_loss(req.loss, h, t), (zs, as_)

        zeros = [jnp.zeros(len(b)) for b in bs]
        (loss, (zs, as_)), grads = jax.value_and_grad(E, argnums=(0, 1, 2, 3), has_aux=True)(Ws, bs, zeros, zeros)
        to = lambda arrs: [np.asarray(a, np.float64) for a in arrs]  # noqa: E731
        return float(loss), to(zs), to(as_), *(to(g) for g in grads)


def check(req: BackpropRequest) -> dict:
    r = walkthrough(req)
    loss, zs, as_, gW, gb, gz, ga = reference(req)
    tol = dict(rel=1e-9, abs=1e-12)
    assert r["loss"] == pytest.approx(loss, **tol)
    for i, layer in enumerate(r["layers"]):
        assert layer["layer"] == i + 1
        assert layer["z"] == pytest.approx(zs[i], **tol)
        assert layer["a"] == pytest.approx(as_[i], **tol)
        assert layer["dE_dz"] == pytest.approx(gz[i], **tol)
        assert layer["dE_da"] == pytest.approx(ga[i], **tol)
        assert np.array(layer["dE_dW"]) == pytest.approx(gW[i], **tol)
        W = np.array(req.weights[i].w)
        assert np.array(layer["w_new"]) == pytest.approx(W - req.learning_rate * gW[i], **tol)
        if req.weights[i].b is not None:
            assert layer["dE_db"] == pytest.approx(gb[i], **tol)
            assert layer["b_new"] == pytest.approx(np.array(req.weights[i].b) - req.learning_rate * gb[i], **tol)
        # the chain rule per unit: dE/dz = (da/dz)^T dE/da
        da_dz = np.array(layer["da_dz"])
        expect = da_dz.T @ np.array(layer["dE_da"]) if da_dz.ndim == 2 else da_dz * np.array(layer["dE_da"])
        assert layer["dE_dz"] == pytest.approx(expect, rel=1e-9, abs=1e-12)
    assert r["output"] == pytest.approx(as_[-1], **tol)
    json.dumps(r, allow_nan=False)
    return r


RNG = np.random.default_rng(7)


def rand_layers(sizes, bias=True):
    return [{"w": RNG.uniform(-1.5, 1.5, (a, b)).round(3).tolist(), **({"b": RNG.uniform(-0.5, 0.5, b).round(3).tolist()}
                                                                          if bias else {})}
            for a, b in zip(sizes[:-1], sizes[1:])]


CASES = {
    "3 layers, biases, relu, mse": dict(inputs=[0.5, -1.0, 2.0], target=[0.3, -0.7], weights=rand_layers([3, 4, 3, 2]),
                                        hidden_activation="relu", output_activation="linear", loss="mse"),
    "softmax + categorical_crossentropy": dict(inputs=[0.3, -1.2], target=[0, 1, 0], weights=rand_layers([2, 3, 3]),
                                               hidden_activation="tanh", output_activation="softmax",
                                               loss="categorical_crossentropy", learning_rate=0.1),
    "soft labels": dict(inputs=[1.0, 2.0], target=[0.2, 0.8], weights=rand_layers([2, 2, 2]),
                        output_activation="softmax", loss="categorical_crossentropy"),
    "sigmoid + binary_crossentropy": dict(inputs=[0.7, 0.1, -0.4], target=1, weights=rand_layers([3, 5, 1]),
                                          hidden_activation="elu", output_activation="sigmoid",
                                          loss="binary_crossentropy", learning_rate=0.5),
    "sigmoid hidden + sigmoid output + bce": dict(inputs=[0.7, -0.4], target=1, weights=rand_layers([2, 3, 1]),
                                                  hidden_activation="sigmoid", output_activation="sigmoid",
                                                  loss="binary_crossentropy", learning_rate=0.5),
    "two sigmoid outputs + bce": dict(inputs=[1.0], target=[0, 1], weights=rand_layers([1, 3, 2]),
                                      hidden_activation="leaky_relu", output_activation="sigmoid",
                                      loss="binary_crossentropy"),
    "mae, leaky_relu": dict(inputs=[-2.0, 1.5], target=[0.1, 2.0], weights=rand_layers([2, 4, 2]),
                            hidden_activation="leaky_relu", output_activation="linear", loss="mae"),
    "4 layers gelu": dict(inputs=[0.2, -0.3, 0.4, 0.5], target=[1.0], weights=rand_layers([4, 8, 6, 3, 1]),
                          hidden_activation="gelu", output_activation="tanh", loss="half_squared_error"),
    "silu, no biases": dict(inputs=[1.0, -1.0], target=[0.5], weights=rand_layers([2, 3, 1], bias=False),
                            hidden_activation="silu", output_activation="silu", loss="mse", learning_rate=2),
    "softmax + mse (full Jacobian)": dict(inputs=[0.4, 0.9], target=[1, 0, 0], weights=rand_layers([2, 3, 3]),
                                          hidden_activation="sigmoid", output_activation="softmax", loss="mse"),
    "one layer, relu output": dict(inputs=[1.0, 2.0, 3.0], target=[2.0, -1.0], weights=rand_layers([3, 2]),
                                   output_activation="relu", loss="half_squared_error"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_jax_grad(name):
    r = check(BackpropRequest.model_validate(CASES[name]))
    steps = r["steps"]
    n_units = sum(len(layer["z"]) for layer in r["layers"])
    n_w = sum(np.size(layer["w"]) for layer in r["layers"])
    n_b = sum(len(layer["b"]) for layer in r["layers"] if layer["b"] is not None)
    assert sum(s["phase"] == "forward" for s in steps) == 2 * n_units
    assert sum(s["phase"] == "backward" for s in steps) == 3 * n_units + n_w + n_b
    assert sum(s["phase"] == "update" for s in steps) == n_w + n_b


def test_softmax_jacobian_is_a_matrix():
    r = walkthrough(BackpropRequest.model_validate(CASES["softmax + mse (full Jacobian)"]))
    jac = np.array(r["layers"][-1]["da_dz"])
    a = np.array(r["layers"][-1]["a"])
    assert jac.shape == (3, 3)
    assert jac == pytest.approx(np.diag(a) - np.outer(a, a))


def test_saturated_output_is_reported():
    req = BackpropRequest(inputs=[10.0] * 8, weights=[{"w": [[10.0]] * 8}], output_activation="sigmoid",
                          loss="binary_crossentropy", target=0.0)
    with pytest.raises(ValueError, match="not finite"):
        walkthrough(req)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    (dict(inputs=[]), "inputs must have 1..8 values, got 0"),
    (dict(inputs=[1.0] * 9), "inputs must have 1..8 values, got 9"),
    (dict(inputs=[float("nan"), 1.0]), "inputs[0] must be a finite number, got nan"),
    (dict(inputs=[1.0, float("inf")]), "inputs[1] must be a finite number, got inf"),
    (dict(inputs=[1.0, 11.0]), "inputs[1] must be -10..10, got 11"),
    (dict(target=20), "target must be -10..10, got 20"),
    (dict(target=float("-inf")), "target must be a finite number"),
    (dict(target=[0.5, 0.5]), "target must have 1 value(s) (one per output unit), got 2"),
    (dict(target=[]), "target must have 1..8 values, got 0"),
    (dict(weights=[]), "weights must have 1..4 layers, got 0"),
    (dict(weights=[{"w": [[1.0]]}] * 5), "weights must have 1..4 layers, got 5"),
    (dict(weights=[{"w": [[0.5], [0.5], [1.0]]}]), "weights[0].w must have 2 rows (the inputs), got 3"),
    (dict(weights=[{"w": [[0.5, 0.5]] * 2}, {"w": [[0.5]] * 3}]), "weights[1].w must have 2 rows (the units of weights[0])"),
    (dict(weights=[{"w": [[0.5, 1.0], [0.5]]}]), "weights[0].w rows must all have 2 value(s)"),
    (dict(weights=[{"w": [[0.5] * 9] * 2}]), "weights[0].w must have 1..8 columns"),
    (dict(weights=[{"w": [[0.5], [0.5]], "b": [1.0, 2.0]}]), "weights[0].b must have 1 value(s) (one per unit), got 2"),
    (dict(weights=[{"w": [[20.0], [0.5]]}]), "weights[0].w[0][0] must be -10..10, got 20"),
    (dict(weights=[{"w": [[1.0], [1.0]], "c": 1}]), "weights[0].c is not a known setting"),
    (dict(learning_rate=0), "learning_rate must be > 0 and <= 10, got 0"),
    (dict(learning_rate=11), "learning_rate must be > 0 and <= 10, got 11"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
    (dict(loss="hinge"), "loss must be one of"),
    (dict(hidden_activation="softmax"), "hidden_activation must be one of"),
    (dict(output_activation="swish"), "output_activation must be one of"),
    (dict(output_activation="softmax"), "output_activation softmax needs at least 2 output units"),
    (dict(loss="binary_crossentropy"), "loss binary_crossentropy needs output_activation sigmoid"),
    (dict(loss="categorical_crossentropy", output_activation="sigmoid"), "needs output_activation softmax"),
    (dict(loss="binary_crossentropy", output_activation="sigmoid", target=2), "target must be 0..1 for binary"),
    (dict(loss="categorical_crossentropy", output_activation="softmax", target=[0.5, 0.6],
          weights=[{"w": [[1.0, 1.0]] * 2}]), "target must sum to 1"),
    (dict(foo=1), "foo is not a known setting"),
])
def test_invalid_requests_name_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        parse_request(data)
    assert any(message in m for m in err.value.messages), err.value.messages


def test_request_must_be_an_object():
    with pytest.raises(ConfigError, match="request must be a JSON object"):
        parse_request([1, 2])
