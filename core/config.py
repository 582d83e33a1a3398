"""One typed source of truth for a training configuration.

The same ``Config`` is used by the CLI, the websocket protocol, the page's URL and the
presets. Field names follow Keras' vocabulary. Every invalid value is rejected with a
message that names the field, the value and what is allowed, e.g.
``layers[2].units must be 1..8, got 12``.

Limits that an operator may lower (maximum depth, width, points) are passed as validation
context: ``Config.model_validate(data, context={"limits": Limits(max_units=4)})``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

FEATURES = ("x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2")
ACTIVATIONS = ("linear", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear", "tanh")
LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine")
INITS = ("glorot_uniform", "he_normal", "uniform", "zeros")
CLASSIFICATION_DATASETS = ("circle", "xor", "gauss", "spiral", "moons", "checkerboard", "blobs")
REGRESSION_DATASETS = ("plane", "multigauss")
DATASETS = CLASSIFICATION_DATASETS + REGRESSION_DATASETS + ("custom",)
MULTICLASS_DATASETS = ("blobs", "spiral", "custom")
MAX_CLASSES = 5

Feature = Literal["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]
Activation = Literal["linear", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]
OutputActivation = Literal["sigmoid", "softmax", "linear", "tanh"]
Loss = Literal["mse", "mae", "binary_crossentropy", "categorical_crossentropy"]
Optimizer = Literal["sgd", "momentum", "rmsprop", "adam"]
Schedule = Literal["constant", "step", "exponential", "cosine", "warmup_cosine"]
Init = Literal["glorot_uniform", "he_normal", "uniform", "zeros"]
Dataset = Literal[
    "circle", "xor", "gauss", "spiral", "moons", "checkerboard", "blobs", "plane", "multigauss", "custom"
]


@dataclass(frozen=True)
class Limits:
    """Server-side maxima. The engine compiles one network of ``max_layers`` x ``max_units``."""

    max_layers: int = 6
    max_units: int = 8
    max_points: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.max_layers <= 6:
            raise ValueError(f"max_layers must be 0..6, got {self.max_layers}")
        if not 1 <= self.max_units <= 8:
            raise ValueError(f"max_units must be 1..8, got {self.max_units}")
        if not 20 <= self.max_points <= 4000:
            raise ValueError(f"max_points must be 20..4000, got {self.max_points}")


DEFAULT_LIMITS = Limits()


def _limits(info: ValidationInfo) -> Limits:
    ctx = info.context or {}
    return ctx.get("limits", DEFAULT_LIMITS)


def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _not_bool(v: object) -> None:
    # pydantic's lax mode reads true/false as 1/0; a switch where a number belongs is a mistake.
    if isinstance(v, bool):
        raise PydanticCustomError("number", "must be a number, got {v}", {"v": str(v).lower()})


def _range(lo: float, hi: float):
    def check(v, handler, info: ValidationInfo):
        _not_bool(v)
        v = handler(v)
        if isinstance(v, float) and not math.isfinite(v):
            raise PydanticCustomError("finite", "must be a finite number, got {v}", {"v": str(v)})
        if not lo <= v <= hi:
            raise PydanticCustomError(
                "range", "must be {lo}..{hi}, got {v}", {"lo": _fmt(lo), "hi": _fmt(hi), "v": _fmt(v)}
            )
        return v

    return WrapValidator(check)


def Float(lo: float, hi: float, default: float, doc: str):
    return Annotated[float, Field(default, description=doc, json_schema_extra=_bounds(lo, hi)), _range(lo, hi)]


def Int(lo: int, hi: int, default: int, doc: str):
    return Annotated[int, Field(default, description=doc, json_schema_extra=_bounds(lo, hi)), _range(lo, hi)]


def _bounds(lo: float, hi: float) -> dict:
    return {"minimum": lo, "maximum": hi}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=False)


class Layer(_Strict):
    """One hidden Dense layer."""

    units: int = Field(4, description="neurons in this layer", json_schema_extra=_bounds(1, 8))
    activation: Activation = "tanh"

    @field_validator("units", mode="before")
    @classmethod
    def _units_not_bool(cls, v: object) -> object:
        _not_bool(v)
        return v

    @field_validator("units", mode="after")
    @classmethod
    def _units(cls, v: int, info: ValidationInfo) -> int:
        hi = _limits(info).max_units
        if not 1 <= v <= hi:
            raise PydanticCustomError("range", "must be 1..{hi}, got {v}", {"hi": hi, "v": v})
        return v


class Point(_Strict):
    """A user-placed data point (``dataset: custom``)."""

    x1: Annotated[float, Field(json_schema_extra=_bounds(-6, 6)), _range(-6, 6)]
    x2: Annotated[float, Field(json_schema_extra=_bounds(-6, 6)), _range(-6, 6)]
    label: Annotated[float, Field(json_schema_extra=_bounds(-1, 4)), _range(-1, 4)] = Field(
        description="class index 0..classes-1 (binary also accepts -1 for class 0), or the regression target in -1..1"
    )
    subset: Literal["train", "test"] | None = None


class Augmentation(_Strict):
    """Random jitter and reflections of the training points, drawn anew every epoch."""

    jitter: Annotated[float, Field(description="std of gaussian jitter", json_schema_extra=_bounds(0, 2)), _range(0, 2)] = 0.0
    flip_x1: bool = Field(False, description="reflect x1 -> -x1 with probability 1/2")
    flip_x2: bool = Field(False, description="reflect x2 -> -x2 with probability 1/2")

    @property
    def active(self) -> bool:
        return self.jitter > 0 or self.flip_x1 or self.flip_x2


class LayerWeights(_Strict):
    """Weights of one Dense layer: ``w`` is (inputs, units), ``b`` is (units,)."""

    w: list[list[Annotated[float, Field(allow_inf_nan=False)]]]
    b: list[Annotated[float, Field(allow_inf_nan=False)]]
    gamma: list[Annotated[float, Field(allow_inf_nan=False)]] | None = None
    beta: list[Annotated[float, Field(allow_inf_nan=False)]] | None = None


class Config(_Strict):
    """Everything that defines a run. Defaults are TensorFlow Playground's."""

    seed: Annotated[int, Field(json_schema_extra=_bounds(0, 2**31 - 1)), _range(0, 2**31 - 1)] = 0
    problem: Literal["classification", "regression"] = "classification"
    dataset: Dataset = "circle"
    classes: Int(2, MAX_CLASSES, 2, "number of classes (multi-class: blobs, spiral, custom)") = 2
    n_points: Int(10, 4000, 500, "points generated, train and test together") = 500
    noise: Float(0, 0.5, 0.0, "dataset noise, TensorFlow Playground's 0..50 % as 0..0.5") = 0.0
    train_ratio: Float(0.1, 0.9, 0.5, "fraction of points used for training") = 0.5
    class_ratio: Annotated[
        float | None,
        Field(None, description="share of class 1 (binary: the positive class); None: balanced"),
    ] = None
    points: list[Point] | None = None
    features: list[Feature] = Field(default_factory=lambda: ["x1", "x2"], min_length=1)
    layers: list[Layer] = Field(default_factory=lambda: [Layer(units=4), Layer(units=2)])
    output_activation: OutputActivation | None = None
    init: Init = "glorot_uniform"
    weights: list[LayerWeights] | None = None
    loss: Loss | None = None
    class_weight: Literal["balanced"] | list[Annotated[float, _range(0, 100)]] | None = None
    optimizer: Optimizer = "sgd"
    learning_rate: Float(1e-6, 10.0, 0.03, "step size") = 0.03
    momentum: Float(0.0, 0.999, 0.9, "momentum (optimizer 'momentum'; RMSProp has none)") = 0.9
    beta_1: Float(0.0, 0.999, 0.9, "Adam first-moment decay") = 0.9
    beta_2: Float(0.0, 0.99999, 0.999, "Adam second-moment decay") = 0.999
    rho: Float(0.0, 0.999, 0.9, "RMSProp decay of the squared-gradient average") = 0.9
    epsilon: Float(1e-10, 1.0, 1e-7, "numerical epsilon of RMSProp and Adam") = 1e-7
    lr_schedule: Schedule = "constant"
    decay_rate: Float(0.01, 1.0, 0.5, "factor per decay_epochs (step, exponential)") = 0.5
    decay_epochs: Int(1, 100000, 100, "step period, exponential time scale, cosine length") = 100
    warmup_epochs: Int(0, 100000, 10, "linear warm-up length (warmup_cosine)") = 10
    cosine_alpha: Float(0.0, 1.0, 0.0, "final learning rate of cosine schedules, as a fraction") = 0.0
    batch_size: Int(1, 4000, 10, "points per update; clamped to the training set (full batch)") = 10
    shuffle: bool = True
    l1: Float(0.0, 10.0, 0.0, "L1 penalty rate on weights") = 0.0
    l2: Float(0.0, 10.0, 0.0, "L2 penalty rate on weights (Keras: l2 * sum(w^2))") = 0.0
    dropout: Float(0.0, 0.9, 0.0, "drop rate of hidden activations while training") = 0.0
    input_noise: Float(0.0, 3.0, 0.0, "std of gaussian noise added to x1, x2 while training") = 0.0
    batch_norm: bool = False
    layer_norm: bool = False
    early_stopping_patience: Int(0, 100000, 0, "epochs without test-loss improvement; 0 = off") = 0
    augmentation: Augmentation = Field(default_factory=Augmentation)

    # --- cross-field rules ---------------------------------------------------------------

    @field_validator("layers", mode="after")
    @classmethod
    def _depth(cls, v: list[Layer], info: ValidationInfo) -> list[Layer]:
        hi = _limits(info).max_layers
        if len(v) > hi:
            raise PydanticCustomError("range", "must have 0..{hi} hidden layers, got {v}", {"hi": hi, "v": len(v)})
        return v

    @field_validator("features", mode="after")
    @classmethod
    def _unique_features(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise PydanticCustomError("unique", "must not repeat a feature, got {v}", {"v": v})
        return sorted(v, key=FEATURES.index)

    @field_validator("n_points", mode="after")
    @classmethod
    def _max_points(cls, v: int, info: ValidationInfo) -> int:
        hi = _limits(info).max_points
        if v > hi:
            raise PydanticCustomError("range", "must be 10..{hi}, got {v}", {"hi": hi, "v": v})
        return v

    @field_validator("points", mode="after")
    @classmethod
    def _max_custom_points(cls, v: list[Point] | None, info: ValidationInfo) -> list[Point] | None:
        hi = _limits(info).max_points
        if v is not None and len(v) > hi:
            raise PydanticCustomError("range", "must hold at most {hi} points, got {v}", {"hi": hi, "v": len(v)})
        return v

    @model_validator(mode="after")
    def _combinations(self) -> "Config":
        def bad(field: str, msg: str, **kw: object) -> PydanticCustomError:
            return PydanticCustomError("combination", field + " " + msg, kw)

        reg = self.problem == "regression"
        if reg and self.dataset in CLASSIFICATION_DATASETS:
            raise bad("dataset", "'{d}' is a classification dataset; regression allows plane, multigauss, custom",
                      d=self.dataset)
        if not reg and self.dataset in REGRESSION_DATASETS:
            raise bad("dataset", "'{d}' is a regression dataset; classification allows {a}",
                      d=self.dataset, a=", ".join(CLASSIFICATION_DATASETS + ("custom",)))
        if reg and self.classes != 2:
            raise bad("classes", "must stay 2 (unused) for regression, got {c}", c=self.classes)
        if self.classes > 2 and self.dataset not in MULTICLASS_DATASETS:
            raise bad("classes", "can be 3..5 only for blobs, spiral or custom, got {c} with {d}",
                      c=self.classes, d=self.dataset)
        if self.dataset == "custom" and not self.points:
            raise bad("points", "must hold at least one point when dataset is 'custom'")
        if self.class_ratio is not None:
            if reg:
                raise bad("class_ratio", "applies to classification only")
            if not math.isfinite(self.class_ratio) or not 0.05 <= self.class_ratio <= 0.95:
                raise bad("class_ratio", "must be 0.05..0.95, got {v}", v=self.class_ratio)
        out = self.resolved_output_activation
        loss = self.resolved_loss
        if reg and out not in ("linear", "tanh"):
            raise bad("output_activation", "must be linear or tanh for regression, got '{o}'", o=out)
        if not reg and out == "linear":
            raise bad("output_activation", "must be sigmoid, tanh or softmax for classification, got 'linear'")
        if self.classes > 2 and out != "softmax":
            raise bad("output_activation", "must be softmax with {c} classes, got '{o}'", c=self.classes, o=out)
        if reg and loss in ("binary_crossentropy", "categorical_crossentropy"):
            raise bad("loss", "must be mse or mae for regression, got '{l}'", l=loss)
        if loss == "categorical_crossentropy" and out != "softmax":
            raise bad("loss", "categorical_crossentropy needs output_activation softmax, got '{o}'", o=out)
        if loss == "binary_crossentropy" and out != "sigmoid":
            raise bad("loss", "binary_crossentropy needs output_activation sigmoid, got '{o}'", o=out)
        if isinstance(self.class_weight, list):
            if reg:
                raise bad("class_weight", "applies to classification only")
            if len(self.class_weight) != self.classes:
                raise bad("class_weight", "must list {c} weights (one per class), got {n}",
                          c=self.classes, n=len(self.class_weight))
        if self.points:
            for i, p in enumerate(self.points):
                if not reg and (p.label != int(p.label) or p.label >= self.classes):
                    raise bad(f"points[{i}].label", "must be a class 0..{k} (or -1 for class 0), got {v}",
                              k=self.classes - 1, v=p.label)
                if reg and not -1 <= p.label <= 1:
                    raise bad(f"points[{i}].label", "must be -1..1 for regression, got {v}", v=p.label)
        if self.weights is not None:
            self._check_weights()
        return self

    def _check_weights(self) -> None:
        ins = [len(self.features)] + [layer.units for layer in self.layers]
        outs = [layer.units for layer in self.layers] + [self.n_outputs]
        if len(self.weights) != len(ins):
            raise PydanticCustomError(
                "combination", "weights must list {n} layers (hidden layers and the output), got {m}",
                {"n": len(ins), "m": len(self.weights)})
        for i, (lw, n_in, n_out) in enumerate(zip(self.weights, ins, outs)):
            if len(lw.w) != n_in or any(len(row) != n_out for row in lw.w):
                raise PydanticCustomError(
                    "combination", "weights[{i}].w must be {a}x{b} (inputs x units)", {"i": i, "a": n_in, "b": n_out})
            if len(lw.b) != n_out:
                raise PydanticCustomError("combination", "weights[{i}].b must have {b} values", {"i": i, "b": n_out})
            for name in ("gamma", "beta"):
                v = getattr(lw, name)
                if v is not None and (i == len(ins) - 1 or len(v) != n_out):
                    raise PydanticCustomError(
                        "combination", "weights[{i}].{n} must have {b} values (hidden layers only)",
                        {"i": i, "n": name, "b": n_out})

    # --- derived values ---------------------------------------------------------------

    @property
    def resolved_output_activation(self) -> str:
        if self.output_activation is not None:
            return self.output_activation
        if self.problem == "regression":
            return "linear"
        return "softmax" if self.classes > 2 else "sigmoid"

    @property
    def resolved_loss(self) -> str:
        if self.loss is not None:
            return self.loss
        out = self.resolved_output_activation
        if self.problem == "regression" or out == "tanh":
            return "mse"
        return "categorical_crossentropy" if out == "softmax" else "binary_crossentropy"

    @property
    def n_outputs(self) -> int:
        return self.classes if self.resolved_output_activation == "softmax" else 1

    @property
    def n_params(self) -> int:
        ins = [len(self.features)] + [layer.units for layer in self.layers]
        outs = [layer.units for layer in self.layers] + [self.n_outputs]
        return sum(a * b + b for a, b in zip(ins, outs))


def format_errors(err: ValidationError) -> list[str]:
    """Turn a pydantic error into messages like ``layers[2].units must be 1..8, got 12``."""
    out = []
    for e in err.errors(include_url=False):
        loc = parent = ""  # parent: the path before the last part (an unknown key's container)
        for part in e["loc"]:
            parent = loc
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("function-after[check()]",) or str(part).startswith(("function-", "literal[", "list[", "float", "int")):
                continue
            else:
                loc += ("." if loc else "") + str(part)
        kind, msg, value = e["type"], e["msg"], e.get("input")
        if kind in ("range", "finite", "unique", "shape", "number"):
            text = msg
        elif kind == "combination":
            out.append(msg)
            continue
        elif kind == "literal_error":
            text = f"must be one of {e['ctx']['expected']}, got {value!r}"
        elif kind == "finite_number":
            text = f"must be a finite number, got {value}"
        elif kind == "extra_forbidden":
            # the container's path as built, not split at dots: a key may contain dots itself
            out.append(f"{parent + '.' if parent else ''}{_key(str(e['loc'][-1]))} is not a known setting")
            continue
        elif kind == "missing":
            text = "is required"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            text = f"{msg[0].lower()}{msg[1:]}, got {value!r}".replace("Input should be", "must be")
            text = text.replace("input should be", "must be")
        else:
            text = msg[0].lower() + msg[1:]
            text = text.replace("input should be", "must be") + f", got {value!r}"
        out.append(f"{loc or 'config'} {text}")
    # A union (class_weight) reports one error per branch; keep each message once.
    return list(dict.fromkeys(out))


def _key(k: str) -> str:
    """A key as the user can recognise it: quoted when empty or not a plain name."""
    return k if k.isidentifier() else json.dumps(k)[:60]


class ConfigError(ValueError):
    """A configuration was rejected; ``messages`` name each field and what is allowed."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def fitting_defaults(limits: Limits) -> dict:
    """Defaults shrunk to an operator's lower limits: pydantic does not validate defaults, so
    n_points=500 or units=4 would otherwise slip past NNPLAY_MAX_POINTS/UNITS, and every later
    patch would fail (the whole config is re-validated: "n_points must be 10..200, got 500")."""
    d = Config()
    layers = [{"units": min(la.units, limits.max_units)} for la in d.layers][: limits.max_layers]
    return {"n_points": min(d.n_points, limits.max_points), "layers": layers}


def parse_config(data: object, limits: Limits = DEFAULT_LIMITS) -> Config:
    """Validate ``data`` (a dict) into a Config or raise ConfigError with readable messages."""
    if not isinstance(data, dict):
        raise ConfigError([f"config must be a JSON object, got {type(data).__name__}"])
    # pydantic does not validate defaults: shrink the ones an operator's limits exclude.
    if limits != DEFAULT_LIMITS:
        fitted = {"n_points": min(500, limits.max_points),
                  "layers": [{"units": min(u, limits.max_units)} for u in (4, 2)][: limits.max_layers]}
        data = {**fitted, **data}
    try:
        return Config.model_validate(data, context={"limits": limits})
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None


def patch_config(cfg: Config, patch: object, limits: Limits = DEFAULT_LIMITS) -> Config:
    """Apply a partial update (top-level keys replace) and validate the result as a whole."""
    if not isinstance(patch, dict):
        raise ConfigError([f"patch must be a JSON object, got {type(patch).__name__}"])
    unknown = [k for k in patch if k not in Config.model_fields]
    if unknown:
        raise ConfigError([f"{_key(k)} is not a known setting" for k in unknown])
    data = cfg.model_dump(exclude_none=True)
    data.pop("weights", None)  # starting weights apply once; a patch keeps the trained ones
    data.update(patch)
    data = {k: v for k, v in data.items() if v is not None}
    return parse_config(data, limits)


def json_schema() -> dict:
    return Config.model_json_schema()
