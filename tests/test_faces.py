"""The shared face finder (maskprep.faces.find_faces): tight crops, false faces, the suit patch."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from maskprep.faces import detect_faces, find_faces, fit_crop
from maskprep.images import read_image

from conftest import REPO_ROOT, require_shared

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import face_sets  # noqa: E402  (the sets bench_detect.py measures on)


def test_a_tight_crop_hog_misses_is_found_by_the_crop_fit_and_is_frontal():
    crops = require_shared("masks", "chandrikadeb7", "without_mask")
    image = read_image(crops / "0_0_aidai_0029.jpg")
    assert detect_faces(image) == []
    fit = fit_crop(image)
    assert fit.reason is None and fit.skin > 0.6
    search = find_faces(image)
    assert len(search.faces) == 1 and search.faces[0].found_by in ("quick look", "crop fit")
    face = search.faces[0]
    # the whole face, frontal: a crop of a frontal face must not measure as turned
    assert abs(face.yaw) < 0.3 and abs(face.roll) < 15
    lm = face.landmarks
    assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]


def test_the_demo_suit_patch_is_rejected_with_a_reason_and_the_face_kept():
    """The demo's tilted, brightened astronaut: HOG scores a suit patch 0.57, above --min-score."""
    shot = face_sets.demo_tilted_astronaut()
    left, top, right, bottom = face_sets.SUIT_PATCH_BOX
    raw = detect_faces(shot)
    assert any(abs(f.box[0] - left) < 15 and abs(f.box[1] - top) < 15 for f in raw), "HOG hits the suit"
    search = find_faces(shot)
    assert len(search.faces) == 1 and search.faces[0].box[3] < 200   # the head, not the suit
    assert [why for f, why in search.rejected if abs(f.box[0] - left) < 15] == ["unstable landmark fit"]
    # cut out on its own, the patch is no face either
    alone = find_faces(face_sets.suit_patch())
    assert alone.faces == []


@pytest.mark.parametrize("index", [0, 7])
def test_a_scene_patch_without_a_face_is_rejected(index):
    kaggle = require_shared("masks", "kaggle_fmd")
    name, patch = face_sets.scene_patches(kaggle, index + 1)[index]
    assert find_faces(patch).faces == [], name


def test_a_skin_coloured_body_patch_is_no_face():
    kaggle = require_shared("masks", "kaggle_fmd")
    for name, patch in face_sets.body_patches(kaggle, 3):
        assert find_faces(patch).faces == [], name


def test_detect_records_the_rejected_suit_patch(tmp_path):
    from maskprep.faces import detect_tree
    from maskprep.images import write_image
    from maskprep.manifest import read_manifest

    src = tmp_path / "in"
    write_image(src / "astronaut_tilt.png", face_sets.demo_tilted_astronaut())
    write_image(src / "suit.png", face_sets.suit_patch())
    summary = detect_tree(src, tmp_path / "out", workers=1, progress=False)
    assert summary.outputs == 1
    records = read_manifest(tmp_path / "out")
    ok = [r for r in records if r.status == "ok"]
    assert [r.info["found_by"] for r in ok] == ["search"]
    refused = [r for r in records if r.status == "skipped" and r.source == "astronaut_tilt.png"]
    assert [r.reason for r in refused] == ["not a face"]
    assert refused[0].info["face"]["reason"] == "unstable landmark fit"
    suit = [r for r in records if r.source == "suit.png"]
    assert len(suit) == 1 and suit[0].status == "skipped"


def _forbid_the_costly_search(monkeypatch) -> None:
    """Make the full HOG search and the CNN second opinion fail loudly if they run."""
    import maskprep.faces as faces

    def searched(*args, **kwargs):
        raise AssertionError("searched: the full search or the CNN ran")

    monkeypatch.setattr(faces, "detect_faces", searched)
    monkeypatch.setattr(faces, "_second_opinion", searched)


def test_a_confident_crop_fit_skips_the_search(monkeypatch):
    """The fast path: a small crop the quick look misses but whose fit is confident is the face;
    the detector never runs."""
    import maskprep.faces as faces

    crops = require_shared("masks", "chandrikadeb7", "without_mask")
    confident = None
    for path in sorted(crops.glob("0_0_*.jpg"))[:40]:
        image = read_image(path)
        if (max(image.shape[:2]) <= faces.CROP_FAST_SIDE and fit_crop(image).confident
                and not faces._verify_quick(image, faces.quick_look(image))[0]):
            confident = image
            break
    assert confident is not None, "no confident crop fit the quick look misses among 40 small crops"

    _forbid_the_costly_search(monkeypatch)
    search = find_faces(confident)
    assert [f.found_by for f in search.faces] == ["crop fit"]
    # a scene photo is never taken for one big face: its search still runs
    scene = read_image(require_shared("masks", "kaggle_fmd", "images", "maksssksksss0.jpg"))
    with pytest.raises(AssertionError, match="searched"):
        find_faces(scene)


def test_the_quick_look_finds_a_tight_crop_without_the_full_search(monkeypatch):
    """The cheap path: HOG once on a small padded copy; neither the search nor the CNN runs, and
    the landmarks, refitted until they settle, describe the face the crop holds."""
    crops = require_shared("masks", "chandrikadeb7", "without_mask")
    image = read_image(crops / "0_0_aidai_0014.jpg")

    _forbid_the_costly_search(monkeypatch)
    search = find_faces(image)
    assert [f.found_by for f in search.faces] == ["quick look"]
    face = search.faces[0]
    lm = face.landmarks
    assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
    # the face fills the crop
    assert (lm[16, 0] - lm[0, 0]) > 0.5 * image.shape[1]


def test_a_small_crop_without_a_plausible_face_is_not_searched_at_full_cost(monkeypatch):
    """A skin-coloured body patch the size of a crop: the quick look and the crop fit see no
    face, and neither the full search nor the CNN is spent on it."""
    import maskprep.faces as faces

    kaggle = require_shared("masks", "kaggle_fmd")
    calls = []
    monkeypatch.setattr(faces, "detect_faces", lambda *a, **k: calls.append("search") or [])
    monkeypatch.setattr(faces, "_second_opinion", lambda *a, **k: calls.append("cnn") or [])
    for name, patch in face_sets.body_patches(kaggle, 3):
        assert max(patch.shape[:2]) <= faces.CROP_NO_SEARCH_SIDE, name
        if faces.fit_crop(patch).reason is None:
            continue   # a plausible fit may still ask the CNN: not this test's case
        assert find_faces(patch).faces == [], name
    assert calls == []


def test_hog_confirms_an_unsettled_crop_fit_and_refuses_a_cat():
    """A crop fit that looks like a face but has not settled is taken only when HOG, run once on
    a copy framed on it, sees a face there: a real crop passes, a cat's face does not."""
    import maskprep.faces as faces

    crops = require_shared("masks", "chandrikadeb7", "without_mask")
    confirmed = None
    for path in sorted(crops.glob("1_0_*.jpg"))[:60]:
        fit = fit_crop(read_image(path))
        if (fit.reason is None and not fit.settled and fit.hog_score is not None
                and fit.hog_score >= faces.VERIFY_MIN_SCORE):
            confirmed = fit
            break
    assert confirmed is not None, "no crop fit confirmed by HOG among 60 crops"
    assert confirmed.confident
    lm = confirmed.face.landmarks
    assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]

    cats = [(name, patch) for name, patch in face_sets.texture_patches()
            if name.split("/")[1].startswith(("chelsea", "cat"))]
    plausible = [(name, patch) for name, patch in cats if fit_crop(patch).reason is None]
    assert plausible, "no cat patch the shape predictor draws a plausible face on"
    for name, patch in plausible:
        fit = fit_crop(patch)
        assert not fit.confident, name
        assert find_faces(patch).faces == [], name


def test_a_scene_photo_is_searched_not_taken_for_one_face_crop():
    """Small scene photos of crop-like shape (400x301) are searched: a plausible fit over the
    whole picture, with a weak HOG hit somewhere near its centre, is not one face crop."""
    images = require_shared("masks", "kaggle_fmd", "images")
    two_people = find_faces(read_image(images / "maksssksksss200.jpg")).faces
    assert len(two_people) == 2
    assert all(f.found_by == "search" for f in two_people)
    assert find_faces(read_image(images / "maksssksksss123.jpg")).faces == []


def _big_face_beside(small_side: int) -> np.ndarray:
    """A 600x440 photo: obama.jpg's face over its left 440 px (the quick look's), and on the right
    a chandrikadeb7 crop ``small_side`` px across that HOG finds there on its own."""
    import cv2

    photo = read_image(require_shared("faces", "identities", "barack_obama", "obama.jpg"))
    big = detect_faces(photo)[0]
    left, top, right, bottom = big.box
    side = int((right - left) * 1.5)
    cx, cy = (left + right) // 2, (top + bottom) // 2
    region = photo[max(cy - side // 2, 0):cy + side // 2, max(cx - side // 2, 0):cx + side // 2]
    canvas = np.full((440, 600, 3), 128, np.uint8)
    canvas[:, :440] = cv2.resize(region, (440, 440), interpolation=cv2.INTER_AREA)
    crops = require_shared("masks", "chandrikadeb7", "without_mask")
    for path in sorted(crops.glob("*.jpg"))[:40]:
        small = cv2.resize(read_image(path), (small_side, small_side), interpolation=cv2.INTER_AREA)
        with_small = canvas.copy()
        with_small[430 - small_side:430, 595 - small_side:595] = small
        if detect_faces(np.ascontiguousarray(with_small[:, 440:])):
            return with_small
    pytest.fail(f"no chandrikadeb7 crop at {small_side} px that HOG finds on its own among 40")


@pytest.mark.parametrize("small_side", [150, 75])
def test_a_face_filling_the_quick_look_does_not_hide_a_smaller_face_beside_it(small_side):
    """A photo with one big face (seen by the quick look) and a smaller one beside it: both, for
    ``detect`` (min_size 0) and ``synth-masks`` (min_size 40). At 75 px the small face is ~0.23 of
    the big one (a face in the background of a close-up), wider than synth-masks' --min-face:
    a search for faces down to 0.3 of the quick-look face lost it."""
    with_small = _big_face_beside(small_side)
    for min_size in (0, 40):
        found = find_faces(with_small, min_size=min_size).faces
        assert [f.found_by for f in found][0] == "quick look", "the big face should be the quick look's"
        assert len(found) == 2, (min_size, [f.box for f in found])
        assert found[1].box[0] >= 440     # the small face, right of the big one
        assert found[1].box[2] - found[1].box[0] > 40


def test_beside_a_quick_look_face_other_faces_are_searched_down_to_min_size(monkeypatch):
    """A 320x428 crop whose quick-look face (~200 px) leaves room for another face: the photo is
    searched for faces down to ``min_size`` as a photo without a quick-look face would be (the
    full search's first pass at min_size 40), on a coarser copy only where ``min_size`` is larger
    than what that pass sees; the one face is the quick look's."""
    import maskprep.faces as faces

    image = read_image(require_shared("masks", "chandrikadeb7", "without_mask", "122.jpg"))
    h, w = image.shape[:2]
    passes = []
    real = faces._run_detector

    def recording(model, searched, up):
        passes.append((searched.shape[0] * searched.shape[1] * 4 ** up, up))
        return real(model, searched, up)

    monkeypatch.setattr(faces, "_run_detector", recording)
    for min_size, pixels in ((40, h * w * 4), (160, round(max(h, w) * 0.5) ** 2 * h * w / max(h, w) ** 2)):
        passes.clear()
        search = find_faces(image, min_size=min_size)
        assert [f.found_by for f in search.faces] == ["quick look"]
        assert max(h, w) > faces.CROP_NO_SEARCH_SIDE and not faces._dominates(search.faces, h, w)
        assert len(passes) == 1 and passes[0][0] == pytest.approx(pixels, rel=0.02), passes
    # the plan: the full search's unless min_size leaves its smallest faces unused
    assert faces.other_faces_plan(h, w, min_size=0) == (None, faces.DEFAULT_MAX_SIDE)
    assert faces.other_faces_plan(h, w, min_size=40) == (None, faces.DEFAULT_MAX_SIDE)
    assert faces.other_faces_plan(h, w, min_size=60) == (1, round(max(h, w) * 80 / 120))
    assert faces.other_faces_plan(h, w, min_size=160) == (0, round(max(h, w) * 80 / 160))
    assert faces.other_faces_plan(h, w, upsample=1, min_size=160) == (1, faces.DEFAULT_MAX_SIDE)
    assert faces.other_faces_plan(1280, 960, min_size=40) == (None, faces.DEFAULT_MAX_SIDE)


def test_a_strip_thinner_than_the_cnn_accepts_has_no_face_rather_than_an_error():
    """A 2 px high strip reaches the CNN second opinion (a 1 px copy), which dlib refuses: it is
    an image without a face, for the default finder and for --model cnn alike."""
    strip = np.full((2, 400, 3), 120, np.uint8)
    assert find_faces(strip).faces == []
    assert detect_faces(strip, model="cnn") == []
