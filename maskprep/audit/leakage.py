"""Leakage across splits, and label conflicts.

A model scores well on a test set that holds its training photos. Five ways they get there, each
reported as a finding with ``kind``:

- ``exact``: the same pixels in two splits;
- ``near``: a rescaled, recompressed or mirrored copy in two splits;
- ``variant``: copies of one source photo (from the manifests of earlier stages, or from the
  ``<stem>__<variant>`` file names) in two splits;
- ``masked_copy``: the same photo with the lower face changed (a synthetic mask painted on a training
  photo, or on a mirrored, rotated, zoomed or colour-shifted copy of it) in another split: found from
  pixels alone, by hashing the picture with its lower-central part blanked and checking that the
  thumbnails agree outside that part, and under augmentation by :mod:`maskprep.audit.geometry` (a grid
  of inverse augmentations for candidates, a RANSAC-verified transform to confirm);
- ``identity`` (opt-in): the same person in two different photos in two splits (dlib face
  descriptors closer than 0.6); copies of one photo are reported under the kinds above instead.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any, Sequence

import numpy as np

from maskprep.audit.duplicates import Duplicates, UnionFind
from maskprep.audit.geometry import augmented_masked_copies
from maskprep.audit.hashing import MASK_REGION
from maskprep.audit.pairs import flip_aware_pairs, hamming_pairs
from maskprep.audit.scan import THUMB_SIDE, Dataset, FileEntry
from maskprep.dataset import Item, name_key
from maskprep.manifest import group_key, split_variant

MASKED_HASH_THRESHOLD = 12   # bits; a painted mask moves these hashes by 0-12 bits on real face crops
MIN_AGREEMENT = 0.70         # share of thumbnail pixels outside the mask area within 10 grey levels;
                             # measured: masked copies >= 0.74, different photos <= 0.54
_MIN_TEXTURE = 6.0           # grey-level std outside the mask area: flat pictures agree with anything


def _outside_mask() -> np.ndarray:
    x0, y0, x1, y1 = MASK_REGION
    keep = np.ones((THUMB_SIDE, THUMB_SIDE), dtype=bool)
    keep[int(y0 * THUMB_SIDE):int(y1 * THUMB_SIDE), int(x0 * THUMB_SIDE):int(x1 * THUMB_SIDE)] = False
    return keep


def thumb_agreement(a: np.ndarray, b: np.ndarray, tolerance: int = 10) -> float:
    """Share of pixels outside the mask area where two thumbnails agree, the better of b and mirrored b."""
    return _agreement(a, b, tolerance)[0]


def _agreement(a: np.ndarray, b: np.ndarray, tolerance: int = 10) -> tuple[float, bool]:
    """(agreement, mirrored): :func:`thumb_agreement` and whether mirrored b was the better."""
    keep = _outside_mask()
    a = a.astype(np.int16)
    b = b.astype(np.int16)
    direct = (np.abs(a - b)[keep] <= tolerance).mean()
    mirror = (np.abs(a - b[:, ::-1])[keep] <= tolerance).mean()
    return float(max(direct, mirror)), bool(mirror > direct)


def masked_copy_pairs(entries: Sequence[FileEntry], linked: UnionFind,
                      hash_threshold: int = MASKED_HASH_THRESHOLD,
                      min_agreement: float = MIN_AGREEMENT) -> list[tuple[int, int, float, dict[str, Any]]]:
    """Cross-split pairs ``(a, b, agreement, transform)`` that are one photo outside the lower face.

    ``linked`` joins files already known to be copies (exact/near), which are not reported again.
    Pairs found on the thumbnails have ``transform`` ``{"method": "thumbnail", "mirrored"}`` and
    ``agreement`` the share of agreeing thumbnail pixels; pairs found under augmentation
    :func:`maskprep.audit.geometry.confirm_pair`'s transform with ``"method": "features"`` (or
    ``"landmarks"`` where :func:`maskprep.audit.geometry.confirm_by_landmarks` confirmed it).
    """
    out = _thumbnail_masked_pairs(entries, linked, hash_threshold, min_agreement)
    seen = {(a, b) for a, b, _, _ in out}
    splits = [e.split for e in entries]
    data = [e.align if e.ok else None for e in entries]
    for a, b, agreement, transform in augmented_masked_copies(
            data, splits, skip=lambda a, b: (min(a, b), max(a, b)) in seen or linked.find(a) == linked.find(b)):
        out.append((a, b, agreement, {"method": "features", **transform}))   # a "landmarks" method stays
    return sorted(out)


def _thumbnail_masked_pairs(entries: Sequence[FileEntry], linked: UnionFind, hash_threshold: int,
                            min_agreement: float) -> list[tuple[int, int, float, dict[str, Any]]]:
    idx = [k for k, e in enumerate(entries) if e.hashes is not None and e.thumb is not None]
    if len({entries[k].split for k in idx}) < 2:
        return []
    hs = [entries[k].hashes for k in idx]
    m = np.array([h.masked for h in hs], dtype=np.uint64)
    mf = np.array([h.masked_flip for h in hs], dtype=np.uint64)
    top = np.array([h.top for h in hs], dtype=np.uint64)
    i1, j1, _ = flip_aware_pairs(m, mf, hash_threshold)
    i2, j2, _ = hamming_pairs(top, None, hash_threshold)
    cand = set(zip(i1.tolist(), j1.tolist())) | set(zip(i2.tolist(), j2.tolist()))
    keep = _outside_mask()
    out = []
    for a, b in sorted(cand):
        ea, eb = entries[idx[a]], entries[idx[b]]
        if ea.split == eb.split or linked.find(idx[a]) == linked.find(idx[b]):
            continue
        if ea.thumb[keep].std() < _MIN_TEXTURE or eb.thumb[keep].std() < _MIN_TEXTURE:
            continue
        agreement, mirrored = _agreement(ea.thumb, eb.thumb)
        if agreement >= min_agreement:
            out.append((idx[a], idx[b], round(agreement, 3), {"method": "thumbnail", "mirrored": mirrored}))
    return out


def _finding(entries: Sequence[FileEntry], kind: str, members: Sequence[int], **detail: Any) -> dict[str, Any]:
    members = sorted(set(members), key=lambda k: entries[k].rel)
    return {"kind": kind, "files": [entries[k].rel for k in members],
            "splits": sorted({entries[k].split for k in members}),
            "classes": sorted({entries[k].label for k in members}), **detail}


def _spans(entries: Sequence[FileEntry], members: Sequence[int]) -> bool:
    return len({entries[k].split for k in members}) > 1


def variant_leaks(dataset: Dataset) -> list[dict[str, Any]]:
    """Copies of one source photo in two splits, from manifests and from ``<stem>__<variant>`` names.

    Manifest: files whose recorded ``origin`` is the same photo (plus that photo itself when it is in
    the tree) in more than one split. Names: a variant whose split holds no file of its base name
    (``val/c/a__flip.jpg`` with no ``val/c/a.*``) came from the same-named file of another split;
    a variant beside its own original is not evidence of a leak, however common the name.
    """
    entries, items = dataset.entries, dataset.items
    findings: list[dict[str, Any]] = []
    by_origin: dict[str, list[int]] = defaultdict(list)
    named: list[int] = []
    for k, item in enumerate(items):
        if item.evidence == "manifest":
            by_origin[item.group].append(k)
        else:
            named.append(k)
    path_key = {items[k].group: k for k in named if not items[k].evidence}
    for key, members in sorted(by_origin.items()):
        group = members + ([path_key[key]] if key in path_key else [])
        if _spans(entries, group):
            # named by the photo as recorded (the group key leaves the class folder out)
            findings.append(_finding(entries, "variant", group, source=group_key(items[members[0]].origin),
                                     evidence=["manifest"]))
    by_name: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for k in named:
        by_name[name_key(entries[k].rel)][entries[k].split].append(k)
    for key, splits in sorted(by_name.items()):
        if len(splits) < 2:
            continue
        orphans = [k for s, ks in splits.items()
                   if not any(not split_variant(entries[j].rel)[1] for j in ks)
                   for k in ks]
        if not orphans:
            continue
        orphan_splits = {entries[k].split for k in orphans}
        others = [k for s, ks in splits.items() if s not in orphan_splits for k in ks]
        if others or len(orphan_splits) > 1:
            findings.append(_finding(entries, "variant", orphans + others, source=key, evidence=["name"]))
    return findings


def linked_copies(n: int, dups: Duplicates) -> UnionFind:
    """Copies of one picture among ``n`` files: exact groups and near pairs chained, so a near copy of
    a file's exact twin is in the same set."""
    linked = UnionFind(n)
    for group in [*dups.exact_groups, *dups.recorded_exact]:   # recorded variants are copies too
        for k in group[1:]:
            linked.union(group[0], k)
    for pr in [*dups.near_pairs, *dups.recorded_near]:
        linked.union(pr.a, pr.b)
    return linked


def find_leakage(dataset: Dataset, dups: Duplicates,
                 identity_pairs: Sequence[tuple[int, int, float, int, int]] | None = None,
                 masked_threshold: int = MASKED_HASH_THRESHOLD) -> list[dict[str, Any]]:
    """Every leak between splits (empty when the dataset has one split only)."""
    entries = dataset.entries
    if len(dataset.splits) < 2:
        return []
    findings: list[dict[str, Any]] = []
    linked = linked_copies(len(entries), dups)
    # A chain that holds an exact group spanning two splits is an exact leak, whatever near copies
    # hang on it (the near search ran on one file per exact group, so its pairs may all be in one split).
    exact_across: dict[int, str] = {}
    for g, kind in zip(dups.exact_groups, dups.exact_kind):
        if _spans(entries, g):
            exact_across.setdefault(linked.find(g[0]), kind)
    split_of = {e.rel: e.split for e in entries}
    # Which files of a chain are the same pixels, and which pairs are near: the page shows why.
    same_in: dict[int, list[list[str]]] = defaultdict(list)
    for g in [*dups.exact_groups, *dups.recorded_exact]:
        same_in[linked.find(g[0])].append(sorted(entries[k].rel for k in g))
    near_in: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in [*dups.near_pairs, *dups.recorded_near]:
        near_in[linked.find(p.a)].append(p.as_dict(entries))
    for group in linked.groups():
        if not _spans(entries, group):
            continue
        same, near = same_in[linked.find(group[0])], near_in[linked.find(group[0])]
        if linked.find(group[0]) in exact_across:
            findings.append(_finding(entries, "exact", group, how=exact_across[linked.find(group[0])],
                                     same_pixels=same, pairs=near))
            continue
        cross = [p for p in near if split_of[p["a"]] != split_of[p["b"]]]
        findings.append(_finding(entries, "near", group, pairs=cross, same_pixels=same))
    findings.extend(variant_leaks(dataset))
    # Masked copies: pixels only, so they are found without any manifest.
    # Several masked copies of one training photo make one finding.
    masked = masked_copy_pairs(entries, linked, masked_threshold)
    per_photo = UnionFind(len(entries))
    for a, b, _, _ in masked:
        per_photo.union(a, b)
    grouped: dict[int, list[tuple[int, int, float, dict[str, Any]]]] = defaultdict(list)
    for pair in masked:
        grouped[per_photo.find(pair[0])].append(pair)
    for _, pairs in sorted(grouped.items()):
        members = sorted({k for a, b, _, _ in pairs for k in (a, b)})
        findings.append(_finding(entries, "masked_copy", members,
                                 agreement=min(ag for _, _, ag, _ in pairs),
                                 pairs=[{"a": entries[a].rel, "b": entries[b].rel, "agreement": ag,
                                         "transform": t} for a, b, ag, t in pairs]))
        for k in members[1:]:
            linked.union(members[0], k)
    # Same person in another photo: copies of one photo are reported above already.
    identity_pairs = [p for p in identity_pairs or [] if linked.find(p[0]) != linked.find(p[1])]
    if identity_pairs:
        faces = UnionFind(1 + max(max(p[3], p[4]) for p in identity_pairs))
        for _, _, _, fa, fb in identity_pairs:
            faces.union(fa, fb)
        by_person: dict[int, list[tuple[float, int, int]]] = defaultdict(list)
        files_of: dict[int, set[int]] = defaultdict(set)
        for a, b, d, fa, _ in identity_pairs:
            person = faces.find(fa)
            files_of[person].update((a, b))
            if entries[a].split != entries[b].split:
                by_person[person].append((d, a, b))
        for person in sorted(by_person, key=lambda q: min(files_of[q])):
            cross = sorted(by_person[person])
            findings.append(_finding(entries, "identity", sorted(files_of[person]), pairs=[
                {"a": entries[a].rel, "b": entries[b].rel, "distance": round(d, 3)}
                for d, a, b in cross[:20]]))
    return findings


def label_conflicts(entries: Sequence[FileEntry], dups: Duplicates,
                    items: Sequence[Item] | None = None) -> list[dict[str, Any]]:
    """Exact or near copies filed under two different classes.

    A near copy that is a recorded variant of the other file (same source by manifest or by
    ``<stem>__<variant>`` name) is left out: a masked copy of a photo is meant to change class.
    """
    out = []
    for group, kind in zip(dups.exact_groups, dups.exact_kind):
        if len({entries[k].label for k in group}) > 1:
            out.append(_finding(entries, "exact", group, how=kind))
    uf = UnionFind(len(entries))
    for pr in dups.near_pairs:
        # one a variant of the other, whatever class folder the variant went to
        ia, ib = (items[pr.a], items[pr.b]) if items else (None, None)
        related = ia is not None and ib is not None and bool(ia.evidence or ib.evidence) and \
            PurePosixPath(ia.group).name == PurePosixPath(ib.group).name
        if not related:
            uf.union(pr.a, pr.b)
    for group in uf.groups():
        if len({entries[k].label for k in group}) > 1:
            out.append(_finding(entries, "near", group))
    return out
