"""Review fixes in maskprep.masks (fit, templates, preview), each checked on real photos or the
bundled templates: printed patterns, degenerate landmarks, the preview sheet's edge cases."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskprep.images import read_image
from maskprep.masks.preview import TILE, preview_sheet
from maskprep.masks.synth import synth_masks
from maskprep.masks.templates import _pattern


def _inner_components(mask: np.ndarray) -> list[int]:
    """Pixel areas of the connected blobs of ``mask`` that do not touch the image border."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    return [int(stats[i, cv2.CC_STAT_AREA]) for i in range(1, n)
            if stats[i, 0] > 0 and stats[i, 1] > 0 and stats[i, 0] + stats[i, 2] < w
            and stats[i, 1] + stats[i, 3] < h]


@pytest.mark.parametrize("seed", range(6))
def test_dots_are_whole_discs_whatever_the_phase(seed):
    """The staggered dot columns follow the random phase: no dot is cut into two shifted halves."""
    color = np.array([40.0, 40.0, 40.0], np.float32)
    flat = _pattern("dots", (240, 320), color, 1.0, np.random.default_rng(seed))
    areas = _inner_components(flat[..., 0] > 128)
    assert len(areas) > 50
    assert max(areas) <= 1.25 * min(areas), sorted(set(areas))


@pytest.fixture(scope="module")
def masked_tree(identities: Path, tmp_path_factory) -> tuple[Path, Path]:
    """Two real photos (one with a non-ASCII name) masked twice each: (input folder, output folder)."""
    root = tmp_path_factory.mktemp("preview")
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copyfile(identities / "barack_obama" / "obama_small.jpg", src / "sub" / "Obamá 日本.jpg")
    shutil.copyfile(identities / "joe_biden" / "biden.jpg", src / "biden.jpg")
    summary = synth_masks(src, root / "out", types="surgical,kf94", workers=1, progress=False)
    assert summary.outputs == 4
    return src, root / "out"


def _sheet_rows(path: Path) -> int:
    return read_image(path).shape[0] // (TILE + 4)


def test_preview_counts_the_photos_it_shows_when_an_original_is_gone(masked_tree, tmp_path):
    """A source moved away after the run: its masked versions are still shown, and the count the
    command prints is the number of rows on the sheet."""
    src, out = masked_tree
    moved = tmp_path / "in"
    shutil.copytree(src, moved)
    (moved / "biden.jpg").unlink()
    count = preview_sheet(moved, out, tmp_path / "sheet.png")
    assert count == _sheet_rows(tmp_path / "sheet.png") == 2
    sheet = read_image(tmp_path / "sheet.png")
    assert sheet.shape[1] == 3 * (TILE + 4)
    assert preview_sheet(moved, out, tmp_path / "one.png", limit=1) == _sheet_rows(tmp_path / "one.png") == 1


def test_preview_leaves_out_a_photo_none_of_whose_files_can_be_read(masked_tree, tmp_path):
    src, out = masked_tree
    empty = tmp_path / "nothing"
    empty.mkdir()
    count = preview_sheet(empty, tmp_path / "no-such-output", tmp_path / "blank.png")
    assert count == 0 and read_image(tmp_path / "blank.png").shape[:2] == (TILE, TILE)
    # outputs and originals all gone: nothing to show, and the count says so
    assert preview_sheet(empty, out, tmp_path / "gone.png", per_row=0) == 0


@pytest.fixture(scope="module")
def obama_landmarks(identities: Path) -> np.ndarray:
    from maskprep.masks.synth import find_faces

    faces = find_faces(read_image(identities / "barack_obama" / "obama_small.jpg"))
    assert faces
    return faces[0].landmarks


@pytest.mark.parametrize("bad", ["nan", "inf", "five points"])
def test_fit_grid_refuses_landmarks_that_are_not_68_finite_points(obama_landmarks, bad):
    """A NaN landmark gave a NaN grid, which the warp then failed on with 'cannot convert float
    NaN to integer'; a short landmark array failed with an IndexError."""
    from maskprep.masks.fit import fit_grid

    lm = obama_landmarks.astype(np.float64).copy()
    if bad == "nan":
        lm[40] = np.nan
    elif bad == "inf":
        lm[8, 1] = np.inf
    else:
        lm = lm[[36, 45, 30, 48, 54]]
    assert np.isfinite(fit_grid(obama_landmarks, 5, 9)).all()
    with pytest.raises(ValueError, match="68 finite"):
        fit_grid(lm, 5, 9)


@pytest.mark.parametrize("no_pattern", ["", None])
def test_an_empty_pattern_means_none_with_a_colour_too(no_pattern):
    """"" and None meant 'no pattern' for the natural colour but raised 'unknown pattern' with one."""
    from maskprep.masks.templates import colored_rgba, load_template, parse_color

    t = load_template("kf94")
    assert colored_rgba(t, None, no_pattern) is t.rgba
    navy = parse_color("Navy")
    assert np.array_equal(colored_rgba(t, navy, no_pattern), colored_rgba(t, navy, "none"))


@pytest.mark.parametrize("pattern", ["stripes", "dots", "check"])
def test_a_pattern_shows_on_every_mask_in_its_natural_colour(pattern):
    """--pattern with the natural colour prints over the mask's base colour (see mask_faces): on
    the white KF94 and off-white N95 an off-white second colour was invisible, yet recorded."""
    from maskprep.masks.render import luminance
    from maskprep.masks.templates import MASK_TYPES, colored_rgba, load_template

    for name in MASK_TYPES:
        t = load_template(name)
        inside = t.rgba[..., 3] == 255
        plain = luminance(colored_rgba(t, t.base_color, "none")[..., :3])
        printed = luminance(colored_rgba(t, t.base_color, pattern, np.random.default_rng(0))[..., :3])
        changed = (np.abs(printed - plain) > 25)[inside].mean()
        assert changed > 0.1, (name, round(float(changed), 3))


# ------------------------------------------------------------------------------------------------
# The render layers, each on its own (surface, light, geometry): pure functions, real photos

def _flat_uv(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return (u / (w - 1)) * 2 - 1, v / (h - 1)


@pytest.mark.parametrize("seed", range(3))
def test_surgical_pleats_are_shaded_folds_not_lines(seed):
    """Under light from above, each pleat is a lit band above a dark crease (the old template had
    thin dark lines only): along the mask's middle column the light rises above the flat level
    and falls below it once per pleat."""
    from maskprep.masks.light import Light, shade
    from maskprep.masks.surface import draw_surface, height_field, normals

    u, v = _flat_uv()
    d = draw_surface("surgical", "correct", np.random.default_rng(seed))
    d.update(dome=0.0, wrap=0.0, chin_wrap=0.0, wrinkle=0.0,   # the pleats alone
             tent=0.0, nose_crease=0.0, creases=[])
    lit = shade(normals(height_field("surgical", u, v, 320.0, d)),
                Light((0.0, -0.6, 0.8), 0.7, (1.0, 1.0, 1.0), 230.0, 180.0))
    # below the nose-wire crease in the top tape, above the bottom tape (its edge turns away: dark)
    column = lit[int(0.12 * 240):int(0.93 * 240), 160]
    dark = column < 0.93
    bright = column > 1.02
    # count dark runs (creases) that follow a bright run (the lit slope above)
    creases = 0
    for i in range(1, len(column)):
        if dark[i] and not dark[i - 1] and bright[max(0, i - 40):i].any():
            creases += 1
    assert creases == len(d["pleats"]), (creases, d["pleats"])


def test_light_direction_follows_the_photo(identities):
    """A face lit from the image's right gives a light vector pointing right, and its mirror image
    one pointing left; a dark copy of the photo lowers the white level with it."""
    from maskprep.masks.light import estimate_light
    from maskprep.masks.synth import find_faces

    image = read_image(identities / "barack_obama" / "obama.jpg")
    lm = find_faces(image)[0].landmarks
    x0, x1 = lm[:, 0].min(), lm[:, 0].max()
    ramp = np.clip(0.35 + 0.65 * (np.arange(image.shape[1]) - x0) / (x1 - x0), 0.35, 1.0)
    right_lit = np.clip(image * ramp[None, :, None], 0, 255).astype(np.uint8)
    right = estimate_light(right_lit, lm)
    mirrored = estimate_light(right_lit[:, ::-1].copy(),
                              np.stack([image.shape[1] - 1 - lm[:, 0], lm[:, 1]], axis=1))
    assert right.direction[0] > 0.1 and mirrored.direction[0] < -0.1
    plain = estimate_light(image, lm)
    dark = estimate_light((image * 0.4).astype(np.uint8), lm)
    assert dark.white < 0.6 * plain.white
    assert plain.white > plain.face     # a white mask outshines the skin


def test_loops_hide_on_the_far_side_and_masks_stay_inside_a_turned_face(obama_landmarks, identities):
    """obama2 turns his head: the far side's loop is behind the cheek (not a stub in the air), and
    the mask's far side stays inside the face outline (jaw landmarks)."""
    from maskprep.masks.fit import fit_grid, loop_paths, yaw_proxy
    from maskprep.masks.synth import find_faces

    lm = find_faces(read_image(identities / "barack_obama" / "obama2.jpg"))[0].landmarks
    yaw = yaw_proxy(lm)
    assert abs(yaw) > 0.1
    grid = fit_grid(lm, 5, 9, "correct", {"width": 1.0})
    paths = loop_paths(grid, lm)
    far_x = lm[16, 0] if yaw > 0 else lm[0, 0]
    assert len(paths) == 2
    for p in paths:   # both on the near side
        assert abs(p[-1, 0] - far_x) > abs(p[-1, 0] - (lm[0, 0] if yaw > 0 else lm[16, 0]))
    outline = cv2.convexHull(np.concatenate([lm[0:17], lm[17:27]]).astype(np.float32))
    far_col = grid[:, -1] if yaw > 0 else grid[:, 0]
    inside = [cv2.pointPolygonTest(outline, (float(x), float(y)), True) for x, y in far_col]
    assert min(inside) > 0, inside
    # a frontal face keeps both loops
    assert len(loop_paths(fit_grid(obama_landmarks, 5, 9), obama_landmarks)) == 4


def test_a_pulled_down_mask_is_not_a_bib(obama_landmarks):
    """chin mode hung the mask far down the neck (a V-shaped bib): now its bottom edge sits no lower
    than the correctly worn mask's, just under the chin, and its corners stay up on the jaw."""
    from maskprep.masks.fit import face_frame, fit_grid

    lm = obama_landmarks
    frame = face_frame(lm)
    correct = fit_grid(lm, 5, 9, "correct")
    chin = fit_grid(lm, 5, 9, "chin")
    depth = lambda p: float((lm[27] - p) @ frame.up)  # noqa: E731 - distance below the nose bridge
    assert max(depth(p) for p in chin[-1]) <= max(depth(p) for p in correct[-1]) + 0.01 * frame.height
    assert max(depth(p) for p in chin[-1]) < depth(lm[8]) + 0.08 * frame.height
    # the corners (the loops pull them towards the ears) stay above the lower lip
    assert depth(chin[0, 0]) < depth(lm[57]) and depth(chin[0, -1]) < depth(lm[57])


def test_a_template_cut_from_a_photo_gets_light_and_camera_but_no_synthetic_surface(identities):
    """A bank template (kind "bank") already carries a real mask's folds, texture and loops: the
    renderer gives it the photo's light, contact shadow and camera, and draws no surface, material
    or loops of its own; a dark photo still darkens it."""
    import dataclasses

    from maskprep.masks.synth import find_faces, render_mask
    from maskprep.masks.templates import load_template

    image = read_image(identities / "barack_obama" / "obama.jpg")
    lm = find_faces(image)[0].landmarks
    bank = dataclasses.replace(load_template("kf94"), kind="bank")
    layer, _ = render_mask(image, lm, bank, rng=np.random.default_rng(3), draws={"loops": True})
    assert "surface" not in layer.params and layer.params["loops"] == "hidden"
    assert {"light", "camera", "fit"} <= set(layer.params)
    assert (layer.shadow < 1).any()
    assert np.array_equal(layer.alpha, layer.coverage)     # no loops drawn
    dark, _ = render_mask((image * 0.4).astype(np.uint8), lm, bank, rng=np.random.default_rng(3))
    lum = lambda lay: float(np.median((lay.rgb @ [0.299, 0.587, 0.114])[lay.coverage > 0.9]))  # noqa: E731
    assert lum(dark) < 0.7 * lum(layer)


def test_fitted_top_edge_sits_where_real_masks_sit(obama_landmarks):
    """`correct` wear: over many per-output fit draws the top edge crosses the midline where real
    masks worn over the nose do (benchmarks/mask_placement.py on chandrikadeb7/with_mask: 0.15 /
    0.24 / 0.45 eye distances below landmark 27 at p10 / median / p90), including the slipped tail,
    and never below the nose tip (landmark 30) or up between the eyes."""
    from maskprep.masks.fit import draw_fit, fit_grid
    from maskprep.masks.templates import load_template

    lm = np.asarray(obama_landmarks, np.float64)
    eyes = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)
    iod = float(np.hypot(*eyes))
    down = np.array([-eyes[1], eyes[0]]) / iod
    rng = np.random.default_rng(0)
    tops = []
    for kind in ("surgical", "kf94", "cloth", "n95"):
        t = load_template(kind)
        for _ in range(100):
            grid = fit_grid(lm, t.rows, t.cols, "correct", draw_fit(t.fit, rng), rng)
            tops.append(float((grid[0, t.cols // 2] - lm[27]) @ down) / iod)
    p10, p50, p90 = np.percentile(tops, [10, 50, 90])
    nose_tip = float((lm[30] - lm[27]) @ down) / iod
    assert 0.08 < p10 < 0.25 and 0.17 < p50 < 0.33 and 0.32 < p90 < 0.55, (p10, p50, p90)
    assert p90 - p50 > 1.3 * (p50 - p10)        # the slipped tail: longer below than above
    assert max(tops) < nose_tip and min(tops) > 0.0


@pytest.mark.parametrize("kind", ["surgical", "kf94", "cloth"])
def test_a_pulled_down_mask_has_a_rolled_bunched_top_edge(kind):
    """`nose-out` / `chin`: the top edge rolls over (a ridge along it above a dark fold) and bunches
    into folds across it: more uneven along the edge than the same mask worn right."""
    from maskprep.masks.surface import draw_surface, height_field

    u, v = _flat_uv()
    for seed in range(3):
        rough = {}
        for wear in ("correct", "chin"):
            d = draw_surface(kind, wear, np.random.default_rng(seed))
            h = height_field(kind, u, v, 320.0, d)
            band = h[int(0.02 * 240):int(0.2 * 240), 40:280]
            # unevenness along the edge: what is left after smoothing along it (rows: pleats and
            # the tape run along the edge and do not count), at the scale of a fold
            smooth = cv2.GaussianBlur(band, (49, 1), 8)
            rough[wear] = float(np.abs(band - smooth).mean())
            if wear == "chin":
                ridge = h[int(0.04 * 239), 60:260].mean() - h[int(0.11 * 239), 60:260].mean()
                assert ridge > 0.5, ridge     # px: the roll stands above the fold under it
        assert rough["chin"] > 1.25 * rough["correct"], rough
