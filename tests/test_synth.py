"""synth-masks on real photos: where the mask sits for each wear mode, clean blending, shading from
the face, determinism across worker counts, skips with reasons, the command and its outputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskprep.cli import cli
from maskprep.images import read_image
from maskprep.manifest import read_manifest
from maskprep.masks.fit import WEAR_MODES, check_face, face_frame, fit_grid, loop_paths, yaw_proxy
from maskprep.masks.render import composite, composite_layer
from maskprep.masks.synth import find_faces, mask_faces, render_mask, synth_masks
from maskprep.masks.templates import MASK_TYPES, colored_rgba, load_template, parse_color
from maskprep.resources import templates_dir

EYES = range(36, 48)
GEOMETRY_PHOTOS = [
    "barack_obama/obama2.jpg",          # head turned about 13 degrees
    "barack_obama/obama.jpg",
    "joe_biden/biden.jpg",
    "kit_harington/john1.jpeg",
    "rose_leslie/img2.jpg",
    "tom_cruise/Tom_Cruise_avp_2014_4.jpg",   # broad smile: mouth corners high
    "multi/two_people.jpg",
    "multi/obama_and_biden.jpg",
    "multi/kit_with_rose.jpg",
    "multi/bald_guys.jpg",
]


@pytest.fixture(scope="module")
def faces_by_photo(identities: Path) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Each geometry photo with the landmarks of its faces (detected once for the module)."""
    found = {}
    for rel in GEOMETRY_PHOTOS:
        image = read_image(identities / rel)
        found[rel] = (image, [f.landmarks for f in find_faces(image)])
    return found


def _alpha_at(alpha: np.ndarray, lm: np.ndarray, index: int) -> float:
    x, y = np.round(lm[index]).astype(int)
    return float(alpha[y, x])


def test_every_face_of_the_multi_face_photos_is_found(faces_by_photo):
    counts = {rel: len(f) for rel, (_, f) in faces_by_photo.items() if rel.startswith("multi/")}
    assert counts["multi/two_people.jpg"] >= 2
    assert counts["multi/obama_and_biden.jpg"] >= 2   # and a turned face in the background
    assert counts["multi/kit_with_rose.jpg"] >= 2
    assert counts["multi/bald_guys.jpg"] >= 10


@pytest.mark.parametrize("wear", WEAR_MODES)
def test_wear_modes_cover_the_right_landmarks(faces_by_photo, wear):
    """From the rendered alpha: correct covers nose tip, mouth corners and chin and not the eyes;
    nose-out leaves the nose tip and covers the mouth; chin leaves the mouth and covers the chin.
    Every mask type, every face of every photo (default jitter, several seeds)."""
    problems = []
    checked = 0
    for rel, (image, faces) in faces_by_photo.items():
        for i, lm in enumerate(faces):
            if check_face(lm) is not None:
                continue
            for k, mask_type in enumerate(MASK_TYPES):
                layer, _ = render_mask(image, lm, mask_type, wear, rng=np.random.default_rng(i * 7 + k))
                alpha = layer.full_alpha(image.shape)
                a = {j: _alpha_at(alpha, lm, j) for j in (33, 48, 54, 8, 51, 57)}
                eyes = max(_alpha_at(alpha, lm, j) for j in EYES)
                if wear == "correct":
                    ok = min(a[33], a[48], a[54], a[8]) >= 0.5 and eyes < 0.5
                elif wear == "nose-out":
                    ok = a[33] < 0.5 and min(a[48], a[54], a[51], a[57]) >= 0.5 and eyes < 0.5
                else:
                    ok = max(a[48], a[54], a[57]) < 0.5 and a[8] >= 0.5 and eyes < 0.5
                checked += 1
                if not ok:
                    problems.append((rel, i, mask_type, {j: round(v, 2) for j, v in a.items()},
                                     round(eyes, 2)))
    assert checked >= 4 * 20
    assert not problems, problems


def _skin_luminance(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Luminance of the uncovered skin: forehead and upper cheeks (between brows, eyes and nose)."""
    region = np.zeros(image.shape[:2], np.uint8)
    cheeks = np.concatenate([lm[[0, 1, 2]], lm[[31, 33, 35]], lm[[14, 15, 16]], lm[26:16:-1]])
    cv2.fillPoly(region, [np.round(cv2.convexHull(cheeks.astype(np.float32))).astype(np.int32)], 1)
    for part in (lm[36:42], lm[42:48], lm[17:22], lm[22:27]):
        cv2.fillPoly(region, [np.round(cv2.convexHull(part.astype(np.float32))).astype(np.int32)], 0)
    return (image[region > 0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def test_blend_stays_between_mask_and_face_outside_the_shadow_band(faces_by_photo):
    """No halo: outside the contact-shadow band every output pixel lies between the mask pixel and
    the face pixel (loops included); in the band the skin only gets darker; the band hugs the top
    edge (a few px wide); pixels outside the layer are untouched; the soft edge keeps the mask's
    own colour (no light fringe)."""
    image, faces = faces_by_photo["barack_obama/obama2.jpg"]
    lm = faces[0]
    face_w = float(np.hypot(*(lm[16] - lm[0])))
    for mask_type in MASK_TYPES:
        layer, _ = render_mask(image, lm, mask_type, "correct", rng=np.random.default_rng(1),
                               draws={"loops": True})
        out = composite_layer(image, layer)
        h, w = layer.alpha.shape
        face = image[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w].astype(np.int16)
        got = out[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w].astype(np.int16)
        lo = np.minimum(np.floor(layer.rgb), face)
        hi = np.maximum(np.ceil(layer.rgb), face)
        band = layer.shadow < 0.999
        between = (got >= lo) & (got <= hi)
        assert between[~band].all(), mask_type
        assert band.sum() > 50, mask_type                        # there is a shadow ...
        bare = band & (layer.alpha < 1e-3)
        assert np.all(got[bare] <= face[bare]), mask_type        # ... and it only darkens skin
        assert np.all(got[band] <= hi[band]), mask_type
        assert (got[bare] < face[bare]).any(), mask_type
        # ... in a band a few pixels wide along the mask
        body = (layer.coverage > 0.5).astype(np.uint8)
        dist = cv2.distanceTransform(1 - body, cv2.DIST_L2, 3)
        assert dist[band].max() < 0.08 * face_w, (mask_type, float(dist[band].max()))
        untouched = np.ones(image.shape[:2], bool)
        untouched[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w] = (layer.alpha == 0) & ~band
        assert np.array_equal(out[untouched], image[untouched])
        # the colour under the body's soft edge is the mask's own, not black or white pulled in
        lum = layer.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        cover = layer.coverage
        edge = (cover > 0.02) & (cover < 0.5) & (layer.alpha - cover < 0.01)
        inner = cover > 0.98
        assert edge.sum() > 100
        assert abs(np.median(lum[edge]) - np.median(lum[inner])) < 0.25 * np.median(lum[inner]) + 10


@pytest.mark.parametrize("rel", ["barack_obama/obama.jpg", "joe_biden/biden.jpg", "kit_harington/john1.jpeg"])
def test_a_white_mask_is_brighter_than_the_skin(faces_by_photo, rel):
    """White masks came out mid-grey (mean 145-150) next to a near-white shirt: now a white mask is
    brighter than the face's own skin, lit head-on or not, whatever the skin tone."""
    image, faces = faces_by_photo[rel]
    lm = faces[0]
    skin = np.percentile(_skin_luminance(image, lm), 75)
    for mask_type, color in (("kf94", None), ("surgical", parse_color("white")), ("n95", None)):
        layer, _ = render_mask(image, lm, mask_type, "correct", color, rng=np.random.default_rng(5))
        lum = layer.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        mask = np.median(lum[layer.coverage > 0.95])
        assert mask > skin + 10, (mask_type, float(mask), float(skin))


@pytest.mark.parametrize("mask_type", ["kf94", "n95"])
def test_a_white_mask_keeps_its_shading_not_a_flat_paper_white(faces_by_photo, mask_type):
    """A white KF94 on obama.jpg came out 56 % flat >= 250 in its lower half: a cut-out brighter
    than anything near it. Now its lit part stays near the photo's whites, the lower half (turned
    down from a light above) is greyer, and almost nothing is clipped to paper white."""
    image, faces = faces_by_photo["barack_obama/obama.jpg"]
    lm = faces[0]
    layer, _ = render_mask(image, lm, mask_type, "correct", rng=np.random.default_rng(0))
    rgb = layer.rgb[layer.coverage > 0.95]
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    assert (rgb >= 250).all(axis=1).mean() < 0.02
    assert np.percentile(lum, 90) - np.percentile(lum, 10) > 20       # shading reads on white
    assert np.percentile(lum, 90) > 0.9 * layer.params["light"]["white"]   # ... and it is white


def _head_region(lm: np.ndarray) -> np.ndarray:
    """The head's outline as a frontal photo shows it: the jaw (0-16) widened by 4 % of the face
    width (the ear roots), up to the brows raised by a third of the face height (temples)."""
    frame = face_frame(lm)
    centre = lm[27:31].mean(axis=0)
    jaw = lm[0:17] + (lm[0:17] - centre) * 0.04 * frame.width / np.hypot(*(lm[0:17] - centre).T)[:, None]
    brows = lm[17:27] + frame.up * frame.height / 3
    return cv2.convexHull(np.concatenate([jaw, brows]).astype(np.float32))


@pytest.mark.parametrize("rel", ["barack_obama/obama.jpg", "joe_biden/biden.jpg"])
def test_n95_straps_end_at_the_head_not_in_the_background(faces_by_photo, rel):
    """N95 straps looked like antennae: thick arcs ending in mid-air beside the head (40-52 % of
    their pixels outside the head's outline at the ear roots). Now they run along the head and
    fade where they turn behind it: all but their soft edge lies within that outline."""
    image, faces = faces_by_photo[rel]
    lm = faces[0]
    layer, _ = render_mask(image, lm, "n95", "correct", rng=np.random.default_rng(1),
                           draws={"loops": True})
    assert layer.params["loops"] == "bands"
    strap = (layer.alpha > 0.2) & (layer.coverage < 0.05)
    ys, xs = np.nonzero(strap)
    assert len(xs) > 0.2 * face_frame(lm).width     # the straps are there
    hull = _head_region(lm)
    outside = [cv2.pointPolygonTest(hull, (float(x + layer.x0), float(y + layer.y0)), False) < 0
               for x, y in zip(xs, ys)]
    assert np.mean(outside) < 0.25, np.mean(outside)


@pytest.mark.parametrize("rel", ["joe_biden/biden.jpg", "barack_obama/obama.jpg", "kit_harington/john1.jpeg"])
def test_loops_reach_beyond_the_mask_towards_the_ear(faces_by_photo, rel):
    """Ear loops leave the mask's side and run towards the ear (not stubs floating off the face,
    not missing): on each visible side the loop pixels reach well past the mask body, and end
    nearer the ear (outside jaw landmark 0 / 16) than the mask does."""
    image, faces = faces_by_photo[rel]
    lm = faces[0]
    face_w = float(np.hypot(*(lm[16] - lm[0])))
    layer, _ = render_mask(image, lm, "surgical", "correct", rng=np.random.default_rng(2),
                           draws={"loops": True})
    assert layer.params["loops"] == "loops"
    loop = (layer.alpha > 0.3) & (layer.coverage < 0.05)
    body = (layer.coverage > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(1 - body, cv2.DIST_L2, 3)
    ys, xs = np.nonzero(loop)
    pts = np.stack([xs + layer.x0, ys + layer.y0], axis=1).astype(np.float32)
    bys, bxs = np.nonzero(body)
    bpts = np.stack([bxs + layer.x0, bys + layer.y0], axis=1).astype(np.float32)
    sides = 0
    for ear_i in (0, 16):
        ear = lm[ear_i]
        near = np.hypot(*(pts - ear).T) < 0.2 * face_w
        if not near.any():
            continue    # the far side of a turned head: its loop runs behind the cheek
        sides += 1
        assert np.hypot(*(pts - ear).T).min() < np.hypot(*(bpts - ear).T).min() - 0.03 * face_w
    assert sides >= 1
    assert dist[loop].max() > 0.08 * face_w
    # the loop is thin: a cord, not a band
    assert loop.sum() < 0.05 * body.sum()


@pytest.mark.parametrize("rel", ["barack_obama/obama.jpg", "rose_leslie/img2.jpg"])
def test_both_ear_loops_show_on_a_frontal_face(faces_by_photo, rel):
    """On a frontal face both loops show (only one did): on each side, loop pixels outside the
    mask body run from the mask's corner to near that side's ear (jaw landmark 0 / 16)."""
    image, faces = faces_by_photo[rel]
    lm = faces[0]
    assert abs(yaw_proxy(lm)) < 0.15   # frontal
    face_w = float(np.hypot(*(lm[16] - lm[0])))
    layer, _ = render_mask(image, lm, "kf94", "correct", rng=np.random.default_rng(3),
                           draws={"loops": True})
    loop = (layer.alpha > 0.3) & (layer.coverage < 0.05)
    ys, xs = np.nonzero(loop)
    pts = np.stack([xs + layer.x0, ys + layer.y0], axis=1).astype(np.float32)
    across = (pts - lm[27]) @ face_frame(lm).right
    for ear_i, side in ((0, across < 0), (16, across > 0)):
        assert side.sum() > 0.1 * face_w, (ear_i, int(side.sum()))    # a cord, not a speck
        assert np.hypot(*(pts[side] - lm[ear_i]).T).min() < 0.1 * face_w, ear_i


def test_n95_head_straps_curve_round_the_head(faces_by_photo):
    """N95 straps are not straight lines: each bends away from its chord (it wraps round the head),
    the upper one ends above the lower one, and both leave from the cup's sides."""
    _, faces = faces_by_photo["barack_obama/obama.jpg"]
    lm = faces[0]
    frame = face_frame(lm)
    grid = fit_grid(lm, 5, 9, "correct")
    paths = loop_paths(grid, lm, "bands")
    assert len(paths) == 4     # two straps each side on a frontal face
    for path in paths:
        a, b = path[0], path[-1]
        chord = (b - a) / np.hypot(*(b - a))
        off = np.abs((path - a) @ np.array([-chord[1], chord[0]]))
        assert off.max() > 0.01 * frame.width      # bent, not a straight segment
    for upper, lower in ((paths[0], paths[1]), (paths[2], paths[3])):
        assert upper[-1] @ frame.up > lower[-1] @ frame.up + 0.1 * frame.height


def test_each_render_layer_draws_from_its_own_recorded_stream(faces_by_photo):
    """Same generator, same layer (bytes); every draw is recorded; and the layers are separate:
    forcing the loop draw changes no other layer's draws."""
    image, faces = faces_by_photo["barack_obama/obama.jpg"]
    a, _ = render_mask(image, faces[0], "surgical", "correct", rng=np.random.default_rng(9))
    b, _ = render_mask(image, faces[0], "surgical", "correct", rng=np.random.default_rng(9))
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.alpha, b.alpha) and a.params == b.params
    for key in ("fit", "loops", "surface", "light", "camera"):
        assert key in a.params
    assert a.params["surface"]["pleats"] and a.params["surface"]["material"] == "nonwoven"
    forced = "hidden" if a.params["loops"] != "hidden" else True
    c, _ = render_mask(image, faces[0], "surgical", "correct", rng=np.random.default_rng(9),
                       draws={"loops": forced != "hidden"})
    assert c.params["loops"] != a.params["loops"]
    assert {k: v for k, v in c.params.items() if k != "loops"} == \
        {k: v for k, v in a.params.items() if k != "loops"}
    json.dumps(a.params)   # manifest-ready


def test_composite_is_exact_alpha_blend():
    face = np.array([[[0, 255, 100]]], np.uint8)
    mask = np.array([[[255, 0, 100]]], np.float32)
    assert composite(face, mask, np.array([[0.25]], np.float32)).tolist() == [[[64, 191, 100]]]
    assert composite(face, mask, np.array([[0.0]], np.float32)).tolist() == face.tolist()


def test_shading_follows_the_photo(faces_by_photo):
    """A mask in a dark photo is dark; a face lit from one side gives a mask lit from that side."""
    image, faces = faces_by_photo["barack_obama/obama.jpg"]
    lm = faces[0]

    def mask_lum(img):
        layer, _ = render_mask(img, lm, "kf94", "correct", rng=np.random.default_rng(0), realism=0)
        lum = layer.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        return layer, lum

    bright_layer, bright = mask_lum(image)
    dark_layer, dark = mask_lum((image * 0.35).astype(np.uint8))
    covered = bright_layer.alpha > 0.9
    assert dark[covered].mean() < 0.6 * bright[covered].mean()

    def left_right(layer, lum):
        covered = layer.alpha > 0.9
        mid = layer.alpha.shape[1] // 2
        return lum[:, :mid][covered[:, :mid]].mean() / lum[:, mid:][covered[:, mid:]].mean()

    # light falling off towards the left across the face: 30% at its left edge, 100% at its right
    x0, x1 = lm[:, 0].min(), lm[:, 0].max()
    ramp = np.clip(0.3 + 0.7 * (np.arange(image.shape[1]) - x0) / (x1 - x0), 0.3, 1.0)
    side_lit = np.clip(image * ramp[None, :, None], 0, 255).astype(np.uint8)
    before = left_right(bright_layer, bright)
    after = left_right(*mask_lum(side_lit))
    assert after < 0.8 * before


def test_templates_are_bundled_small_and_redrawn_identically():
    folder = templates_dir()
    total = sum(p.stat().st_size for p in folder.glob("*.png"))
    assert total < 600_000
    import importlib.util
    spec = importlib.util.spec_from_file_location("draw_templates", folder / "draw_templates.py")
    if spec is None or not (folder / "draw_templates.py").is_file():
        pytest.skip("draw_templates.py is not shipped in an installed wheel")
    draw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(draw)
    for name in MASK_TYPES:
        t = load_template(name)
        meta = json.loads((folder / f"{name}.json").read_text())
        for anchor in ("top_center", "chin", "left_corner", "right_corner", "cheek_left", "cheek_right"):
            assert anchor in meta["anchors"]
        rgba, redrawn_meta = draw.draw(name)
        assert np.array_equal(rgba, t.rgba), f"{name}.png is stale: re-run draw_templates.py"
        assert redrawn_meta["anchors"] == meta["anchors"]
        # a natural colour each, not everything blue
        assert tuple(meta["base_color"]) == t.base_color
    colors = {load_template(n).base_color for n in MASK_TYPES}
    assert len(colors) == len(MASK_TYPES)


def test_recolour_keeps_the_shading():
    t = load_template("surgical")
    red = colored_rgba(t, parse_color("red"))
    assert np.array_equal(red[..., 3], t.rgba[..., 3])
    inside = t.rgba[..., 3] == 255
    lum_t = t.rgba[..., :3].astype(float) @ [0.299, 0.587, 0.114]
    lum_r = red[..., :3].astype(float) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(lum_t[inside], lum_r[inside])[0, 1] > 0.95   # the pleats are still there
    assert red[..., 0][inside].mean() > 2 * red[..., 2][inside].mean()
    with pytest.raises(ValueError):
        parse_color("no-such-colour")
    assert parse_color("Gray") == parse_color("grey")   # American spelling accepted


def test_fit_bends_with_a_turned_head(faces_by_photo):
    """The middle column follows the nose of a turned head instead of a straight line."""
    image, faces = faces_by_photo["barack_obama/obama2.jpg"]
    lm = faces[0]
    t = load_template("surgical")
    grid = fit_grid(lm, t.rows, t.cols, "correct", t.fit)
    mid = grid[:, t.cols // 2]
    straight = np.linspace(mid[0], mid[-1], len(mid))
    assert np.abs(mid - straight).max() > 0.02 * np.hypot(*(lm[8] - lm[27]))


def test_small_faces_are_skipped_with_a_reason(faces_by_photo):
    image, faces = faces_by_photo["barack_obama/obama2.jpg"]
    lm = faces[0]
    assert check_face(lm) is None
    assert check_face(lm * 0.05) == "face too small"
    squashed = lm.copy()
    squashed[30] = squashed[14]  # nose tip at the jaw: a profile
    assert check_face(squashed) == "face too turned"


def _small_tree(identities: Path, dest: Path) -> Path:
    files = ["barack_obama/obama2.jpg", "multi/two_people.jpg", "kit_harington/john2.jpeg",
             "alex_lacamoire/alex-lacamoire.png"]
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(identities / rel, target)
    return dest


def test_same_seed_same_bytes_whatever_the_workers(identities, tmp_path):
    src = _small_tree(identities, tmp_path / "in")
    kwargs = dict(types="random", wear="mix", per_image=2, color="random", pattern="random",
                  seed=7, progress=False)
    synth_masks(src, tmp_path / "one", workers=1, **kwargs)
    synth_masks(src, tmp_path / "two", workers=2, **kwargs)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.*")
                 if p.suffix != ".json" and p.name != "manifest.jsonl")
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.*")
                 if p.suffix != ".json" and p.name != "manifest.jsonl")
    assert one == two and len(one) == 2 * 4
    for rel in one:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
    recs = lambda d: sorted(r.to_json() for r in read_manifest(d))  # noqa: E731
    assert recs(tmp_path / "one") == recs(tmp_path / "two")
    # another seed gives other masks
    synth_masks(src, tmp_path / "other", workers=1, **{**kwargs, "seed": 8})
    first = one[0]
    other = tmp_path / "other" / first
    assert not other.exists() or other.read_bytes() != (tmp_path / "one" / first).read_bytes()


def test_command_writes_variants_alpha_manifest_and_preview(identities, shared_data, tmp_path):
    src = _small_tree(identities, tmp_path / "in")
    shutil.copyfile(shared_data / "faces" / "dlib_landmarks" / "dogs.jpg", src / "dogs.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["synth-masks", str(src), str(out), "--types", "surgical,kf94",
                                      "--wear", "nose-out", "--save-alpha", "--preview",
                                      str(tmp_path / "sheet.png"), "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "barack_obama" / "obama2__surgical_nose-out.jpg").is_file()
    assert (out / "barack_obama" / "obama2__kf94_nose-out.jpg").is_file()
    assert (out / "alex_lacamoire" / "alex-lacamoire__kf94_nose-out.png").is_file()
    alpha = read_image(out / ".alpha" / "multi" / "two_people__surgical_nose-out.jpg.png")  # the whole name + .png
    assert alpha.max() == 255 and (alpha > 127).mean() > 0.01
    records = read_manifest(out)
    by_source = {}
    for rec in records:
        by_source.setdefault(rec.source, []).append(rec)
    assert [r.reason for r in by_source["dogs.jpg"]] == ["no face"]
    assert by_source["broken.jpg"][0].status == "failed"
    two = [r for r in by_source["multi/two_people.jpg"] if r.variant == "surgical_nose-out"][0]
    assert two.params["type"] == "surgical" and two.params["wear"] == "nose-out"
    assert two.params["color"] == ["natural"]
    # every random draw of the render layers is in params, per face
    assert len(two.params["render"]) == 2
    assert {"fit", "loops", "surface", "light", "camera"} <= set(two.params["render"][0])
    assert len(two.info["faces"]) == 2
    face = two.info["faces"][0]
    assert len(face["landmarks"]) == 68 and len(face["polygon"]) >= 8 and len(face["box"]) == 4
    sheet = read_image(tmp_path / "sheet.png")
    assert sheet.shape[0] >= 4 * 200 and sheet.shape[1] >= 3 * 200
    assert "preview" in result.output


def test_command_refuses_bad_options_with_exit_2(identities, tmp_path):
    src = _small_tree(identities, tmp_path / "in")
    for args in (["--types", "bandana"], ["--wear", "ear"], ["--color", "octarine"]):
        result = CliRunner().invoke(cli, ["synth-masks", str(src), str(tmp_path / "o"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "choose from" in result.output or "unknown colour" in result.output
    # an unwritable preview name is refused before any photo is processed
    result = CliRunner().invoke(cli, ["synth-masks", str(src), str(tmp_path / "p"), "--preview",
                                      str(tmp_path / "sheet.txt")])
    assert result.exit_code == 2 and "--preview" in result.output
    assert not (tmp_path / "p").exists()


def test_faces_too_small_are_recorded_not_masked(identities, tmp_path):
    src = _small_tree(identities, tmp_path / "in")
    summary = synth_masks(src, tmp_path / "out", min_face=10_000, workers=1, progress=False)
    assert summary.outputs == 0 and summary.skipped == 4
    assert summary.reasons["face too small"] == 4


def test_mask_faces_masks_every_face(faces_by_photo):
    image, faces = faces_by_photo["multi/obama_and_biden.jpg"]
    out, coverage, details = mask_faces(image, faces, "cloth", "correct", color="random",
                                        rng=np.random.default_rng(3))
    assert len(details) == len(faces) >= 2
    for lm in faces[:2]:
        assert _alpha_at(coverage, lm, 62) > 0.9
    assert not np.array_equal(out, image)


def test_tight_crops_the_detector_misses_are_masked_by_default(masks_data, shared_data, tmp_path):
    """Tight face crops (most of chandrikadeb7) defeat HOG; the crop path masks them without a
    flag and records how each face was found, while a dog photo and real masked faces are refused;
    --assume-crop still masks what the default does."""
    from maskprep.faces import detect_faces

    src = tmp_path / "in"
    src.mkdir()
    crop = "0_0_aidai_0029.jpg"
    shutil.copyfile(masks_data / "chandrikadeb7" / "without_mask" / crop, src / crop)
    image = read_image(src / crop)
    assert detect_faces(image) == [], "HOG alone misses this crop"
    shutil.copyfile(shared_data / "faces" / "dlib_landmarks" / "dogs.jpg", src / "dogs.jpg")
    masked = sorted((masks_data / "chandrikadeb7" / "with_mask").glob("*.jpg"))[:12]
    for path in masked:
        shutil.copyfile(path, src / f"masked_{path.name}")

    summary = synth_masks(src, tmp_path / "out", workers=1, progress=False)
    records = {r.source: r for r in read_manifest(tmp_path / "out") if r.status != "ok" or r.output}
    assert records[crop].status == "ok"
    face = records[crop].info["faces"][0]
    assert face["found_by"] in ("quick look", "crop fit", "second opinion")
    lm = np.array(face["landmarks"], np.float32)
    out = read_image(tmp_path / "out" / records[crop].output)
    x, y = np.round(lm[[33, 51, 57]].mean(axis=0)).astype(int)
    assert np.abs(out[y, x].astype(int) - image[y, x].astype(int)).sum() > 30, "the mask covers the mouth"
    assert records["dogs.jpg"].status == "skipped"
    refused = sum(records[f"masked_{p.name}"].status == "skipped" for p in masked)
    assert refused >= 8, "already-masked faces should mostly be refused"
    assert summary.outputs >= 1

    assumed = synth_masks(src, tmp_path / "assumed", workers=1, progress=False, assume_crop=True)
    assert assumed.outputs >= summary.outputs
    records = {r.source: r for r in read_manifest(tmp_path / "assumed")}
    assert records[crop].status == "ok" and records["dogs.jpg"].status == "skipped"


def test_detect_output_reuses_its_landmarks_without_searching_again(identities, tmp_path):
    """synth-masks on `maskprep detect` crops takes each crop's recorded landmarks (no second
    search), and the mask still covers nose and mouth but not the eyes; --landmarks-from
    detector searches; a crop resized since detect is searched rather than trusted."""
    from maskprep.faces import detect_tree

    src = _small_tree(identities, tmp_path / "in")
    detect_tree(src, tmp_path / "faces", workers=1, progress=False)
    detected = {r.output: r for r in read_manifest(tmp_path / "faces") if r.status == "ok"}
    shrunk = sorted(detected)[0]
    crop = read_image(tmp_path / "faces" / shrunk)
    from maskprep.images import write_image
    small = cv2.resize(crop, (crop.shape[1] * 9 // 10, crop.shape[0] * 9 // 10))
    write_image(tmp_path / "faces" / shrunk, small)   # no longer what detect wrote

    synth_masks(tmp_path / "faces", tmp_path / "out", save_alpha=True, workers=1, progress=False)
    records = {r.source: r for r in read_manifest(tmp_path / "out") if r.variant == "surgical_correct"}
    assert set(records) == set(detected)
    for rel, rec in records.items():
        face = rec.info["faces"][0]
        if rel == shrunk:   # searched, not trusted (a face crop: the crop path may find it)
            assert face["found_by"] in ("detector", "quick look", "crop fit", "second opinion")
            continue
        assert face["found_by"] == "manifest"
        lm = np.array(detected[rel].info["landmarks_crop"], np.float32)
        assert np.abs(np.array(face["landmarks"]) - lm).max() <= 0.06
        alpha = read_image(tmp_path / "out" / rec.info["alpha"])[..., 0] / 255.0
        assert _alpha_at(alpha, lm, 33) > 0.5 and _alpha_at(alpha, lm, 62) > 0.5
        assert max(_alpha_at(alpha, lm, i) for i in EYES) < 0.05

    synth_masks(tmp_path / "faces", tmp_path / "searched", landmarks_from="detector", workers=1,
                progress=False)
    found = {f["found_by"] for r in read_manifest(tmp_path / "searched") if r.status == "ok"
             for f in r.info["faces"]}
    assert found and found <= {"detector", "quick look"}   # searched (aligned crops: the quick look)


def test_landmarks_from_a_detect_manifest_of_the_photos(identities, tmp_path):
    from maskprep.faces import detect_tree

    src = _small_tree(identities, tmp_path / "in")
    detect_tree(src, tmp_path / "faces", workers=1, progress=False)
    unlisted = sorted(p for p in src.rglob("*.*"))[0]
    shutil.copyfile(identities / "multi" / "two_people.jpg", unlisted.parent / "later.jpg")
    synth_masks(src, tmp_path / "out", landmarks_from=tmp_path / "faces" / "manifest.jsonl",
                workers=1, progress=False)
    faces_of = {}
    for rec in read_manifest(tmp_path / "faces"):
        if rec.status == "ok":
            faces_of.setdefault(rec.source, []).append(rec.info["landmarks"])
    for rec in read_manifest(tmp_path / "out"):
        if rec.status != "ok":
            continue
        found_by = {f["found_by"] for f in rec.info["faces"]}
        if rec.source.endswith("later.jpg"):
            assert found_by == {"detector"} and len(rec.info["faces"]) == 2
        else:
            assert found_by == {"manifest"}
            assert len(rec.info["faces"]) == len(faces_of[rec.source])
    result = CliRunner().invoke(cli, ["synth-masks", str(src), str(tmp_path / "o2"),
                                      "--landmarks-from", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such manifest" in result.output
    # a detect run over another folder shares no photo with IN: refused, not silently ignored
    result = CliRunner().invoke(cli, ["synth-masks", str(src / "multi"), str(tmp_path / "o3"),
                                      "--landmarks-from", str(tmp_path / "faces")])
    assert result.exit_code == 2 and "none of the photos" in result.output


def test_no_search_pass_for_faces_too_small_to_mask(identities):
    """A small photo is searched at upsample 1 (faces from 40 px); the upsample-2 pass could only
    add faces under 40 px, which synth-masks would skip, so it is not run."""
    from maskprep.faces import detect_faces

    image = read_image(identities / "barack_obama" / "obama-240p.jpg")
    full = detect_faces(image)
    quick = detect_faces(image, min_size=40)
    assert len(full) == len(quick) == 1
    assert full[0].upsample == 2 and quick[0].upsample == 1
    assert np.abs(full[0].landmarks - quick[0].landmarks).mean() < 3.0


@pytest.mark.slow
def test_synthetic_masks_teach_almost_what_real_ones_do(masks_data):
    """The fast version of benchmarks/eval_synth_teaching.py: a classifier trained on maskprep's
    masks vs their unmasked sources, scored on real masked/unmasked photos, must clearly beat
    one trained on a flat coloured box over the same region and come near one trained on real
    masked photos."""
    import importlib.util

    from conftest import REPO_ROOT
    spec = importlib.util.spec_from_file_location(
        "eval_synth_teaching", REPO_ROOT / "benchmarks" / "eval_synth_teaching.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scores = module.evaluate(masks_data / "chandrikadeb7", limit=80, seed=0, bank=False,
                             pretrained=False, log=lambda *a: None)["hand-made"]["chandrikadeb7"]
    assert scores["drawn"] >= scores["flat box"] + 0.1, scores
    assert scores["drawn"] >= 0.7, scores
    assert scores["drawn"] >= scores["real"] - 0.12, scores


def _edge_lift(image: np.ndarray, lm: np.ndarray, seed: int) -> tuple[float, dict]:
    """Median luminance of a rendered surgical mask in a band along its outline (the tape's width)
    over that of the fabric just inside it; and the surface draws."""
    layer, _ = render_mask(image, lm, "surgical", "correct", rng=np.random.default_rng(seed),
                           draws={"loops": False})
    sd = layer.params["surface"]
    body = (layer.coverage > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(body, cv2.DIST_L2, 3)
    lum = layer.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    tape_px = max(sd["tape"] * float(np.ptp(np.nonzero(body)[0])), 2.0)   # its share of the height
    edge = (dist > 1.0) & (dist < 0.6 * tape_px)
    inner = (dist > 1.6 * tape_px) & (dist < 3.0 * tape_px)
    return float(np.median(lum[edge]) / np.median(lum[inner])), sd


@pytest.mark.parametrize("rel", ["joe_biden/biden.jpg", "barack_obama/obama.jpg"])
def test_a_surgical_mask_has_lighter_bound_edges(faces_by_photo, rel, monkeypatch):
    """The binding tape along a surgical mask's edges is a visibly lighter band than the fabric
    just inside it: lighter than the same mask's edge without it (the edge turning away from the
    light darkens both)."""
    from maskprep.masks import surface

    image, faces = faces_by_photo[rel]
    for seed in range(3):
        with_tape, sd = _edge_lift(image, faces[0], seed)
        with monkeypatch.context() as m:
            m.setattr(surface, "bound_edges", lambda u, *a: (np.zeros_like(u), np.zeros_like(u)))
            without, _ = _edge_lift(image, faces[0], seed)
        assert with_tape > without * (1 + 0.1 * sd["tape_light"]), (seed, with_tape, without,
                                                                     sd["tape_light"])


def test_a_faces_light_is_kept_for_its_next_masks_and_measured_again_when_its_pixels_change(
        faces_by_photo):
    """synth-masks draws several masks per face: the light measured on a face is kept for them,
    but a face whose pixels changed (a darker photo here; an earlier mask composited over it in a
    multi-face photo) is measured again, and each output's light strength still applies."""
    from maskprep.masks import light

    image, faces = faces_by_photo["barack_obama/obama.jpg"]
    lm = faces[0]
    light._MEASURED.clear()
    first = light.estimate_light(image, lm, 1.0)
    assert light.estimate_light(image.copy(), lm, 1.0) == first
    _, directional = light._measure_light(image, lm)
    for strength in (0.5, 1.25):
        assert light.estimate_light(image, lm, strength).diffuse == \
            float(np.clip(directional * strength, 0.15, 0.45))
    darker = np.rint(image * 0.6).astype(np.uint8)
    dark = light.estimate_light(darker, lm, 1.0)
    assert dark.face < 0.7 * first.face and dark.white < first.white
    light._MEASURED.clear()
    assert light.estimate_light(darker, lm, 1.0) == dark   # what a fresh measurement gives


@pytest.mark.parametrize("kind", ["white", "nonwoven", "meltblown", "knit"])
def test_grain_and_fibres_are_fresh_for_every_mask(kind):
    """Two masks' grain or fibres never match after a shift (a model could learn the one texture
    shared by the whole dataset), a large layer does not repeat, and a seed gives the same bytes."""
    from maskprep.masks import surface

    def field(shape: tuple[int, int], seed: int) -> np.ndarray:
        if kind == "white":
            return surface.white_noise(shape, seed)
        v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) / max(shape)
        return surface.material(u, v, float(shape[1]), 1.0,
                                {"fibre": 1.0, "material": kind, "material_seed": seed})

    patch = np.ascontiguousarray(field((256, 256), 11)[64:192, 64:192])
    other = field((400, 400), 12345)   # holds every offset of a 256 px tile, were it one
    assert cv2.matchTemplate(other, patch, cv2.TM_CCOEFF_NORMED).max() < 0.5
    big = field((600, 600), 7)
    self_match = cv2.matchTemplate(big, np.ascontiguousarray(big[:128, :128]), cv2.TM_CCOEFF_NORMED)
    self_match[:16, :16] = 0   # the patch itself and its blurred neighbours
    assert self_match.max() < 0.5
    assert field((64, 80), 11).tobytes() == field((64, 80), 11).tobytes()
