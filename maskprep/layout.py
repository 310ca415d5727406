"""Which split (train / val / test) a file of a dataset tree belongs to, from its folder names.

One small rule shared by the stages that must respect splits (``augment`` augments only training
files; the audit and the trainer compare splits): a folder named like a split, at any level above
the file, puts the file in that split. The outermost such folder wins, so a class folder that happens
to be called ``test`` inside ``train/`` does not move its files out of training.
"""
from __future__ import annotations

from pathlib import PurePosixPath

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


def split_of(rel_path: str | PurePosixPath) -> str | None:
    """The split of a file from its path relative to the dataset root, or None when no folder names one.

    ``"train/with_mask/a.jpg"`` -> ``"train"``; ``"data/Validation/cls/a.jpg"`` -> ``"val"``;
    ``"with_mask/a.jpg"`` -> None. Only folders count, never the file name itself.
    """
    for folder in PurePosixPath(rel_path).parts[:-1]:
        name = split_name(folder)
        if name is not None:
            return name
    return None
