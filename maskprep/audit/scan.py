"""Read every image of a dataset once (in parallel) and keep what the checks need: size, digests, hashes.

Nothing here judges the data; the checks in the sibling modules work on the :class:`FileEntry` list.
An unreadable file becomes an entry with its ``ImageReadError`` reason, never an exception.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import cv2
import numpy as np

from maskprep.audit.geometry import AlignData, align_data
from maskprep.audit.hashing import ImageHashes, hashes_of_prepared, prepare
from maskprep.images import ImageReadError, decode_image, list_images
from maskprep.layout import split_name, split_of
from maskprep.manifest import MANIFEST_NAME, group_key, read_manifest, split_variant

NO_SPLIT = "all"
THUMB_SIDE = 32  # the small grey picture kept per image for masked-copy verification


def split_sort_key(split: str) -> tuple[int, str]:
    """Sort key that puts ``train``, ``val`` and ``test`` first, in that order, then any other split."""
    return {"train": 0, "val": 1, "test": 2}.get(split, 9), split


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
    """A scanned dataset: its layout, its files, and the source key of each file (see :func:`source_keys`)."""

    root: Path
    layout: str                       # "split/class", "class" or "flat"
    entries: list[FileEntry]
    origins: dict[str, str]           # rel -> origin, from every manifest.jsonl under the root
    manifests: list[str]

    @property
    def splits(self) -> list[str]:
        """The splits present, train, val, test first (see :func:`split_sort_key`)."""
        return sorted({e.split for e in self.entries}, key=split_sort_key)

    @property
    def labels(self) -> list[str]:
        """The classes present, sorted (``""`` for files without a class folder)."""
        return sorted({e.label for e in self.entries})


def _split_index(parts: tuple[str, ...]) -> int | None:
    """Index of the outermost folder named like a split (the rule of :mod:`maskprep.layout`)."""
    for k, folder in enumerate(parts[:-1]):
        if split_name(folder):
            return k
    return None


def detect_layout(rels: Iterable[str]) -> str:
    """``"split/class"`` when every image in a folder sits under a split folder (train, val, test...,
    at any depth, as :func:`maskprep.layout.split_of` reads it); ``"class"`` when images sit in class
    folders; ``"flat"`` when they all sit at the root."""
    in_folders = [r for r in rels if len(PurePosixPath(r).parts) > 1]
    if not in_folders:
        return "flat"
    return "split/class" if all(split_of(r) for r in in_folders) else "class"


def split_and_label(rel: str, layout: str) -> tuple[str, str]:
    """``(split, class)`` of a file path relative to the dataset root, under a layout.

    The class is the folder right below the split folder (``train/with_mask/a.jpg``), or the top
    folder in a class layout; files with no such folder have the class ``""``."""
    parts = PurePosixPath(rel).parts
    folders = parts[:-1]
    if layout == "split/class":
        k = _split_index(parts)
        if k is not None:
            return split_name(parts[k]) or parts[k], folders[k + 1] if k + 1 < len(folders) else ""
        return NO_SPLIT, folders[0] if folders else ""
    if layout == "class":
        return NO_SPLIT, folders[0] if folders else ""
    return NO_SPLIT, ""


def read_origins(root: Path) -> tuple[dict[str, str], list[str]]:
    """``{file rel path: origin}`` from every ``manifest.jsonl`` under ``root`` (outputs marked ok).

    A manifest in a sub-folder (``train/manifest.jsonl``: a stage run on that folder alone) has its
    outputs and origins read relative to that folder, so two runs that both saw a ``with_mask/a.jpg``
    in their own inputs do not make two different photos one source."""
    origins: dict[str, str] = {}
    found = []
    for path in sorted(root.rglob(MANIFEST_NAME)):
        base = path.parent.relative_to(root).as_posix()
        found.append(path.relative_to(root).as_posix())
        for rec in read_manifest(path):
            # A record must name an output and a photo it came from; one without (hand-written or from
            # another tool) says nothing about sources, and an empty origin has no name to group by.
            if not (isinstance(rec.origin, str) and PurePosixPath(rec.origin).name):
                continue
            if rec.status == "ok" and rec.output:
                if base in ("", "."):
                    origins[rec.output] = rec.origin
                else:
                    origins[f"{base}/{rec.output}"] = f"{base}/{rec.origin}"
    return origins, found


def source_key(rel: str, origins: dict[str, str]) -> tuple[str, str]:
    """``(key, evidence)``: the original photo a file descends from, without any split folder.

    ``evidence`` is ``"manifest"`` (an upstream manifest names an origin other than the file itself),
    ``"name"`` (a ``<stem>__<variant>`` file name) or ``""`` (an original, as far as we can tell).
    """
    key = group_key(rel, origins)
    parts = PurePosixPath(key).parts
    k = _split_index(parts)
    if k is not None:
        key = str(PurePosixPath(*parts[:k], *parts[k + 1:]))
    if rel in origins and origins[rel] != rel:
        return key, "manifest"
    if split_variant(PurePosixPath(rel).name)[1]:
        return key, "name"
    return key, ""


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


def scan_dataset(root: str | os.PathLike, workers: int | None = None, identity: bool = False,
                 progress: bool | None = None) -> Dataset:
    """Scan every image under ``root`` with ``workers`` processes (default: all cores).

    ``identity=True`` also computes dlib face descriptors (about 0.5-1.5 s per photo on one core).
    """
    from tqdm import tqdm

    from maskprep.runner import default_workers, process_pool

    root = Path(root).resolve()
    paths = list_images(root)
    rels = [p.relative_to(root).as_posix() for p in paths]
    layout = detect_layout(rels)
    jobs = [(p, r, *split_and_label(r, layout)) for p, r in zip(paths, rels)]
    workers = default_workers() if not workers or workers < 1 else workers
    bar = tqdm(total=len(jobs), desc="audit" + (" + faces" if identity else ""), unit="img",
               file=sys.stderr, disable=progress is False, dynamic_ncols=True, mininterval=0.5)
    entries: list[FileEntry] = []
    try:
        if workers == 1 or len(jobs) < 8:
            _WORKER["identity"] = identity
            for job in jobs:
                entries.append(_scan_job(job))
                bar.update(1)
        else:
            pool = process_pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(identity,))
            with pool:
                chunk = 1 if identity else max(1, min(32, len(jobs) // (workers * 8)))
                for entry in pool.imap(_scan_job, jobs, chunksize=chunk):
                    entries.append(entry)
                    bar.update(1)
    finally:
        bar.close()
    origins, manifests = read_origins(root)
    return Dataset(root=root, layout=layout, entries=entries, origins=origins, manifests=manifests)
