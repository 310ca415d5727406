"""Class balance: counts per split and class, imbalance ratio, share drift between splits, class weights."""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from maskprep.dataset import class_weights as balanced_weights
from maskprep.dataset import split_sort_key

DEFAULT_MAX_IMBALANCE = 3.0   # largest / smallest class; above it a plain cross-entropy model drifts
DEFAULT_MAX_DRIFT = 0.10      # a class's share may differ by 10 points between splits


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """The balanced weights of :func:`maskprep.dataset.class_weights`, rounded; empty classes get none."""
    return {c: round(w, 4) for c, w in sorted(balanced_weights(counts).items()) if counts[c] > 0}


def imbalance_ratio(counts: dict[str, int]) -> float | None:
    """Largest class over smallest; ``None`` when a class has no image at all (infinitely imbalanced)."""
    values = list(counts.values())
    if not values:
        return 1.0
    if min(values) == 0:
        return None
    return round(max(values) / min(values), 3)


def check_balance(splits_labels: Sequence[tuple[str, str]], max_imbalance: float = DEFAULT_MAX_IMBALANCE,
                  max_drift: float = DEFAULT_MAX_DRIFT) -> dict[str, Any]:
    """Balance findings from the ``(split, class)`` of every readable image.

    Returns ``counts`` (split -> class -> n), ``ratio`` (split -> largest/smallest, null if a class is
    missing), ``shares`` (split -> class -> fraction), ``drift`` (class -> largest share difference
    between splits), ``class_weights`` (from train when there is one), ``imbalanced`` and ``drifted``
    (lists of what crossed the limits).
    """
    counter = Counter(splits_labels)
    labels = sorted({label for _, label in counter})
    splits = sorted({split for split, _ in counter}, key=split_sort_key)
    counts = {s: {c: counter.get((s, c), 0) for c in labels} for s in splits}
    ratio = {s: imbalance_ratio(counts[s]) for s in splits}
    shares = {}
    for s in splits:
        total = sum(counts[s].values())
        shares[s] = {c: round(counts[s][c] / total, 4) if total else 0.0 for c in labels}
    drift = {c: round(max(shares[s][c] for s in splits) - min(shares[s][c] for s in splits), 4)
             for c in labels} if len(splits) > 1 else {c: 0.0 for c in labels}
    base = "train" if "train" in counts else None
    base_counts = counts[base] if base else {c: sum(counts[s][c] for s in splits) for c in labels}
    imbalanced = []
    for s in splits:
        if len(labels) < 2:
            continue
        r = ratio[s]
        if r is None or r > max_imbalance:
            imbalanced.append({"split": s, "ratio": r,
                               "missing": [c for c in labels if counts[s][c] == 0]})
    drifted = [{"class": c, "drift": d} for c, d in drift.items() if d > max_drift]
    return {
        "classes": labels, "splits": splits, "counts": counts, "ratio": ratio, "shares": shares,
        "drift": drift, "class_weights": class_weights(base_counts),
        "class_weights_from": base or "all", "max_imbalance": max_imbalance, "max_drift": max_drift,
        "imbalanced": imbalanced, "drifted": drifted,
    }
