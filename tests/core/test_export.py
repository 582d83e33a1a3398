"""Model export as Keras / PyTorch / JAX source and as .npz (TensorFlow and PyTorch are not
installed: their sources are checked as Python and by their literals; the JAX source runs)."""

from __future__ import annotations

import ast
import io

import numpy as np
import pytest

from core.config import Config
from core.export import export_norm, jax_code, keras_code, pytorch_code, weights_npz_bytes

CONFIGS = {
    "default": {},
    "regression mae": dict(problem="regression", dataset="plane", loss="mae", layers=[{"units": 3, "activation": "relu"}],
                           optimizer="momentum", l1=0.001),
    "softmax layer norm": dict(dataset="blobs", classes=3, features=["x1", "x2", "x1x2"], layer_norm=True, dropout=0.3,
                               layers=[{"units": 5, "activation": "gelu"}, {"units": 3, "activation": "silu"}],
                               optimizer="rmsprop", lr_schedule="cosine"),
    "batch norm": dict(features=["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"], batch_norm=True,
                       layers=[{"units": 8, "activation": "leaky_relu"}, {"units": 2, "activation": "elu"}],
                       l1=0.01, l2=0.001, lr_schedule="warmup_cosine", optimizer="adam", early_stopping_patience=20,
                       input_noise=0.2),
    "no hidden layer": dict(layers=[], features=["x1_sq", "x2_sq"], lr_schedule="step"),
    "tanh classifier": dict(output_activation="tanh", layers=[{"units": 2, "activation": "sigmoid"}] * 3,
                            lr_schedule="exponential"),
    "four classes linear hidden": dict(dataset="spiral", classes=4, layers=[{"units": 6, "activation": "linear"}]),
}


def fake_weights(cfg: Config, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    sizes = [len(cfg.features)] + [layer.units for layer in cfg.layers] + [cfg.n_outputs]
    out = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lw = {"w": rng.normal(size=(a, b)).astype(np.float32).tolist(), "b": rng.normal(size=b).astype(np.float32).tolist()}
        if i < len(cfg.layers) and (cfg.batch_norm or cfg.layer_norm):
            lw["gamma"] = rng.uniform(0.5, 1.5, b).astype(np.float32).tolist()
            lw["beta"] = rng.normal(size=b).astype(np.float32).tolist()
        out.append(lw)
    return out


def fake_norm(cfg: Config) -> list[dict]:
    return [{"mean": [0.1] * layer.units, "var": [1.5] * layer.units} for layer in cfg.layers]


def literal_calls(src: str, attr: str) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attr]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("export", [keras_code, pytorch_code, jax_code])
def test_sources_are_valid_python(name, export):
    cfg = Config(**CONFIGS[name])
    src = export(cfg, fake_weights(cfg), fake_norm(cfg))
    ast.parse(src)
    compile(src, f"<{export.__name__} {name}>", "exec")
    assert "def features(x1, x2):" in src


@pytest.mark.parametrize("name", list(CONFIGS))
def test_keras_layers_and_weights(name):
    cfg = Config(**CONFIGS[name])
    weights = fake_weights(cfg)
    src = keras_code(cfg, weights, fake_norm(cfg))
    assert f"model.add(Input(shape=({len(cfg.features)},)))" in src
    assert f'model.add(Dense({cfg.n_outputs}, activation="{cfg.resolved_output_activation}"' in src
    assert src.count("model.add(Dense(") == len(cfg.layers) + 1
    assert ("BatchNormalization(epsilon=0.001)" in src) == cfg.batch_norm
    assert ("LayerNormalization(epsilon=0.001)" in src) == cfg.layer_norm
    assert src.count("Dropout(") == (len(cfg.layers) if cfg.dropout else 0)
    loss = {"categorical_crossentropy": "sparse_categorical_crossentropy"}.get(cfg.resolved_loss, cfg.resolved_loss)
    assert f'loss="{loss}"' in src
    assert f"learning_rate={cfg.learning_rate:g}" in src
    # set_weights: one array per kernel, bias, gamma, beta (and moving mean/variance) in layer order
    (call,) = literal_calls(src, "set_weights")
    arrays = [ast.literal_eval(e.args[0]) for e in call.args[0].elts]
    expect = []
    for j, lw in enumerate(weights):
        expect += [lw["w"], lw["b"]]
        if j < len(cfg.layers) and cfg.batch_norm:
            expect += [lw["gamma"], lw["beta"], fake_norm(cfg)[j]["mean"], fake_norm(cfg)[j]["var"]]
        elif j < len(cfg.layers) and cfg.layer_norm:
            expect += [lw["gamma"], lw["beta"]]
    assert len(arrays) == len(expect)
    for got, want in zip(arrays, expect):
        np.testing.assert_array_equal(np.float32(got), np.float32(want))  # exact in float32


@pytest.mark.parametrize("name", list(CONFIGS))
def test_pytorch_linear_weights_are_transposed(name):
    cfg = Config(**CONFIGS[name])
    weights = fake_weights(cfg, seed=3)
    src = pytorch_code(cfg, weights, fake_norm(cfg))
    assert src.count("nn.Linear(") == len(cfg.layers) + 1
    linear_weights = [ast.literal_eval(c.args[0].args[0]) for c in literal_calls(src, "copy_")
                      if isinstance(c.func.value, ast.Attribute) and c.func.value.attr == "weight"
                      and isinstance(c.args[0].args[0].elts[0], ast.List)]
    assert len(linear_weights) == len(weights)
    for got, lw in zip(linear_weights, weights):
        np.testing.assert_array_equal(np.float32(got), np.float32(lw["w"]).T)  # (out, in)
    assert "model.eval()" in src


def test_activation_names():
    cfg = Config(layers=[{"units": 2, "activation": a} for a in ("leaky_relu", "gelu", "elu", "silu")])
    w = fake_weights(cfg)
    torch_src, keras_src, jax_src = pytorch_code(cfg, w), keras_code(cfg, w), jax_code(cfg, w)
    for text in ("nn.LeakyReLU(0.01)", "nn.GELU()", "nn.ELU()", "nn.SiLU()", "nn.Sigmoid()"):
        assert text in torch_src
    assert "LeakyReLU(negative_slope=0.01)" in keras_src  # Keras' default slope is 0.2
    assert 'activation="gelu"' in keras_src and 'activation="silu"' in keras_src
    assert "jax.nn.gelu(z, approximate=False)" in jax_src


def test_batch_norm_needs_statistics_and_shapes_are_checked():
    cfg = Config(batch_norm=True)
    with pytest.raises(ValueError, match="export of batch_norm"):
        jax_code(cfg, fake_weights(cfg))
    cfg = Config()
    bad = fake_weights(cfg)
    bad[0]["w"] = bad[0]["w"][:1]
    with pytest.raises(ValueError, match=r"weights\[0\] must be w 2x4"):
        keras_code(cfg, bad)
    with pytest.raises(ValueError, match="must list 3 layers"):
        pytorch_code(cfg, fake_weights(cfg)[:2])
    nan = fake_weights(cfg)
    nan[1]["b"][0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        jax_code(cfg, nan)


def test_npz_roundtrip():
    cfg = Config(**CONFIGS["softmax layer norm"])
    weights = fake_weights(cfg)
    data = np.load(io.BytesIO(weights_npz_bytes(weights)))
    names = ["w0", "b0", "gamma0", "beta0", "w1", "b1", "gamma1", "beta1", "w2", "b2"]
    assert sorted(data.files) == sorted(names)
    for i, lw in enumerate(weights):
        for key in ("w", "b", "gamma", "beta"):
            if key in lw:
                assert data[f"{key}{i}"].dtype == np.float32
                np.testing.assert_array_equal(data[f"{key}{i}"], np.float32(lw[key]))


# --- the JAX export computes what the engine computes --------------------------------------------

TRAINED = {
    "circle tanh": dict(features=["x1", "x2", "x1_sq", "sin_x2"], n_points=100, batch_size=10),
    "blobs softmax layer norm": dict(dataset="blobs", classes=3, n_points=100, batch_size=10, layer_norm=True,
                                     features=["x1", "x2", "x2_sq", "x1x2"], optimizer="adam", learning_rate=0.05,
                                     layers=[{"units": 5, "activation": "gelu"}, {"units": 3, "activation": "relu"}]),
    "regression batch norm": dict(problem="regression", dataset="plane", n_points=100, batch_size=10, batch_norm=True,
                                  features=["x1", "x2", "sin_x1"], dropout=0.1,
                                  layers=[{"units": 4, "activation": "elu"}, {"units": 3, "activation": "silu"},
                                          {"units": 2, "activation": "leaky_relu"}]),
    "no hidden layer sigmoid": dict(layers=[], n_points=100, batch_size=10, features=["x1_sq", "x2_sq"]),
}


@pytest.mark.parametrize("name", list(TRAINED))
def test_jax_export_reproduces_run_predict(engine, name):
    from core.engine import Run

    cfg = Config(**TRAINED[name])
    run = Run(engine, cfg)
    run.train(5)
    src = jax_code(cfg, run.weights(), run.state.norm)  # the engine's padded Norm is accepted as is
    ns: dict = {}
    exec(compile(src, "<jax export>", "exec"), ns)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-6, 6, (64, 2)).astype(np.float32)
    got = np.asarray(ns["predict"](ns["features"](pts[:, 0], pts[:, 1])))
    want = run.predict(pts)
    assert got.shape == want.shape == (64, cfg.n_outputs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if cfg.batch_norm:  # the running statistics moved away from 0/1 and were exported
        stats = export_norm(run.state.norm, cfg)
        assert any(abs(m) > 1e-6 for layer in stats for m in layer["mean"])
