"""Find the classes and splits of an image tree, split it without leaking, and feed it to torch.

Layouts understood: ``class/`` folders, or ``train/ val/ test/`` folders (any level, any of the names
in :mod:`maskprep.layout`) with ``class/`` folders inside. Without a validation split the trainer makes
one that is stratified by class and **group-aware**: every copy of one source photo (the manifest's
``origin``, or the ``<stem>__<variant>`` file name) lands on the same side.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from maskprep.images import ImageReadError, list_images, read_image
from maskprep.layout import split_name, split_of
from maskprep.manifest import MANIFEST_NAME, group_key, origin_map

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

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}`` for the log and metrics.json."""
        out = {}
        for name, samples in self.splits.items():
            c = Counter(s.label for s in samples)
            out[name] = {cls: int(c.get(i, 0)) for i, cls in enumerate(self.classes)}
        return out


def _class_and_split(rel: str) -> tuple[str | None, str | None]:
    """``("train/with_mask/a.jpg") -> ("with_mask", "train")``; ``"with_mask/a.jpg" -> ("with_mask", None)``."""
    parts = PurePosixPath(rel).parts[:-1]
    split = split_of(rel)
    if split is None:
        return (parts[0] if parts else None), None
    for i, folder in enumerate(parts):
        if split_name(folder) is not None:
            return (parts[i + 1] if i + 1 < len(parts) else None), split
    return None, split


def scan_tree(root: str | os.PathLike) -> tuple[list[tuple[str, str, str, str | None]], int]:
    """``([(abs path, rel, class name, split or None)], ignored count)`` for every image under ``root``."""
    root = Path(root).resolve()
    found, ignored = [], 0
    for path in list_images(root):
        rel = path.relative_to(root).as_posix()
        cls, split = _class_and_split(rel)
        if cls is None:
            ignored += 1
            continue
        found.append((str(path), rel, cls, split))
    return found, ignored


def load_dataset(root: str | os.PathLike, test_dir: str | os.PathLike | None = None,
                 val_fraction: float = 0.15, seed: int = 0) -> Dataset:
    """Scan ``root`` (and ``test_dir``) into train/val(/test) samples.

    Folder splits are kept as they are. Files outside split folders in a tree that has them are
    ignored (counted). When there is no val split, one is made from train with
    :func:`group_aware_split`. ``test_dir`` (class folders) replaces any ``test/`` split of ``root``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    found, ignored = scan_tree(root)
    has_splits = any(split for *_, split in found)
    if has_splits:
        ignored += sum(1 for *_, split in found if split is None)
        found = [f for f in found if f[3] is not None]
    else:
        found = [(p, r, c, "train") for p, r, c, _ in found]
    classes = sorted({c for _, _, c, s in found if s == "train"})
    if len(classes) < 2:
        raise DataError(f"{root}: need at least 2 class folders with images for training, found "
                        f"{len(classes)} ({', '.join(classes) or 'none'}); expected class/ folders "
                        "or train/<class>/ folders")
    index = {c: i for i, c in enumerate(classes)}
    origins = collect_origins(root)
    ds = Dataset(root=str(root), classes=classes, ignored=ignored, split_source="folders")
    for path, rel, cls, split in found:
        if cls not in index:
            raise DataError(f"{rel}: class {cls!r} is not among the training classes {classes}")
        ds.splits.setdefault(split, []).append(
            Sample(path, rel, index[cls], source_group(rel, origins), split))
    if test_dir is not None:
        ds.splits["test"] = load_eval_samples(test_dir, classes)
    if not ds.splits.get("val"):
        train = ds.splits["train"]
        tr, va = group_aware_split([s.label for s in train], [s.group for s in train],
                                   val_fraction, seed)
        ds.splits["train"] = [train[i] for i in tr]
        ds.splits["val"] = [train[i] for i in va]
        for s in ds.splits["val"]:
            s.split = "val"
        ds.split_source = f"group-aware split (val {val_fraction:g}, seed {seed})"
    return ds


def source_group(rel: str, origins: dict[str, str] | None = None) -> str:
    """The source-photo key of ``rel`` (:func:`maskprep.manifest.group_key`) without its split folder.

    ``train/with_mask/a.jpg`` and ``val/with_mask/a__flip.jpg`` are copies of one photo: with the split
    folder left in, their keys would differ and leakage between folder splits would go unnoticed.
    """
    key = group_key(rel, origins)
    parts = PurePosixPath(key).parts
    for i, folder in enumerate(parts[:-1]):
        if split_name(folder) is not None:
            return PurePosixPath(*parts[:i], *parts[i + 1:]).as_posix()
    return key


def collect_origins(root: Path) -> dict[str, str]:
    """``{file rel to root: origin}`` from ``root``'s manifest and any manifest in a sub-folder.

    A stage run per split (``augment train/ ...``) leaves its manifest in that folder; its outputs
    are re-rooted at ``root``, while origins stay as written so one photo keeps one key everywhere.
    """
    origins: dict[str, str] = {}
    for manifest in sorted(root.rglob(MANIFEST_NAME)):
        prefix = manifest.parent.relative_to(root)
        for out, origin in origin_map(manifest.parent).items():
            origins[(prefix / out).as_posix()] = origin
    return origins


def shared_groups(ds: Dataset) -> dict[str, int]:
    """``{"train-val": n, "train-test": n}``: source photos with copies on both sides (leakage)."""
    groups = {k: {s.group for s in v} for k, v in ds.splits.items()}
    train = groups.get("train", set())
    return {f"train-{k}": len(train & groups[k]) for k in ("val", "test") if k in groups}


def load_eval_samples(root: str | os.PathLike, classes: Sequence[str]) -> list[Sample]:
    """Labelled samples of a class-folder tree (split folders, if any, are flattened) for evaluation."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"evaluation folder not found: {root}")
    found, _ = scan_tree(root)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for _, _, c, _ in found if c not in index})
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the model's classes {list(classes)}")
    if not found:
        raise DataError(f"{root}: no images in class folders")
    origins = collect_origins(root)
    return [Sample(p, r, index[c], source_group(r, origins), "test") for p, r, c, _ in found]


def group_aware_split(labels: Sequence[int], groups: Sequence[str], val_fraction: float,
                      seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train indices, val indices)``: stratified by class, never splitting a group.

    Each group counts for its most common label; per class, groups are drawn in a seeded random order
    into val until about ``val_fraction`` of that class's images are there (at least one group when
    the class has two or more, and never all of them). Sizes are approximate when groups are large.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val fraction must be between 0 and 1, not {val_fraction}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    group_label = {g: Counter(labels[i] for i in idx).most_common(1)[0][0] for g, idx in members.items()}
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in sorted(set(labels)):
        class_groups = sorted(g for g in members if group_label[g] == label)
        if len(class_groups) < 2:
            continue  # a class with one photo cannot be on both sides
        total = sum(len(members[g]) for g in class_groups)
        target = val_fraction * total
        taken = 0
        left = len(class_groups)  # groups of this class still in train
        for k in rng.permutation(len(class_groups)):
            g = class_groups[k]
            size = len(members[g])
            # Take a group when it brings the count closer to the target (always the first one),
            # but never the class's last group in train (possible with a large val_fraction).
            if left > 1 and (taken == 0 or abs(taken + size - target) < abs(taken - target)):
                val.extend(members[g])
                taken += size
                left -= 1
            if taken >= target:
                break
    val_set = set(val)
    return [i for i in range(len(labels)) if i not in val_set], sorted(val)


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


def load_pixels(path: str, img_size: int, augment: str = "none",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Read (any mode, EXIF-upright), augment, resize and normalise one file; raises ImageReadError.

    An OS-level failure (permission denied, I/O error, a folder where a file was) is an
    ImageReadError ``unreadable`` too, so it is skipped and counted like a corrupt file.
    """
    try:
        img = read_image(path, max_pixels=MAX_PIXELS)
    except OSError as exc:
        raise ImageReadError("unreadable", path, exc.strerror or type(exc).__name__) from None
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


def class_weights(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``N / (K * n_c)`` (1.0 for balanced data); absent classes get 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)
