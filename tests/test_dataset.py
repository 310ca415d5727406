"""`maskprep dataset` and the one owner of what a tree means (maskprep.dataset), on real photos."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from maskprep.assemble import build_dataset, parse_class_map, parse_ratios
from maskprep.audit import audit
from maskprep.audit.scan import scan_dataset
from maskprep.cli import cli
from maskprep.dataset import group_split, index_tree, name_key, read_origins
from maskprep.images import list_images, read_image, write_image
from maskprep.manifest import ManifestWriter, Record, read_manifest
from maskprep_train.data import load_dataset

PHOTOS = ("barack_obama/obama.jpg", "joe_biden/biden.jpg", "kit_harington/john1.jpeg",
          "alex_lacamoire/img1.jpg", "tom_cruise/Tom_Cruise_avp_2014_4.jpg", "rose_leslie/img2.jpg")


# ----------------------------------------------------------------------------- the group split

def test_group_split_keeps_groups_whole_and_meets_ratios_when_groups_allow():
    rng = np.random.default_rng(0)
    groups = [f"g{k}" for k in range(60) for _ in range(int(rng.integers(1, 5)))]
    labels = [("a", "b", "c")[int(g[1:]) % 3] for g in groups]
    plan = group_split(labels, groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    assert plan == group_split(labels, groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=1)
    side = {}
    for g, s in zip(groups, plan.assign):
        assert side.setdefault(g, s) == s, "a group straddles two splits"
    assert plan.honoured, plan.warnings
    for split, share in plan.requested.items():
        assert abs(plan.achieved[split] - share) <= 0.05
        assert all(n > 0 for n in plan.counts[split].values()), plan.counts  # every class everywhere


def test_group_split_says_when_it_cannot_honour_the_ratios():
    # Two source photos, each with an unmasked crop and three masked copies: 50/50 is all there is.
    groups = ["obama"] * 4 + ["biden"] * 4
    labels = ["without_mask", "with_mask", "with_mask", "with_mask"] * 2
    plan = group_split(labels, groups, {"train": 0.85, "val": 0.15}, seed=0)
    assert sorted(plan.achieved.values()) == [0.5, 0.5]
    assert not plan.honoured
    assert "could not honour the requested split" in plan.warnings[0] and "val 50% (asked 15%)" in plan.warnings[0]


def test_name_key_is_what_same_file_names_means():
    assert name_key("train/with_mask/106__flip.jpg") == name_key("test/with_mask/106.jpg") == "with_mask/106"
    assert name_key("with_mask/a.jpg") != name_key("without_mask/a.jpg")


# ----------------------------------------------------------------------------- one owner, every layout

def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _layouts(root: Path, faces: Path) -> dict[str, Path]:
    """One tree per layout the README lists, from real face crops; names repeat across splits."""
    names = sorted(os.listdir(faces / "with_mask"))[:3] + sorted(os.listdir(faces / "without_mask"))[:3]
    trees = {}
    # class/ folders, with a <stem>__<variant> copy
    t = root / "class"
    for cls in ("with_mask", "without_mask"):
        for name in sorted(os.listdir(faces / cls))[:3]:
            _copy(faces / cls / name, t / cls / name)
        first = sorted(os.listdir(faces / cls))[0]
        write_image(t / cls / f"{Path(first).stem}__flip.jpg", read_image(faces / cls / first)[:, ::-1])
    trees["class"] = t
    # split/class/ with the other split names, nested one level down, any case
    t = root / "nested"
    for k, split in enumerate(("Train", "valid", "Testing")):
        for cls in ("with_mask", "without_mask"):
            name = sorted(os.listdir(faces / cls))[k]
            _copy(faces / cls / name, t / "kaggle" / split / cls / name)
    trees["split/class"] = t
    # split/class/ with a manifest per split (a stage run on each split alone): both inputs had an a.jpg,
    # and the val split's stage carried an origin from an earlier stage.
    t = root / "per_split"
    for k, split in enumerate(("train", "val", "test")):
        for cls in ("with_mask", "without_mask"):
            src = faces / cls / sorted(os.listdir(faces / cls))[k]
            _copy(src, t / split / cls / "a.jpg")
            write_image(t / split / cls / "a__flip.jpg", read_image(src)[:, ::-1])
        with ManifestWriter(t / split / "manifest.jsonl") as w:
            for cls in ("with_mask", "without_mask"):
                origin = f"photos/{cls}.jpg" if split == "val" else f"{cls}/a.jpg"
                w.write([Record("augment", f"{cls}/a.jpg", "ok", f"{cls}/{name}", origin=origin)
                         for name in ("a.jpg", "a__flip.jpg")])
    trees["per-split manifests"] = t
    assert names
    return trees


def test_audit_and_trainer_read_every_layout_the_same_way(masks_data, tmp_path):
    trees = _layouts(tmp_path, masks_data / "chandrikadeb7")
    for layout, root in trees.items():
        scanned = scan_dataset(root, workers=1, progress=False)
        audit_groups = {i.rel: (i.split or "train", i.label, i.group) for i in scanned.items}
        ds = load_dataset(root, val_fraction=0.34)
        train_groups = {s.rel: (s.split if scanned.layout == "split/class" else "train", ds.classes[s.label], s.group)
                        for samples in ds.splits.values() for s in samples}
        if scanned.layout != "split/class":  # the trainer made its own val split out of train
            audit_groups = {k: ("train", c, g) for k, (_, c, g) in audit_groups.items()}
        assert audit_groups == train_groups, layout
    # per-split manifests: each split's own a.jpg is its own photo; a carried origin is one photo
    tree = index_tree(trees["per-split manifests"])
    group = {i.rel: i.group for i in tree.items}
    assert group["train/with_mask/a__flip.jpg"] == group["train/with_mask/a.jpg"] == "train/a"
    assert group["train/with_mask/a__flip.jpg"] != group["test/with_mask/a__flip.jpg"]
    assert group["val/with_mask/a.jpg"] == "photos/with_mask"  # carried from an earlier stage, kept
    origins, manifests = read_origins(trees["per-split manifests"])
    assert len(manifests) == 3 and origins["test/with_mask/a.jpg"] == "test/with_mask/a.jpg"
    nested = index_tree(trees["split/class"])
    # by name, a masked copy in another class folder is one photo with its unmasked original
    tree = index_tree(trees["class"])
    assert len({i.group for i in tree.items if i.rel.endswith("__flip.jpg") or "__" not in i.rel}) >= 2
    from maskprep.dataset import item_of
    a, b = (item_of(Path(r), r, {}, "class") for r in ("with_mask/obama__kf94_correct.jpg", "without_mask/obama.jpg"))
    assert a.group == b.group == "obama" and a.evidence == "name" and b.evidence == ""
    assert {(i.split, i.label) for i in nested.items} == {
        (s, c) for s in ("train", "val", "test") for c in ("with_mask", "without_mask")}


# ----------------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def masked_stage_outputs(identities, tmp_path_factory) -> Path:
    """detect + synth-masks (one mask type, every wear) on six real photos of six people."""
    from maskprep.faces import detect_tree
    from maskprep.masks.synth import synth_masks
    root = tmp_path_factory.mktemp("stages")
    for rel in PHOTOS:
        _copy(identities / rel, root / "photos" / Path(rel).name)
    detect_tree(root / "photos", root / "faces", workers=2, progress=False)
    synth_masks(root / "faces", root / "masked", types="kf94", wear="all", workers=2, progress=False)
    return root


@pytest.mark.slow
def test_dataset_from_stage_outputs_has_no_leak_where_a_random_split_has(masked_stage_outputs, tmp_path):
    root = masked_stage_outputs
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["dataset", str(root / "faces"), str(root / "masked"), str(out),
                                   "--ratios", "0.5,0.25,0.25", "-q"])
    assert res.exit_code == 0, res.output
    records = [r for r in read_manifest(out) if r.status == "ok"]
    crops = len(list_images(root / "faces"))
    assert len(records) == crops * 4  # the crop + kf94 correct, nose-out, chin
    classes = {r.params["from"]: r.params["class"] for r in records}
    assert classes == {"unmasked": "without_mask", "correct": "with_mask", "nose-out": "mask_worn_wrong",
                       "chin": "mask_worn_wrong"}
    side: dict[str, str] = {}
    for r in records:
        assert r.output.startswith(f"{r.info['split']}/{r.params['class']}/")
        assert side.setdefault(r.info["group"], r.info["split"]) == r.info["split"]
    assert set(side.values()) == {"train", "val", "test"}
    report = json.loads((out / "split_report.json").read_text())
    assert report["split"]["requested"] == {"train": 0.5, "val": 0.25, "test": 0.25}
    assert audit(out, workers=2, progress=False).leakage == []
    assert "leakage across splits: none" not in res.output  # the command itself does not audit
    # The same files split at random, as people do by hand: the audit finds the leaks.
    shuffled = tmp_path / "random"
    files = sorted(out.rglob("*.jpg"))
    random.Random(0).shuffle(files)
    for k, f in enumerate(files):
        split = ("train", "train", "val", "test")[k % 4]
        _copy(f, shuffled / split / f.parent.name / f.name)
    leaks = audit(shuffled, workers=2, progress=False).leakage
    assert {f["kind"] for f in leaks} & {"masked_copy", "variant", "near", "exact"}, leaks
    # And the trainer reads the dataset as it is, with its three splits and no shared photo.
    ds = load_dataset(out)
    assert ds.split_source == "folders" and set(ds.splits) == {"train", "val", "test"}
    assert ds.classes == ["mask_worn_wrong", "with_mask", "without_mask"]


def test_an_unhonoured_split_is_said_by_the_command_and_by_the_trainer(masked_stage_outputs, tmp_path):
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["dataset", str(masked_stage_outputs / "masked"), str(out),
                                   "--ratios", "0.9,0.05,0.05", "-q"])
    assert res.exit_code == 0, res.output
    assert "warning: could not honour the requested split" in res.output
    warnings = load_dataset(out).split_warnings
    assert warnings and "could not honour" in warnings[0] and "split_report.json" in warnings[0]


def test_class_folders_without_manifest_are_grouped_by_their_pixels(masks_data, tmp_path):
    """A rescaled, mirrored copy under another name is one photo with its original; --test-from and
    --class-map work on plain class folders."""
    faces = masks_data / "chandrikadeb7"
    inp = tmp_path / "in"
    for cls, folder in (("masked", "with_mask"), ("bare", "without_mask")):
        for name in sorted(os.listdir(faces / folder))[:8]:
            _copy(faces / folder / name, inp / cls / name)
    src = sorted(os.listdir(faces / "without_mask"))[0]
    img = read_image(faces / "without_mask" / src)
    write_image(inp / "bare" / "renamed_copy.png", np.ascontiguousarray(img[::2, ::-1]))
    external = tmp_path / "external"
    for name in sorted(os.listdir(faces / "with_mask"))[100:104]:
        _copy(faces / "with_mask" / name, external / "masked" / name)
    result = build_dataset([inp], tmp_path / "out", class_map=parse_class_map("masked=with_mask,bare=without_mask"),
                           ratios=parse_ratios("0.75,0.25"), test_from=external, workers=1, progress=False)
    by_rel = {c.item.rel: c for c in result.written()}
    assert by_rel["bare/renamed_copy.png"].group == by_rel[f"bare/{src}"].group
    assert by_rel["bare/renamed_copy.png"].split == by_rel[f"bare/{src}"].split
    assert {c.split for c in result.written() if c.input == 1} == {"test"}
    assert {c.split for c in result.written() if c.input == 0} == {"train", "val"}
    assert {c.label for c in result.written()} == {"with_mask", "without_mask"}
    assert audit(tmp_path / "out", workers=1, progress=False).leakage == []
    # The same seed gives the same dataset whatever --workers is; --overwrite replaces it whole.
    again = build_dataset([inp], tmp_path / "out2", class_map=parse_class_map("masked=with_mask,bare=without_mask"),
                          ratios=parse_ratios("0.75,0.25"), test_from=external, workers=2, progress=False)
    assert (tmp_path / "out2" / "manifest.jsonl").read_bytes() == (tmp_path / "out" / "manifest.jsonl").read_bytes()
    assert [c.output for c in again.written()] == [c.output for c in result.written()]
    reseeded = build_dataset([inp], tmp_path / "out", class_map=parse_class_map("masked=with_mask,bare=without_mask"),
                             ratios=parse_ratios("0.5,0.5"), seed=3, workers=1, overwrite=True, progress=False)
    on_disk = sorted(p.relative_to(tmp_path / "out").as_posix() for p in list_images(tmp_path / "out"))
    assert on_disk == sorted(c.output for c in reseeded.written())  # nothing left of the first run


def test_cli_refuses_bad_folders_and_options_with_one_line(masks_data, tmp_path):
    faces = masks_data / "chandrikadeb7"
    inp = tmp_path / "in"
    for name in sorted(os.listdir(faces / "with_mask"))[:2]:
        _copy(faces / "with_mask" / name, inp / "with_mask" / name)
    run = CliRunner().invoke
    for args, words in (([str(inp), str(inp / "out")], "inside the input"),
                        ([str(inp)], "at least one input folder"),
                        ([str(inp), str(tmp_path / "o"), "--class-map", "nonsense"], "KEY=CLASS"),
                        ([str(inp), str(tmp_path / "o"), "--ratios", "0.5,x"], "--ratios")):
        res = run(cli, ["dataset", *args])
        assert res.exit_code == 2 and words in res.output, res.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    res = run(cli, ["dataset", str(inp), str(tmp_path / "busy"), "--overwrite"])
    assert res.exit_code == 2 and "not written by" in res.output
    assert (tmp_path / "busy" / "x.txt").read_text() == "mine"
