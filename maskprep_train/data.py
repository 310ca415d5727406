"""Find the classes and splits of an image tree, split it without leaking, and feed it to torch.

Layouts understood: ``class/`` folders, or ``train/ val/ test/`` folders (any level, any of the names
in :mod:`maskprep.dataset`, which owns what a tree means) with ``class/`` folders inside. Without a validation split the trainer makes
one that is stratified by class and **group-aware**: every copy of one source photo (the manifest's
``origin``, or the ``<stem>__<variant>`` file name) lands on the same side.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from maskprep.dataset import Item, Tree, group_split, index_tree, name_key
from maskprep.images import ImageReadError, read_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip", "light")
# A cap on decoded pixels: training inputs are resized to a few hundred px anyway.
MAX_PIXELS = 50_000_000


class DataError(ValueError):
    """The dataset folder cannot be used for training (no classes, one class, unknown test class)."""


@dataclass
class Sample:
    """One labelled image: ``rel`` is its path relative to the dataset root, ``group`` its source photo."""

    path: str
    rel: str
    label: int
    group: str
    split: str | None = None


@dataclass
class Dataset:
    """A scanned tree: class names (sorted; index = label) and samples per split."""

    root: str
    classes: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    ignored: int = 0            # image files outside any class folder
    split_source: str = ""      # "folders" or "group-aware split (val 0.15, seed 0)"
    split_warnings: list[str] = field(default_factory=list)  # a requested split that could not be honoured

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}`` for the log and metrics.json."""
        out = {}
        for name, samples in self.splits.items():
            c = Counter(s.label for s in samples)
            out[name] = {cls: int(c.get(i, 0)) for i, cls in enumerate(self.classes)}
        return out


def _labelled(tree: Tree) -> tuple[list[Item], int]:
    """The items of ``tree`` a classifier can use (in a class folder; in a split folder when the tree
    has them) and the count of the others."""
    keep = [i for i in tree.items if i.label and (i.split is not None or tree.layout != "split/class")]
    return keep, len(tree.items) - len(keep)


def load_dataset(root: str | os.PathLike, test_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.15, seed: int = 0) -> Dataset:
    """Scan ``root`` (and ``test_dir``) into train/val(/test) samples (:func:`maskprep.dataset.index_tree`).

    Folder splits are kept as they are. Files outside split folders in a tree that has them are
    ignored (counted). When there is no val split, one is made from train with
    :func:`maskprep.dataset.group_split`. ``test_dir`` (class folders) replaces any ``test/`` split.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    items, ignored = _labelled(index_tree(root))
    split_of_item = {i.rel: (i.split or "train") for i in items}
    classes = sorted({i.label for i in items if split_of_item[i.rel] == "train"})
    if len(classes) < 2:
        raise DataError(f"{root}: need at least 2 class folders with images for training, found "
                        f"{len(classes)} ({', '.join(classes) or 'none'}); expected class/ folders "
                        "or train/<class>/ folders")
    index = {c: i for i, c in enumerate(classes)}
    ds = Dataset(root=str(root), classes=classes, ignored=ignored, split_source="folders")
    for item in items:
        if item.label not in index:
            raise DataError(f"{item.rel}: class {item.label!r} is not among the training classes {classes}")
        split = split_of_item[item.rel]
        ds.splits.setdefault(split, []).append(Sample(str(item.path), item.rel, index[item.label], item.group,
                                                      split))
    if test_dir is not None:
        ds.splits["test"] = load_eval_samples(test_dir, classes)
    ds.split_warnings = _recorded_split_warnings(root)
    if not ds.splits.get("val"):
        train = ds.splits["train"]
        plan = group_split([classes[s.label] for s in train], [s.group for s in train],
                           {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
        ds.splits["train"] = [train[i] for i in plan.indices("train")]
        ds.splits["val"] = [train[i] for i in plan.indices("val")]
        for s in ds.splits["val"]:
            s.split = "val"
        ds.split_source = f"group-aware split (val {val_fraction:g}, seed {seed})"
        ds.split_warnings += plan.warnings
    return ds


def _recorded_split_warnings(root: Path) -> list[str]:
    """What `maskprep dataset` said about the split it wrote to ``root`` (its split report)."""
    import json

    from maskprep.assemble import REPORT_NAME
    try:
        report = json.loads((root / REPORT_NAME).read_text(encoding="utf-8"))
        return [f"{line} (maskprep dataset, {REPORT_NAME})" for line in report.get("warnings", [])]
    except (OSError, ValueError, AttributeError):
        return []


def load_eval_samples(root: str | os.PathLike, classes: Sequence[str]) -> list[Sample]:
    """Labelled samples of a class-folder tree (split folders, if any, are flattened) for evaluation."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"evaluation folder not found: {root}")
    items, _ = _labelled(index_tree(root))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({i.label for i in items if i.label not in index})
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the model's classes {list(classes)}")
    if not items:
        raise DataError(f"{root}: no images in class folders")
    return [Sample(str(i.path), i.rel, index[i.label], i.group, "test") for i in items]


def split_leaks(ds: Dataset) -> dict[str, dict[str, int]]:
    """Source photos on both sides of train-val and train-test, and how sure that is.

    ``{"train-val": {"confirmed": n, "same_names": m}}``: candidates are groups (recorded origins) and
    file names (:func:`maskprep.dataset.name_key`) found on both sides; ``confirmed`` counts those
    whose pixels the audit's own checks find to be copies (exact, near or masked copies), and
    ``same_names`` the rest, which only share a name (often unrelated photos such as two ``106.jpg``).
    """
    from maskprep.audit.duplicates import UnionFind, find_duplicates
    from maskprep.audit.leakage import linked_copies, masked_copy_pairs
    from maskprep.audit.scan import scan_file

    out: dict[str, dict[str, int]] = {}
    train = ds.splits.get("train", [])
    for other in ("val", "test"):
        if other not in ds.splits:
            continue
        pair = f"train-{other}"
        keys = {}
        for side, samples in (("train", train), (other, ds.splits[other])):
            keys[side] = defaultdict(list)
            for s in samples:
                keys[side][("group", s.group)].append(s)
                keys[side][("name", name_key(s.rel))].append(s)
        common = sorted(set(keys["train"]) & set(keys[other]))
        if not common:
            out[pair] = {"confirmed": 0, "same_names": 0}
            continue
        # Scan only the files involved, with the audit's own per-file work and checks.
        files = sorted({(side, s.path) for key in common for side in ("train", other)
                        for s in keys[side][key]})
        entries = [scan_file(Path(path), path, side, "") for side, path in files]
        position = {path: k for k, (_, path) in enumerate(files)}
        copies = linked_copies(len(entries), find_duplicates(entries, "/"))
        for a, b, *_ in masked_copy_pairs(entries, copies):
            copies.union(a, b)
        # One source photo counted once, whether found by its group or by its name.
        candidates = UnionFind(len(entries))
        confirmed_roots = set()
        for key in common:
            members = [position[s.path] for side in ("train", other) for s in keys[side][key]]
            for k in members[1:]:
                candidates.union(members[0], k)
        for key in common:
            left = [position[s.path] for s in keys["train"][key]]
            right = [position[s.path] for s in keys[other][key]]
            if any(copies.find(a) == copies.find(b) for a in left for b in right):
                confirmed_roots.add(candidates.find(left[0]))
        roots = {candidates.find(position[s.path]) for key in common for s in keys["train"][key]}
        out[pair] = {"confirmed": len(roots & confirmed_roots), "same_names": len(roots - confirmed_roots)}
    return out


# ----------------------------------------------------------------------------- pixels to tensors

def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to ``size x size`` (faces are near-square crops; no padding)."""
    import cv2
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def augment_image(img: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Light train-time augmentation on an RGB uint8 image, before resizing.

    ``flip``: horizontal flip half the time (faces are left-right symmetric, text is rare).
    ``light``: that, plus a random crop keeping 85-100 % of each side and +-15 % brightness/contrast.
    """
    if mode == "none":
        return img
    if mode not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, not {mode!r}")
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if mode == "light":
        h, w = img.shape[:2]
        ch, cw = max(1, int(round(h * rng.uniform(0.85, 1.0)))), max(1, int(round(w * rng.uniform(0.85, 1.0))))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y0:y0 + ch, x0:x0 + cw]
        gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-0.15, 0.15) * 255 * 0.25
        img = np.clip(img.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def to_tensor_array(img: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3xHxW normalised with ImageNet mean/std (what the backbone expects)."""
    x = img.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read one file as RGB uint8 (any mode, EXIF-upright); raises ImageReadError.

    An OS-level failure (permission denied, I/O error, a folder where a file was) is an
    ImageReadError ``unreadable`` too, so it is skipped and counted like a corrupt file.
    """
    try:
        return read_image(path, max_pixels=MAX_PIXELS)
    except OSError as exc:
        raise ImageReadError("unreadable", path, exc.strerror or type(exc).__name__) from None


def load_pixels(path: str, img_size: int, augment: str = "none",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Read (:func:`read_rgb`), augment, resize and normalise one file; raises ImageReadError."""
    img = read_rgb(path)
    if augment != "none":
        img = augment_image(img, augment, rng if rng is not None else np.random.default_rng())
    return to_tensor_array(resize_square(img, img_size))


class ImageDataset:
    """A torch map-style dataset over samples: items are ``(pixels, label, index)``, or None when unreadable.

    Randomness is seeded by (seed, epoch, index), so an epoch's augmentation does not depend on the
    number of loader workers or processes. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, samples: Sequence[Sample], img_size: int, augment: str = "none", seed: int = 0) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, not {augment!r}")
        self.samples = list(samples)
        self.img_size = img_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s augmentation draws (a fresh, seeded set each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int, int] | None:
        import torch
        s = self.samples[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        try:
            x = load_pixels(s.path, self.img_size, self.augment, rng)
        except ImageReadError:
            return None  # dropped by collate; counted by the caller through missing indices
        return torch.from_numpy(x), s.label, i


def collate_skip_unreadable(batch: list) -> tuple[Any, Any, Any] | None:
    """Stack a batch, leaving out unreadable files; None when nothing in the batch could be read."""
    import torch
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    xs, ys, idx = zip(*batch)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.tensor(idx, dtype=torch.long)
