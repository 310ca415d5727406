"""build-templates on real masked photos: what it cuts is the mask (not skin, not background), it lands
in the drawn templates' space, bare faces and scenes give nothing, a flat product shot gives a
template, every skip has a reason, and synth-masks --templates renders the bank and says which
template each output used."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import require_shared
from maskprep.cli import cli
from maskprep.images import list_images, read_image
from maskprep.manifest import read_manifest
from maskprep.masks import bank
from maskprep.masks.fit import extend_grid
from maskprep.masks.synth import find_faces
from maskprep.masks.templates import load_template

N_MASKED = 8   # the first photos of chandrikadeb7/with_mask (sorted): enough to show a yield
BARE_FACES = ["barack_obama/obama.jpg", "joe_biden/biden.jpg", "kit_harington/john1.jpeg",
              "tom_cruise/Tom_Cruise_avp_2014_4.jpg"]


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory) -> Path:
    src = require_shared("masks", "chandrikadeb7", "with_mask")
    folder = tmp_path_factory.mktemp("real_masked")
    for path in list_images(src)[:N_MASKED]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def built(masked_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bank") / "bank"
    result = CliRunner().invoke(cli, ["build-templates", str(masked_dir), str(out), "--assume-crop",
                                      "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    return out


def _templates(bank_dir: Path) -> list[tuple[dict, object]]:
    return [(json.loads(Path(p).read_text()), load_template(p)) for p in bank.bank_templates(bank_dir)]


def test_bank_from_real_masked_photos_has_templates_with_provenance(built: Path, masked_dir: Path):
    records = read_manifest(built / "manifest.jsonl")
    sources = {r.source for r in records}
    assert sources == {p.name for p in list_images(masked_dir)}   # every input is accounted for
    for r in records:
        assert r.status == "ok" or r.reason, r   # a skip always says why
    templates = _templates(built)
    assert len(templates) >= N_MASKED // 2
    surgical = load_template("surgical")
    for meta, t in templates:
        assert t.kind == "bank"
        assert (masked_dir / meta["source"]).is_file()
        assert meta["source_kind"] == "masked face"
        # the drawn templates' space: same canvas, same named anchors, so the warp applies as is
        assert t.rgba.shape == surgical.rgba.shape
        np.testing.assert_array_equal(t.grid, surgical.grid)
        assert meta["grid_order"] == json.loads(
            (bank.base_json_path()).read_text())["grid_order"]
    assert not any(p.name.endswith(".json") for p in masked_dir.iterdir())   # IN untouched


def test_template_is_the_mask_in_template_space(built: Path, masked_dir: Path):
    """Opaque over the mouth and chin of the grid, clear above the captured region, and its
    pixels have the mask's colour, not the skin's of the face it came from."""
    landmarks = {r.output: np.asarray(r.info["landmarks"]) for r in read_manifest(built / "manifest.jsonl")
                 if r.status == "ok" and r.output.endswith(".json")}
    for path, (meta, t) in zip(bank.bank_templates(built), _templates(built)):
        alpha = t.rgba[..., 3].astype(np.float32) / 255.0
        g = t.grid
        mouth = g[3, 3:6].mean(axis=0)     # inner row below the nose, middle columns
        assert alpha[int(mouth[1]), int(mouth[0])] > 0.9, meta["name"]
        top = extend_grid(g)[0]
        above = int(np.floor(top[:, 1].min())) - 2
        assert alpha[:max(above, 0)].max() == 0.0, meta["name"]
        # The source's skin: between the brows and the eyes. Few of the cut's pixels look like it.
        lm = landmarks[Path(path).relative_to(built.resolve()).as_posix()]
        image = read_image(masked_dir / meta["source"])
        x0, x1 = int(lm[17:27, 0].min()), int(lm[17:27, 0].max())
        y0, y1 = int(lm[17:27, 1].max()), int(lm[36:48, 1].min())
        band = image[y0:max(y1, y0 + 2), x0:x1].reshape(-1, 3)
        skin = _lab(band).mean(axis=0) if len(band) else None
        solid = t.rgba[..., 3] > 200
        if skin is not None:
            near_skin = np.linalg.norm(_lab(t.rgba[..., :3][solid]) - skin, axis=-1) < 8
            assert near_skin.mean() < 0.25, meta["name"]


def _lab(rgb: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(rgb.reshape(-1, 1, 3).astype(np.uint8))
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    return lab * np.array([100 / 255, 1, 1], np.float32)


def test_bare_faces_give_no_template(identities: Path):
    """A bank must never learn bare skin as a mask."""
    tried = 0
    for rel in BARE_FACES:
        image = read_image(identities / rel)
        for face in find_faces(image):
            tried += 1
            with pytest.raises(bank.Reject):
                bank.from_face(image, face.landmarks)
    assert tried >= len(BARE_FACES)


def test_flat_mask_photo_gives_a_template(built: Path, identities: Path):
    """A product shot (a real cut-out mask on a plain background, with thin ear loops) gives a
    template whose body fills the grid; the loops are not part of it. A scene is refused."""
    _, source = _templates(built)[0]
    body = source.rgba[40:200, 20:300]
    canvas = np.full((300, 420, 3), 244, np.uint8)
    ys, xs = np.nonzero(body[..., 3] > 128)
    crop = body[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape[:2]
    y0, x0 = 80, 90
    a = crop[..., 3:4].astype(np.float32) / 255.0
    region = canvas[y0:y0 + h, x0:x0 + w].astype(np.float32)
    canvas[y0:y0 + h, x0:x0 + w] = np.rint(a * crop[..., :3] + (1 - a) * region).astype(np.uint8)
    for side in (x0 + 2, x0 + w - 3):   # ear loops: thin arcs out to the sides
        cv2.ellipse(canvas, (side, y0 + h // 2), (60, h // 3), 0, 90, 270 if side < 200 else -90,
                    (250, 250, 250) if crop[..., :3].mean() < 128 else (40, 40, 40), 2)
    cut = bank.from_flat(canvas)
    alpha = cut.rgba[..., 3] > 128
    g = load_template("surgical").grid
    inside = alpha[int(g[1, 1, 1]):int(g[-2, 1, 1]), int(g[1, 1, 0]):int(g[1, -2, 0])]
    assert inside.mean() > 0.8
    outside = np.ones_like(alpha)
    x_lo, x_hi = int(g[:, 0, 0].min()) - 6, int(g[:, -1, 0].max()) + 6
    outside[:, x_lo:x_hi] = False
    assert alpha[outside].mean() < 0.02     # no loops left beside the body
    with pytest.raises(bank.Reject, match="not plain"):
        bank.from_flat(read_image(identities / "barack_obama" / "obama.jpg"))


def test_synth_masks_with_templates_records_the_template(built: Path, identities: Path, tmp_path: Path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for rel in ("barack_obama/obama.jpg", "joe_biden/biden.jpg"):
        shutil.copy(identities / rel, faces / Path(rel).name)
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        result = CliRunner().invoke(cli, ["synth-masks", str(faces), str(out), "--templates", str(built),
                                          "--types", "bank,surgical", "-j", workers, "-q"])
        assert result.exit_code == 0, result.output
        outs.append(out)
    records = [r for r in read_manifest(outs[0] / "manifest.jsonl") if r.status == "ok"]
    kinds = sorted(r.params["type"] for r in records)
    assert kinds == ["bank", "bank", "surgical", "surgical"]
    for r in records:
        if r.params["type"] == "bank":
            assert (built / r.params["template"]).is_file()
            assert r.params["color"] == ["natural"]
            assert isinstance(r.params["mirrored"], bool)
            masked = read_image(outs[0] / r.output)
            original = read_image(faces / r.source)
            lm = np.asarray(r.info["faces"][0]["landmarks"])
            x, y = np.round(lm[57]).astype(int)   # below the lower lip: covered by the mask
            assert np.abs(masked[y - 2:y + 3, x - 2:x + 3].astype(int)
                          - original[y - 2:y + 3, x - 2:x + 3].astype(int)).mean() > 8
        # the same seed gives the same bytes whatever --workers
        assert (outs[0] / r.output).read_bytes() == (outs[1] / r.output).read_bytes()


def test_a_mirrored_template_is_the_mirror_image_with_the_same_anchor_order(built: Path):
    _, t = _templates(built)[0]
    m = bank.mirrored(t)
    np.testing.assert_array_equal(m.rgba, t.rgba[:, ::-1])
    assert (m.grid[:, 0, 0] < m.grid[:, -1, 0]).all()       # column 0 is still the left side
    x, y = np.round(t.grid[3, 2]).astype(int)                # an inner anchor keeps its pixel
    mx, my = np.round(m.grid[3, -3]).astype(int)
    np.testing.assert_array_equal(m.rgba[my, mx], t.rgba[y, x])
    back = bank.mirrored(m)
    np.testing.assert_array_equal(back.rgba, t.rgba)
    np.testing.assert_allclose(back.grid, t.grid)


def test_specks_inside_a_cut_are_filled_but_what_shows_through_stays_clear():
    cut = np.zeros((100, 100), np.uint8)
    cut[10:90, 10:90] = 1
    cut[20:23, 20:23] = 0        # a speck of print or shadow: mask
    cut[40:75, 40:75] = 0        # a cheek seen through a loop: not mask
    filled = bank._fill_small_holes(cut, bank.MAX_HOLE * cut.sum())
    assert filled[21, 21] and not filled[50:70, 50:70].any() and not filled[:10].any()


def test_bank_options_fail_clearly(built: Path, identities: Path, tmp_path: Path):
    faces = identities / "joe_biden"
    result = CliRunner().invoke(cli, ["synth-masks", str(faces), str(tmp_path / "a"), "--types", "bank"])
    assert result.exit_code == 2 and "--templates" in result.output
    result = CliRunner().invoke(cli, ["synth-masks", str(faces), str(tmp_path / "b"),
                                      "--templates", str(identities)])
    assert result.exit_code == 2 and "not a template bank" in result.output
    result = CliRunner().invoke(cli, ["build-templates", str(built), str(built / "inner")])
    assert result.exit_code == 2 and "inside the input" in result.output
