"""What a dataset tree means: for every image its split, class label, origin photo and group.

The one owner of these rules; the audit, augment, the ``dataset`` command and the trainer all call it.

- **Split**: a folder named like a split (train, val/valid/validation/dev, test/testing/holdout, any
  case) at any level above the file. The outermost one wins, so a class folder called ``test`` inside
  ``train/`` does not move its files out of training.
- **Label**: the folder right below the split folder (``train/with_mask/a.jpg``), or the top folder
  when no split folder names one (``with_mask/a.jpg``); ``""`` for a file with no such folder.
- **Origin**: the original photo a file descends from, from every ``manifest.jsonl`` in the tree (see
  :func:`read_origins`), else the file itself.
- **Group**: the recorded origin without its ``__<variant>`` suffix (:func:`maskprep.manifest.group_key`),
  or for a file no manifest names, its path without the class folder and variant suffix (a masked
  copy lives in another class folder under its photo's stem): every copy of one photo shares it, and
  a split must keep a group on one side.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

import numpy as np

from maskprep.images import Unlisted, scan_images
from maskprep.manifest import MANIFEST_NAME, group_key, read_manifest, split_variant

# Folder names (compared in lower case) read as a split; the value is the canonical split name.
SPLIT_NAMES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "holdout": "test",
}
SPLITS = ("train", "val", "test")


def split_name(folder: str) -> str | None:
    """The canonical split a folder name stands for (``"Valid"`` -> ``"val"``), or None."""
    return SPLIT_NAMES.get(folder.lower())


def split_index(parts: Sequence[str]) -> int | None:
    """Index of the outermost folder named like a split among ``parts[:-1]`` (the last part is the file)."""
    for k, folder in enumerate(parts[:-1]):
        if split_name(folder):
            return k
    return None


def split_of(rel_path: str | PurePosixPath) -> str | None:
    """The split of a file from its path relative to the dataset root, or None when no folder names one.

    ``"train/with_mask/a.jpg"`` -> ``"train"``; ``"data/Validation/cls/a.jpg"`` -> ``"val"``;
    ``"with_mask/a.jpg"`` -> None. Only folders count, never the file name itself.
    """
    parts = PurePosixPath(rel_path).parts
    k = split_index(parts)
    return None if k is None else split_name(parts[k])


def label_of(rel_path: str | PurePosixPath) -> str:
    """The class folder of a file: right below its split folder, else its top folder; ``""`` if none."""
    parts = PurePosixPath(rel_path).parts
    folders = parts[:-1]
    k = split_index(parts)
    if k is not None:
        return folders[k + 1] if k + 1 < len(folders) else ""
    return folders[0] if folders else ""


def split_sort_key(split: str | None) -> tuple[int, str]:
    """Sort key that puts ``train``, ``val`` and ``test`` first, in that order, then any other split."""
    split = split or ""
    return (SPLITS.index(split) if split in SPLITS else 9), split


def detect_layout(rels: Iterable[str]) -> str:
    """``"split/class"`` when most images in folders sit under a split folder (a few strays beside
    ``train/`` and ``test/`` do not change what the tree is); ``"class"`` when images sit in class
    folders (a ``test`` folder inside a class folder is then no split); ``"flat"`` when they all sit
    at the root."""
    in_folders = [r for r in rels if len(PurePosixPath(r).parts) > 1]
    if not in_folders:
        return "flat"
    return "split/class" if 2 * sum(1 for r in in_folders if split_of(r)) > len(in_folders) else "class"


def name_key(rel: str) -> str:
    """The key two files share when only their names relate them: folders without the split folder,
    stem without its ``__<variant>`` (``train/c/a__flip.jpg`` and ``test/c/a.jpg`` give ``c/a``).

    Matching on it is matching by file name: unrelated photos called ``106.jpg`` share it too.
    """
    parts = PurePosixPath(group_key(rel)).parts
    k = split_index(parts)
    if k is not None:
        parts = parts[:k] + parts[k + 1:]
    return PurePosixPath(*parts).as_posix()


def read_origins(root: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """``({file rel path: origin}, [manifest paths])`` from every ``manifest.jsonl`` under ``root``.

    A manifest in a sub-folder (``train/manifest.jsonl``: a stage run on that folder alone) has its
    outputs re-rooted at ``root``. Its origins are re-rooted too when the stage itself was the first
    (origin == source: a path inside that folder's input, so two runs that each saw their own
    ``faces/a.jpg`` stay two photos); an origin carried from an earlier stage names the original
    photo and is kept as written, so one photo keeps one key in every split.
    Records without an output or a named origin (hand-written, other tools) are ignored.
    """
    root = Path(root)
    origins: dict[str, str] = {}
    found = []
    for path in sorted(root.rglob(MANIFEST_NAME)):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        base = path.parent.relative_to(root).as_posix()
        found.append(path.relative_to(root).as_posix())
        for rec in read_manifest(path):
            if not (isinstance(rec.origin, str) and PurePosixPath(rec.origin).name):
                continue
            if rec.status != "ok" or not rec.output:
                continue
            if base in ("", "."):
                origins[rec.output] = rec.origin
            else:
                own = rec.origin == rec.source
                origins[f"{base}/{rec.output}"] = f"{base}/{rec.origin}" if own else rec.origin
    return origins, found


@dataclass(frozen=True)
class Item:
    """One image of a tree: ``rel`` to the root, ``split`` (None outside split folders), ``label``
    (class folder, ``""`` if none), ``origin`` (the photo it descends from) and ``group`` (the key
    every copy of that photo shares). ``evidence``: ``"manifest"`` when a manifest names an origin
    other than the file, ``"name"`` for a ``<stem>__<variant>`` name, ``""`` for an original."""

    path: Path
    rel: str
    split: str | None
    label: str
    origin: str
    group: str
    evidence: str = ""


@dataclass
class Tree:
    """An indexed tree: its layout, items (sorted by path), origins and the manifests they came from."""

    root: Path
    layout: str
    items: list[Item]
    origins: dict[str, str] = field(default_factory=dict)
    manifests: list[str] = field(default_factory=list)
    unlisted: list[Unlisted] = field(default_factory=list)   # entries that cannot be read as files

    @property
    def splits(self) -> list[str | None]:
        """The splits present (None for files outside split folders), train, val, test first."""
        return sorted({i.split for i in self.items}, key=split_sort_key)


def item_of(path: Path, rel: str, origins: Mapping[str, str], layout: str = "split/class") -> Item:
    """The :class:`Item` of one file, given the tree's origins (see :func:`read_origins`) and layout
    (in a ``class`` layout no folder is read as a split, and the class is the top folder)."""
    if layout == "split/class":
        split, label = split_of(rel), label_of(rel)
    else:
        parts = PurePosixPath(rel).parts
        split, label = None, (parts[0] if len(parts) > 1 else "")
    origin = origins.get(rel, rel)
    if origin != rel:
        evidence = "manifest"
    else:
        evidence = "name" if split_variant(PurePosixPath(rel).name)[1] else ""
    return Item(path=path, rel=rel, split=split, label=label, origin=origin,
                group=group_key(_without_class_folder(origin, layout)), evidence=evidence)


def _without_class_folder(path: str, layout: str) -> str:
    """``path`` without the folder that would be its class in ``layout``: a masked copy sits in
    another class folder under its photo's stem (``with_mask/a__kf94_correct.jpg`` and
    ``without_mask/a.jpg`` are one photo), so the class is no part of a group key."""
    parts = PurePosixPath(path).parts
    if layout == "split/class":
        k = split_index(parts)
        at = None if k is None else k + 1
    else:
        at = 0
    if at is not None and at < len(parts) - 1:
        parts = parts[:at] + parts[at + 1:]
    return PurePosixPath(*parts).as_posix()


def index_tree(root: str | os.PathLike) -> Tree:
    """Every image under ``root`` with its split, label, origin and group (hidden files ignored)."""
    root = Path(root).resolve()
    paths, unlisted = scan_images(root)
    rels = [p.relative_to(root).as_posix() for p in paths]
    origins, manifests = read_origins(root)
    layout = detect_layout(rels)
    items = [item_of(p, r, origins, layout) for p, r in zip(paths, rels)]
    return Tree(root=root, layout=layout, items=items, origins=origins, manifests=manifests,
                unlisted=unlisted)


def shared_groups(split_groups: Mapping[str, Iterable[str]], base: str = "train") -> dict[str, set[str]]:
    """``{"train-val": {group, ...}, ...}``: groups with members in ``base`` and in another split."""
    groups = {k: set(v) for k, v in split_groups.items()}
    first = groups.get(base, set())
    return {f"{base}-{k}": first & groups[k] for k in sorted(groups, key=split_sort_key) if k != base}


def class_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """``n / (k * count)`` per class (scikit-learn's "balanced" weights); absent classes get 0."""
    present = {c: n for c, n in counts.items() if n > 0}
    total, k = sum(present.values()), len(present)
    return {c: (total / (k * counts[c]) if counts[c] > 0 else 0.0) for c in counts}


# ----------------------------------------------------------------------------- the group split

@dataclass
class SplitPlan:
    """Where each index went (``assign[i]`` is a split name), what was asked and got, and the problems."""

    assign: list[str]
    requested: dict[str, float]
    achieved: dict[str, float]
    counts: dict[str, dict[str, int]]        # split -> label -> images
    groups: dict[str, int]                   # split -> groups
    warnings: list[str] = field(default_factory=list)

    @property
    def honoured(self) -> bool:
        """True when the split is as asked (no warning)."""
        return not self.warnings

    def indices(self, split: str) -> list[int]:
        """Indices assigned to ``split``, in order."""
        return [i for i, s in enumerate(self.assign) if s == split]

    def to_json(self) -> dict:
        """JSON-ready report."""
        return {"requested": self.requested, "achieved": self.achieved, "counts": self.counts,
                "groups": self.groups, "honoured": self.honoured, "warnings": self.warnings}


# A split counts as honoured when every share is within this many points of the request.
SPLIT_TOLERANCE = 0.05


def group_split(labels: Sequence[str], groups: Sequence[str], ratios: Mapping[str, float],
                seed: int = 0, tolerance: float = SPLIT_TOLERANCE) -> SplitPlan:
    """Split items into ``ratios`` (``{"train": .7, "val": .15, "test": .15}``), never splitting a group,
    stratified by label, with the shares as close as the groups allow.

    A group may hold several labels (an unmasked crop and its masked copies). Groups are shuffled
    (``seed``), then taken largest first, each into the split whose per-label shares it brings closest
    to the request (squared error). Before that, every split with a positive ratio gets one group of
    each label that has at least as many groups as there are such splits (its smallest ones), so no
    split lacks a class it could have. The plan's ``warnings`` say in words where the result differs
    from the request by more than ``tolerance`` or a split lacks a class.
    """
    names = [s for s, r in ratios.items() if r > 0]
    if not names:
        raise ValueError("split ratios must have at least one positive share")
    if any(r < 0 for r in ratios.values()):
        raise ValueError(f"split ratios cannot be negative: {dict(ratios)}")
    total_r = sum(ratios[s] for s in names)
    target = {s: ratios[s] / total_r for s in names}
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    label_set = sorted(set(labels))
    lab_index = {c: k for k, c in enumerate(label_set)}
    totals = np.zeros(len(label_set))
    for c in labels:
        totals[lab_index[c]] += 1
    gcount = {g: np.bincount([lab_index[labels[i]] for i in idx], minlength=len(label_set)).astype(float)
              for g, idx in members.items()}
    rng = np.random.default_rng(seed)
    order = [sorted(members)[k] for k in rng.permutation(len(members))]
    current = {s: np.zeros(len(label_set)) for s in names}
    placed: dict[str, str] = {}

    def put(g: str, s: str) -> None:
        placed[g] = s
        current[s] += gcount[g]

    # Seed every smaller split with each class it can have, rarest classes first.
    others = [s for s in names if s != max(names, key=lambda s: target[s])]
    by_class = {c: [g for g in order if gcount[g][lab_index[c]] > 0] for c in label_set}
    for c in sorted(label_set, key=lambda c: len(by_class[c])):
        if len(by_class[c]) < len(names):
            continue
        for s in others:
            if current[s][lab_index[c]] > 0:
                continue
            free = [g for g in by_class[c] if g not in placed]
            if len(free) > 1:
                put(min(free, key=lambda g: gcount[g].sum()), s)
    safe = np.maximum(totals, 1)
    for g in sorted((g for g in order if g not in placed), key=lambda g: -gcount[g].sum()):
        share = gcount[g] / safe

        def delta(s: str) -> float:
            now = current[s] / safe
            return float((((now + share) - target[s]) ** 2 - (now - target[s]) ** 2)[gcount[g] > 0].sum())
        put(g, min(names, key=lambda s: (delta(s), -target[s])))
    assign = [placed[g] for g in groups]
    n = max(len(labels), 1)
    achieved = {s: round(assign.count(s) / n, 4) for s in names}
    counts = {s: {c: int(current[s][lab_index[c]]) for c in label_set} for s in names}
    ngroups = {s: sum(1 for v in placed.values() if v == s) for s in names}
    warnings = []
    off = [s for s in names if abs(achieved[s] - target[s]) > tolerance]
    if off:
        warnings.append("could not honour the requested split: " + ", ".join(
            f"{s} {achieved[s]:.0%} (asked {target[s]:.0%})" for s in off)
            + f"; only {len(members)} source photo group(s), and a group never straddles two splits")
    for s in names:
        missing = [c for c in label_set if counts[s][c] == 0]
        if missing:
            warnings.append(f"{s} has no {', '.join(missing)} image: too few source photos of that class "
                            f"to put one in every split")
    return SplitPlan(assign, {s: round(target[s], 4) for s in names}, achieved, counts, ngroups, warnings)
