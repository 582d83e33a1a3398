"""Per-epoch metrics as one flat float32 vector (names in ``NAMES``), computed on device."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core.losses import outputs, per_row_loss, predicted_class
from core.model import K


def names(n_layers: int) -> tuple[str, ...]:
    grad = tuple(f"grad_norm_{i}" for i in range(n_layers + 1))  # hidden layers, then output
    conf = tuple(f"confusion_{i}{j}" for i in range(K) for j in range(K))  # test set, true x predicted
    return (
        "epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "precision", "recall", "f1",
        "mse", "mae", "r2", "learning_rate", "reg_loss", "diverged", "stopped", "best_epoch",
    ) + grad + conf


def mean_loss(z, y, rows, task) -> jax.Array:
    """Mean per-row loss over real rows (no class weights: the reported loss)."""
    loss = per_row_loss(z, y, task.out_act, task.loss, task.out_mask, task.classification)
    return (loss * rows).sum() / jnp.maximum(rows.sum(), 1.0)


def confusion(y: jax.Array, pred: jax.Array, rows: jax.Array) -> jax.Array:
    """(K, K) counts, rows = true class, columns = predicted class."""
    t = jax.nn.one_hot(y.astype(jnp.int32), K) * rows[:, None]
    p = jax.nn.one_hot(pred, K)
    return t.T @ p


def evaluate(z_train, y_train, rows_train, z_test, y_test, rows_test, task) -> dict[str, jax.Array]:
    """Loss, accuracy, precision/recall/F1 (binary: class 1; multi-class: macro over classes in
    use), confusion matrix, and regression MSE/MAE/R^2 on the test set."""
    train_loss = mean_loss(z_train, y_train, rows_train, task)
    test_loss = mean_loss(z_test, y_test, rows_test, task)
    out_tr = outputs(z_train, task.out_act, task.out_mask)
    out_te = outputs(z_test, task.out_act, task.out_mask)
    n_tr, n_te = jnp.maximum(rows_train.sum(), 1.0), jnp.maximum(rows_test.sum(), 1.0)
    pred_tr, pred_te = predicted_class(out_tr, task.out_act), predicted_class(out_te, task.out_act)
    acc_tr = ((pred_tr == y_train.astype(jnp.int32)) * rows_train).sum() / n_tr
    acc_te = ((pred_te == y_test.astype(jnp.int32)) * rows_test).sum() / n_te
    cm = confusion(y_test, pred_te, rows_test)
    tp = jnp.diag(cm)
    prec_k = tp / jnp.maximum(cm.sum(0), 1.0)
    rec_k = tp / jnp.maximum(cm.sum(1), 1.0)
    classes = jnp.maximum(task.n_classes, 1)
    in_use = jnp.arange(K) < classes
    binary = task.n_classes == 2
    precision = jnp.where(binary, prec_k[1], (prec_k * in_use).sum() / classes)
    recall = jnp.where(binary, rec_k[1], (rec_k * in_use).sum() / classes)
    f1 = 2 * precision * recall / jnp.maximum(precision + recall, 1e-12)
    # Regression on the test set, in label units.
    err = (out_te[:, 0] - y_test) * rows_test
    mse = (err**2).sum() / n_te
    mae = jnp.abs(err).sum() / n_te
    ybar = (y_test * rows_test).sum() / n_te
    var = (((y_test - ybar) * rows_test) ** 2).sum() / n_te
    r2 = 1.0 - mse / jnp.maximum(var, 1e-12)
    cls = task.classification
    zero = jnp.zeros(())
    return {
        "train_loss": train_loss,
        "test_loss": test_loss,
        "train_accuracy": jnp.where(cls, acc_tr, zero),
        "test_accuracy": jnp.where(cls, acc_te, zero),
        "precision": jnp.where(cls, precision, zero),
        "recall": jnp.where(cls, recall, zero),
        "f1": jnp.where(cls, f1, zero),
        "mse": jnp.where(cls, zero, mse),
        "mae": jnp.where(cls, zero, mae),
        "r2": jnp.where(cls, zero, r2),
        "confusion": jnp.where(cls, cm, 0.0),
    }
