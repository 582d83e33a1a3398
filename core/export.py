"""A trained run's model as code: Keras, PyTorch or plain JAX source, and the weights as .npz.

``weights`` is the list ``core.engine.export_weights`` / ``Run.weights()`` returns: per layer
(hidden layers, then the output) ``{"w": (inputs x units), "b": (units,)}`` plus ``gamma`` and
``beta`` with batch or layer norm. Batch norm at inference uses the running statistics, so
exporting a batch-norm model needs ``norm``: ``export_norm(run.state.norm, run.cfg)`` (or a
list of ``{"mean": [...], "var": [...]}`` per hidden layer).

Weights are written as the shortest decimals that give back the same float32 values, so the
generated models compute what the engine computes.
"""

from __future__ import annotations

import io

import numpy as np

from core.config import Config
from core.model import BN_EPS, LN_EPS

# feature name -> expression of raw x1, x2 ("{m}" is np or jnp)
FEATURE_EXPR = {
    "x1": "x1", "x2": "x2", "x1_sq": "x1 * x1", "x2_sq": "x2 * x2", "x1x2": "x1 * x2",
    "sin_x1": "{m}.sin(x1)", "sin_x2": "{m}.sin(x2)",
}
JAX_ACT = {
    "linear": "z", "relu": "jnp.maximum(z, 0.0)", "leaky_relu": "jnp.where(z > 0, z, 0.01 * z)",
    "elu": "jnp.where(z > 0, z, jnp.expm1(jnp.minimum(z, 0.0)))", "gelu": "jax.nn.gelu(z, approximate=False)",
    "silu": "z * jax.nn.sigmoid(z)", "tanh": "jnp.tanh(z)", "sigmoid": "jax.nn.sigmoid(z)",
    "softmax": "jax.nn.softmax(z, axis=-1)",
}
TORCH_ACT = {
    "linear": "nn.Identity()", "relu": "nn.ReLU()", "leaky_relu": "nn.LeakyReLU(0.01)", "elu": "nn.ELU()",
    "gelu": "nn.GELU()", "silu": "nn.SiLU()", "tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()",
    "softmax": "nn.Softmax(dim=-1)",
}
KERAS_LOSS = {"mse": "mse", "mae": "mae", "binary_crossentropy": "binary_crossentropy",
              "categorical_crossentropy": "sparse_categorical_crossentropy"}


# --- checks and literals ------------------------------------------------------------------------


def export_norm(norm, cfg: Config) -> list[dict]:
    """Batch-norm running statistics of the hidden layers in real shapes, from the engine's
    padded ``Norm`` (``run.state.norm``): ``[{"mean": [...], "var": [...]}, ...]``."""
    return [{"mean": np.asarray(norm.mean)[j, : layer.units].tolist(),
             "var": np.asarray(norm.var)[j, : layer.units].tolist()} for j, layer in enumerate(cfg.layers)]


def _check(cfg: Config, weights: list[dict], norm) -> list[dict] | None:
    """Raise ValueError unless ``weights`` (and ``norm``) fit ``cfg``; returns the norm list."""
    sizes = [len(cfg.features)] + [layer.units for layer in cfg.layers] + [cfg.n_outputs]
    if len(weights) != len(sizes) - 1:
        raise ValueError(f"weights must list {len(sizes) - 1} layers (hidden layers and the output), got {len(weights)}")
    for i, lw in enumerate(weights):
        w, b = np.asarray(lw["w"], np.float64), np.asarray(lw["b"], np.float64)
        if w.shape != (sizes[i], sizes[i + 1]) or b.shape != (sizes[i + 1],):
            raise ValueError(f"weights[{i}] must be w {sizes[i]}x{sizes[i + 1]} and b {sizes[i + 1]}, "
                             f"got {w.shape} and {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"weights[{i}] are not finite (the run diverged); reset it before exporting")
        if i < len(cfg.layers) and (cfg.batch_norm or cfg.layer_norm) and ("gamma" not in lw or "beta" not in lw):
            raise ValueError(f"weights[{i}] needs gamma and beta (the config uses batch or layer norm)")
    if not cfg.batch_norm:
        return None
    if norm is None:
        raise ValueError("export of batch_norm needs the running statistics: pass norm=export_norm(run.state.norm, cfg)")
    if hasattr(norm, "mean"):
        norm = export_norm(norm, cfg)
    if len(norm) != len(cfg.layers) or any(len(n["mean"]) != u or len(n["var"]) != u
                                           for n, u in zip(norm, sizes[1:-1])):
        raise ValueError("norm must hold mean and var of every hidden layer's units")
    return norm


def _num(v: float) -> str:
    """The shortest decimal that is the same float32."""
    return str(np.float32(v))


def _vec(v) -> str:
    return "[" + ", ".join(_num(x) for x in v) + "]"


def _mat(m, indent: str) -> str:
    rows = [indent + "    " + _vec(r) + "," for r in m]
    return "[\n" + "\n".join(rows) + "\n" + indent + "]"


def _features_fn(cfg: Config, m: str) -> str:
    cols = ", ".join(FEATURE_EXPR[f].format(m=m) for f in cfg.features)
    dtype = f"{m}.float32"
    return (
        "def features(x1, x2):\n"
        f'    """The network\'s inputs {list(cfg.features)} from raw points x1, x2 (scalars or arrays)."""\n'
        f"    x1, x2 = {m}.asarray(x1, {dtype}), {m}.asarray(x2, {dtype})\n"
        f"    return {m}.stack([{cols}], axis=-1)\n"
    )


def _header(cfg: Config, framework: str) -> str:
    arch = " -> ".join([str(len(cfg.features))] + [f"{layer.units} {layer.activation}" for layer in cfg.layers]
                       + [f"{cfg.n_outputs} {cfg.resolved_output_activation}"])
    extras = [name for name, on in (("batch_norm", cfg.batch_norm), ("layer_norm", cfg.layer_norm),
                                    (f"dropout {cfg.dropout:g}", cfg.dropout > 0)) if on]
    return (f'"""nnplay model exported as {framework}: {cfg.problem} on \'{cfg.dataset}\'.\n\n'
            f"Network: {arch}{' (' + ', '.join(extras) + ')' if extras else ''}.\n"
            f"Inputs: features(x1, x2) = {list(cfg.features)}.\n"
            f'"""\n')


# --- Keras ----------------------------------------------------------------------------------------


def _keras_optimizer(cfg: Config) -> tuple[str, str]:
    lr = f"learning_rate={cfg.learning_rate:g}"
    if cfg.optimizer == "sgd":
        return "SGD", f"SGD({lr})"
    if cfg.optimizer == "momentum":
        return "SGD", f"SGD({lr}, momentum={cfg.momentum:g})"
    if cfg.optimizer == "rmsprop":
        return "RMSprop", f"RMSprop({lr}, rho={cfg.rho:g}, epsilon={cfg.epsilon:g})"
    return "Adam", f"Adam({lr}, beta_1={cfg.beta_1:g}, beta_2={cfg.beta_2:g}, epsilon={cfg.epsilon:g})"


def _keras_schedule(cfg: Config) -> str:
    """A per-epoch learning-rate function like the engine's schedule, for LearningRateScheduler."""
    lr, T, r, W, a = cfg.learning_rate, cfg.decay_epochs, cfg.decay_rate, cfg.warmup_epochs, cfg.cosine_alpha
    body = {
        "step": f"return {lr:g} * {r:g} ** math.floor(epoch / {T})",
        "exponential": f"return {lr:g} * {r:g} ** (epoch / {T})",
        "cosine": f"t = min(epoch / {T}, 1.0)\n    return {lr:g} * ((1 - {a:g}) * 0.5 * (1 + math.cos(math.pi * t)) + {a:g})",
        "warmup_cosine": (f"if epoch < {W}:\n        return {lr:g} * epoch / {max(W, 1)}\n"
                          f"    t = min((epoch - {W}) / {T}, 1.0)\n"
                          f"    return {lr:g} * ((1 - {a:g}) * 0.5 * (1 + math.cos(math.pi * t)) + {a:g})"),
    }[cfg.lr_schedule]
    return f"def lr_schedule(epoch, lr=None):\n    {body}\n"


def keras_code(cfg: Config, weights: list[dict], norm=None) -> str:
    """tf.keras source: a Sequential model with the trained weights, compiled like the run."""
    norm = _check(cfg, weights, norm)
    opt_name, opt = _keras_optimizer(cfg)
    layer_names = {"Dense"}
    reg = ""
    if cfg.l1 or cfg.l2:  # Keras' penalties are l1 * sum|w| and l2 * sum w^2, as nnplay's
        r = f"L1L2(l1={cfg.l1:g}, l2={cfg.l2:g})" if cfg.l1 and cfg.l2 else \
            f"L1({cfg.l1:g})" if cfg.l1 else f"L2({cfg.l2:g})"
        reg = f", kernel_regularizer=regularizers.{r}"
    lines = ["model = Sequential()", f"model.add(Input(shape=({len(cfg.features)},)))"]
    if cfg.input_noise > 0:
        layer_names.add("GaussianNoise")
        lines.append(f"model.add(GaussianNoise({cfg.input_noise:g}))  # input noise, training only")
    params = []  # model.get_weights() order
    for j, layer in enumerate(cfg.layers):
        lw = weights[j]
        params += [(f"layer {j + 1} kernel", lw["w"]), (f"layer {j + 1} bias", lw["b"])]
        act, sep = layer.activation, cfg.batch_norm or cfg.layer_norm or layer.activation == "leaky_relu"
        inline = "" if sep else f', activation="{act}"'
        lines.append(f"model.add(Dense({layer.units}{inline}{reg}))")
        if cfg.batch_norm:
            layer_names.add("BatchNormalization")
            lines.append(f"model.add(BatchNormalization(epsilon={BN_EPS:g}))")
            params += [("gamma", lw["gamma"]), ("beta", lw["beta"]), ("moving mean", norm[j]["mean"]),
                       ("moving variance", norm[j]["var"])]
        elif cfg.layer_norm:
            layer_names.add("LayerNormalization")
            lines.append(f"model.add(LayerNormalization(epsilon={LN_EPS:g}))")
            params += [("gamma", lw["gamma"]), ("beta", lw["beta"])]
        if act == "leaky_relu":
            layer_names.add("LeakyReLU")
            lines.append("model.add(LeakyReLU(negative_slope=0.01))")
        elif sep:
            layer_names.add("Activation")
            lines.append(f'model.add(Activation("{act}"))')
        if cfg.dropout > 0:
            layer_names.add("Dropout")
            lines.append(f"model.add(Dropout({cfg.dropout:g}))")
    out = cfg.resolved_output_activation
    lines.append(f'model.add(Dense({cfg.n_outputs}, activation="{out}"{reg}))')
    params += [("output kernel", weights[-1]["w"]), ("output bias", weights[-1]["b"])]
    metrics = ', metrics=["accuracy"]' if cfg.problem == "classification" and out != "tanh" else ""
    lines.append(f'model.compile(optimizer={opt}, loss="{KERAS_LOSS[cfg.resolved_loss]}"{metrics})')
    lines.append("")
    lines.append("model.set_weights([")
    for name, value in params:
        arr = _mat(value, "    ") if isinstance(value[0], list) else _vec(value)
        lines.append(f"    np.array({arr}, np.float32),  # {name}")
    lines.append("])")

    callbacks = []
    imports = ["import numpy as np", "from tensorflow.keras import Input, Sequential" + (", regularizers" if reg else ""),
               f"from tensorflow.keras.layers import {', '.join(sorted(layer_names))}",
               f"from tensorflow.keras.optimizers import {opt_name}"]
    extra = ""
    if cfg.lr_schedule != "constant":
        imports.insert(0, "import math")
        imports.append("from tensorflow.keras.callbacks import LearningRateScheduler")
        extra += "\n\n" + _keras_schedule(cfg)
        callbacks.append("LearningRateScheduler(lr_schedule)")
    if cfg.early_stopping_patience:
        imports.append("from tensorflow.keras.callbacks import EarlyStopping")
        callbacks.append(f'EarlyStopping(monitor="val_loss", patience={cfg.early_stopping_patience}, '
                         "restore_best_weights=True)")
    fit = (f"# To train on: model.fit(features(x1, x2), y, batch_size={cfg.batch_size}, shuffle={cfg.shuffle}, "
           f"callbacks=[{', '.join(callbacks)}])")
    if cfg.problem == "classification" and out == "tanh":
        fit += "\n# (a tanh output is trained on targets -1/+1 for class 0/1)"
    return (_header(cfg, "tf.keras") + "\n" + "\n".join(imports) + "\n\n\n" + _features_fn(cfg, "np") + extra
            + "\n\n" + "\n".join(lines) + "\n\n" + fit + "\n")


# --- PyTorch --------------------------------------------------------------------------------------


def pytorch_code(cfg: Config, weights: list[dict], norm=None) -> str:
    """PyTorch source: an nn.Sequential with the trained weights (Linear weights transposed to
    PyTorch's (out, in)), in eval mode."""
    norm = _check(cfg, weights, norm)
    mods, loads = [], []

    def add(text: str) -> int:
        mods.append(text)
        return len(mods) - 1

    def tensor(value, indent="    ") -> str:
        return f"torch.tensor({_mat(value, indent) if isinstance(value[0], list) else _vec(value)})"

    n_in = len(cfg.features)
    for j, layer in enumerate(cfg.layers + [None]):
        units = cfg.n_outputs if layer is None else layer.units
        lw = weights[j]
        i = add(f"nn.Linear({n_in}, {units}),  # {'output' if layer is None else f'layer {j + 1}'}")
        w_t = np.asarray(lw["w"], np.float64).T.tolist()
        loads.append(f"    model[{i}].weight.copy_({tensor(w_t)})  # (out, in): nnplay's (in x units) transposed")
        loads.append(f"    model[{i}].bias.copy_({tensor(lw['b'])})")
        n_in = units
        if layer is None:
            break
        if cfg.batch_norm or cfg.layer_norm:
            if cfg.batch_norm:
                i = add(f"nn.BatchNorm1d({units}, eps={BN_EPS:g}),")
                loads.append(f"    model[{i}].running_mean.copy_({tensor(norm[j]['mean'])})")
                loads.append(f"    model[{i}].running_var.copy_({tensor(norm[j]['var'])})")
            else:
                i = add(f"nn.LayerNorm({units}, eps={LN_EPS:g}),")
            loads.append(f"    model[{i}].weight.copy_({tensor(lw['gamma'])})")
            loads.append(f"    model[{i}].bias.copy_({tensor(lw['beta'])})")
        add(TORCH_ACT[layer.activation] + ",")
        if cfg.dropout > 0:
            add(f"nn.Dropout({cfg.dropout:g}),")
    out = cfg.resolved_output_activation
    if out != "linear":
        add(TORCH_ACT[out] + ",")

    params = "model.parameters()"
    opt = {
        "sgd": f"torch.optim.SGD({params}, lr={cfg.learning_rate:g})",
        "momentum": f"torch.optim.SGD({params}, lr={cfg.learning_rate:g}, momentum={cfg.momentum:g})",
        "rmsprop": f"torch.optim.RMSprop({params}, lr={cfg.learning_rate:g}, alpha={cfg.rho:g}, eps={cfg.epsilon:g})",
        "adam": (f"torch.optim.Adam({params}, lr={cfg.learning_rate:g}, betas=({cfg.beta_1:g}, {cfg.beta_2:g}), "
                 f"eps={cfg.epsilon:g})"),
    }[cfg.optimizer]
    loss = {
        "mse": "nn.MSELoss()", "mae": "nn.L1Loss()", "binary_crossentropy": "nn.BCELoss()  # the model ends in Sigmoid",
        "categorical_crossentropy": "lambda p, y: nn.functional.nll_loss(torch.log(p), y)  # p: softmax outputs",
    }[cfg.resolved_loss]
    reg = ""
    if cfg.l1 or cfg.l2:
        reg = ("\n\ndef penalty():\n    \"\"\"Add to the loss: L1 and L2 of the Linear weights (not biases), as nnplay does.\"\"\"\n"
               "    ws = [m.weight for m in model if isinstance(m, nn.Linear)]\n"
               "    return " + " + ".join(
                   ([f"{cfg.l1:g} * sum(w.abs().sum() for w in ws)"] if cfg.l1 else [])
                   + ([f"{cfg.l2:g} * sum((w * w).sum() for w in ws)"] if cfg.l2 else [])) + "\n")
    body = "\n".join("    " + m for m in mods)
    return (_header(cfg, "PyTorch") + "\nimport numpy as np\nimport torch\nfrom torch import nn\n\n\n"
            + _features_fn(cfg, "np") + "\n\nmodel = nn.Sequential(\n" + body + "\n)\n\n"
            + "with torch.no_grad():\n" + "\n".join(loads) + "\nmodel.eval()  # batch norm and dropout in inference mode\n\n"
            + f"loss_fn = {loss}\noptimizer = {opt}\n" + reg
            + "\n# predict: model(torch.from_numpy(features(x1, x2)))\n")


# --- JAX ------------------------------------------------------------------------------------------


def jax_code(cfg: Config, weights: list[dict], norm=None) -> str:
    """Self-contained JAX source: the weights as constants, ``features(x1, x2)`` and a pure
    ``predict(x)`` that maps features (n, n_features) to outputs (n, outputs) like the engine."""
    norm = _check(cfg, weights, norm)
    consts, body = [], []

    def const(name: str, value) -> None:
        arr = _mat(value, "") if isinstance(value[0], list) else _vec(value)
        consts.append(f"{name} = jnp.array({arr}, jnp.float32)")

    for j, layer in enumerate(cfg.layers + [None]):
        k, lw = j + 1, weights[j]
        const(f"W{k}", lw["w"])
        const(f"B{k}", lw["b"])
        body.append(f"    z = h @ W{k} + B{k}")
        if layer is None:
            break
        if cfg.batch_norm:
            const(f"GAMMA{k}", lw["gamma"])
            const(f"BETA{k}", lw["beta"])
            const(f"MEAN{k}", norm[j]["mean"])
            const(f"VAR{k}", norm[j]["var"])
            body.append(f"    z = (z - MEAN{k}) * jax.lax.rsqrt(VAR{k} + {BN_EPS:g}) * GAMMA{k} + BETA{k}  # batch norm")
        elif cfg.layer_norm:
            const(f"GAMMA{k}", lw["gamma"])
            const(f"BETA{k}", lw["beta"])
            body.append("    mu = z.mean(-1, keepdims=True)")
            body.append(f"    z = (z - mu) * jax.lax.rsqrt(((z - mu) ** 2).mean(-1, keepdims=True) + {LN_EPS:g}) "
                        f"* GAMMA{k} + BETA{k}  # layer norm")
        body.append(f"    h = {JAX_ACT[layer.activation]}  # {layer.activation}")
    out = cfg.resolved_output_activation
    body.append(f"    return {JAX_ACT[out]}  # {out}")
    note = "\n    (Dropout and input noise act only while training, so they do not appear here.)" \
        if cfg.dropout > 0 or cfg.input_noise > 0 else ""
    predict = (
        "@jax.jit\ndef predict(x):\n"
        f'    """Outputs (n, {cfg.n_outputs}) for features x (n, {len(cfg.features)}), '
        f'e.g. predict(features(x1, x2)).{note}"""\n'
        "    h = jnp.asarray(x, jnp.float32)\n" + "\n".join(body) + "\n"
    )
    return (_header(cfg, "JAX") + "\nimport jax\nimport jax.numpy as jnp\n\n" + "\n".join(consts) + "\n\n\n"
            + _features_fn(cfg, "jnp") + "\n\n" + predict)


# --- weights as .npz ------------------------------------------------------------------------------


def weights_npz_bytes(weights: list[dict]) -> bytes:
    """An .npz (float32 arrays w0, b0, w1, b1, ..., plus gamma{i}/beta{i} where present)."""
    arrays = {}
    for i, lw in enumerate(weights):
        for key in ("w", "b", "gamma", "beta"):
            if lw.get(key) is not None:
                arrays[f"{key}{i}"] = np.asarray(lw[key], np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
