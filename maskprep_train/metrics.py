"""Classification metrics from scikit-learn (accuracy, macro-F1, confusion matrix, one-vs-rest ROC and
AUC), the trainer's conventions for small splits, and the scores of predictors that know nothing.

The conventions: a class absent from both the labels and the predictions of a split is left out of
macro-F1 (a tiny val split without "worn wrong" photos does not look worse than it is), and an AUC
that is undefined (one class only) is nan, later written as null.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; row = true class, column = predicted class."""
    if len(y_true) == 0:
        return np.zeros((n_classes, n_classes), np.int64)
    return skm.confusion_matrix(np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64),
                                labels=list(range(n_classes))).astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (nan for no samples)."""
    y_true = np.asarray(y_true)
    return float(skm.accuracy_score(y_true, np.asarray(y_pred))) if y_true.size else float("nan")


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class; 0 where a class has no true and no predicted sample."""
    if len(y_true) == 0:
        return np.zeros(n_classes)
    return skm.f1_score(y_true, y_pred, labels=list(range(n_classes)), average=None, zero_division=0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in ``y_true`` or ``y_pred``."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    if not present:
        return float("nan")
    return float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0.0))


def binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); nan when one class is absent."""
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return float("nan")
    return float(skm.roc_auc_score(is_positive, np.asarray(scores, np.float64)))


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, starting at (0, 0) with threshold +inf."""
    fpr, tpr, thr = skm.roc_curve(np.asarray(is_positive, dtype=bool), np.asarray(scores, np.float64),
                                  drop_intermediate=False)
    thr = thr.astype(np.float64)
    thr[0] = np.inf  # older scikit-learn releases start at max + 1
    return fpr, tpr, thr


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, list[float]]:
    """One-vs-rest ROC-AUC: ``(macro mean over classes with both positives and negatives, per class)``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    per_class = [binary_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]
    finite = [a for a in per_class if np.isfinite(a)]
    return (float(np.mean(finite)) if finite else float("nan")), per_class


def chance_scores(y_true: np.ndarray, n_classes: int) -> dict[str, Any]:
    """What predictors that never look at the image score on these labels.

    ``majority_class``: the most common class; ``majority_accuracy`` and ``majority_macro_f1``: the
    scores of always answering it; ``uniform_macro_f1``: the expected macro-F1 of answering each class
    with equal chance; ``macro_f1``: the best of the two, the bar a model must clear.
    """
    y_true = np.asarray(y_true, np.int64)
    counts = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    n = counts.sum()
    if n == 0:
        return {"majority_class": None, "majority_accuracy": None, "majority_macro_f1": None,
                "uniform_macro_f1": None, "macro_f1": None}
    present = counts > 0
    k = int(present.sum())
    major = int(counts.argmax())
    majority_pred = np.full_like(y_true, major)
    majority_f1 = macro_f1(y_true, majority_pred, n_classes)
    # Uniform guessing over the k classes present: TP_c = n_c / k, predicted_c = n / k.
    uniform = float(np.mean([2 * c / (n + k * c) for c in counts[present]]))
    return {"majority_class": major, "majority_accuracy": float(counts[major] / n),
            "majority_macro_f1": majority_f1, "uniform_macro_f1": uniform,
            "macro_f1": max(majority_f1, uniform)}


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
        "f1_per_class": per_class_f1(y_true, y_pred, n_classes).tolist(),
        "confusion_matrix": cm.tolist(),
        "predicted_classes": int(len(np.unique(y_pred))),
        "chance": chance_scores(y_true, n_classes),
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
