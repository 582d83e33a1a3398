"""One backpropagation step, spelled out: every number of the chain rule for a small network.

The computation is NumPy in float64 with the chain rule written per layer (no autodiff), so
that each intermediate value can be shown. ``walkthrough`` returns a JSON-ready dict with the
forward pass, the loss, the backward pass and the gradient-descent update per layer, plus a
flat list of ``steps`` (one equation with its numbers each) that a page can walk through.

Notation (layers are numbered from 1, the inputs are layer 0; units from 1):
``z2_1`` is the pre-activation of unit 1 of layer 2, ``a2_1`` its activation, ``x1`` input 1,
``w2_31`` the weight from unit 3 of layer 1 to unit 1 of layer 2, ``b2_1`` its bias,
``y1``/``t1`` output 1 and its target.

The defaults are the lecture's worked example: inputs (1, 1), target 0.5, all weights 0.5,
a 2-2-1 net without biases, sigmoid hidden layer, linear output, E = 1/2 (t - y)^2, lr 0.01.
It gives the lecture's gradients 0.0227 (input->hidden; exactly 0.0227144) and 0.168918
hidden->output (the lecture's 0.168861 is 0.231 * 0.731, sigmoid(1) rounded), and the updated
weights 0.499773 and 0.498311.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.config import ConfigError, _range, format_errors

MAX_WIDTH = 8
MAX_LAYERS = 4
VALUE = 10.0  # inputs, weights, biases and regression targets lie in -VALUE..VALUE

HiddenActivation = Literal["linear", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]
OutputActivation = Literal["linear", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid", "softmax"]
BackpropLoss = Literal["half_squared_error", "mse", "mae", "binary_crossentropy", "categorical_crossentropy"]
Value = Annotated[float, _range(-VALUE, VALUE)]


def _bad(field: str, msg: str, **kw: object) -> PydanticCustomError:
    return PydanticCustomError("combination", field + " " + msg, kw)


def _count(v: list, lo: int, hi: int, what: str) -> list:
    if not lo <= len(v) <= hi:
        raise PydanticCustomError("range", "must have {lo}..{hi} " + what + ", got {n}",
                                  {"lo": lo, "hi": hi, "n": len(v)})
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LayerSpec(_Strict):
    """One Dense layer: ``w`` is (inputs x units); ``b`` (units,) or omitted for no bias."""

    w: list[list[Value]]
    b: list[Value] | None = None

    @field_validator("w", mode="after")
    @classmethod
    def _w(cls, v: list[list[float]]) -> list[list[float]]:
        _count(v, 1, MAX_WIDTH, "rows (one per input)")
        _count(v[0], 1, MAX_WIDTH, "columns (one per unit)")
        if any(len(row) != len(v[0]) for row in v):
            raise PydanticCustomError("shape", "rows must all have {n} value(s) (one per unit)", {"n": len(v[0])})
        return v


def _lecture_weights() -> list[LayerSpec]:
    return [LayerSpec(w=[[0.5, 0.5], [0.5, 0.5]]), LayerSpec(w=[[0.5], [0.5]])]


class BackpropRequest(_Strict):
    """A network, one example and a learning rate. Defaults: the lecture's worked example."""

    inputs: list[Value] = Field(default_factory=lambda: [1.0, 1.0], description="1..8 input values")
    target: list[Value] = Field(default_factory=lambda: [0.5], description="a number, or one per output unit")
    weights: list[LayerSpec] = Field(default_factory=_lecture_weights, description="1..4 layers, output last")
    hidden_activation: HiddenActivation = "sigmoid"
    output_activation: OutputActivation = "linear"
    loss: BackpropLoss = "half_squared_error"
    learning_rate: float = Field(0.01, description="step size, 0 < lr <= 10")

    @field_validator("learning_rate", mode="after")
    @classmethod
    def _lr(cls, v: float) -> float:
        if not 0 < v <= 10:
            raise PydanticCustomError("range", "must be > 0 and <= 10, got {v}", {"v": f"{v:g}"})
        return v

    @field_validator("inputs", mode="after")
    @classmethod
    def _inputs(cls, v: list[float]) -> list[float]:
        return _count(v, 1, MAX_WIDTH, "values")

    @field_validator("target", mode="before")
    @classmethod
    def _scalar_target(cls, v: object) -> object:
        """A single number means one output; it is checked here so that errors say ``target``."""
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise PydanticCustomError("finite", "must be a finite number, got {v}", {"v": str(v)})
            if not -VALUE <= v <= VALUE:
                raise PydanticCustomError("range", "must be {lo}..{hi}, got {v}",
                                          {"lo": f"{-VALUE:g}", "hi": f"{VALUE:g}", "v": f"{v:g}"})
            return [v]
        return v

    @field_validator("target", mode="after")
    @classmethod
    def _target(cls, v: list[float]) -> list[float]:
        return _count(v, 1, MAX_WIDTH, "values")

    @field_validator("weights", mode="after")
    @classmethod
    def _depth(cls, v: list[LayerSpec]) -> list[LayerSpec]:
        return _count(v, 1, MAX_LAYERS, "layers")

    @property
    def targets(self) -> list[float]:
        return self.target

    @model_validator(mode="after")
    def _combinations(self) -> "BackpropRequest":
        n_in = len(self.inputs)
        for i, layer in enumerate(self.weights):
            units = len(layer.w[0])
            if len(layer.w) != n_in:
                src = "inputs" if i == 0 else f"units of weights[{i - 1}]"
                raise _bad(f"weights[{i}].w", "must have {n} rows (the {s}), got {m}", n=n_in, s=src, m=len(layer.w))
            if layer.b is not None and len(layer.b) != units:
                raise _bad(f"weights[{i}].b", "must have {n} value(s) (one per unit), got {m}", n=units, m=len(layer.b))
            n_in = units
        t = self.targets
        if len(t) != n_in:
            raise _bad("target", "must have {n} value(s) (one per output unit), got {m}", n=n_in, m=len(t))
        out, loss = self.output_activation, self.loss
        if out == "softmax" and n_in < 2:
            raise _bad("output_activation", "softmax needs at least 2 output units, got {n}", n=n_in)
        if loss == "binary_crossentropy" and out != "sigmoid":
            raise _bad("loss", "binary_crossentropy needs output_activation sigmoid, got '{o}'", o=out)
        if loss == "categorical_crossentropy" and out != "softmax":
            raise _bad("loss", "categorical_crossentropy needs output_activation softmax, got '{o}'", o=out)
        if loss in ("binary_crossentropy", "categorical_crossentropy"):
            if any(not 0 <= v <= 1 for v in t):
                raise _bad("target", "must be 0..1 for {l}, got {v}", l=loss, v=t)
            if loss == "categorical_crossentropy" and abs(sum(t) - 1) > 1e-6:
                raise _bad("target", "must sum to 1 (one-hot or probabilities) for categorical_crossentropy, got {s}",
                           s=f"{sum(t):g}")
        return self


def parse_request(data: object) -> BackpropRequest:
    """Validate ``data`` (a dict) or raise ConfigError whose messages name each field."""
    if not isinstance(data, dict):
        raise ConfigError([f"request must be a JSON object, got {type(data).__name__}"])
    try:
        return BackpropRequest.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None


# --- activations, their derivatives and the losses ---------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


_erf = np.vectorize(math.erf, otypes=[float])


def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + _erf(z / math.sqrt(2)))


# name: (f(z), f'(z) given z and a = f(z), formula of the derivative)
ACTIVATIONS = {
    "linear": (lambda z: z, lambda z, a: np.ones_like(z), "1"),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(float), "1 if z > 0 else 0"),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z, a: np.where(z > 0, 1.0, 0.01),
                   "1 if z > 0 else 0.01"),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z, a: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))), "1 if z > 0 else exp(z)"),
    "gelu": (lambda z: z * _phi(z), lambda z, a: _phi(z) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi),
             "Phi(z) + z*phi(z)"),
    "silu": (lambda z: z * _sigmoid(z), lambda z, a: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
             "sigmoid(z)*(1 + z*(1 - sigmoid(z)))"),
    "tanh": (np.tanh, lambda z, a: 1 - a * a, "1 - a^2"),
    "sigmoid": (_sigmoid, lambda z, a: a * (1 - a), "a*(1 - a)"),
}


def _derivative_text(act: str, z: float, a: float) -> str:
    """The derivative's formula with this unit's numbers put in."""
    if act == "sigmoid":
        return f"a*(1 - a) = {_n(a)}*(1 - {_n(a)})"
    if act == "tanh":
        return f"1 - a^2 = 1 - {_p(a)}^2"
    if act == "linear":
        return "1"
    return f"{ACTIVATIONS[act][2]}, z = {_n(z)}"


def _loss_derivative_text(loss: str, y: float, t: float, n: int) -> str:
    """dE/dy of one output, symbolic and with the numbers put in."""
    d = f"{_n(y)} - {_p(t)}"
    return {
        "half_squared_error": f"y - t = {d}",
        "mse": f"2*(y - t)/{n} = 2*({d})/{n}",
        "mae": f"sign(y - t)/{n} = sign({d})/{n}",
        "binary_crossentropy": f"(y - t)/(y*(1 - y))/{n} = ({d})/({_n(y)}*(1 - {_n(y)}))/{n}",
        "categorical_crossentropy": f"-t/y = -{_p(t)}/{_n(y)}",
    }[loss]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _loss(name: str, y: np.ndarray, t: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray, str]:
    """Loss value, dE/dy and the formula. Cross-entropies take the value from the logits ``z``
    (exact even where y rounds to 0 or 1)."""
    n = len(y)
    if name == "half_squared_error":
        return 0.5 * float(((t - y) ** 2).sum()), y - t, "1/2 * sum (t - y)^2"
    if name == "mse":
        return float(((t - y) ** 2).mean()), 2 * (y - t) / n, "1/n * sum (t - y)^2"
    if name == "mae":
        return float(np.abs(t - y).mean()), np.sign(y - t) / n, "1/n * sum |t - y|"
    if name == "binary_crossentropy":
        value = float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean())
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = (y - t) / (y * (1 - y)) / n
        return value, grad, "-1/n * sum [t*log(y) + (1 - t)*log(1 - y)]"
    lse = z.max() + math.log(np.exp(z - z.max()).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.where(t > 0, -t / y, 0.0)
    return float(-(t * (z - lse)).sum()), grad, "-sum t*log(y)"


# --- formatting --------------------------------------------------------------------------------


def _n(v: float) -> str:
    """A number for the equations: 6 significant digits, integers keep a '.0'."""
    s = f"{float(v):.6g}"
    return s if any(c in s for c in ".en") else s + ".0"


def _p(v: float) -> str:
    """A factor in a product: negative numbers in parentheses."""
    return f"({_n(v)})" if v < 0 else _n(v)


def _finite(tree: object, path: str = "result") -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _finite(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            _finite(v, f"{path}[{i}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ValueError(f"{path} is not finite in float64 (the network saturates); use smaller weights or inputs")


# --- the walkthrough ---------------------------------------------------------------------------


def walkthrough(req: BackpropRequest) -> dict:
    """One forward pass, loss, backward pass and SGD update, with every intermediate value.

    Returns ``{"inputs", "target", "loss_name", "learning_rate", "output", "loss",
    "layers": [{"layer", "activation", "w", "b", "z", "a", "dE_da", "da_dz", "dE_dz",
    "dE_dW", "dE_db", "w_new", "b_new"}, ...], "steps": [{"phase", "layer", "text", "value"}]}``.
    ``da_dz`` is a (units x units) Jacobian for a softmax output, else one value per unit; the
    ``b`` entries are None for layers without bias. Raises ValueError when a value overflows.
    """
    L = len(req.weights)
    x = np.array(req.inputs, float)
    t = np.array(req.targets, float)
    Ws = [np.array(spec.w, float) for spec in req.weights]
    bs = [None if spec.b is None else np.array(spec.b, float) for spec in req.weights]
    acts = [req.hidden_activation] * (L - 1) + [req.output_activation]
    steps: list[dict] = []

    def step(phase: str, layer: int, text: str, value: float) -> None:
        steps.append({"phase": phase, "layer": layer, "text": text, "value": float(value)})

    def a_name(layer: int, i: int) -> str:  # activation i (0-based) of layer ``layer`` (0 = inputs)
        return f"x{i + 1}" if layer == 0 else f"a{layer}_{i + 1}"

    # forward
    zs, as_ = [], [x]
    for l in range(1, L + 1):
        W, b, prev, act = Ws[l - 1], bs[l - 1], as_[-1], acts[l - 1]
        z = prev @ W + (0 if b is None else b)
        for j in range(W.shape[1]):
            names = [f"{a_name(l - 1, i)}*w{l}_{i + 1}{j + 1}" for i in range(W.shape[0])]
            nums = [f"{_p(prev[i])}*{_p(W[i, j])}" for i in range(W.shape[0])]
            if b is not None:
                names.append(f"b{l}_{j + 1}")
                nums.append(_p(b[j]))
            step("forward", l, f"z{l}_{j + 1} = {' + '.join(names)} = {' + '.join(nums)} = {_n(z[j])}", z[j])
        a = _softmax(z) if act == "softmax" else ACTIVATIONS[act][0](z)
        for j in range(len(z)):
            if act == "softmax":
                text = f"a{l}_{j + 1} = softmax(z{l})_{j + 1} = exp({_n(z[j])}) / sum_k exp(z{l}_k) = {_n(a[j])}"
            else:
                text = f"a{l}_{j + 1} = {act}(z{l}_{j + 1}) = {act}({_n(z[j])}) = {_n(a[j])}"
            step("forward", l, text, a[j])
        zs.append(z)
        as_.append(a)

    # loss
    y, zL = as_[-1], zs[-1]
    loss, dE_dy, formula = _loss(req.loss, y, t, zL)
    terms = {
        "half_squared_error": lambda k: f"({_n(t[k])} - {_p(y[k])})^2",
        "mse": lambda k: f"({_n(t[k])} - {_p(y[k])})^2",
        "mae": lambda k: f"|{_n(t[k])} - {_p(y[k])}|",
        "binary_crossentropy": lambda k: f"[{_n(t[k])}*log({_n(y[k])}) + (1 - {_n(t[k])})*log(1 - {_n(y[k])})]",
        "categorical_crossentropy": lambda k: f"{_n(t[k])}*log({_n(y[k])})",
    }[req.loss]
    ks = [k for k in range(len(y)) if req.loss != "categorical_crossentropy" or t[k] > 0]
    scale = {"half_squared_error": "1/2 * ", "mse": f"1/{len(y)} * ", "mae": f"1/{len(y)} * ",
             "binary_crossentropy": f"-1/{len(y)} * ", "categorical_crossentropy": "-"}[req.loss]
    body = " + ".join(terms(k) for k in ks)
    step("loss", L, f"E = {formula} = {scale}({body}) = {_n(loss)}", loss)

    # backward (with the weights of the forward pass)
    layers = [None] * L
    dE_da = dE_dy
    for l in range(L, 0, -1):
        W, b, z, a, prev, act = Ws[l - 1], bs[l - 1], zs[l - 1], as_[l], as_[l - 1], acts[l - 1]
        units = len(z)
        if l < L:  # dE/da of a hidden layer: sum over the next layer's units
            Wn, dn = Ws[l], layers[l]["_delta"]
            dE_da = Wn @ dn
            for j in range(units):
                parts = " + ".join(f"{_p(dn[k])}*{_p(Wn[j, k])}" for k in range(len(dn)))
                step("backward", l, f"dE/da{l}_{j + 1} = sum_k dE/dz{l + 1}_k*w{l + 1}_{j + 1}k = {parts} = "
                     f"{_n(dE_da[j])}", dE_da[j])
        else:
            for j in range(units):
                step("backward", l, f"dE/da{l}_{j + 1} = dE/dy{j + 1} = "
                     f"{_loss_derivative_text(req.loss, y[j], t[j], units)} = {_n(dE_dy[j])}", dE_dy[j])
        if act == "softmax":
            jac = np.diag(a) - np.outer(a, a)
            da_dz = jac
        else:
            da_dz = ACTIVATIONS[act][1](z, a)
        # The output layer's cross-entropy shortcuts; hidden layers always use the chain rule.
        ce_softmax = l == L and act == "softmax" and req.loss == "categorical_crossentropy"
        ce_sigmoid = l == L and act == "sigmoid" and req.loss == "binary_crossentropy"
        if ce_softmax:
            delta = a - t  # the Jacobian and -t/y cancel; exact even where y rounds to 0
        elif ce_sigmoid:
            delta = (a - t) / units
        elif act == "softmax":
            delta = jac.T @ dE_da
        else:
            delta = dE_da * da_dz
        for j in range(units):
            if act == "softmax":
                step("backward", l, f"da{l}_{j + 1}/dz{l}_{j + 1} = a*(1 - a) = {_n(a[j])}*(1 - {_n(a[j])}) = "
                     f"{_n(jac[j, j])} (and da{l}_k/dz{l}_{j + 1} = -a{l}_k*a{l}_{j + 1} for k != {j + 1})", jac[j, j])
            else:
                step("backward", l, f"da{l}_{j + 1}/dz{l}_{j + 1} = {act}'(z{l}_{j + 1}) = "
                     f"{_derivative_text(act, z[j], a[j])} = {_n(da_dz[j])}", da_dz[j])
            if ce_softmax:
                text = f"dE/dz{l}_{j + 1} = y{j + 1} - t{j + 1} (softmax and cross-entropy simplify) = " \
                       f"{_n(a[j])} - {_p(t[j])} = {_n(delta[j])}"
            elif ce_sigmoid:
                text = f"dE/dz{l}_{j + 1} = (y{j + 1} - t{j + 1})/{units} (sigmoid and cross-entropy simplify) = " \
                       f"({_n(a[j])} - {_p(t[j])})/{units} = {_n(delta[j])}"
            elif act == "softmax":
                text = f"dE/dz{l}_{j + 1} = sum_k dE/da{l}_k*da{l}_k/dz{l}_{j + 1} = " + " + ".join(
                    f"{_p(dE_da[k])}*{_p(jac[k, j])}" for k in range(units)) + f" = {_n(delta[j])}"
            else:
                text = f"dE/dz{l}_{j + 1} = dE/da{l}_{j + 1} * da{l}_{j + 1}/dz{l}_{j + 1} = " \
                       f"{_p(dE_da[j])}*{_p(da_dz[j])} = {_n(delta[j])}"
            step("backward", l, text, delta[j])
        dW = np.outer(prev, delta)
        for i in range(W.shape[0]):
            for j in range(units):
                step("backward", l, f"dE/dw{l}_{i + 1}{j + 1} = {a_name(l - 1, i)} * dE/dz{l}_{j + 1} = "
                     f"{_p(prev[i])}*{_p(delta[j])} = {_n(dW[i, j])}", dW[i, j])
        if b is not None:
            for j in range(units):
                step("backward", l, f"dE/db{l}_{j + 1} = dE/dz{l}_{j + 1} = {_n(delta[j])}", delta[j])
        layers[l - 1] = {
            "layer": l, "activation": act, "w": W.tolist(), "b": None if b is None else b.tolist(),
            "z": z.tolist(), "a": a.tolist(), "dE_da": np.asarray(dE_da).tolist(), "da_dz": da_dz.tolist(),
            "dE_dz": delta.tolist(), "dE_dW": dW.tolist(), "dE_db": None if b is None else delta.tolist(),
            "_delta": delta,
        }

    # update: w <- w - lr * dE/dw
    lr = req.learning_rate
    for l in range(1, L + 1):
        entry, W, b = layers[l - 1], Ws[l - 1], bs[l - 1]
        dW, delta = np.array(entry["dE_dW"]), entry.pop("_delta")
        W_new = W - lr * dW
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                w = f"w{l}_{i + 1}{j + 1}"
                step("update", l, f"{w} = {w} - lr*dE/d{w} = {_n(W[i, j])} - {_n(lr)}*{_p(dW[i, j])} = "
                     f"{_n(W_new[i, j])}", W_new[i, j])
        entry["w_new"] = W_new.tolist()
        entry["b_new"] = None
        if b is not None:
            b_new = b - lr * delta
            for j in range(len(b)):
                name = f"b{l}_{j + 1}"
                step("update", l, f"{name} = {name} - lr*dE/d{name} = {_n(b[j])} - {_n(lr)}*{_p(delta[j])} = "
                     f"{_n(b_new[j])}", b_new[j])
            entry["b_new"] = b_new.tolist()

    result = {
        "inputs": x.tolist(), "target": t.tolist(), "loss_name": req.loss, "learning_rate": lr,
        "output": y.tolist(), "loss": loss, "layers": layers, "steps": steps,
    }
    _finite(result)
    return result
