"""The report in ``--out``: metrics.json, loss/F1 and ROC plots, and a plain-language gap verdict.

The verdict compares macro-F1 of the best checkpoint (evaluated with dropout and augmentation off)
on train, val and test, and says what a gap usually means and what to do about it. A gap smaller
than the sampling noise of the smaller split (two standard errors) is called noise, not a finding.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from maskprep_train.metrics import roc_curve

GAP_WARN = 0.10     # a macro-F1 gap this large is a problem worth a warning
VERDICT_NAME = "verdict.txt"
RANKS_WELL_AUC = 0.8  # a model at chance on F1 whose ROC-AUC is this high ranks well but decides badly


def _noise(f: float, n: int) -> float:
    """Two standard errors of a proportion near ``f`` measured on ``n`` images."""
    if n <= 0:
        return 1.0
    p = min(max(f, 0.05), 0.95)
    return 2.0 * math.sqrt(p * (1 - p) / n)


def _at_chance(m: dict[str, Any]) -> bool:
    """True when a split's macro-F1 is not above the best know-nothing predictor's by more than noise."""
    f, bar = m.get("macro_f1"), (m.get("chance") or {}).get("macro_f1")
    if f is None or bar is None:
        return False
    return f <= bar + _noise(bar, int(m.get("n") or 0))


def chance_lines(final: dict[str, dict[str, Any]], classes: list[str] | None = None) -> list[str]:
    """A line per split whose macro-F1 a predictor that never looks at the image matches (within two
    standard errors)."""
    lines = []
    for split, m in final.items():
        if not m or not _at_chance(m):
            continue
        c = m["chance"]
        major = c.get("majority_class")
        name = classes[major] if classes and major is not None and major < len(classes) else f"class {major}"
        one = " It predicts a single class for every image." if m.get("predicted_classes") == 1 else ""
        auc = m.get("roc_auc")
        if auc is not None and auc >= RANKS_WELL_AUC:
            advice = (f" Its scores still rank the classes (ROC-AUC {auc:.2f}), so its decisions, not its "
                      "features, fail here: train longer, or check the class balance of the splits.")
        else:
            advice = ((f" ROC-AUC {auc:.2f} (0.50 is chance)." if auc is not None else "")
                      + " The model has learnt nothing usable here: train longer, start from --weights "
                        "imagenet, unfreeze more (--freeze none from scratch), or check the labels.")
        lines.append(
            f"NOT BETTER THAN CHANCE on {split}: macro-F1 {m['macro_f1']:.3f}, while always answering "
            f"{name!r} scores {c['majority_macro_f1']:.3f} (accuracy {c['majority_accuracy']:.3f} vs "
            f"{m['accuracy']:.3f}) and guessing at random {c['uniform_macro_f1']:.3f}.{one}{advice}")
    return lines


def gap_verdict(final: dict[str, dict[str, Any]], data_hint: str = "DATA",
                leaks: dict[str, dict[str, int]] | None = None, split_warnings: list[str] | None = None,
                classes: list[str] | None = None) -> dict[str, Any]:
    """``{"status": "ok"|"warning", "train_val_gap", "val_test_gap", "lines": [...]}`` from final metrics.

    ``final`` maps split name to :func:`maskprep_train.metrics.summarize` output; ``leaks`` is
    :func:`maskprep_train.data.split_leaks` (source photos on both sides, confirmed by pixels or
    sharing only file names); ``split_warnings`` says where a requested split was not honoured.
    Scores no better than chance come first: every other line is moot after them.
    """
    f = {k: v.get("macro_f1") for k, v in final.items() if v and v.get("macro_f1") is not None}
    n = {k: int(v.get("n") or 0) for k, v in final.items() if v}
    lines: list[str] = chance_lines(final, classes)
    chance = {k for k, v in final.items() if v and _at_chance(v)}
    warn = bool(lines)
    for line in split_warnings or []:
        warn = True
        lines.append(f"WARNING split: {line}")
    tv = vt = None
    if "train" in f and "val" in f:
        tv = f["train"] - f["val"]
        noise = _noise(f["val"], n["val"])
        head = f"train {f['train']:.3f} vs val {f['val']:.3f} (macro-F1)"
        if tv > max(GAP_WARN, noise):
            warn = True
            lines.append(f"WARNING overfitting: {head}. The model fits the training photos much better "
                         "than new ones: add photos, keep --augment light, freeze more (--freeze head or "
                         "layer4), or train fewer epochs (--patience).")
        elif tv < -noise:
            lines.append(f"note: val above train: {head}. Both are the kept checkpoint's numbers with "
                         "dropout and augmentation off, so the val photos are easier or too few to tell. "
                         "Usually harmless; check the split is not easier by chance (another --seed) "
                         "before trusting it.")
        elif not chance & {"train", "val"}:
            lines.append(f"ok: {head}; the gap is within {max(GAP_WARN, noise):.2f}.")
    if "val" in f and "test" in f:
        vt = f["val"] - f["test"]
        noise = _noise(f["test"], n["test"]) + _noise(f["val"], n["val"])
        head = f"val {f['val']:.3f} vs test {f['test']:.3f} (macro-F1)"
        if vt > max(GAP_WARN, noise):
            warn = True
            lines.append(f"WARNING generalisation gap: {head}. The test photos differ from the training "
                         f"ones. Run `maskprep audit {data_hint}` to look for leakage (copies of one photo "
                         "on both sides of train/val inflate val) and for domain shift (test photos from "
                         "another source, size, pose or lighting); add training photos like the test ones.")
        elif vt < -noise:
            lines.append(f"note: test above val: {head}; the test set may be easier than the training data.")
        elif not chance & {"val", "test"}:
            lines.append(f"ok: {head}; val predicts test within {max(GAP_WARN, noise):.2f}.")
    elif "val" in f:
        what = "no test image could be read" if "test" in n else "no test set"
        lines.append(f"note: {what}. Val chose the best epoch, so its numbers are optimistic; pass "
                     "--test DIR with photos from another source to measure generalisation.")
    for pair, found in (leaks or {}).items():
        if found.get("confirmed"):
            warn = True
            lines.append(f"WARNING leakage: {found['confirmed']} source photo(s) have copies on both sides "
                         f"of {pair}, confirmed by their pixels (exact, near or masked copies), so the "
                         f"second split's numbers are inflated. Run `maskprep audit {data_hint}` and "
                         "re-split by photo (`maskprep dataset`).")
        if found.get("same_names"):
            lines.append(f"note: {found['same_names']} file name(s) (or recorded origin names) occur on "
                         f"both sides of {pair}, but their pixels are not copies of each other: same file "
                         "names only, probably unrelated photos; not counted as leakage.")
    small = [k for k in ("val", "test") if k in n and 0 < n[k] < 50]
    if small:
        verb = "has" if len(small) == 1 else "have"
        lines.append(f"note: {' and '.join(small)} {verb} fewer than 50 images; numbers move by several "
                     "points from photo to photo.")
    return {"status": "warning" if warn else "ok", "train_val_gap": tv, "val_test_gap": vt, "lines": lines}


def fmt_metric(value: float | None, digits: int = 3) -> str:
    """A metric for the console: ``"0.912"``, or ``"n/a"`` when it is undefined (None, e.g. no readable image)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot_curves(history: list[dict[str, Any]], path: Path, best_epoch: int | None = None,
                final: dict[str, dict[str, Any]] | None = None) -> None:
    """Loss and macro-F1 per epoch, train (running, augmented) and val, a dashed line at the kept epoch;
    with ``final``, a third panel: the kept model's train/val/test scores side by side against chance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3 if final else 2, figsize=(15 if final else 10, 4))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "macro_f1", "macro-F1")):
        for split, style in (("train", "-o"), ("val", "-s")):
            vals = [np.nan if h[split].get(key) is None else h[split][key] for h in history]
            ax.plot(epochs, vals, style, label=split, markersize=3)
        if best_epoch:
            ax.axvline(best_epoch, ls="--", color="grey", lw=1, label="kept (best val F1)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    if final:
        _plot_final(axes[2], final)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_final(ax: Any, final: dict[str, dict[str, Any]]) -> None:
    """Bars of the kept model's macro-F1 and accuracy per split, each split's chance level dashed."""
    splits = [s for s in ("train", "val", "test") if final.get(s)]
    x = np.arange(len(splits))
    for off, key, label in ((-0.2, "macro_f1", "macro-F1"), (0.2, "accuracy", "accuracy")):
        vals = [final[s].get(key) for s in splits]
        bars = ax.bar(x + off, [np.nan if v is None else v for v in vals], 0.4, label=label)
        for bar, v in zip(bars, vals):
            if v is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    for k, s in enumerate(splits):
        chance = final[s].get("chance") or {}
        for x0, key, style, label in ((k - 0.4, "macro_f1", "k--", "chance (best know-nothing guess)"),
                                      (k, "majority_accuracy", "k--", None)):
            if chance.get(key) is not None:
                ax.plot([x0, x0 + 0.4], [chance[key]] * 2, style, lw=1, label=label if k == 0 else None)
    ax.set_xticks(x, splits)
    ax.set_ylim(0, 1.1)
    ax.set_title("kept model: " + " / ".join(splits))
    ax.legend(loc="lower right", fontsize=8)


def plot_roc(roc_inputs: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], path: Path) -> None:
    """One-vs-rest ROC curves per class, one panel per split (val, test)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits = list(roc_inputs)
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4.5), squeeze=False)
    for ax, split in zip(axes[0], splits):
        y, probs = roc_inputs[split]
        for c, name in enumerate(classes):
            pos = np.asarray(y) == c
            if pos.all() or not pos.any():
                continue
            fpr, tpr, _ = roc_curve(pos, np.asarray(probs)[:, c])
            ax.plot(fpr, tpr, label=name)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(f"ROC ({split}, one-vs-rest)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if ax.get_legend_handles_labels()[0]:  # no curve when the split has no readable image or one class
            ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, result: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """Write metrics.json, curves.png, roc.png and verdict.txt into ``out``; print the verdict."""
    roc_inputs = {k: v.pop("_roc_inputs") for k, v in result["final"].items() if "_roc_inputs" in v}
    verdict = gap_verdict(result["final"], result.get("data_root", "DATA"), result.get("leak_candidates"),
                          result.get("split_warnings"), result.get("classes"))
    result["verdict"] = verdict
    with open(out / "metrics.json", "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    plot_curves(result["epochs"], out / "curves.png", result.get("best_epoch"), result["final"])
    if roc_inputs:
        plot_roc(roc_inputs, result["classes"], out / "roc.png")
    summary = [f"best epoch {result['best_epoch']} of {len(result['epochs'])}"]
    for split, m in result["final"].items():
        summary.append(f"  {split:5s} n={m['n']:5d}  acc {fmt_metric(m.get('accuracy'))}  macro-F1 "
                       f"{fmt_metric(m.get('macro_f1'))}  ROC-AUC {fmt_metric(m.get('roc_auc'))}")
    text = "\n".join(summary + ["verdict:"] + ["  " + line for line in verdict["lines"]])
    (out / VERDICT_NAME).write_text(text + "\n", encoding="utf-8")
    say(text)
    say(f"report written to {out}/ (metrics.json, best.pt, curves.png, roc.png, verdict.txt)")
    return result
