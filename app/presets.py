"""Named presets: one per lecture topic. Each loads a validated config and names the view
(panel of the page) that shows the topic best."""

from __future__ import annotations

from core.config import Config, parse_config

TANH2 = [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "tanh"}]
ALL = ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"]

PRESETS: list[dict] = [
    {"name": "tfp-default", "title": "TensorFlow Playground's default", "section": "Playground", "view": "playground",
     "config": {}},
    {"name": "perceptron", "title": "Perceptron / logistic regression", "section": "1.2 Perceptron",
     "view": "playground",
     "config": {"dataset": "gauss", "layers": [], "optimizer": "sgd", "learning_rate": 0.1, "noise": 0.1}},
    {"name": "mlp-xor", "title": "MLP on XOR", "section": "1.2 Multi-Layer Perceptron", "view": "playground",
     "config": {"dataset": "xor", "layers": [{"units": 4, "activation": "tanh"}], "learning_rate": 0.1}},
    {"name": "hidden-space", "title": "How a hidden layer bends the input space", "section": "1.2 Multi-Layer Perceptron",
     "view": "hidden",
     "config": {"dataset": "circle", "layers": [{"units": 6, "activation": "tanh"}, {"units": 2, "activation": "tanh"}],
                "learning_rate": 0.03}},
    {"name": "activations", "title": "Activation functions compared", "section": "1.2 Activation functions",
     "view": "playground",
     "config": {"dataset": "circle", "layers": [{"units": 6, "activation": "relu"}, {"units": 4, "activation": "relu"}],
                "learning_rate": 0.03}},
    {"name": "softmax", "title": "Multi-class softmax", "section": "1.2 Activation functions III", "view": "metrics",
     "config": {"dataset": "blobs", "classes": 4, "layers": [{"units": 6, "activation": "relu"}],
                "optimizer": "adam", "learning_rate": 0.01, "noise": 0.2}},
    {"name": "regression-mse-mae", "title": "Regression: MSE vs MAE with outliers", "section": "1.2 Cost functions",
     "view": "playground",
     "config": {"problem": "regression", "dataset": "plane", "noise": 0.3, "loss": "mae", "layers": TANH2,
                "learning_rate": 0.01}},
    {"name": "lr-too-low", "title": "Learning rate too low", "section": "1.2 Learning rate", "view": "lr",
     "config": {"dataset": "spiral", "layers": [{"units": 8, "activation": "tanh"}] * 3, "learning_rate": 0.0003}},
    {"name": "lr-right", "title": "Learning rate about right", "section": "1.2 Learning rate", "view": "lr",
     "config": {"dataset": "spiral", "layers": [{"units": 8, "activation": "tanh"}] * 3, "learning_rate": 0.03}},
    {"name": "lr-too-high", "title": "Learning rate too high", "section": "1.2 Learning rate", "view": "lr",
     "config": {"dataset": "spiral", "layers": [{"units": 8, "activation": "tanh"}] * 3, "learning_rate": 3.0}},
    {"name": "batch-sizes", "title": "Batch vs mini-batch vs SGD", "section": "1.2 Mini-batch gradient descent",
     "view": "playground",
     "config": {"dataset": "circle", "batch_size": 250, "learning_rate": 0.3, "layers": TANH2}},
    {"name": "rmsprop-adam", "title": "RMSProp / Adam vs SGD", "section": "1.2 Optimization: advances",
     "view": "optimizers",
     "config": {"dataset": "spiral", "features": ALL, "layers": [{"units": 8, "activation": "tanh"}] * 2,
                "optimizer": "adam", "learning_rate": 0.01}},
    {"name": "backprop", "title": "Backpropagation, step by step", "section": "1.2 Backpropagation",
     "view": "backprop", "config": {"dataset": "xor", "layers": [{"units": 2, "activation": "sigmoid"}],
                                     "output_activation": "sigmoid", "learning_rate": 0.5}},
    {"name": "overfitting", "title": "Overfitting", "section": "1.3 Regularization: overfitting", "view": "overfit",
     "config": {"dataset": "spiral", "noise": 0.5, "n_points": 120, "train_ratio": 0.3, "features": ALL,
                "layers": [{"units": 8, "activation": "relu"}] * 4, "optimizer": "adam", "learning_rate": 0.01}},
    {"name": "l1-vs-l2", "title": "L1 vs L2", "section": "1.3 Regularization: L2 and L1", "view": "overfit",
     "config": {"dataset": "circle", "noise": 0.3, "features": ALL, "layers": [{"units": 8, "activation": "tanh"}] * 2,
                "l1": 0.003, "optimizer": "adam", "learning_rate": 0.01}},
    {"name": "noise-injection", "title": "Noise injection", "section": "1.3 Regularization: noise injection",
     "view": "overfit",
     "config": {"dataset": "xor", "noise": 0.3, "n_points": 150, "train_ratio": 0.3,
                "layers": [{"units": 8, "activation": "relu"}] * 3, "input_noise": 0.5, "optimizer": "adam",
                "learning_rate": 0.01}},
    {"name": "dropout", "title": "Dropout", "section": "1.3 Regularization: dropout", "view": "overfit",
     "config": {"dataset": "spiral", "noise": 0.4, "n_points": 200, "train_ratio": 0.3,
                "layers": [{"units": 8, "activation": "relu"}] * 3, "dropout": 0.2, "optimizer": "adam",
                "learning_rate": 0.01}},
    {"name": "early-stopping", "title": "Early stopping", "section": "1.3 Regularization: early stopping",
     "view": "overfit",
     "config": {"dataset": "gauss", "noise": 0.5, "n_points": 120, "train_ratio": 0.3, "features": ALL,
                "layers": [{"units": 8, "activation": "relu"}] * 4, "early_stopping_patience": 50,
                "optimizer": "adam", "learning_rate": 0.01}},
    {"name": "batch-vs-layer-norm", "title": "Batch norm vs layer norm", "section": "1.3 Normalizations",
     "view": "playground",
     "config": {"dataset": "spiral", "layers": [{"units": 8, "activation": "relu"}] * 4, "batch_norm": True,
                "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01}},
    {"name": "augmentation", "title": "Data augmentation", "section": "1.3 Data augmentation", "view": "overfit",
     "config": {"dataset": "circle", "n_points": 60, "train_ratio": 0.3, "layers": [{"units": 8, "activation": "relu"}] * 3,
                "augmentation": {"jitter": 0.3, "flip_x1": True, "flip_x2": True}, "optimizer": "adam",
                "learning_rate": 0.01}},
    {"name": "vanishing-gradients", "title": "Vanishing gradients: deep sigmoid", "section": "1.2 Activation functions II",
     "view": "gradients",
     "config": {"dataset": "circle", "layers": [{"units": 6, "activation": "sigmoid"}] * 6, "learning_rate": 0.1}},
    {"name": "imbalanced", "title": "Imbalanced classes (exercise)", "section": "1.4 Exercises", "view": "imbalance",
     "config": {"dataset": "gauss", "noise": 0.3, "class_ratio": 0.1, "class_weight": "balanced",
                "layers": [{"units": 4, "activation": "relu"}], "optimizer": "adam", "learning_rate": 0.01}},
]


def validated() -> list[dict]:
    """Every preset with its config validated and filled with defaults (raises if one is bad)."""
    out = []
    for p in PRESETS:
        cfg: Config = parse_config(p["config"])
        out.append({**p, "config": cfg.model_dump(exclude_none=True)})
    return out
