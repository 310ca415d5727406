"""Exact duplicates (same decoded pixels) and near duplicates (perceptual hashes within a distance).

Exact: the same decoded pixels, whatever the file bytes (a PNG saved from a JPEG counts). Two copies
decoded by different JPEG decoders differ by a level or two here and there, so same-size pairs whose
hashes agree are also compared pixel by pixel and grouped when they differ only by decoding noise.
Near: pHash and dHash both within ``near_threshold`` bits, directly or as mirror images.
Recorded variants: copies that the manifests of earlier stages record as variants of one origin in one
split (augment's flip and blur of a photo, a masked copy of it) are what the pipeline meant to make;
:func:`separate_recorded` moves them out of the findings into ``recorded_*``, shown on request.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from maskprep.audit.pairs import flip_aware_pairs
from maskprep.audit.scan import FileEntry
from maskprep.dataset import name_key
from maskprep.images import ImageReadError, read_image

# Bits of 64, for pHash and dHash alike. Measured on the shared face crops: half-size and JPEG q50 copies
# are within 2 bits (95 %), every pair within 8/8 on both hashes was a real copy, and at 10 bits
# different people's tightly cropped faces start to match (so 10 is too loose for face crops).
DEFAULT_NEAR_THRESHOLD = 8
# Two JPEG decoders differ by a level or two, a few values by up to ~32 (measured: 32bit.png against
# obama2.jpg: mean 1.4, 0.03 % above 16, none above 40). A mask painted on a small face in a big photo
# is as small on average but far from it where it is: 0.2-0.5 % of values above 40.
NOISE_MEAN_DIFF = 2.0
NOISE_ABOVE_16 = 0.001
NOISE_ABOVE_40 = 0.0001


class UnionFind:
    """Disjoint sets over ``0..n-1`` (path halving); ``groups()`` lists the sets with 2+ members."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        by_root: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            by_root[self.find(i)].append(i)
        return sorted((g for g in by_root.values() if len(g) > 1), key=lambda g: g[0])


@dataclass
class NearPair:
    """Entries ``a`` and ``b`` (indices) are near duplicates: pHash and dHash distances in bits,
    ``mirrored`` when they match as mirror images."""

    a: int
    b: int
    phash: int
    dhash: int
    mirrored: bool

    def as_dict(self, entries: Sequence[FileEntry]) -> dict[str, Any]:
        """The pair as a JSON-ready finding: both file paths, the distances, mirrored."""
        return {"a": entries[self.a].rel, "b": entries[self.b].rel, "phash": self.phash, "dhash": self.dhash,
                "mirrored": self.mirrored}


@dataclass
class Duplicates:
    """Indices into the entry list. ``exact_kind[k]`` says how group ``k`` is identical."""

    exact_groups: list[list[int]] = field(default_factory=list)
    exact_kind: list[str] = field(default_factory=list)
    near_pairs: list[NearPair] = field(default_factory=list)
    near_groups: list[list[int]] = field(default_factory=list)
    # Recorded variants (see separate_recorded): not findings, but still copies (leakage chains them).
    recorded_exact: list[list[int]] = field(default_factory=list)
    recorded_exact_kind: list[str] = field(default_factory=list)
    recorded_near: list[NearPair] = field(default_factory=list)


def _u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def pixel_noise_only(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two same-size images differ only the way two JPEG decoders differ."""
    if a.shape != b.shape:
        return False
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return (float(diff.mean()) <= NOISE_MEAN_DIFF and float((diff > 16).mean()) <= NOISE_ABOVE_16
            and float((diff > 40).mean()) <= NOISE_ABOVE_40)


def near_pairs(entries: Sequence[FileEntry], max_distance: int = DEFAULT_NEAR_THRESHOLD,
               only: Sequence[int] | None = None) -> list[NearPair]:
    """Flip-aware pHash pairs within ``max_distance`` bits whose dHash (same orientation) is within
    ``max_distance`` too: two independent hashes must agree, which keeps look-alike face crops apart.

    ``only`` restricts the search to some entries (indices)."""
    pool = range(len(entries)) if only is None else only
    idx = [k for k in pool if entries[k].hashes is not None]
    if len(idx) < 2:
        return []
    hs = [entries[k].hashes for k in idx]
    p, pf = _u64([h.phash for h in hs]), _u64([h.phash_flip for h in hs])
    d, df = _u64([h.dhash for h in hs]), _u64([h.dhash_flip for h in hs])
    i, j, _ = flip_aware_pairs(p, pf, max_distance)
    if len(i) == 0:
        return []
    direct = np.bitwise_count(p[i] ^ p[j])
    mirror = np.minimum(np.bitwise_count(pf[i] ^ p[j]), np.bitwise_count(p[i] ^ pf[j]))
    mirrored = mirror < direct
    dd = np.where(mirrored, np.bitwise_count(df[i] ^ d[j]), np.bitwise_count(d[i] ^ d[j]))
    dp = np.minimum(direct, mirror)
    out = []
    for a, b, x, y, m in zip(i, j, dp, dd, mirrored):
        if int(y) <= max_distance:
            out.append(NearPair(idx[int(a)], idx[int(b)], int(x), int(y), bool(m)))
    return out


def find_duplicates(entries: Sequence[FileEntry], root: str | Path,
                    near_threshold: int = DEFAULT_NEAR_THRESHOLD) -> Duplicates:
    """Exact groups and near pairs/groups over the readable entries (``root`` is used to re-read
    same-size look-alikes for the pixel comparison)."""
    root = Path(root)
    n = len(entries)
    exact = UnionFind(n)
    by_pixels: dict[str, list[int]] = defaultdict(list)
    for k, e in enumerate(entries):
        if e.ok:
            by_pixels[e.pixels].append(k)
    for members in by_pixels.values():
        for k in members[1:]:
            exact.union(members[0], k)
    # One file per set of identical pixels: a folder of 1000 copies of one picture would otherwise
    # make a million pairs; the copies are joined to their representative by the exact groups.
    representatives = [members[0] for members in by_pixels.values()]
    pairs = near_pairs(entries, near_threshold, only=sorted(representatives))
    # Same size, (almost) same hash, different pixel digest: compare the pixels themselves.
    cache: dict[int, np.ndarray | None] = {}

    def pixels(k: int) -> np.ndarray | None:
        if k not in cache:
            try:
                cache[k] = read_image(root / entries[k].rel)
            except (ImageReadError, OSError):
                cache[k] = None
            if len(cache) > 64:  # keep memory bounded on big look-alike sets
                cache.pop(next(iter(cache)))
        return cache[k]

    for pr in pairs:
        ea, eb = entries[pr.a], entries[pr.b]
        if pr.phash > 4 or pr.mirrored or (ea.width, ea.height) != (eb.width, eb.height):
            continue
        if exact.find(pr.a) == exact.find(pr.b):
            continue
        a, b = pixels(pr.a), pixels(pr.b)
        if a is not None and b is not None and pixel_noise_only(a, b):
            exact.union(pr.a, pr.b)
    result = Duplicates()
    for group in exact.groups():
        shas = {entries[k].sha256 for k in group}
        pix = {entries[k].pixels for k in group}
        kind = "same bytes" if len(shas) == 1 else "same pixels" if len(pix) == 1 else \
            "same pixels up to decoding noise"
        result.exact_groups.append(group)
        result.exact_kind.append(kind)
    # Near groups: pairs that are not two copies of one exact group, chained.
    result.near_pairs = [pr for pr in pairs if exact.find(pr.a) != exact.find(pr.b)]
    result.near_groups = _near_groups(n, result.near_pairs, result.exact_groups)
    return result


def _near_groups(n: int, pairs: Sequence[NearPair], exact_groups: Sequence[list[int]]) -> list[list[int]]:
    """Files chained by near pairs, with the exact twins of every member (the search ran on one file
    per set of identical pixels)."""
    near = UnionFind(n)
    for pr in pairs:
        near.union(pr.a, pr.b)
    touched = {k for pr in pairs for k in (pr.a, pr.b)}
    for group in exact_groups:
        if touched.intersection(group):
            for k in group[1:]:
                near.union(group[0], k)
    return [g for g in near.groups() if touched.intersection(g)]


def recorded_origin(entry: FileEntry, origins: dict[str, str]) -> tuple[str, str] | None:
    """``(split, origin key)`` when a manifest records the file, else None (its name alone is no record)."""
    if entry.rel not in origins:
        return None
    return entry.split, name_key(origins[entry.rel])   # the origin photo, whatever split it came from


def separate_recorded(entries: Sequence[FileEntry], dups: Duplicates, origins: dict[str, str]) -> Duplicates:
    """Move exact groups and near pairs whose files the manifests record as variants of one origin in
    one split into ``recorded_exact`` / ``recorded_near`` (in place; returns ``dups``).

    A group with one unrecorded file, or files of two origins or two splits, stays a finding."""
    if not origins:
        return dups
    key = [recorded_origin(e, origins) for e in entries]
    groups, kinds = [], []
    for group, kind in zip(dups.exact_groups, dups.exact_kind):
        keys = {key[k] for k in group}
        if len(keys) == 1 and None not in keys:
            dups.recorded_exact.append(group)
            dups.recorded_exact_kind.append(kind)
        else:
            groups.append(group)
            kinds.append(kind)
    dups.exact_groups, dups.exact_kind = groups, kinds
    findings = []
    for pr in dups.near_pairs:
        if key[pr.a] is not None and key[pr.a] == key[pr.b]:
            dups.recorded_near.append(pr)
        else:
            findings.append(pr)
    dups.near_pairs = findings
    dups.near_groups = _near_groups(len(entries), findings, dups.exact_groups)
    return dups


def recorded_variants(entries: Sequence[FileEntry], dups: Duplicates,
                      origins: dict[str, str]) -> list[dict[str, Any]]:
    """JSON-ready recorded variants, one entry per origin and split: its files, the same-pixels groups
    and the near pairs (with distances) among them."""
    by_origin: dict[tuple[str, str], dict[str, Any]] = {}

    def slot(k: int) -> dict[str, Any]:
        split, source = recorded_origin(entries[k], origins) or (entries[k].split, "")
        return by_origin.setdefault((split, source), {"source": source, "split": split, "files": set(),
                                                      "exact": [], "pairs": []})

    for group, kind in zip(dups.recorded_exact, dups.recorded_exact_kind):
        s = slot(group[0])
        s["files"].update(group)
        s["exact"].append({"kind": kind, "files": [entries[k].rel for k in group]})
    for pr in dups.recorded_near:
        s = slot(pr.a)
        s["files"].update((pr.a, pr.b))
        s["pairs"].append(pr.as_dict(entries))
    out = []
    for (split, source), s in sorted(by_origin.items()):
        files = sorted(s["files"], key=lambda k: entries[k].rel)
        out.append({"source": source, "split": split, "files": [entries[k].rel for k in files],
                    "classes": sorted({entries[k].label for k in files}), "exact": s["exact"],
                    "pairs": s["pairs"]})
    return out


def duplicate_findings(entries: Sequence[FileEntry], dups: Duplicates) -> dict[str, list[dict[str, Any]]]:
    """JSON-ready ``exact`` and ``near`` groups: files, their splits and classes, and near pair distances."""
    def describe(group: list[int]) -> dict[str, Any]:
        return {"files": [entries[k].rel for k in group],
                "splits": sorted({entries[k].split for k in group}),
                "classes": sorted({entries[k].label for k in group})}

    exact = [{"kind": kind, **describe(g)} for g, kind in zip(dups.exact_groups, dups.exact_kind)]
    by_group: dict[int, list[NearPair]] = defaultdict(list)
    member = {k: g for g, members in enumerate(dups.near_groups) for k in members}
    for pr in dups.near_pairs:
        by_group[member[pr.a]].append(pr)
    near = []
    for g, members in enumerate(dups.near_groups):
        near.append({**describe(members), "pairs": [p.as_dict(entries) for p in by_group[g]]})
    return {"exact": exact, "near": near}
