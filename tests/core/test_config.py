"""Config schema: TensorFlow Playground defaults, and every kind of bad config rejected with a
message that names the field (``layers[2].units must be 1..8, got 12``)."""

from __future__ import annotations

import pytest

from core.config import Config, ConfigError, Limits, parse_config, patch_config

INF, NAN = float("inf"), float("nan")
CUSTOM = {"dataset": "custom", "points": [{"x1": 1.0, "x2": 2.0, "label": 1}, {"x1": -1.0, "x2": 0.5, "label": 0}]}


def test_defaults_are_tensorflow_playgrounds():
    cfg = parse_config({})
    assert cfg == Config()
    assert (cfg.dataset, cfg.problem, cfg.n_points, cfg.noise, cfg.train_ratio) == ("circle", "classification", 500, 0.0, 0.5)
    assert cfg.features == ["x1", "x2"]
    assert [(layer.units, layer.activation) for layer in cfg.layers] == [(4, "tanh"), (2, "tanh")]
    assert (cfg.optimizer, cfg.learning_rate, cfg.batch_size) == ("sgd", 0.03, 10)
    assert (cfg.l1, cfg.l2, cfg.dropout) == (0.0, 0.0, 0.0)
    assert cfg.resolved_output_activation == "sigmoid" and cfg.resolved_loss == "binary_crossentropy"
    # 2-4-2-1 with biases: 2*4+4 + 4*2+2 + 2*1+1
    assert cfg.n_params == 25


@pytest.mark.parametrize("data, out, loss, n_out", [
    ({"dataset": "blobs", "classes": 3}, "softmax", "categorical_crossentropy", 3),
    ({"problem": "regression", "dataset": "plane"}, "linear", "mse", 1),
    ({"output_activation": "tanh"}, "tanh", "mse", 1),
    ({"dataset": "spiral", "classes": 5}, "softmax", "categorical_crossentropy", 5),
])
def test_resolved_output_and_loss(data, out, loss, n_out):
    cfg = parse_config(data)
    assert (cfg.resolved_output_activation, cfg.resolved_loss, cfg.n_outputs) == (out, loss, n_out)


def test_features_are_put_in_canonical_order():
    assert parse_config({"features": ["sin_x2", "x1x2", "x1"]}).features == ["x1", "x1x2", "sin_x2"]


# (config, exact message) — the message names the field, the value and what is allowed.
EXACT = [
    # out of range
    ({"layers": [{"units": 4}, {"units": 2}, {"units": 12}]}, "layers[2].units must be 1..8, got 12"),
    ({"layers": [{"units": 0}]}, "layers[0].units must be 1..8, got 0"),
    ({"learning_rate": 0}, "learning_rate must be 1e-06..10, got 0"),
    ({"learning_rate": 11.0}, "learning_rate must be 1e-06..10, got 11"),
    ({"n_points": 5}, "n_points must be 10..4000, got 5"),
    ({"noise": 0.6}, "noise must be 0..0.5, got 0.6"),
    ({"noise": -0.1}, "noise must be 0..0.5, got -0.1"),
    ({"train_ratio": 0.95}, "train_ratio must be 0.1..0.9, got 0.95"),
    ({"dropout": 0.95}, "dropout must be 0..0.9, got 0.95"),
    ({"batch_size": 0}, "batch_size must be 1..4000, got 0"),
    ({"seed": -1}, "seed must be 0..2147483647, got -1"),
    ({"momentum": 1.0}, "momentum must be 0..0.999, got 1"),
    ({"epsilon": 0}, "epsilon must be 1e-10..1, got 0"),
    ({"decay_epochs": 0}, "decay_epochs must be 1..100000, got 0"),
    ({"l2": 11}, "l2 must be 0..10, got 11"),
    ({"classes": 6, "dataset": "blobs"}, "classes must be 2..5, got 6"),
    ({"class_ratio": 0.01}, "class_ratio must be 0.05..0.95, got 0.01"),
    ({"augmentation": {"jitter": 3}}, "augmentation.jitter must be 0..2, got 3"),
    ({"dataset": "custom", "points": [{"x1": 7, "x2": 0, "label": 1}]}, "points[0].x1 must be -6..6, got 7"),
    # NaN / inf
    ({"learning_rate": NAN}, "learning_rate must be a finite number, got nan"),
    ({"l2": INF}, "l2 must be a finite number, got inf"),
    ({"noise": -INF}, "noise must be a finite number, got -inf"),
    ({"layers": [], "weights": [{"w": [[1.0], [NAN]], "b": [0.0]}]}, "weights[0].w[1][0] must be a finite number, got nan"),
    # wrong types
    ({"learning_rate": True}, "learning_rate must be a number, got true"),
    ({"seed": False}, "seed must be a number, got false"),
    ({"layers": [{"units": True}]}, "layers[0].units must be a number, got true"),
    ({"features": ["x1", "x1"]}, "features must not repeat a feature, got ['x1', 'x1']"),
    # unknown fields, also nested
    ({"learning_rat": 0.1}, "learning_rat is not a known setting"),
    ({"layers": [{"units": 2, "dropout": 0.1}]}, "layers[0].dropout is not a known setting"),
    ({"augmentation": {"rotate": True}}, "augmentation.rotate is not a known setting"),
    # keys with dots are quoted whole, their container path kept (found by tests/app/test_fuzz.py)
    ({".": None}, '"." is not a known setting'),
    ({"a.b": 1}, '"a.b" is not a known setting'),
    ({"layers": [{"units": 2, "x.y": 1}]}, 'layers[0]."x.y" is not a known setting'),
    # incompatible combinations
    ({"problem": "regression", "dataset": "plane", "loss": "categorical_crossentropy"},
     "loss must be mse or mae for regression, got 'categorical_crossentropy'"),
    ({"problem": "regression", "dataset": "plane", "loss": "binary_crossentropy"},
     "loss must be mse or mae for regression, got 'binary_crossentropy'"),
    ({"dataset": "blobs", "classes": 3, "output_activation": "sigmoid"},
     "output_activation must be softmax with 3 classes, got 'sigmoid'"),
    ({"loss": "binary_crossentropy", "output_activation": "softmax"},
     "loss binary_crossentropy needs output_activation sigmoid, got 'softmax'"),
    ({"loss": "categorical_crossentropy", "output_activation": "sigmoid"},
     "loss categorical_crossentropy needs output_activation softmax, got 'sigmoid'"),
    ({"class_weight": [1, 2, 3]}, "class_weight must list 2 weights (one per class), got 3"),
    ({"dataset": "blobs", "classes": 4, "class_weight": [1, 2]}, "class_weight must list 4 weights (one per class), got 2"),
    ({"problem": "regression", "dataset": "plane", "class_weight": [1, 2]}, "class_weight applies to classification only"),
    ({"problem": "regression", "dataset": "plane", "class_ratio": 0.3}, "class_ratio applies to classification only"),
    ({"problem": "regression", "dataset": "plane", "output_activation": "sigmoid"},
     "output_activation must be linear or tanh for regression, got 'sigmoid'"),
    ({"output_activation": "linear"}, "output_activation must be sigmoid, tanh or softmax for classification, got 'linear'"),
    ({"weights": [{"w": [[1.0]], "b": [0.0]}]}, "weights must list 3 layers (hidden layers and the output), got 1"),
    ({"layers": [], "weights": [{"w": [[1.0], [2.0], [3.0]], "b": [0.0]}]}, "weights[0].w must be 2x1 (inputs x units)"),
    ({"layers": [], "weights": [{"w": [[1.0], [2.0]], "b": [0.0, 1.0]}]}, "weights[0].b must have 1 values"),
    ({"layers": [{"units": 1}], "weights": [{"w": [[1.0], [2.0]], "b": [0.0]}, {"w": [[1.0]], "b": [0.0], "gamma": [1.0]}]},
     "weights[1].gamma must have 1 values (hidden layers only)"),
    ({"problem": "regression"},
     "dataset 'circle' is a classification dataset; regression allows plane, multigauss, custom"),
    ({"dataset": "plane"}, "dataset 'plane' is a regression dataset; classification allows circle, xor, gauss, spiral, "
                           "moons, checkerboard, blobs, custom"),
    ({"problem": "regression", "dataset": "plane", "classes": 3}, "classes must stay 2 (unused) for regression, got 3"),
    ({"dataset": "circle", "classes": 3}, "classes can be 3..5 only for blobs, spiral or custom, got 3 with circle"),
    ({"dataset": "custom"}, "points must hold at least one point when dataset is 'custom'"),
    ({**CUSTOM, "points": [{"x1": 1, "x2": 0, "label": 2}]}, "points[0].label must be a class 0..1 (or -1 for class 0), got 2.0"),
    ({**CUSTOM, "points": [{"x1": 1, "x2": 0, "label": 0.5}]}, "points[0].label must be a class 0..1 (or -1 for class 0), got 0.5"),
    ({**CUSTOM, "problem": "regression", "points": [{"x1": 1, "x2": 0, "label": 2}]},
     "points[0].label must be -1..1 for regression, got 2.0"),
    ({"layers": [{"units": 2}] * 7}, "layers must have 0..6 hidden layers, got 7"),
    ({"layers": [{"units": 9}]}, "layers[0].units must be 1..8, got 9"),
]


@pytest.mark.parametrize("data, message", EXACT, ids=[m[:50] for _, m in EXACT])
def test_bad_config_message(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in err.value.messages
    assert str(err.value) == "; ".join(err.value.messages)


# (config, field the message must start with) — pydantic's own wording after the field name.
PREFIX = [
    ({"learning_rate": "fast"}, "learning_rate must be a valid number"),
    ({"layers": [{"units": "many"}]}, "layers[0].units must be a valid integer"),
    ({"layers": [{"units": 2.5}]}, "layers[0].units must be a valid integer"),
    ({"layers": [{"units": 2, "activation": "swish"}]}, "layers[0].activation must be one of 'linear', 'relu'"),
    ({"layers": "4,2"}, "layers must be a valid list"),
    ({"layers": [4, 2]}, "layers[0] must be a valid dictionary"),
    ({"shuffle": "maybe"}, "shuffle must be a valid boolean"),
    ({"features": "x1"}, "features must be a valid list"),
    ({"features": []}, "features list should have at least 1 item"),
    ({"features": ["x3"]}, "features[0] must be one of 'x1', 'x2'"),
    ({"optimizer": "adagrad"}, "optimizer must be one of 'sgd', 'momentum', 'rmsprop' or 'adam', got 'adagrad'"),
    ({"lr_schedule": "linear"}, "lr_schedule must be one of 'constant', 'step'"),
    ({"init": "normal"}, "init must be one of 'glorot_uniform'"),
    ({"dataset": "mnist"}, "dataset must be one of 'circle'"),
    ({"seed": 1.5}, "seed must be a valid integer"),
    ({"augmentation": {"flip_x1": "sometimes"}}, "augmentation.flip_x1 must be a valid boolean"),
    ({"class_weight": "auto"}, "class_weight must be one of 'balanced', got 'auto'"),
    ({"dataset": "custom", "points": [{"x1": 0, "x2": 0}]}, "points[0].label is required"),
    ({"dataset": "custom", "points": [{"x1": 0, "x2": 0, "label": 0, "subset": "val"}]},
     "points[0].subset must be one of 'train' or 'test'"),
    ({"weights": "random"}, "weights must be a valid list"),
]


@pytest.mark.parametrize("data, prefix", PREFIX, ids=[p for _, p in PREFIX])
def test_bad_config_names_the_field(data, prefix):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert any(m.startswith(prefix) for m in err.value.messages), err.value.messages
    assert not any("Input should" in m or "input should" in m for m in err.value.messages)


def test_several_errors_are_all_reported():
    with pytest.raises(ConfigError) as err:
        parse_config({"learning_rate": -1, "layers": [{"units": 9}], "bogus": 1})
    msgs = err.value.messages
    assert "learning_rate must be 1e-06..10, got -1" in msgs
    assert "layers[0].units must be 1..8, got 9" in msgs
    assert "bogus is not a known setting" in msgs


@pytest.mark.parametrize("data", [[1, 2], "circle", None, 3])
def test_config_must_be_an_object(data):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.messages[0].startswith("config must be a JSON object, got ")


@pytest.mark.parametrize("limits, data, message", [
    (Limits(max_units=4), {"layers": [{"units": 5}]}, "layers[0].units must be 1..4, got 5"),
    (Limits(max_units=4), {"layers": [{"units": 4}, {"units": 8}]}, "layers[1].units must be 1..4, got 8"),
    (Limits(max_layers=2), {"layers": [{"units": 2}] * 3}, "layers must have 0..2 hidden layers, got 3"),
    (Limits(max_points=100), {"n_points": 200}, "n_points must be 10..100, got 200"),
    (Limits(max_points=20), {"dataset": "custom", "points": [{"x1": 0, "x2": 0, "label": 0}] * 21},
     "points must hold at most 20 points, got 21"),
])
def test_lower_limits(limits, data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, limits)
    assert message in err.value.messages
    parse_config(data)  # fine under the default limits


def test_limits_themselves_are_checked():
    for kw in ({"max_layers": 7}, {"max_units": 0}, {"max_units": 9}, {"max_points": 10}):
        with pytest.raises(ValueError):
            Limits(**kw)


def test_good_edge_values_pass():
    cfg = parse_config({"layers": [{"units": 8}] * 6, "learning_rate": 10, "n_points": 1000, "dropout": 0.9,
                        "class_ratio": 0.05, "features": ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]})
    assert len(cfg.layers) == 6 and cfg.n_points == 1000
    assert parse_config({"layers": []}).n_params == 3
    cfg = parse_config({**CUSTOM, "points": [{"x1": 6, "x2": -6, "label": -1}]})
    assert cfg.points[0].label == -1


def test_patch_config():
    cfg = parse_config({"learning_rate": 0.1})
    new = patch_config(cfg, {"optimizer": "adam", "layers": [{"units": 3}]})
    assert new.optimizer == "adam" and new.learning_rate == 0.1 and [layer.units for layer in new.layers] == [3]
    assert cfg.optimizer == "sgd"  # the original is unchanged
    with pytest.raises(ConfigError) as err:
        patch_config(cfg, {"lr": 1, "momentun": 0.5})
    assert err.value.messages == ["lr is not a known setting", "momentun is not a known setting"]
    with pytest.raises(ConfigError) as err:
        patch_config(cfg, {"layers": [{"units": 12}]})
    assert err.value.messages == ["layers[0].units must be 1..8, got 12"]
    # the whole result is validated: a patch may not leave an incompatible combination
    with pytest.raises(ConfigError) as err:
        patch_config(cfg, {"problem": "regression"})
    assert any(m.startswith("dataset 'circle'") for m in err.value.messages)
    with pytest.raises(ConfigError):
        patch_config(cfg, ["learning_rate"])


def test_patch_drops_starting_weights():
    w = [{"w": [[0.5], [0.5]], "b": [0.0]}]
    cfg = parse_config({"layers": [], "weights": w})
    assert patch_config(cfg, {"learning_rate": 0.1}).weights is None


def test_defaults_fit_lowered_limits():
    """pydantic does not validate defaults; parse_config shrinks the ones the limits exclude,
    so a session under NNPLAY_MAX_POINTS=100 / MAX_UNITS=3 starts valid and stays patchable."""
    from core.config import Limits, parse_config, patch_config

    limits = Limits(max_points=100, max_units=3, max_layers=1)
    cfg = parse_config({}, limits)
    assert cfg.n_points == 100 and [layer.units for layer in cfg.layers] == [3]
    assert patch_config(cfg, {"learning_rate": 0.1}, limits).learning_rate == 0.1
    assert parse_config({"n_points": 50}, limits).n_points == 50
