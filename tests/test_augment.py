"""augment: variants are what they claim, held-out splits are untouched, runs are reproducible."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskprep.augment import (
    AugmentSettings,
    augment_image,
    augment_tree,
    color_jitter,
    custom_variant,
    draw_jitter,
    hflip,
    parse_splits,
)
from maskprep.cli import cli
from maskprep.images import decode_image, list_images, read_image
from maskprep.dataset import split_of
from maskprep.manifest import group_key, read_manifest

# Real files of the shared set with the shapes of trouble users hit: an RGBA screenshot, a palette PNG,
# a WEBP, an upper-case .JPEG, a large PNG (blur scaled to its size), a non-ASCII name.
SPECIAL = ["Screenshot (251).png", "with_mask161.png", "black19.webp", "0_0_2.JPEG", "0502.png",
           "0_0_≈˙◊¢ 2020-02-24 205216.png"]
VARIANTS = ("flip", "blur", "jitter", "rotate")
BROKEN = ("junk", "empty", "truncated")   # the three bad files planted in train/with_mask
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _lap_var(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def dataset(masks_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (both classes, odd formats, three broken files), valid/ and test/ from real photos."""
    src = masks_data / "chandrikadeb7"
    with_mask = sorted(p.name for p in (src / "with_mask").iterdir())
    without = sorted(p.name for p in (src / "without_mask").iterdir())
    root = tmp_path_factory.mktemp("aug") / "data"
    layout = {
        ("train", "with_mask"): [n for n in SPECIAL if n in with_mask] + [n for n in with_mask if n.endswith(".jpg")][:5],
        ("train", "without_mask"): without[:6],
        ("valid", "without_mask"): without[-3:],
        ("test", "with_mask"): with_mask[-3:],
    }
    for (split, cls), names in layout.items():
        (root / split / cls).mkdir(parents=True)
        source = src / cls
        for name in names:
            shutil.copyfile(source / name, root / split / cls / name)
    bad = root / "train" / "with_mask"
    (bad / "junk.jpg").write_bytes(b"this is not a picture\n")
    (bad / "empty.png").write_bytes(b"")
    jpeg = (src / "without_mask" / without[0]).read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return root


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """One run with every variant and two random copies on two workers: (input hashes before, result, out)."""
    before = _tree_hashes(dataset)
    out = tmp_path_factory.mktemp("aug_out") / "out"
    result = augment_tree(dataset, out, flip=True, blur=True, color_jitter=True, rotate=12, copies=2,
                          seed=7, workers=2, progress=False)
    return before, result, out


def _records(out: Path) -> dict[str, dict]:
    return {r.output: r for r in read_manifest(out) if r.output}


def test_split_of_reads_split_folders_at_any_level() -> None:
    assert split_of("train/with_mask/a.jpg") == "train"
    assert split_of("data/Validation/cls/a.jpg") == "val"
    assert split_of("x/valid/cls/a.jpg") == "val"
    assert split_of("test/a.png") == "test"
    assert split_of("with_mask/a.jpg") is None
    assert split_of("train/test/a.jpg") == "train"        # a class named "test" inside train stays train
    assert split_of("cls/test.jpg") is None                 # a file name is not a folder
    assert parse_splits("Train, valid") == ["train", "val"]
    with pytest.raises(ValueError, match="unknown split"):
        parse_splits("tran")


def test_originals_are_copied_byte_for_byte_and_input_is_untouched(dataset: Path, run) -> None:
    before, result, out = run
    assert _tree_hashes(dataset) == before
    for rel, digest in before.items():
        if Path(rel).stem in BROKEN:
            continue
        assert _sha(out / rel) == digest, rel


def test_held_out_splits_are_copied_unchanged_and_never_augmented(dataset: Path, run) -> None:
    before, result, out = run
    for split in ("valid", "test"):
        produced = {p.relative_to(out).as_posix() for p in (out / split).rglob("*") if p.is_file()}
        expected = {rel for rel in before if rel.startswith(split + "/")}
        assert produced == expected                         # no __flip & co in val/test
        for rel in expected:
            assert _sha(out / rel) == before[rel]
    assert result.splits == {"train": 20, "val": 3, "test": 3}   # inputs, 3 of them broken
    assert result.augmented_splits == ["train"]
    text = "\n".join(result.lines())
    assert "train 20 augmented" in text and "val 3 copied unchanged" in text and "test 3 copied unchanged" in text


def test_bad_files_are_recorded_and_skipped(run) -> None:
    _, result, out = run
    failed = {r.source: r.reason for r in read_manifest(out) if r.status == "failed"}
    assert failed == {"train/with_mask/junk.jpg": "not an image", "train/with_mask/empty.png": "empty file",
                      "train/with_mask/truncated.jpg": "truncated"}
    assert result.summary.failed == 3
    assert not list((out / "train" / "with_mask").glob("junk*"))
    assert not list((out / "train" / "with_mask").glob("truncated*"))
    # Every good training image (17) got its original plus 4 variants plus 2 copies.
    assert result.summary.outputs == 17 * 7 + 6


def test_flip_is_the_exact_mirror_of_the_decoded_original(dataset: Path, run) -> None:
    _, _, out = run
    pngs = [p for p in list_images(out / "train") if p.suffix.lower() == ".png" and "__" not in p.stem]
    assert len(pngs) >= 3                                   # RGBA, palette and RGB PNGs: lossless outputs
    for original in pngs:
        flipped = original.with_name(f"{original.stem}__flip.png")
        assert np.array_equal(read_image(flipped), read_image(original)[:, ::-1]), original.name
    image = read_image(dataset / "train" / "with_mask" / "black19.webp")
    assert np.array_equal(hflip(image), image[:, ::-1])


def test_format_follows_the_input(run) -> None:
    _, _, out = run
    kinds = {".png": b"\x89PNG", ".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8", ".webp": b"RIFF"}
    variants = [p for p in list_images(out / "train") if "__" in p.stem]
    assert {p.suffix for p in variants} >= {".png", ".jpg", ".JPEG", ".webp"}
    for path in variants:
        assert path.read_bytes().startswith(kinds[path.suffix.lower()]), path.name


def test_blur_lowers_laplacian_variance_and_records_its_kernel(run) -> None:
    _, _, out = run
    records = _records(out)
    blurred = [p for p in list_images(out / "train") if p.stem.endswith("__blur")]
    assert len(blurred) == 17
    for path in blurred:
        original = path.with_name(path.name.replace("__blur", ""))
        assert _lap_var(read_image(path)) < 0.8 * _lap_var(read_image(original)), path.name
        params = records[path.relative_to(out).as_posix()].params["blur"]
        scale = max(1.0, min(read_image(original).shape[:2]) / 224)
        assert 0.6 * scale - 1e-3 <= params["sigma"] <= 1.6 * scale + 1e-3
        assert params["ksize"] % 2 == 1 and params["ksize"] >= 2 * math.ceil(3 * params["sigma"]) + 1 - 1e-9


def _colour_stats(image: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    yiq = image.reshape(-1, 3).astype(np.float64) @ YIQ.T
    return yiq[:, 0].mean(), yiq[:, 0].std(), np.hypot(yiq[:, 1], yiq[:, 2]).mean(), yiq


def test_jitter_moves_colour_statistics_within_the_configured_bounds(dataset: Path) -> None:
    settings = AugmentSettings(brightness=0.25, contrast=0.2, saturation=0.3, hue=0.05)
    rng = np.random.default_rng(3)
    images = [read_image(p) for p in list_images(dataset / "train") if p.stem not in BROKEN]
    checked = 0
    for image in images:
        p = draw_jitter(rng, image.shape, settings)
        assert abs(p["brightness"] - 1) <= 0.25 and abs(p["contrast"] - 1) <= 0.2
        assert abs(p["saturation"] - 1) <= 0.3 and abs(p["hue"]) <= 0.05
        out = color_jitter(image, **p)
        y0, s0, c0, yiq0 = _colour_stats(image)
        y1, s1, c1, yiq1 = _colour_stats(out)
        # Mean luma never moves past the brightness bound (clipping only pulls it back towards 1).
        assert 0.75 - 0.02 <= y1 / y0 <= 1.25 + 0.02
        clipped = np.mean((out == 0) | (out == 255)) - np.mean((image == 0) | (image == 255))
        if clipped < 0.005:                                 # no clipping: the factors are exact
            checked += 1
            assert y1 / y0 == pytest.approx(p["brightness"], abs=0.02)
            assert s1 / s0 == pytest.approx(p["brightness"] * p["contrast"], abs=0.03)
            # Brightness and contrast scale colourfulness too (as torchvision's do); saturation on top.
            assert c1 / c0 == pytest.approx(p["brightness"] * p["contrast"] * p["saturation"], abs=0.05)
            colourful = np.hypot(yiq0[:, 1], yiq0[:, 2]) > 8
            turn = np.angle(np.exp(1j * (np.arctan2(yiq1[colourful, 2], yiq1[colourful, 1])
                                          - np.arctan2(yiq0[colourful, 2], yiq0[colourful, 1]))))
            assert np.median(turn) / (2 * np.pi) == pytest.approx(p["hue"], abs=0.01)
    assert checked >= 5
    identity = color_jitter(images[0], 1.0, 1.0, 1.0, 0.0)
    assert np.abs(identity.astype(int) - images[0]).max() <= 1


def test_manifest_records_drawn_parameters_and_groups_copies(run) -> None:
    _, _, out = run
    records = _records(out)
    source = "train/without_mask/" + sorted(p.name for p in (out / "train" / "without_mask").iterdir()
                                            if "__" not in p.stem)[0]
    stem = Path(source).stem
    mine = {r.variant: r for r in records.values() if r.source == source}
    assert set(mine) == {"", *VARIANTS, "aug1", "aug2"}
    assert mine[""].info == {"split": "train", "mode": "augmented"} and mine[""].params == {}
    jitter = mine["jitter"].params["jitter"]
    assert set(jitter) == {"brightness", "contrast", "saturation", "hue"}
    assert abs(mine["rotate"].params["rotate"]["angle"]) <= 12
    for k in ("aug1", "aug2"):
        ops = list(mine[k].params)
        assert ops and set(ops) <= set(VARIANTS) and set(ops) != {"flip"}
    assert {group_key(r.output) for r in mine.values()} == {f"train/without_mask/{stem}"}
    assert {r.origin for r in mine.values()} == {source}
    held = [r for r in records.values() if r.info.get("split") == "test"]
    assert held and all(r.info["mode"] == "copied" and r.variant == "" for r in held)


def test_same_seed_gives_identical_files_whatever_the_workers(dataset: Path, run, tmp_path: Path) -> None:
    _, _, out2 = run
    one = tmp_path / "one"
    augment_tree(dataset, one, flip=True, blur=True, color_jitter=True, rotate=12, copies=2, seed=7,
                 workers=1, progress=False)
    a, b = _tree_hashes(one), _tree_hashes(out2)
    a.pop("run.json"), b.pop("run.json"), a.pop("manifest.jsonl"), b.pop("manifest.jsonl")
    assert a == b
    # The manifests hold the same records (in completion order, which depends on the workers).
    lines = [sorted((root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()) for root in (one, out2)]
    assert lines[0] == lines[1]
    other = tmp_path / "other"
    augment_tree(dataset / "train" / "without_mask", other, blur=True, seed=8, workers=1, progress=False)
    name = sorted(p.name for p in (dataset / "train" / "without_mask").iterdir())[0]
    blur = Path(name).stem + "__blur" + Path(name).suffix
    assert _sha(other / blur) != _sha(out2 / "train" / "without_mask" / blur)


def test_augment_image_matches_the_library_contract(dataset: Path) -> None:
    image = read_image(dataset / "train" / "with_mask" / "0502.png")
    first = augment_image(image, ["flip", "blur"], copies=1, seed=5)
    again = augment_image(image, ["flip", "blur"], copies=1, seed=5)
    assert [v for v, _, _ in first] == ["flip", "blur", "aug1"]
    for (_, p1, a1), (_, p2, a2) in zip(first, again):
        assert p1 == p2 and np.array_equal(a1, a2)
    # Adding a variant leaves the others' draws alone (each variant has its own random stream).
    alone = dict((v, p) for v, p, _ in augment_image(image, ["blur"], seed=5))
    assert alone["blur"] == first[1][1]


def test_splits_override_warns_and_augments_val(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["augment", str(dataset), str(out), "--flip", "--splits", "train,val",
                                      "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "warning: augmenting val" in result.stderr
    assert "val 3 augmented" in result.stdout and "test 3 copied unchanged" in result.stdout
    assert len(list((out / "valid").rglob("*__flip.*"))) == 3
    assert not list((out / "test").rglob("*__*"))


def test_cli_refuses_bad_requests_with_one_line(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    nothing = runner.invoke(cli, ["augment", str(dataset), str(tmp_path / "o1")])
    assert nothing.exit_code == 2 and "nothing to do" in nothing.output
    inside = runner.invoke(cli, ["augment", str(dataset), str(dataset / "out"), "--flip"])
    assert inside.exit_code == 2 and "inside the input" in inside.output
    assert not (dataset / "out").exists()
    helptext = runner.invoke(cli, ["augment", "--help"]).output
    for option in ("--flip", "--blur", "--color-jitter", "--rotate", "--copies", "--splits", "--seed",
                   "--jpeg-quality", "--workers"):
        assert option in helptext


def test_cli_defaults_match_augment_settings() -> None:
    """The command keeps literal copies of AugmentSettings' defaults so its help needs no OpenCV."""
    from maskprep.commands import augment as command

    defaults = AugmentSettings()
    assert command.DEFAULT_BLUR_SIGMA == defaults.blur_sigma
    assert command.DEFAULT_BRIGHTNESS == defaults.brightness
    assert command.DEFAULT_CONTRAST == defaults.contrast
    assert command.DEFAULT_SATURATION == defaults.saturation
    assert command.DEFAULT_HUE == defaults.hue


def test_cli_rotate_sets_the_variant_and_its_range(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    train = dataset / "train" / "without_mask"
    out = tmp_path / "rot"
    result = runner.invoke(cli, ["augment", str(train), str(out), "--rotate", "7", "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["params"]["settings"]["rotate"] == 7.0
    angles = [r.params["rotate"]["angle"] for r in read_manifest(out) if r.variant == "rotate"]
    assert angles and all(abs(a) <= 7 for a in angles)
    plain = tmp_path / "flip"
    result = runner.invoke(cli, ["augment", str(train), str(plain), "--flip", "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    params = json.loads((plain / "run.json").read_text())["params"]
    assert params["variants"] == ["flip"] and params["settings"]["rotate"] == AugmentSettings().rotate


def test_variant_name_clashing_with_an_input_is_refused(dataset: Path, tmp_path: Path) -> None:
    tree = tmp_path / "in" / "cls"
    tree.mkdir(parents=True)
    src = next(p for p in list_images(dataset / "train") if p.suffix == ".jpg")
    shutil.copyfile(src, tree / "a.jpg")
    shutil.copyfile(src, tree / "a__flip.jpg")
    with pytest.raises(ValueError, match="would overwrite the input"):
        augment_tree(tmp_path / "in", tmp_path / "out", flip=True, progress=False)


def test_albumentations_pipeline_as_a_named_variant(dataset: Path, tmp_path: Path) -> None:
    import albumentations as A
    spec = custom_variant(A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=1.0))
    src = dataset / "train" / "without_mask"
    outs = []
    for name in ("a", "b"):
        augment_tree(src, tmp_path / name, custom={"bc": spec}, seed=4, workers=1, progress=False)
        outs.append(tmp_path / name)
    recs = [r for r in read_manifest(outs[0]) if r.variant == "bc"]
    assert len(recs) == 6
    applied = recs[0].params["RandomBrightnessContrast"]
    assert -0.3 <= applied["alpha"] - 1 <= 0.3
    for rec in recs:
        assert _sha(outs[0] / rec.output) == _sha(outs[1] / rec.output)
        json.dumps(rec.params)


def test_wide_blur_on_a_shrunk_copy_matches_the_direct_gaussian(masks_data: Path) -> None:
    from maskprep.augment import gaussian_blur
    image = read_image(masks_data / "chandrikadeb7" / "with_mask" / "with_mask161.png")   # 499x321
    for sigma in (2.2, 4.5, 9.0, 15.0):
        k = 2 * math.ceil(3 * sigma) + 1
        direct = cv2.GaussianBlur(image, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
        diff = np.abs(gaussian_blur(image, k, sigma).astype(int) - direct)
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 1 and diff.max() <= 4, sigma


def test_an_input_folder_named_like_a_split_is_that_split(dataset: Path, tmp_path: Path) -> None:
    test_only = augment_tree(dataset / "test", tmp_path / "t", flip=True, workers=1, progress=False)
    assert test_only.splits == {"test": 3} and test_only.augmented_splits == []
    assert not list((tmp_path / "t").rglob("*__flip.*"))
    train_only = augment_tree(dataset / "train" / "without_mask", tmp_path / "w", flip=True, workers=1,
                              progress=False)
    assert train_only.splits == {"": 6} and "no split folders" in "\n".join(train_only.lines())


def test_a_manifest_record_reproduces_its_file(dataset: Path, run) -> None:
    from maskprep.augment import apply_steps
    _, _, out = run
    records = [r for r in read_manifest(out) if r.variant and r.output and r.output.endswith(".png")]
    assert len(records) >= 20
    for rec in records:
        again = apply_steps(read_image(dataset / rec.source), rec.params.items())
        assert np.array_equal(read_image(out / rec.output), again), rec.output
