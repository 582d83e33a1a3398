"""Turn a recorded TensorFlow Playground run (../shared/reference) into an nnplay config."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tensorflow-playground"
TFP_FEATURES = {"x": "x1", "y": "x2", "xSquared": "x1_sq", "ySquared": "x2_sq", "xTimesY": "x1x2",
                "sinX": "sin_x1", "sinY": "sin_x2"}


def load(case: str, seed: str = "0.12345") -> dict:
    return json.loads((REFERENCE / f"{case}_seed{seed}.json").read_text())


def config(ref: dict) -> dict:
    """The same run in nnplay's terms: tanh everywhere, labels -1/+1 as classes 0/1, Keras mse
    (no 1/2) with half the learning rate, points in the stored order, never reshuffled."""
    feats = [TFP_FEATURES[i] for i in ref["inputIds"]]
    order = sorted(range(len(feats)), key=lambda k: ["x1", "x2", "x1_sq", "x2_sq", "x1x2", "sin_x1", "sin_x2"].index(feats[k]))
    points = [{"x1": p["x"], "x2": p["y"], "label": 1 if p["label"] > 0 else 0, "subset": s}
              for s in ("train", "test") for p in ref[s]]
    weights = []
    for li, layer in enumerate(ref["initParams"]):
        n_in = len(layer[0]["weights"])
        rows = order if li == 0 else range(n_in)
        weights.append({"w": [[neuron["weights"][r] for neuron in layer] for r in rows],
                        "b": [neuron["bias"] for neuron in layer]})
    hidden = ref["shape"][1:-1]
    return {
        "dataset": "custom", "points": points, "features": [feats[k] for k in order],
        "layers": [{"units": u, "activation": "tanh"} for u in hidden], "output_activation": "tanh",
        "loss": "mse", "optimizer": "sgd", "learning_rate": ref["learningRate"] / 2,
        "batch_size": ref["batchSize"], "shuffle": False, "weights": weights, "init": "zeros",
    }
