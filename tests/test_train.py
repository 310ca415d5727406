"""maskprep-train on small real subsets of ../shared/data/masks at 64 px (resnet18 where speed matters)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning, which on a busy 2-core CI box
# makes training steps several times faster (measured 12 s -> 1.7 s for 3 ResNet50 steps). When an
# earlier test module already loaded torch (albumentations imports it) the setting comes too late;
# one thread is then the safe choice (2.6 s on the same measurement).
_TORCH_PRELOADED = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from maskprep.images import read_image, write_image
from maskprep.manifest import ManifestWriter, Record
from maskprep_train import metrics as M
from maskprep_train.cli import cli
from maskprep.dataset import group_split
from maskprep_train.data import load_dataset, load_pixels, split_leaks
from maskprep_train.engine import (
    DeviceConfig,
    choose_device,
    evaluate,
    load_checkpoint,
    predict,
    train_step,
)
from maskprep_train.model import (
    apply_freeze,
    backbone_features,
    build_model,
    set_train_mode,
    trainable_parameter_names,
)
from maskprep_train.report import gap_verdict

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1 if _TORCH_PRELOADED else 2)


def _link_subset(src: Path, dst: Path, classes: dict[str, list[str]]) -> Path:
    for cls, names in classes.items():
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            os.symlink(src / cls / name, dst / cls / name)
    return dst


def _names(folder: Path, start: int, count: int) -> list[str]:
    return sorted(os.listdir(folder))[start:start + count]


@pytest.fixture(scope="module")
def chandrika(masks_data: Path) -> Path:
    return masks_data / "chandrikadeb7"


@pytest.fixture(scope="module")
def small_sets(chandrika: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A 2-class train tree (20 per class + an empty 'photo') and a disjoint 8-per-class test tree."""
    root = tmp_path_factory.mktemp("train2")
    train = _link_subset(chandrika, root / "data", {
        c: _names(chandrika / c, 0, 20) for c in ("with_mask", "without_mask")})
    (train / "with_mask" / "broken.jpg").write_bytes(b"")
    test = _link_subset(chandrika, root / "test", {
        c: _names(chandrika / c, 500, 8) for c in ("with_mask", "without_mask")})
    return train, test


@pytest.fixture(scope="module")
def trained_run(small_sets, tmp_path_factory) -> Path:
    """One real CLI training run (plain loop, light augmentation), shared by the checks that read it."""
    train, test = small_sets
    out = tmp_path_factory.mktemp("run") / "r"
    res = CliRunner().invoke(cli, [str(train), "--out", str(out), "--test", str(test), "--weights", "none",
                                   "--arch", "resnet18", "--freeze", "none", "--img-size", "64",
                                   "--epochs", "3", "--batch-size", "8", "--lr", "1e-3", "--patience", "0"])
    assert res.exit_code == 0, res.output
    return out


# ----------------------------------------------------------------------------- metrics

def test_metrics_match_definitions_on_known_and_random_cases():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    cm = M.confusion_matrix(y, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # Per class F1: 2/4, 4/5, 2/3 -> macro mean.
    assert M.macro_f1(y, pred, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert M.accuracy(y, pred) == pytest.approx(4 / 6)
    rng = np.random.default_rng(1)
    for _ in range(5):
        pos = rng.random(60) < 0.4
        scores = np.round(rng.random(60), 1)  # many ties
        brute = np.mean([(a > b) + 0.5 * (a == b) for a in scores[pos] for b in scores[~pos]])
        assert M.binary_auc(pos, scores) == pytest.approx(brute)
        fpr, tpr, _ = M.roc_curve(pos, scores)
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
        assert np.trapezoid(tpr, fpr) == pytest.approx(brute)
    assert np.isnan(M.binary_auc(np.ones(4, bool), np.arange(4)))
    probs = np.eye(3)[[0, 1, 2, 2]] * 0.9 + 0.05
    auc, per = M.ovr_auc(np.array([0, 1, 2, 2]), probs)
    assert auc == 1.0 and per == [1.0, 1.0, 1.0]


def test_chance_scores_and_a_one_class_predictor_is_not_better_than_chance():
    y = np.array([0] * 6 + [1] * 3 + [2] * 3)
    chance = M.chance_scores(y, 3)
    # Always answering class 0: F1 2*0.5/1.5 for it, 0 for the others -> 2/9; accuracy 0.5.
    assert chance["majority_class"] == 0 and chance["majority_accuracy"] == 0.5
    assert chance["majority_macro_f1"] == pytest.approx(2 / 9)
    # Uniform guessing: F1_c = 2 n_c / (n + k n_c) -> (12/30 + 6/21 + 6/21) / 3.
    assert chance["uniform_macro_f1"] == pytest.approx((12 / 30 + 12 / 21) / 3)
    # A model that answers class 0 for 300 val images of 3 classes, as the resnet50 of issue 14 did.
    y_val = np.repeat([0, 1, 2], [110, 100, 90])
    one_class = np.tile([0.5, 0.3, 0.2], (300, 1))
    good = np.eye(3)[y_val] * 0.8 + 0.2 / 3
    final = {"train": M.summarize(y_val, good), "val": M.summarize(y_val, one_class),
             "test": M.summarize(y_val, one_class)}
    assert final["val"]["predicted_classes"] == 1
    verdict = gap_verdict(final, "data/", classes=["with_mask", "without_mask", "worn_wrong"])
    assert verdict["status"] == "warning"
    assert verdict["lines"][0].startswith("NOT BETTER THAN CHANCE on val")
    assert "'with_mask'" in verdict["lines"][0] and "single class" in verdict["lines"][0]
    assert not any(line.startswith("ok:") for line in verdict["lines"])
    assert not any("on train" in line for line in verdict["lines"] if "CHANCE" in line)


# ----------------------------------------------------------------------------- data and splits

def test_group_aware_split_keeps_every_variant_of_a_photo_together(chandrika, tmp_path):
    """Variants by file name and by manifest origin (renamed synth outputs) never straddle train/val."""
    data = tmp_path / "data"
    manifest = []
    for cls in ("with_mask", "without_mask"):
        (data / cls).mkdir(parents=True)
        for name in _names(chandrika / cls, 40, 12):
            img = read_image(chandrika / cls / name)[:96, :96]
            stem = Path(name).stem
            write_image(data / cls / f"{stem}.jpg", img, 90)
            write_image(data / cls / f"{stem}__flip.jpg", img[:, ::-1], 90)
            write_image(data / cls / f"{stem}__blur.jpg", img // 2 * 2, 90)
            # A renamed output whose only link to its source is the manifest's origin.
            write_image(data / cls / f"synth_{stem}.jpg", 255 - img, 90)
            manifest.append(Record("synth-masks", f"{cls}/{stem}.jpg", "ok", f"{cls}/synth_{stem}.jpg",
                                   origin=f"{cls}/{stem}.jpg"))
    with ManifestWriter(data / "manifest.jsonl") as w:
        w.write(manifest)
    for seed in range(4):
        ds = load_dataset(data, val_fraction=0.25, seed=seed)
        stems = {side: {Path(s.rel).parent.name + "/" + Path(s.rel).stem.split("__")[0].removeprefix("synth_")
                        for s in ds.splits[side]} for side in ("train", "val")}
        assert stems["train"] and stems["val"]
        assert not stems["train"] & stems["val"], f"seed {seed}: a photo is on both sides"
        val_counts = ds.counts()["val"]
        assert all(8 <= n <= 16 for n in val_counts.values()), val_counts  # ~25 % of 48, per class
        assert len(ds.splits["train"]) + len(ds.splits["val"]) == 96


def test_group_aware_split_is_seeded_and_stratified():
    labels = [0] * 30 + [1] * 10
    groups = [f"g{i // 2}" for i in range(40)]
    plan = group_split([str(v) for v in labels], groups, {"train": 0.8, "val": 0.2}, seed=3)
    assert plan == group_split([str(v) for v in labels], groups, {"train": 0.8, "val": 0.2}, seed=3)
    tr, va = plan.indices("train"), plan.indices("val")
    assert sorted(tr + va) == list(range(40)) and plan.honoured
    assert sum(labels[i] == 0 for i in va) == 6 and sum(labels[i] == 1 for i in va) == 2


def test_existing_split_folders_are_used_as_they_are(chandrika, tmp_path):
    for split, start in (("train", 0), ("val", 100), ("test", 200)):
        _link_subset(chandrika, tmp_path / split, {c: _names(chandrika / c, start, 3)
                                                   for c in ("with_mask", "without_mask")})
    ds = load_dataset(tmp_path)
    assert ds.classes == ["with_mask", "without_mask"] and ds.split_source == "folders"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "val": 6, "test": 6}
    assert all(s.rel.startswith("val/") for s in ds.splits["val"])
    assert split_leaks(ds) == {"train-val": {"confirmed": 0, "same_names": 0},
                               "train-test": {"confirmed": 0, "same_names": 0}}
    # A flipped copy of a train photo in val/, linked to it only by its <stem>__<variant> name: the
    # pixels confirm it.
    train_rel = ds.splits["train"][0].rel
    img = read_image(tmp_path / train_rel)
    flipped = tmp_path / "val" / f"{Path(train_rel).parent.name}/{Path(train_rel).stem}__flip.jpg"
    write_image(flipped, img[:, ::-1], 90)
    assert split_leaks(load_dataset(tmp_path))["train-val"] == {"confirmed": 1, "same_names": 0}
    flipped.unlink()
    # An unrelated photo that happens to share a train photo's file name (two different 106.jpg).
    other = ds.splits["test"][0]
    same_name = tmp_path / "val" / train_rel.split("/", 1)[1]
    same_name.symlink_to(other.path)
    assert split_leaks(load_dataset(tmp_path))["train-val"] == {"confirmed": 0, "same_names": 1}
    same_name.unlink()
    # Per-split manifests that give two different photos the same recorded origin name: only the
    # names match, and the verdict says so instead of crying leakage.
    val_file = ds.splits["val"][0].rel
    train_file = ds.splits["train"][0].rel
    for split, rel in (("train", train_file), ("val", val_file)):
        with ManifestWriter(tmp_path / split / "manifest.jsonl") as w:
            w.write([Record("augment", "x", "ok", rel.split("/", 1)[1], origin="photos/same.jpg")])
    leaks = split_leaks(load_dataset(tmp_path))
    assert leaks["train-val"] == {"confirmed": 0, "same_names": 1}
    verdict = gap_verdict({"train": {"macro_f1": 0.9, "n": 6}, "val": {"macro_f1": 0.9, "n": 6}}, "d/", leaks)
    assert not any("WARNING leakage" in line for line in verdict["lines"])
    assert any("same file names only" in line for line in verdict["lines"])
    confirmed = gap_verdict({"train": {"macro_f1": 0.9, "n": 6}, "val": {"macro_f1": 0.9, "n": 6}}, "d/",
                            {"train-val": {"confirmed": 1, "same_names": 0}})
    assert confirmed["status"] == "warning" and any("confirmed by their pixels" in line
                                                    for line in confirmed["lines"])


# ----------------------------------------------------------------------------- model

def test_freeze_modes_leave_exactly_the_intended_parameters_trainable():
    model = build_model("resnet50", 3, "none")
    names = [n for n, _ in model.named_parameters()]
    apply_freeze(model, "head")
    assert trainable_parameter_names(model) == ["fc.1.weight", "fc.1.bias"]
    assert model.fc[1].out_features == 3
    apply_freeze(model, "layer4")
    expected = [n for n in names if n.startswith(("layer4.", "fc."))]
    assert trainable_parameter_names(model) == expected and len(expected) > 2
    apply_freeze(model, "none")
    assert trainable_parameter_names(model) == names
    # Frozen BatchNorm keeps its statistics while the head trains.
    apply_freeze(model, "head")
    set_train_mode(model, "head")
    before = model.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert torch.equal(before, model.bn1.running_mean) and model.fc.training


def test_a_few_steps_lower_the_loss_on_a_fixed_real_batch(chandrika):
    files = [chandrika / c / n for c in ("with_mask", "without_mask") for n in _names(chandrika / c, 60, 3)]
    x = torch.from_numpy(np.stack([load_pixels(str(f), 48) for f in files]))
    y = torch.tensor([0] * 3 + [1] * 3)
    torch.manual_seed(0)
    model = build_model("resnet50", 2, "none")
    apply_freeze(model, "none")
    set_train_mode(model, "none")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    dev = DeviceConfig("cpu")
    losses = [train_step(model, x, y, crit, opt, dev)[1] for _ in range(5)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_weights_from_a_local_state_dict_load_the_backbone(tmp_path):
    import torchvision
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)  # a torchvision-shaped file, 1000-class head
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 3, tmp_path / "r18.pth")
    assert torch.equal(model.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert model.fc[1].out_features == 3
    with pytest.raises(ValueError, match="does not fit"):
        build_model("resnet50", 3, tmp_path / "r18.pth")


def test_imagenet_weights_come_from_the_hub_cache_file(tmp_path, monkeypatch):
    import torchvision
    from maskprep_train.model import imagenet_cache_path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = imagenet_cache_path("resnet18")
    assert cached.parent == tmp_path / "hub" / "checkpoints" and cached.name.startswith("resnet18-")
    cached.parent.mkdir(parents=True)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), cached)
    model = build_model("resnet18", 2, "imagenet")
    assert torch.equal(model.conv1.weight, ref.conv1.weight) and model.fc[1].out_features == 2


def test_imagenet_weights_offline_fail_fast_with_a_clear_message(small_sets, tmp_path, monkeypatch):
    """No network: the download torchvision's weights API starts fails at once, and the error names the
    file, its URL and the path to put it at; nothing is written."""
    import urllib.error
    train, _ = small_sets
    home = tmp_path / "empty_torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    tried = []

    def offline(url, dst, *a, **k):
        tried.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    res = CliRunner().invoke(cli, [str(train), "--out", str(tmp_path / "o"), "--weights", "imagenet",
                                   "--arch", "resnet18"])
    assert res.exit_code == 2, res.output
    assert tried and tried[0].endswith("/resnet18-f37072fd.pth")  # it did try, through torchvision
    assert "could not be downloaded" in res.output and tried[0] in res.output
    assert str(home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in res.output
    assert "--weights none --freeze none" in res.output
    assert not (tmp_path / "o").exists()


def test_device_choice_is_a_pure_function_of_request_and_machine():
    assert choose_device("auto", False) == DeviceConfig("cpu")
    gpu = choose_device("auto", True, bf16_supported=True, local_rank=1)
    assert (gpu.device, gpu.amp_dtype, gpu.channels_last, gpu.pin_memory, gpu.cudnn_benchmark) == \
        ("cuda:1", "bfloat16", True, True, True)
    assert choose_device("cuda", True, bf16_supported=False).amp_dtype == "float16"
    assert choose_device("auto", True, amp=False).amp_dtype is None
    assert choose_device("cpu", True) == DeviceConfig("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        choose_device("cuda", False)


# ----------------------------------------------------------------------------- report

def test_gap_verdict_names_the_problem_in_plain_words():
    bad = gap_verdict({"train": {"macro_f1": 0.97, "n": 800}, "val": {"macro_f1": 0.95, "n": 200},
                       "test": {"macro_f1": 0.55, "n": 300}}, "data/")
    assert bad["status"] == "warning" and bad["val_test_gap"] == pytest.approx(0.40)
    assert any("maskprep audit data/" in line and "domain shift" in line for line in bad["lines"])
    over = gap_verdict({"train": {"macro_f1": 0.99, "n": 800}, "val": {"macro_f1": 0.70, "n": 200}})
    assert over["status"] == "warning" and "overfitting" in over["lines"][0]
    above = gap_verdict({"train": {"macro_f1": 0.80, "n": 800}, "val": {"macro_f1": 0.92, "n": 400}})
    assert above["status"] == "ok" and "another --seed" in above["lines"][0]
    # Final numbers are taken with dropout and augmentation off: that cannot explain the gap.
    assert "dropout and augmentation off" in above["lines"][0]
    small = gap_verdict({"train": {"macro_f1": 0.9, "n": 40}, "val": {"macro_f1": 0.8, "n": 10},
                         "test": {"macro_f1": 0.7, "n": 10}})
    assert small["status"] == "ok"  # 0.1 on 10 photos is noise, and the note says so
    assert any("fewer than 50" in line for line in small["lines"])


# ----------------------------------------------------------------------------- end to end

def test_training_writes_the_report_and_keeps_the_best_f1_epoch(trained_run):
    m = json.loads((trained_run / "metrics.json").read_text())
    assert {p.name for p in trained_run.iterdir()} >= {"metrics.json", "best.pt", "curves.png", "roc.png",
                                                       "verdict.txt", "split.json"}
    assert len(m["epochs"]) == 3 and set(m["final"]) == {"train", "val", "test"}
    for e in m["epochs"]:
        assert set(e["train"]) == set(e["val"]) == {"loss", "accuracy", "macro_f1", "roc_auc"}
    f1s = [e["val"]["macro_f1"] for e in m["epochs"]]
    assert m["best_epoch"] == 1 + int(np.argmax(f1s))
    # The reported val numbers are those of the kept epoch.
    assert m["final"]["val"]["macro_f1"] == pytest.approx(f1s[m["best_epoch"] - 1])
    assert sum(s["unreadable"] for s in m["final"].values()) == 1  # the empty broken.jpg, not a crash
    assert m["final"]["test"]["n"] == 16 and np.array(m["final"]["test"]["confusion_matrix"]).sum() == 16
    assert m["verdict"]["lines"] and "verdict:" in (trained_run / "verdict.txt").read_text()


def test_best_checkpoint_reloads_and_evaluate_reproduces_saved_metrics(trained_run, small_sets):
    _, test = small_sets
    report = json.loads((trained_run / "metrics.json").read_text())
    saved = report["final"]["test"]
    model, meta = load_checkpoint(trained_run / "best.pt")
    assert meta["classes"] == ["with_mask", "without_mask"] and meta["img_size"] == 64
    assert meta["epoch"] == report["best_epoch"] and meta["val"]["macro_f1"] == report["final"]["val"]["macro_f1"]
    again = evaluate(trained_run / "best.pt", test, batch_size=5)
    assert again["confusion_matrix"] == saved["confusion_matrix"]
    assert again["macro_f1"] == pytest.approx(saved["macro_f1"])
    assert again["roc_auc"] == pytest.approx(saved["roc_auc"], abs=1e-6)
    res = CliRunner().invoke(cli, ["evaluate", str(trained_run / "best.pt"), str(test), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["confusion_matrix"] == saved["confusion_matrix"]


def test_predict_gives_a_class_and_confidence_per_image(trained_run, small_sets):
    _, test = small_sets
    files = sorted(str(p) for p in (test / "without_mask").iterdir())[:3]
    res = CliRunner().invoke(cli, ["predict", str(trained_run / "best.pt"), *files, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["path"] for r in out] == files
    for r in out:
        assert r["class"] in ("with_mask", "without_mask") and 0.5 <= r["confidence"] <= 1
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert r["confidence"] == max(r["probabilities"].values())
    text = CliRunner().invoke(cli, ["predict", str(trained_run / "best.pt"), files[0], "nope.jpg"])
    assert text.exit_code == 1 and "ERROR missing" in text.output and files[0] in text.output
    assert predict(trained_run / "best.pt", files[:1])[0]["class"] == out[0]["class"]


def test_predict_warns_on_whole_photos_and_detect_predicts_per_face(trained_run, identities):
    photo = str(identities / "multi" / "two_people.jpg")
    res = CliRunner().invoke(cli, ["predict", str(trained_run / "best.pt"), photo])
    assert res.exit_code == 0, res.output
    assert "2 faces in one picture" in res.output and "--detect" in res.output
    res = CliRunner().invoke(cli, ["predict", str(trained_run / "best.pt"), photo, "--detect", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("["):])
    assert [r["face"] for r in out] == [1, 2] and all("warning" not in r for r in out)
    assert all(r["class"] in ("with_mask", "without_mask") for r in out)


def _kaggle_three_class(kaggle: Path, dst: Path, per_class: int = 10) -> Path:
    """Face crops of the VOC boxes, 3 classes, with a manifest naming the scene photo as origin."""
    names = {"con_mascarilla": "with_mask", "sin_mascarilla": "without_mask",
             "mascarilla_mal_puesta": "mask_worn_incorrect"}
    counts = dict.fromkeys(names.values(), 0)
    records = []
    for xml in sorted((kaggle / "annotations").glob("*.xml"), key=lambda p: int(p.stem[12:])):
        tree = ET.parse(xml)
        scene = tree.findtext("filename")
        img = None
        for k, obj in enumerate(tree.findall("object")):
            cls = names[obj.findtext("name")]
            box = [int(float(obj.find("bndbox").findtext(t))) for t in ("xmin", "ymin", "xmax", "ymax")]
            if counts[cls] >= per_class or box[2] - box[0] < 20:
                continue
            img = read_image(kaggle / "images" / scene) if img is None else img
            rel = f"{cls}/{Path(scene).stem}_{k}.png"
            (dst / cls).mkdir(parents=True, exist_ok=True)
            write_image(dst / rel, img[box[1]:box[3], box[0]:box[2]], 95)
            records.append(Record("detect", f"images/{scene}", "ok", rel, origin=f"images/{scene}"))
            counts[cls] += 1
        if min(counts.values()) >= per_class:
            break
    with ManifestWriter(dst / "manifest.jsonl") as w:
        w.write(records)
    return dst


def test_three_class_head_only_run_takes_the_cached_feature_fast_path(masks_data, tmp_path):
    data = _kaggle_three_class(masks_data / "kaggle_fmd", tmp_path / "crops")
    out = tmp_path / "r3"
    res = CliRunner().invoke(cli, [str(data), "--out", str(out), "--weights", "none", "--arch", "resnet18",
                                   "--freeze", "head", "--augment", "none", "--img-size", "64",
                                   "--epochs", "4", "--batch-size", "8", "--val-fraction", "0.3"])
    assert res.exit_code == 0, res.output
    assert "cached-feature fast path" in res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["fast_path"] and m["classes"] == ["mask_worn_incorrect", "with_mask", "without_mask"]
    assert len(m["final"]["val"]["roc_auc_per_class"]) == 3
    # Cached features are exactly what the full network computes: the kept epoch's val numbers
    # (from the head on cached features) equal the final ones (whole model on the images).
    best = m["epochs"][m["best_epoch"] - 1]["val"]
    assert best["macro_f1"] == pytest.approx(m["final"]["val"]["macro_f1"])
    assert best["loss"] == pytest.approx(m["final"]["val"]["loss"], rel=1e-4)
    # Crops of one scene photo (manifest origin) stay on one side of the split.
    split = json.loads((out / "split.json").read_text())
    scenes = {side: {Path(r).stem.rsplit("_", 1)[0] for r in split[side]} for side in ("train", "val")}
    assert not scenes["train"] & scenes["val"]


def test_backbone_features_feed_the_head_like_the_full_forward():
    model = build_model("resnet18", 3, "none").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.fc(backbone_features(model, x)), model(x), atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_ddp_and_write_one_report(small_sets, tmp_path):
    train, test = small_sets
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maskprep_train", str(train), "--out", str(out), "--test", str(test), "--weights", "none",
           "--arch", "resnet18", "--freeze", "layer4", "--img-size", "64", "--epochs", "2", "--batch-size", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("report written to") == 1  # rank 1 prints nothing
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and len(m["epochs"]) == 2
    # Every image was seen once across the two ranks: nothing lost or doubled by sharding.
    assert m["final"]["test"]["n"] == 16
    assert m["final"]["train"]["n"] + m["final"]["val"]["n"] == 40
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "curves.png", "metrics.json", "roc.png",
                                                     "split.json", "verdict.txt"]


def test_training_gives_identical_weights_whatever_the_loader_workers(small_sets, tmp_path):
    """Augmentation is seeded per (seed, epoch, image) and shuffling in the main process, so
    --workers changes speed, never the model."""
    train, _ = small_sets
    states = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        res = CliRunner().invoke(cli, [str(train), "--out", str(out), "--weights", "none", "--arch", "resnet18",
                                       "--freeze", "layer4", "--img-size", "48", "--epochs", "1",
                                       "--batch-size", "8", "--workers", str(workers), "-q"])
        assert res.exit_code == 0, res.output
        states.append(torch.load(out / "best.pt", weights_only=True)["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    torch.manual_seed(0)  # the initial weights fit() starts from with --seed 0: training moved them
    initial = build_model("resnet18", 2, "none").state_dict()
    assert not torch.equal(states[0]["fc.1.weight"], initial["fc.1.weight"])
    assert torch.equal(states[0]["conv1.weight"], initial["conv1.weight"])  # frozen by --freeze layer4


def test_a_split_without_one_readable_image_reports_n_a_instead_of_crashing(trained_run, small_sets, tmp_path):
    from maskprep_train.metrics import summarize
    from maskprep_train.report import write_report
    train, _ = small_sets
    unreadable = tmp_path / "unreadable"
    (unreadable / "with_mask").mkdir(parents=True)
    (unreadable / "with_mask" / "broken.jpg").write_bytes(b"")
    res = CliRunner().invoke(cli, ["evaluate", str(trained_run / "best.pt"), str(unreadable)])
    assert res.exit_code == 0, res.output
    assert "n=0" in res.output and "accuracy n/a" in res.output and "1 unreadable" in res.output
    # The training report with a --test folder whose every file is unreadable.
    result = json.loads((trained_run / "metrics.json").read_text())
    result["final"]["test"] = summarize(np.zeros(0), np.zeros((0, 2))) | {"unreadable": 1}
    out = tmp_path / "report"
    out.mkdir()
    write_report(out, result, lambda s: None)
    text = (out / "verdict.txt").read_text()
    assert "test  n=    0  acc n/a  macro-F1 n/a" in text
    assert "no test image could be read" in text and "no test set" not in text


def test_group_aware_split_never_moves_a_whole_class_into_val(chandrika, tmp_path):
    """Even a large --val-fraction leaves every class with photos to train on."""
    data = _link_subset(chandrika, tmp_path / "data", {"with_mask": _names(chandrika / "with_mask", 0, 2),
                                                       "without_mask": _names(chandrika / "without_mask", 0, 6)})
    for seed in range(3):
        ds = load_dataset(data, val_fraction=0.8, seed=seed)
        assert all(n >= 1 for n in ds.counts()["train"].values()), (seed, ds.counts())
        assert all(n >= 1 for n in ds.counts()["val"].values()), (seed, ds.counts())


def test_best_epoch_tie_on_f1_goes_to_the_lower_val_loss_even_a_zero_one():
    from maskprep_train.engine import _better
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])  # a perfect, saturated softmax: loss exactly 0
    perfect = M.summarize(np.array([0, 1]), probs, 0.0)
    good = M.summarize(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), 0.16)
    assert perfect["macro_f1"] == good["macro_f1"] == 1.0
    assert _better(perfect, good) and not _better(good, perfect)
    assert _better(good, M.summarize(np.array([0, 1]), probs, None))


def test_a_negative_seed_is_refused_before_any_work(chandrika, tmp_path):
    """numpy refuses negative seeds; with ready-made split folders that used to surface mid-epoch."""
    from maskprep_train.engine import TrainConfig, fit
    for split, start in (("train", 0), ("val", 100)):
        _link_subset(chandrika, tmp_path / split, {c: _names(chandrika / c, start, 2)
                                                   for c in ("with_mask", "without_mask")})
    with pytest.raises(ValueError, match="--seed"):
        fit(TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"), weights="none", arch="resnet18",
                        img_size=32, epochs=1, seed=-1))
    assert not (tmp_path / "o").exists()
    res = CliRunner().invoke(cli, [str(tmp_path), "--out", str(tmp_path / "o"), "--weights", "none", "--seed", "-1"])
    assert res.exit_code == 2 and "--seed" in res.output and not (tmp_path / "o").exists()


def test_a_file_the_os_refuses_to_read_is_skipped_not_a_crash(trained_run, small_sets, monkeypatch):
    """Permission denied (not reproducible as root, so simulated) counts as unreadable, like a corrupt file."""
    import maskprep_train.data as data_mod
    _, test = small_sets
    denied = sorted((test / "with_mask").iterdir())[0]
    real_read = data_mod.read_image

    def read(path, **kw):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, **kw)
    monkeypatch.setattr(data_mod, "read_image", read)
    m = evaluate(trained_run / "best.pt", test)
    assert m["unreadable"] == 1 and m["n"] == 15
    out = predict(trained_run / "best.pt", [denied, sorted((test / "without_mask").iterdir())[0]])
    assert out[0]["error"] == "unreadable" and out[1]["class"] in ("with_mask", "without_mask")


def test_epoch_log_says_n_a_when_no_val_image_can_be_read(chandrika, tmp_path):
    """An undefined val accuracy/F1 is logged as n/a, not as a misleading 0.000."""
    from maskprep_train.engine import TrainConfig, fit
    data = tmp_path / "data"   # the report goes beside the data, never inside it
    _link_subset(chandrika, data / "train",
                 {c: _names(chandrika / c, 0, 3) for c in ("with_mask", "without_mask")})
    for c in ("with_mask", "without_mask"):
        (data / "val" / c).mkdir(parents=True)
        (data / "val" / c / "broken.jpg").write_bytes(b"not an image")
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(TrainConfig(data=str(data), out=str(tmp_path / "o"), weights="none", arch="resnet18",
                        freeze="head", augment="none", img_size=32, epochs=1, batch_size=4, log=lines.append))
    epoch = next(line for line in lines if line.startswith("epoch"))
    assert "val loss n/a  val acc n/a  val F1 n/a" in epoch, epoch
    # roc.png has no curve to label then: no matplotlib warning about an empty legend.
    assert not [w for w in caught if "legend" in str(w.message)]
    assert (tmp_path / "o" / "roc.png").is_file()
