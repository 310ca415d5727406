"""Classification metrics in plain numpy: accuracy, macro-F1, confusion matrix, one-vs-rest ROC and AUC.

Written here rather than taken from scikit-learn so the trainer has no extra dependency; the
definitions follow the usual ones (sklearn's where a convention is needed, noted below).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (nan for no samples)."""
    y_true = np.asarray(y_true)
    return float(np.mean(y_true == np.asarray(y_pred))) if y_true.size else float("nan")


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class from a confusion matrix; 0 where a class has no true and no predicted sample."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # predicted + true = 2tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
    return f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in ``y_true`` or ``y_pred``.

    Classes absent from both (e.g. no "worn incorrectly" photo in a small val split) are left out
    rather than counted as F1 = 0, so a tiny split does not look worse than it is.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if not present.any():
        return float("nan")
    return float(per_class_f1(cm)[present].mean())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Boundaries of runs of equal values in the sorted order.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties count one half); nan when one class is absent."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(is_positive.sum())
    n_neg = int(is_positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, starting at (0, 0) with threshold +inf."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    pos = is_positive[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tps = np.cumsum(pos)[last_of_run]
    fps = (last_of_run + 1) - tps
    n_pos, n_neg = max(int(pos.sum()), 1), max(int((~pos).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s[last_of_run]]
    return fpr, tpr, thresholds


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, list[float]]:
    """One-vs-rest ROC-AUC: ``(macro mean over classes with both positives and negatives, per class)``.

    For two classes this is the ordinary AUC of the positive class (both entries are equal).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    per_class = [binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]
    finite = [a for a in per_class if np.isfinite(a)]
    return (float(np.mean(finite)) if finite else float("nan")), per_class


def summarize(y_true: np.ndarray, probs: np.ndarray, loss: float | None = None) -> dict[str, Any]:
    """All the numbers the report needs for one split, JSON-ready (nan becomes None)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    auc, auc_per_class = ovr_auc(y_true, probs)
    return _clean({
        "n": int(len(y_true)),
        "loss": loss,
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n_classes),
        "roc_auc": auc,
        "roc_auc_per_class": auc_per_class,
        "f1_per_class": per_class_f1(cm).tolist(),
        "confusion_matrix": cm.tolist(),
    })


def _clean(value: Any) -> Any:
    """nan/inf -> None so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
