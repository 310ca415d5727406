"""Run every audit check over a dataset and gather the findings in one :class:`AuditReport`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from maskprep.audit.balance import DEFAULT_MAX_DRIFT, DEFAULT_MAX_IMBALANCE, check_balance
from maskprep.audit.duplicates import (DEFAULT_NEAR_THRESHOLD, Duplicates, duplicate_findings, find_duplicates,
                                       recorded_variants, separate_recorded)
from maskprep.audit.files import DEFAULT_MAX_ASPECT, DEFAULT_MIN_SIDE, check_files
from maskprep.audit.leakage import find_leakage, label_conflicts
from maskprep.audit.scan import Dataset, scan_dataset

FAIL_CONDITIONS = ("leakage", "duplicates", "imbalance", "unreadable", "conflicts")
JSON_SCHEMA_VERSION = 1


@dataclass
class AuditReport:
    """Everything the audit found. ``to_dict()`` is the ``--json`` document."""

    dataset: Dataset
    settings: dict[str, Any]
    balance: dict[str, Any]
    files: dict[str, list[dict[str, Any]]]
    duplicates: Duplicates
    leakage: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    identity: dict[str, Any] | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def conditions(self) -> dict[str, bool]:
        """Which ``--fail-on`` conditions hold."""
        return {
            "leakage": bool(self.leakage),
            "duplicates": bool(self.duplicates.exact_groups or self.duplicates.near_groups),
            "imbalance": bool(self.balance["imbalanced"]),
            "unreadable": bool(self.files["unreadable"]),
            "conflicts": bool(self.conflicts),
        }

    def failed(self, fail_on: Iterable[str]) -> list[str]:
        """The conditions of ``fail_on`` that hold (an empty list means pass)."""
        held = self.conditions()
        return [c for c in fail_on if held.get(c)]

    def to_dict(self) -> dict[str, Any]:
        """The whole report as plain JSON-ready data (the ``--json`` document; schema in docs/audit.md)."""
        entries = self.dataset.entries
        readable = sum(e.ok for e in entries)
        recorded = recorded_variants(entries, self.duplicates, self.dataset.origins)
        leak_counts: dict[str, int] = {}
        for f in self.leakage:
            leak_counts[f["kind"]] = leak_counts.get(f["kind"], 0) + 1
        return {
            "schema": JSON_SCHEMA_VERSION,
            "root": str(self.dataset.root),
            "layout": self.dataset.layout,
            "splits": self.dataset.splits,
            "classes": self.dataset.labels,
            "manifests": self.dataset.manifests,
            "settings": self.settings,
            "counts": {"files": len(entries), "readable": readable,
                       "unreadable": len(entries) - readable,
                       "exact_groups": len(self.duplicates.exact_groups),
                       "near_groups": len(self.duplicates.near_groups),
                       "recorded_variants": len(recorded),
                       "leaks": leak_counts, "label_conflicts": len(self.conflicts)},
            "conditions": self.conditions(),
            "balance": self.balance,
            "files": self.files,
            "duplicates": {**duplicate_findings(entries, self.duplicates), "recorded": recorded},
            "leakage": self.leakage,
            "label_conflicts": self.conflicts,
            "identity": self.identity,
            "seconds": round(self.seconds, 2),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def _identity_pairs(dataset: Dataset) -> tuple[list[tuple[int, int, float, int, int]], dict[str, Any]]:
    from maskprep.audit.identity import SAME_PERSON_DISTANCE, same_person_pairs
    desc, owners = [], []
    no_face = 0
    failed: list[dict[str, str]] = []   # the face check itself failed: say so, not "no face"
    for k, e in enumerate(dataset.entries):
        if not e.ok:
            continue
        if e.faces is None and e.detail.startswith("identity:"):
            failed.append({"file": e.rel, "detail": e.detail})
            continue
        if e.faces is None or len(e.faces) == 0:
            no_face += 1
            continue
        desc.append(e.faces)
        owners.extend([k] * len(e.faces))
    if not desc:
        return [], {"faces": 0, "images_without_face": no_face, "threshold": SAME_PERSON_DISTANCE,
                    "check_failed": failed}
    # Face-level pairs (image a, image b, distance, face a, face b): people are chained face by face,
    # so a group photo does not merge everyone in it into one person.
    pairs = [(owners[fa], owners[fb], d, fa, fb)
             for fa, fb, d in same_person_pairs(np.concatenate(desc), np.asarray(owners))]
    return pairs, {"faces": len(owners), "images_without_face": no_face,
                   "threshold": SAME_PERSON_DISTANCE, "same_person_pairs": len(pairs),
                   "check_failed": failed}


def audit(root: str | os.PathLike, near_threshold: int = DEFAULT_NEAR_THRESHOLD, identity: bool = False,
          workers: int | None = None, progress: bool | None = None, min_side: int = DEFAULT_MIN_SIDE,
          max_aspect: float = DEFAULT_MAX_ASPECT, max_imbalance: float = DEFAULT_MAX_IMBALANCE,
          max_drift: float = DEFAULT_MAX_DRIFT) -> AuditReport:
    """Audit the image tree at ``root`` (``class/`` or ``split/class/`` folders) and return the findings.

    ``near_threshold``: bits (of 64) within which both pHash and dHash of two pictures must agree
    for them to count as near duplicates.
    ``identity``: also look for the same person across splits (dlib descriptors; slow, opt-in).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    dataset = scan_dataset(root, workers=workers, identity=identity, progress=progress)
    timings["scan"] = time.perf_counter() - started
    t = time.perf_counter()
    readable = [(e.split, e.label) for e in dataset.entries if e.ok]
    balance = check_balance(readable, max_imbalance=max_imbalance, max_drift=max_drift)
    files = check_files(dataset.entries, min_side=min_side, max_aspect=max_aspect)
    dups = find_duplicates(dataset.entries, dataset.root, near_threshold=near_threshold)
    # What the manifests record as variants of one origin in one split is the pipeline's own work.
    separate_recorded(dataset.entries, dups, dataset.origins)
    timings["duplicates"] = time.perf_counter() - t
    t = time.perf_counter()
    id_pairs, id_info = _identity_pairs(dataset) if identity else ([], None)
    leakage = find_leakage(dataset, dups, identity_pairs=id_pairs)
    conflicts = label_conflicts(dataset.entries, dups, dataset.items)
    timings["leakage"] = time.perf_counter() - t
    settings = {"near_threshold": near_threshold, "identity": identity, "min_side": min_side,
                "max_aspect": max_aspect, "max_imbalance": max_imbalance, "max_drift": max_drift}
    return AuditReport(dataset=dataset, settings=settings, balance=balance, files=files, duplicates=dups,
                       leakage=leakage, conflicts=conflicts, identity=id_info,
                       seconds=time.perf_counter() - started, timings=timings)
