"""The library behind ``maskprep dataset``: labelled, leak-free train/val/test trees from earlier stages.

Inputs are the outputs of ``detect`` and ``synth-masks`` (read through their manifests) or plain
class folders. Each image gets a class (from what its manifest says was done to it, or its class
folder, through a class map) and a group: every copy of one source photo, found from the recorded
origins and from the pixels by the audit's own checks (exact, near and masked copies), and with
``group_by="identity"`` every photo of one person (dlib descriptors). Groups are then split by
:func:`maskprep.dataset.group_split`, stratified by class, and the files copied byte for byte into
``OUT/<split>/<class>/``, with a manifest, ``run.json`` and a split report.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Sequence

from maskprep.dataset import SPLITS, Item, group_split, index_tree, split_sort_key
from maskprep.images import write_bytes_atomic
from maskprep.manifest import MANIFEST_NAME, RUN_INFO_NAME, ManifestWriter, Record, group_key, read_manifest

STAGE = "dataset"
# What was done to a face -> its class. Keys: "unmasked" (a detect crop, or any image no stage
# masked), the synth-masks wear modes, and any class folder name of an input.
DEFAULT_CLASS_MAP = {"unmasked": "without_mask", "correct": "with_mask",
                     "nose-out": "mask_worn_wrong", "chin": "mask_worn_wrong"}
DROP = "-"  # map a key to this to leave its images out
DEFAULT_RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
GROUP_BY = ("origin", "identity")
REPORT_NAME = "split_report.json"


class DatasetError(ValueError):
    """Options or inputs the dataset command cannot work with (one line each)."""


def parse_class_map(text: str | None, base: Mapping[str, str] = DEFAULT_CLASS_MAP) -> dict[str, str]:
    """``"correct=masked,chin=-"`` over the defaults: ``KEY=CLASS`` pairs, ``-`` drops a key's images."""
    out = dict(base)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip() or "/" in value:
            raise DatasetError(f"--class-map wants KEY=CLASS pairs separated by commas (e.g. "
                               f"correct=with_mask,chin=-), not {part.strip()!r}")
        out[key.strip()] = value.strip()
    return out


def parse_ratios(text: str | None) -> dict[str, float]:
    """``"0.8,0.1,0.1"`` (train, val, test) or ``"train=0.8,val=0.2"`` -> shares summing to 1."""
    if not text:
        return dict(DEFAULT_RATIOS)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            ratios = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
        else:
            values = [float(p) for p in parts]
            if len(values) not in (2, 3):
                raise ValueError
            ratios = dict(zip(SPLITS, values))
    except ValueError:
        raise DatasetError(f"--ratios wants train,val[,test] shares (e.g. 0.7,0.15,0.15) or "
                           f"train=0.8,val=0.2, not {text!r}") from None
    unknown = [k for k in ratios if k not in SPLITS]
    if unknown or any(v < 0 for v in ratios.values()) or sum(ratios.values()) <= 0:
        raise DatasetError(f"--ratios: splits are train, val and test with shares >= 0, not {text!r}")
    total = sum(ratios.values())
    return {k: v / total for k, v in ratios.items()}


@dataclass
class Candidate:
    """One input image on its way into the dataset."""

    input: int                 # index of its input (len(inputs) for --test-from)
    item: Item
    key: str                   # what the class map is looked up with ("correct", a class folder...)
    label: str | None          # its class, None when dropped
    origin: str                # a key unique to its source photo across all inputs
    reason: str = ""           # why it is left out
    group: str = ""            # the final group
    split: str = ""
    output: str = ""


@dataclass
class DatasetResult:
    """What ``build_dataset`` did: candidates with their split, the plan, warnings, and counts."""

    out: Path
    candidates: list[Candidate]
    plan: Any
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def written(self) -> list[Candidate]:
        """The candidates that became files."""
        return [c for c in self.candidates if c.output]

    def lines(self) -> list[str]:
        """The console summary."""
        done = self.written()
        left = [c for c in self.candidates if not c.output]
        out = [f"dataset: {len(done)} image(s) written to {self.out} in {self.seconds:.1f} s"
               + (f"; {len(left)} left out (reasons in {MANIFEST_NAME})" if left else "")]
        by: dict[str, dict[str, int]] = {}
        groups: dict[str, set[str]] = {}
        for c in done:
            by.setdefault(c.split, {}).setdefault(c.label or "", 0)
            by[c.split][c.label or ""] += 1
            groups.setdefault(c.split, set()).add(c.group)
        total = max(len(done), 1)
        for split in sorted(by, key=split_sort_key):
            n = sum(by[split].values())
            out.append(f"  {split:5s} {n:5d} ({n / total:.0%}) from {len(groups[split])} source group(s): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(by[split].items())))
        out.extend(f"warning: {w}" for w in self.warnings)
        return out


def _records_by_output(root: Path) -> dict[str, Record]:
    """The ok records of ``root``'s manifest by output path (the latest wins)."""
    return {r.output: r for r in read_manifest(root) if r.status == "ok" and r.output}


def _key_of(item: Item, record: Record | None) -> str | None:
    """What decides the class: the wear mode of a synthetic mask, ``unmasked`` for a detect crop, else
    the class folder (None when there is none)."""
    if record is not None:
        wear = (record.params or {}).get("wear")
        if isinstance(wear, str):
            return wear
        if record.stage == "detect":
            return "unmasked"
    return item.label or None


def _candidates(inputs: Sequence[Path], test_from: Path | None,
                class_map: Mapping[str, str]) -> tuple[list[Candidate], list[Path]]:
    """Every image of the inputs (and of ``test_from``) with its class key, class and origin."""
    roots = [*inputs, *([test_from] if test_from else [])]
    names = [p.name for p in roots]
    out: list[Candidate] = []
    for k, root in enumerate(roots):
        tree = index_tree(root)
        records = _records_by_output(tree.root)
        tag = names[k] if names.count(names[k]) == 1 else f"{names[k]}{k + 1}"
        for item in tree.items:
            key = _key_of(item, records.get(item.rel)) if k < len(inputs) else (item.label or None)
            label = class_map.get(key, key) if key else None
            reason = ""
            if key is None:
                reason = "no class: no manifest record of detect or synth-masks and no class folder"
            elif label == DROP:
                reason, label = f"class map drops {key!r}", None
            # A recorded origin names a photo shared by every stage's outputs; a file without one is
            # its own photo, named with its input so two inputs' a.jpg stay two photos.
            origin = item.origin if item.evidence == "manifest" else f"{tag}/{item.rel}"
            out.append(Candidate(k, item, key or "", label, origin, reason))
    return out, roots


def _link_people(cands: list[Candidate], uf: Any, unmasked: str, workers: int | None,
                 progress: bool | None, say: Callable[[str], None]) -> None:
    """Join the groups of one person: dlib descriptors of the unmasked faces (class ``unmasked``) closer
    than the audit's same-person distance. A mask hides what the descriptor needs (masked faces of
    different people measured closer than 0.6), and masked copies join their photo by origin anyway."""
    import numpy as np

    from maskprep.audit.identity import same_person_pairs
    from maskprep.audit.scan import scan_items
    bare = [k for k, c in enumerate(cands) if c.label == unmasked and not c.reason]
    entries = scan_items([cands[k].item for k in bare], workers, True, progress, desc="dataset: faces")
    desc, owners = [], []
    for k, e in zip(bare, entries):
        if e.faces is not None and len(e.faces):
            desc.append(e.faces)
            owners.extend([k] * len(e.faces))
    people = 0
    if desc:
        for fa, fb, _ in same_person_pairs(np.concatenate(desc), np.asarray(owners)):
            a, b = owners[fa], owners[fb]
            people += uf.find(a) != uf.find(b)
            uf.union(a, b)
    no_face = len(bare) - len(set(owners))
    say(f"identity: joined {people} group(s) of the same person among {len(bare)} {unmasked} image(s); "
        f"{no_face} without a face found keep their photo's group")


def _link_groups(cands: list[Candidate], group_by: str, workers: int | None, progress: bool | None,
                 say: Callable[[str], None], unmasked: str = DEFAULT_CLASS_MAP["unmasked"]) -> None:
    """Set ``group`` on every candidate: recorded origins, joined by pixel copies (and people)."""
    from maskprep.audit.duplicates import find_duplicates
    from maskprep.audit.leakage import linked_copies, masked_copy_pairs
    from maskprep.audit.scan import scan_items

    entries = scan_items([c.item for c in cands], workers, False, progress, desc="dataset: scan")
    for c, e in zip(cands, entries):
        if not e.ok and not c.reason:
            c.reason = f"unreadable: {e.error}"
    # Every pair counts, not only pairs across splits: give each file its own "split".
    solo = [replace(e, rel=str(c.item.path), split=str(k)) for k, (c, e) in enumerate(zip(cands, entries))]
    uf = linked_copies(len(cands), find_duplicates(solo, "/"))
    by_origin: dict[str, list[int]] = {}
    for k, c in enumerate(cands):
        by_origin.setdefault(group_key(c.origin), []).append(k)
    for members in by_origin.values():
        for k in members[1:]:
            uf.union(members[0], k)
    for a, b, *_ in masked_copy_pairs(solo, uf):
        uf.union(a, b)
    joined = len(by_origin) - len({uf.find(k) for k in range(len(cands))})
    if joined:
        say(f"{joined} source photo(s) joined another's group: their pixels are copies of it "
            "(exact, near or masked copies)")
    if group_by == "identity":
        _link_people(cands, uf, unmasked, workers, progress, say)
    names: dict[int, str] = {}
    for k, c in enumerate(cands):
        root = uf.find(k)
        g = group_key(c.origin)
        names[root] = min(names.get(root, g), g)
    for k, c in enumerate(cands):
        c.group = names[uf.find(k)]


def _check_folders(inputs: Sequence[Path], out: Path, overwrite: bool) -> None:
    for inp in inputs:
        if not inp.is_dir():
            raise DatasetError(f"input folder does not exist: {inp}")
        i, o = inp.resolve(), out.resolve()
        if o == i or i in o.parents:
            raise DatasetError(f"output folder {out} is inside the input {inp}: a stage never writes "
                               "into its input; choose a folder elsewhere")
        if o in i.parents:
            raise DatasetError(f"input {inp} is inside the output folder {out}; choose a folder elsewhere")
    if out.is_file():
        raise DatasetError(f"output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"output folder {out} is not empty: pass --overwrite to replace it")
        info = out / RUN_INFO_NAME
        stage = json.loads(info.read_text()).get("stage") if info.is_file() else None
        if stage != STAGE:
            raise DatasetError(f"output folder {out} is not empty and was not written by `maskprep "
                               "dataset`; --overwrite only replaces an earlier dataset")


def _clear_previous(out: Path) -> None:
    """Remove an earlier dataset run's files (so none of its photos stays in a stale split)."""
    for rec in read_manifest(out):
        if rec.output:
            (out / rec.output).unlink(missing_ok=True)
    for name in (MANIFEST_NAME, RUN_INFO_NAME, REPORT_NAME):
        (out / name).unlink(missing_ok=True)
    for split in SPLITS:
        if (out / split).is_dir():
            shutil.rmtree(out / split)


def _output_name(c: Candidate, taken: set[str], tags: Sequence[str]) -> str:
    """``<split>/<class>/<file>``; the file keeps its name (sub-folders joined with '-'), or gets its
    input's name in front when another input already gave that name."""
    flat = "-".join(PurePosixPath(c.item.rel).parts)
    rel = f"{c.split}/{c.label}/{flat}"
    if rel in taken:
        rel = f"{c.split}/{c.label}/{tags[c.input]}-{flat}"
    n = 2
    while rel in taken:
        stem = PurePosixPath(flat)
        rel = f"{c.split}/{c.label}/{stem.stem}~{n}{stem.suffix}"
        n += 1
    taken.add(rel)
    return rel


def build_dataset(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, *,
                  class_map: Mapping[str, str] | None = None, ratios: Mapping[str, float] | None = None,
                  group_by: str = "origin", test_from: str | os.PathLike | None = None, seed: int = 0,
                  workers: int | None = None, overwrite: bool = False, progress: bool | None = None,
                  say: Callable[[str], None] | None = None) -> DatasetResult:
    """Build ``OUT/<split>/<class>/`` from ``inputs`` (see the module docstring) and return what was done.

    ``class_map``: key -> class (default :data:`DEFAULT_CLASS_MAP`; class folder names map to
    themselves unless listed). ``ratios``: ``{"train": .7, "val": .15, "test": .15}``; with
    ``test_from`` (a class-folder tree from another source) every one of its images is the test split,
    the inputs fill train and val only, and any input group that holds a copy of a test image goes to
    test with it. Raises :class:`DatasetError` for bad options or folders.
    """
    started = time.perf_counter()
    say = say or (lambda s: None)
    if group_by not in GROUP_BY:
        raise DatasetError(f"--group-by must be one of {GROUP_BY}, not {group_by!r}")
    if not inputs:
        raise DatasetError("give at least one input folder and the output folder")
    paths = [Path(p) for p in inputs]
    out = Path(output_dir)
    test_path = Path(test_from) if test_from else None
    _check_folders(paths + ([test_path] if test_path else []), out, overwrite)
    class_map = dict(DEFAULT_CLASS_MAP if class_map is None else class_map)
    ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
    if test_path is not None:
        ratios.pop("test", None)
        if not any(v > 0 for v in ratios.values()):
            raise DatasetError("--ratios leaves nothing for train and val next to --test-from")
    cands, roots = _candidates(paths, test_path, class_map)
    if not cands:
        raise DatasetError("no images in " + ", ".join(map(str, roots)))
    _link_groups(cands, group_by, workers, progress, say, class_map.get("unmasked", ""))
    usable = [c for c in cands if not c.reason]
    if not usable:
        raise DatasetError("no image could be labelled: " + (cands[0].reason if cands else "none found"))
    warnings: list[str] = []
    test_groups = {c.group for c in usable if c.input == len(paths)}
    main = [c for c in usable if c.input < len(paths) and c.group not in test_groups]
    moved = sum(1 for c in usable if c.input < len(paths) and c.group in test_groups)
    if moved:
        warnings.append(f"{moved} input image(s) are copies of --test-from photos (same photo by origin "
                        "or pixels): they go to test with them, never to train or val")
    plan = group_split([c.label or "" for c in main], [c.group for c in main], ratios, seed)
    for c, split in zip(main, plan.assign):
        c.split = split
    for c in usable:
        if not c.split:
            c.split = "test"
    warnings.extend(plan.warnings)
    if out.is_dir() and any(out.iterdir()):
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    tags = [p.name for p in roots]
    taken: set[str] = set()
    with ManifestWriter(out / MANIFEST_NAME, truncate=True) as manifest:
        for c in sorted(cands, key=lambda c: (c.input, c.item.rel)):
            source = f"{tags[c.input]}/{c.item.rel}"
            if c.reason:
                status = "failed" if c.reason.startswith("unreadable") else "skipped"
                manifest.write([Record(stage=STAGE, source=source, status=status, origin=c.origin,
                                       reason=c.reason, params={"key": c.key})])
                continue
            c.output = _output_name(c, taken, tags)
            write_bytes_atomic(out / c.output, c.item.path.read_bytes())
            manifest.write([Record(stage=STAGE, source=source, status="ok", output=c.output,
                                   origin=c.origin, variant=c.key,
                                   params={"class": c.label, "from": c.key},
                                   info={"split": c.split, "group": c.group})])
    result = DatasetResult(out, cands, plan, warnings, time.perf_counter() - started)
    report = {"inputs": [str(p) for p in paths], "test_from": str(test_path) if test_path else None,
              "group_by": group_by, "seed": seed, "class_map": class_map, "split": plan.to_json(),
              "test_from_images": sum(1 for c in usable if c.input == len(paths)),
              "warnings": warnings}
    write_bytes_atomic(out / REPORT_NAME, json.dumps(report, indent=1).encode())
    from maskprep import __version__
    info = {"stage": STAGE, "status": "done", "inputs": [str(p.resolve()) for p in paths], "seed": seed,
            "params": {"ratios": ratios, "group_by": group_by, "test_from": report["test_from"],
                       "class_map": class_map}, "maskprep_version": __version__,
            "outputs": len(result.written()), "left_out": len(cands) - len(result.written()),
            "seconds": round(result.seconds, 3)}
    write_bytes_atomic(out / RUN_INFO_NAME, json.dumps(info, indent=2).encode())
    return result
