"""Read every image of a dataset once (in parallel) and keep what the checks need: size, digests, hashes.

Nothing here judges the data; the checks in the sibling modules work on the :class:`FileEntry` list.
An unreadable file becomes an entry with its ``ImageReadError`` reason, never an exception.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from maskprep.audit.geometry import AlignData, align_data
from maskprep.audit.hashing import ImageHashes, hashes_of_prepared, prepare
from maskprep.dataset import Item, index_tree, item_of, split_sort_key
from maskprep.images import ImageReadError, decode_image

NO_SPLIT = "all"
THUMB_SIDE = 32  # the small grey picture kept per image for masked-copy verification


@dataclass
class FileEntry:
    """One image file as the audit sees it; ``error`` is set (and most fields empty) when unreadable."""

    rel: str
    split: str
    label: str
    nbytes: int = 0
    sha256: str = ""
    pixels: str = ""            # digest of the decoded RGB pixels and shape
    width: int = 0
    height: int = 0
    grayscale: bool = False
    hashes: ImageHashes | None = None
    thumb: np.ndarray | None = None
    align: AlignData | None = None    # masked copies under augmentation (maskprep.audit.geometry)
    error: str = ""
    detail: str = ""
    faces: np.ndarray | None = None   # (k, 128) dlib descriptors when the identity check ran
    face_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file was read as an image."""
        return not self.error


@dataclass
class Dataset:
    """A scanned dataset: its layout, its files (``entries[k]`` is ``items[k]`` of
    :func:`maskprep.dataset.index_tree`, which owns split, class, origin and group)."""

    root: Path
    layout: str                       # "split/class", "class" or "flat"
    entries: list[FileEntry]
    origins: dict[str, str]           # rel -> origin, from every manifest.jsonl under the root
    manifests: list[str]
    items: list[Item] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        """The splits present, train, val, test first (see :func:`split_sort_key`)."""
        return sorted({e.split for e in self.entries}, key=split_sort_key)

    @property
    def labels(self) -> list[str]:
        """The classes present, sorted (``""`` for files without a class folder)."""
        return sorted({e.label for e in self.entries})


# ---------------------------------------------------------------------------------------------------
# Per-file work (runs in worker processes)

_WORKER: dict[str, Any] = {}


def _init_worker(identity: bool) -> None:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _WORKER["identity"] = identity


def _is_grayscale(image: np.ndarray) -> bool:
    small = image if max(image.shape[:2]) <= 256 else cv2.resize(
        image, (128, 128), interpolation=cv2.INTER_AREA)
    s = small.astype(np.int16)
    return int(np.abs(s[..., 0] - s[..., 1]).max()) <= 3 and int(np.abs(s[..., 1] - s[..., 2]).max()) <= 3


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE, prepared: np.ndarray | None = None) -> np.ndarray:
    """A ``side x side`` grey thumbnail of the border-trimmed picture (what masked copies are compared on).

    ``prepared`` is the picture after :func:`maskprep.audit.hashing.prepare`, when already computed."""
    gray = prepare(image) if prepared is None else prepared
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)


def scan_file(path: Path, rel: str, split: str, label: str, identity: bool = False) -> FileEntry:
    """Read one file and compute everything the checks need; never raises for a bad file."""
    entry = FileEntry(rel=rel, split=split, label=label)
    try:
        data = path.read_bytes()
        entry.nbytes = len(data)
        entry.sha256 = hashlib.sha256(data).hexdigest()
        image = decode_image(data, name=path)
    except ImageReadError as exc:
        entry.error, entry.detail = exc.reason, exc.detail
        return entry
    except FileNotFoundError:
        entry.error = "missing"
        return entry
    except MemoryError:
        entry.error = "out of memory"
        return entry
    except Exception as exc:  # a bad file must never stop the audit
        entry.error, entry.detail = f"error: {type(exc).__name__}", str(exc)[:300]
        return entry
    entry.height, entry.width = image.shape[:2]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(image.shape).encode())
    digest.update(image.tobytes())
    entry.pixels = digest.hexdigest()
    entry.grayscale = _is_grayscale(image)
    prepared = prepare(image)
    entry.hashes = hashes_of_prepared(prepared)
    entry.thumb = thumbnail(image, prepared=prepared)
    entry.align = align_data(prepared)
    if identity:
        from maskprep.audit.identity import face_descriptors
        try:
            entry.face_boxes, entry.faces = face_descriptors(image)
        except Exception as exc:  # a detector failure on one image is that image's problem only
            entry.detail = f"identity: {type(exc).__name__}: {str(exc)[:200]}"
    return entry


def _scan_job(job: tuple[Path, str, str, str]) -> FileEntry:
    return scan_file(*job, identity=_WORKER.get("identity", False))


def scan_items(items: Sequence[Item], workers: int | None = None, identity: bool = False,
               progress: bool | None = None, desc: str = "audit") -> list[FileEntry]:
    """Scan ``items`` (of :func:`maskprep.dataset.index_tree`) with ``workers`` processes (default: all
    cores); the entries come back in the items' order. ``identity=True`` also computes dlib face
    descriptors (about 0.5-1.5 s per photo on one core)."""
    from tqdm import tqdm

    from maskprep.engines import current_engine, map_ordered
    from maskprep.runner import WORKER_DIED, default_workers, ordered_map

    jobs = [(i.path, i.rel, i.split or NO_SPLIT, i.label) for i in items]
    workers = default_workers() if not workers or workers < 1 else workers
    bar = tqdm(total=len(jobs), desc=desc + (" + faces" if identity else ""), unit="img",
               file=sys.stderr, disable=progress is False, dynamic_ncols=True, mininterval=0.5)
    entries: list[FileEntry] = []
    engine = current_engine()
    try:
        if engine.name != "local" and jobs:  # the same per-file scan on another engine (maskprep.engines)
            for entry in map_ordered(engine, _scan_job, jobs, workers, _init_worker, (identity,)):
                entries.append(entry)
                bar.update(1)
        elif workers == 1 or len(jobs) < 8:
            _WORKER["identity"] = identity
            for job in jobs:
                entries.append(_scan_job(job))
                bar.update(1)
        else:
            # ordered_map, not a multiprocessing.Pool: a worker killed by the OOM killer is noticed.
            def lost(job: tuple) -> FileEntry:
                return FileEntry(rel=job[1], split=job[2], label=job[3], error=WORKER_DIED)
            for entry in ordered_map(_scan_job, jobs, min(workers, len(jobs)), _init_worker,
                                     (identity,), lost):
                entries.append(entry)
                bar.update(1)
    finally:
        bar.close()
    return entries


def scan_dataset(root: str | os.PathLike, workers: int | None = None, identity: bool = False,
                 progress: bool | None = None) -> Dataset:
    """Scan every image under ``root`` (see :func:`scan_items`)."""
    tree = index_tree(root)
    entries = scan_items(tree.items, workers, identity, progress)
    for item in tree.unlisted:   # counted as unreadable with the reason, never left out silently
        rel = os.path.relpath(item.path, tree.root).replace(os.sep, "/")
        placed = item_of(item.path, rel, tree.origins, tree.layout)
        entries.append(FileEntry(rel, placed.split or NO_SPLIT, placed.label, error=item.reason))
    return Dataset(root=tree.root, layout=tree.layout, entries=entries, origins=tree.origins,
                   manifests=tree.manifests, items=tree.items)
